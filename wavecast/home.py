"""A series' home: the data dir a run was given and the series' key in it.

A run is given one data dir: a single series' own, or a panel's, whose series each have
their own under it (<root>/series/<slug>, series_dirs.series_slug). The stages of a series pass
its home rather than a path string, so its DataDir (an fsspec filesystem, a resolved root)
is opened once per series, not again by every function on the way, and a caller that needs
the panel (its forecasts dataset, its global network) finds the root beside the series' own
dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from wavecast.series_dirs import SERIES_DIR, panel_root_of, series_slug
from wavecast.storage import DataDir


@dataclass(frozen=True)
class SeriesHome:
    """Series `key` of the data dir `root`; key None is the root's own series (not a panel's).

    Picklable, and small when pickled (its root and key; the DataDirs are opened again where
    it lands): it crosses process pools and Dask workers with a panel's batches.
    """

    root: str
    key: str | None = None

    @classmethod
    def of_root(cls, root: DataDir) -> SeriesHome:
        """The root's own home, on the root already opened: a panel's, to name its series."""
        return opened(cls(root.uri()), "root_store", root)

    @classmethod
    def of_dir(cls, own: DataDir, key: str | None = None) -> SeriesHome:
        """The home whose own dir is `own`: series `key` of its panel when `own` is that
        series' dir under one (series_dirs.panel_root_of), else `own`'s own series."""
        root = panel_root_of(own, key) if key is not None else None
        home = cls(root, key) if root is not None else cls(own.uri())
        return opened(home, "store", own)

    @cached_property
    def store(self) -> DataDir:
        """The series' own data dir: its copy, windows, trainings, evaluations and registry."""
        if self.key is None:
            return self.root_store
        return DataDir(self.root_store.uri(SERIES_DIR, series_slug(self.key)))

    @cached_property
    def root_store(self) -> DataDir:
        """The data dir the run was given (a panel's: its forecasts, its global network)."""
        return DataDir(self.root)

    def uri(self, *parts: str) -> str:
        """Where `parts` are under the series' own data dir (DataDir.uri)."""
        return self.store.uri(*parts)

    def series(self, key: str) -> SeriesHome:
        """Series `key` of this home's root, sharing the root's opened DataDir."""
        return opened(SeriesHome(self.root, key), "root_store", self.root_store)

    def __getstate__(self) -> dict[str, str | None]:
        return {"root": self.root, "key": self.key}  # not the opened DataDirs


def opened(home: SeriesHome, name: str, store: DataDir) -> SeriesHome:
    """A new `home` with its `name` DataDir (store or root_store) one already open, not opened
    again: a cached_property keeps its value in the instance dict, which frozen leaves free."""
    home.__dict__[name] = store
    return home
