"""SeriesHome: a series' root and key, its own data dir where the layout always put it, found
again from that dir alone, and small across processes."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import pytest

from wavecast.home import SeriesHome
from wavecast.series_dirs import SERIES_DIR, series_slug
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit

KEYS = ["a", "a b/c.d", "x" * 129, "店舗" * 40, ""]  # plain, encoded, hashed (long, CJK), empty


@pytest.mark.parametrize("key", KEYS)
def test_a_panel_series_lives_where_the_layout_puts_it_and_maps_back(
    tmp_path: Path, key: str
) -> None:
    home = SeriesHome(str(tmp_path), key)
    assert Path(home.uri()) == tmp_path / SERIES_DIR / series_slug(key)
    assert home.root_store.uri() == str(tmp_path)

    found = SeriesHome.of_dir(DataDir(home.uri()), key)

    assert found == SeriesHome(DataDir(str(tmp_path)).uri(), key)
    assert found.uri() == home.uri()


def test_a_dir_that_is_no_panel_series_is_its_own_root(tmp_path: Path) -> None:
    single = DataDir(str(tmp_path / "single"))
    for key in (None, "a"):  # a single series named by its spec is still its dir's own
        home = SeriesHome.of_dir(single, key)
        assert home == SeriesHome(single.uri()) and home.store is single
    own = SeriesHome(str(tmp_path), None)
    assert own.store is own.root_store  # the root's own series: one DataDir, not two


def test_a_home_pickles_as_its_root_and_key_and_opens_its_dir_again() -> None:
    root = f"memory://wavecast-home-{uuid.uuid4().hex}"
    home = SeriesHome(root, "b")
    home.store.write_bytes(b"kept", "file")

    copy = pickle.loads(pickle.dumps(home))

    assert copy == home and "store" not in copy.__dict__
    assert copy.store.read_bytes("file") == b"kept"
    assert len(pickle.dumps(home)) < 200  # root and key, not an fsspec filesystem
