"""Sweeping: how a prune removes a data dir's entries, and its report of what went.

wavecast.retention decides what a data dir keeps; this removes the rest, on a local disk or
an object store. An entry goes only once it is old enough (when it last changed, which a
remote store tells under various names), never through a link, and a staging entry only when
no live writer holds it; what is younger is counted and left for a later prune.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from wavecast.config import RetentionSpec
from wavecast.errors import InvalidInputError
from wavecast.registry import one_line
from wavecast.staging import STALE_AFTER_S, remove_if_abandoned
from wavecast.storage import COMPLETE_MARKER, DataDir

STAMP_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created")


class Removal(BaseModel):
    """One entry a prune removed (or, in a dry run, would remove)."""

    model_config = ConfigDict(frozen=True)

    path: str  # relative to the pruned data dir
    size: int  # bytes
    why: str


class PruneReport(BaseModel):
    """What a prune of one data dir removed, what it kept, and what it left and why."""

    model_config = ConfigDict(frozen=True)

    data_dir: str
    dry_run: bool
    removed: tuple[Removal, ...] = ()
    kept_versions: int = 0
    too_young: int = 0  # unreferenced entries younger than min_age_s, left for a later prune
    problems: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(removal.size for removal in self.removed)


@dataclass
class Sweep:
    """One prune's state: the root, the policy, and what it removed, left or could not do."""

    root: DataDir
    policy: RetentionSpec
    dry_run: bool
    now: float
    removed: list[Removal] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # full paths removed (or, dry, to be)
    too_young: int = 0
    problems: list[str] = field(default_factory=list)

    def relative(self, path: str) -> str:
        return path[len(self.root.root) :].lstrip("/") or "."

    def drop(self, store: DataDir, parts: tuple[str, ...], why: str, min_age: float) -> None:
        """Remove an entry unless it is younger than `min_age` (or a link, or undatable)."""
        try:
            path = store.path(*parts)
        except InvalidInputError:
            return  # a link out of the data dir: not ours
        when = modified(store, path)
        if when is None:
            return
        if self.now - when < min_age:
            self.too_young += 1
            return
        size = entry_size(store, path)
        if not self.dry_run:
            try:
                remove(store, path)
            except OSError as exc:
                self.problems.append(f"{self.relative(path)}: not removed: {one_line(exc)}")
                return
        self.gone.add(path)
        self.removed.append(Removal(path=self.relative(path), size=size, why=why))

    def drop_staging(self, store: DataDir, parts: tuple[str, ...]) -> None:
        """Remove a staging entry once STALE_AFTER_S old and, on a local disk, held by no
        writer (staging.remove_if_abandoned)."""
        why = "left by a writer that was killed"
        if not store.is_local or self.dry_run:
            self.drop(store, parts, why, STALE_AFTER_S)
            return
        path = store.path(*parts)
        when = modified(store, path)
        if when is None or self.now - when < STALE_AFTER_S:
            return
        size = entry_size(store, path)
        remove_if_abandoned(path)
        if not Path(path).is_symlink() and not Path(path).exists():
            self.gone.add(path)
            self.removed.append(Removal(path=self.relative(path), size=size, why=why))

    def report(self, kept: int) -> PruneReport:
        return PruneReport(
            data_dir=self.root.uri(),
            dry_run=self.dry_run,
            removed=tuple(self.removed),
            kept_versions=kept,
            too_young=self.too_young,
            problems=tuple(self.problems),
        )


def modified(store: DataDir, path: str) -> float | None:
    """When an entry last changed (a remote directory: its completion marker, else its newest
    file); None for a link, or when the store cannot say."""
    if store.is_local:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return None if stat.S_ISLNK(info.st_mode) else info.st_mtime
    marker = f"{path}/{COMPLETE_MARKER}"
    try:
        if store.fs.exists(marker):
            return stamp(store.fs.info(marker))
        details = store.fs.find(path, detail=True)
    except OSError:
        return None
    stamps = [stamp(info) for info in details.values()]
    known = [s for s in stamps if s is not None]
    return max(known) if known and len(known) == len(stamps) else None


def stamp(info: dict[str, Any]) -> float | None:
    """The modification time an fsspec listing gives, under whichever name it uses."""
    for key in STAMP_KEYS:
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def entry_size(store: DataDir, path: str) -> int:
    """Bytes of a file, or of every file under a directory (links are not followed)."""
    if not store.is_local:
        return int(store.fs.du(path, total=True))
    entry = Path(path)
    if entry.is_symlink() or not entry.is_dir():
        return entry.lstat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += (Path(folder) / name).lstat().st_size
    return total


def remove(store: DataDir, path: str) -> None:
    entry = Path(path)
    if not store.is_local:
        store.fs.rm(path, recursive=True)
    elif entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(path)
    else:
        entry.unlink()


def summary_line(report: PruneReport, min_age_s: float) -> str:
    """One line for a log or the command: what went (or would), what stayed and why."""
    verb = "would remove" if report.dry_run else "removed"
    line = (
        f"{verb} {len(report.removed)} entries ({report.size:,} bytes); "
        f"kept {report.kept_versions} version(s)"
    )
    if report.too_young:
        line += (
            f"; {report.too_young} unused entries younger than {min_age_s:g} s left for a later "
            "prune (a running retrain may use them)"
        )
    return line
