"""DataDir on a local path, a file:// URI and an in-memory object store; staging that dataset
readers never see and that killed writers never leave for long; symlinks; stable_hash."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from wavecast.cache_keys import stable_hash
from wavecast.errors import InvalidInputError
from wavecast.staging import STAGING_TAG, STALE_AFTER_S, held, staging_path
from wavecast.storage import COMPLETE_MARKER, DataDir

pytestmark = pytest.mark.unit


@pytest.fixture(params=["path", "file-uri", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DataDir:
    """The same DataDir contract on three kinds of root."""
    if request.param == "path":
        return DataDir(str(tmp_path / "data"))
    if request.param == "file-uri":
        return DataDir((tmp_path / "data").as_uri())
    return DataDir(f"memory://wavecast-test-{uuid.uuid4().hex}")


def all_names(store: DataDir) -> list[str]:
    """Every path under the root, relative to it, files and directories alike."""
    if not store.exists():
        return []
    found = store.fs.find(store.path(), withdirs=True)
    names = (p.rstrip("/")[len(store.root) :].lstrip("/") for p in found)
    return sorted(n for n in names if n)


def test_local_path_and_file_uri_are_the_same_place(tmp_path: Path) -> None:
    """A file:// URI and a plain path resolve to one local root, readable from either."""
    by_path = DataDir(str(tmp_path / "data"))
    by_uri = DataDir((tmp_path / "data").as_uri())
    assert by_path.is_local and by_uri.is_local
    assert by_path.root == by_uri.root == str(tmp_path.resolve() / "data")
    by_uri.write_bytes(b"hello", "a", "b.txt")
    assert (tmp_path / "data" / "a" / "b.txt").read_bytes() == b"hello"
    assert by_path.read_bytes("a", "b.txt") == b"hello"


def test_write_bytes_replaces_and_leaves_no_staging(store: DataDir) -> None:
    """A second write replaces the first; only the target file remains."""
    store.write_bytes(b"old", "dir", "f.bin")
    store.write_bytes(b'{"b": 1, "a": [2]}', "dir", "f.bin")
    assert store.read_json("dir", "f.bin") == {"a": [2], "b": 1}
    assert all_names(store) == ["dir", "dir/f.bin"]


def test_staged_dir_success_publishes_files_and_marker(store: DataDir) -> None:
    """On success the target holds exactly the staged files plus _COMPLETE."""
    with store.staged_dir("out", "v1") as staging:
        (staging / "a.txt").write_text("A")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("B")
    assert store.is_complete("out", "v1")
    assert store.read_bytes("out", "v1", "sub", "b.txt") == b"B"
    assert all_names(store) == [
        "out",
        "out/v1",
        f"out/v1/{COMPLETE_MARKER}",
        "out/v1/a.txt",
        "out/v1/sub",
        "out/v1/sub/b.txt",
    ]
    assert not staging.exists()


def test_staged_dir_failure_publishes_nothing(store: DataDir) -> None:
    """An exception inside the block leaves no target, no marker and no staging dir."""
    with pytest.raises(RuntimeError), store.staged_dir("out", "v1") as staging:
        (staging / "a.txt").write_text("A")
        raise RuntimeError("crash mid-write")
    assert not store.exists("out", "v1")
    assert not staging.exists()
    assert [n for n in all_names(store) if n != "out"] == []


def test_failed_restage_keeps_the_old_directory(store: DataDir) -> None:
    """A crash while rebuilding leaves the previous complete version untouched."""
    with store.staged_dir("out") as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), store.staged_dir("out") as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("crash mid-write")
    assert all_names(store) == ["out", f"out/{COMPLETE_MARKER}", "out/old.txt"]


def test_restaging_replaces_the_directory_wholly(store: DataDir) -> None:
    """Re-running a stage replaces its output: files of the old run are gone."""
    with store.staged_dir("out") as staging:
        (staging / "old.txt").write_text("old")
        (staging / "shared.txt").write_text("1")
    with store.staged_dir("out") as staging:
        (staging / "shared.txt").write_text("2")
    assert all_names(store) == ["out", f"out/{COMPLETE_MARKER}", "out/shared.txt"]
    assert store.read_bytes("out", "shared.txt") == b"2"


def test_local_file_and_copy_to_local(store: DataDir, tmp_path: Path) -> None:
    """Stored bytes are readable through a local path, downloaded when the store is remote."""
    store.write_bytes(b"payload", "m", "model.keras")
    with store.local_file("m", "model.keras") as path:
        assert path.read_bytes() == b"payload"
    target_dir = tmp_path / "local"
    target_dir.mkdir()
    copied = store.copy_to_local(target_dir, "m", "model.keras")
    assert copied == target_dir / "model.keras" and copied.read_bytes() == b"payload"


def test_list_dir_and_uri(store: DataDir) -> None:
    """list_dir gives sorted names (empty if absent); uri keeps the scheme of remote stores."""
    assert store.list_dir("nothing") == []
    store.write_bytes(b"", "d", "b")
    store.write_bytes(b"", "d", "a")
    assert store.list_dir("d") == ["a", "b"]
    uri = store.uri("d", "a")
    assert uri.endswith("/d/a")
    assert uri.startswith("memory://") != store.is_local


def test_no_staging_tag_leftovers_anywhere(store: DataDir) -> None:
    """After writes, restaging and a failure, no name carries the staging tag."""
    store.write_bytes(b"1", "x")
    with store.staged_dir("y") as staging:
        (staging / "f").write_text("f")
    with pytest.raises(ValueError), store.staged_dir("y"):
        raise ValueError
    assert not [n for n in all_names(store) if STAGING_TAG in n]


def reference_hash(*parts: bytes, length: int = 16) -> str:
    """stable_hash as documented: sha256 over 8-byte little-endian length + bytes, per part."""
    data = b"".join(len(p).to_bytes(8, "little") + p for p in parts)
    return hashlib.sha256(data).hexdigest()[:length]


def test_stable_hash_is_length_prefixed() -> None:
    """("ab", "c") and ("a", "bc") differ; str and bytes agree; length truncates."""
    assert stable_hash("ab", "c") != stable_hash("a", "bc")
    assert stable_hash("ab", "c") == stable_hash(b"ab", b"c") == reference_hash(b"ab", b"c")
    assert stable_hash("é", length=32) == reference_hash("é".encode(), length=32)
    assert stable_hash() == reference_hash() and len(stable_hash("x", length=8)) == 8


def test_failed_move_into_place_keeps_the_old_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final rename fails (an OSError), readers still find the old complete version."""
    store = DataDir(str(tmp_path / "data"))
    with store.staged_dir("out") as staging:
        (staging / "old.txt").write_text("old")
    real_rename = Path.rename

    def flaky_rename(self: Path, target: str | Path) -> Path:
        if STAGING_TAG in self.name and "retired" not in self.name:
            raise OSError("disk hiccup")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", flaky_rename)
    with pytest.raises(OSError), store.staged_dir("out") as staging:
        (staging / "new.txt").write_text("new")
    assert store.is_complete("out") and store.read_bytes("out", "old.txt") == b"old"


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def aged(path: Path) -> Path:
    """Make an entry look older than any live writer's (after its contents are written)."""
    past = time.time() - STALE_AFTER_S - 60
    os.utime(path, (past, past))
    return path


def test_staging_entries_are_invisible_to_dataset_readers(tmp_path: Path) -> None:
    """A killed writer's staging file, empty or complete, and staging or retired directories
    beside a hive dataset's files: pyarrow reads the published rows, once."""
    store = DataDir(str(tmp_path / "data"))
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "sink.parquet")
    complete = (tmp_path / "sink.parquet").read_bytes()
    store.write_bytes(complete, "forecasts", "series=a", "v1.parquet")
    target = store.path("forecasts", "series=a", "v1.parquet")
    Path(staging_path(target)).write_bytes(b"")  # killed at the write
    Path(staging_path(target)).write_bytes(complete)  # killed at the rename
    for directory in (staging_path(store.path("forecasts", "series=b")), staging_path(target)):
        Path(directory).mkdir()
        (Path(directory) / "part.parquet").write_bytes(complete[:9])
    Path(staging_path(store.path("forecasts", "series=a"), "retired-")).mkdir()

    table = ds.dataset(store.path("forecasts"), partitioning="hive").to_table()
    assert table["x"].to_pylist() == [1, 2] and table["series"].to_pylist() == ["a", "a"]


def write_file(store: DataDir) -> None:
    store.write_bytes(b"new", "p", "f.parquet")


def stage_dir(store: DataDir) -> None:
    with store.staged_dir("p", "out") as staging:
        (staging / "a.txt").write_text("A")


@pytest.mark.parametrize("write", [write_file, stage_dir])
def test_a_write_sweeps_what_killed_writers_left_there_and_only_that(
    tmp_path: Path, write: Callable[[DataDir], None]
) -> None:
    """Old staging files and directories, hidden or with earlier versions' visible names, go;
    a fresh one, one a live writer holds, other names and other directories stay."""
    store = DataDir(str(tmp_path / "data"))
    place, elsewhere = tmp_path / "data" / "p", tmp_path / "data" / "q"
    place.mkdir(parents=True)
    elsewhere.mkdir()
    files = (f".f.parquet{STAGING_TAG}1", f"f.parquet{STAGING_TAG}2", f".g{STAGING_TAG}3")
    for name in (*files, "kept.parquet"):
        (place / name).write_bytes(b"left")
    for name in (f".out{STAGING_TAG}retired-4", f"out{STAGING_TAG}5"):
        (place / name).mkdir()
        (place / name / "model.keras").write_bytes(b"m")
    (elsewhere / f".f{STAGING_TAG}6").write_bytes(b"left")
    for path in [*place.iterdir(), *elsewhere.iterdir()]:
        aged(path)
    (place / f".f.parquet{STAGING_TAG}7").write_bytes(b"fresh")
    live = place / f".g{STAGING_TAG}3"

    with held(str(live)):
        write(store)

    published = "f.parquet" if write is write_file else "out"
    expected = sorted([published, "kept.parquet", f".f.parquet{STAGING_TAG}7", live.name])
    assert names(place) == expected
    assert names(elsewhere) == [f".f{STAGING_TAG}6"]


def test_a_live_writers_staging_dir_survives_a_sweep_however_old(tmp_path: Path) -> None:
    """A stage may fill its directory for hours; its writer's lock, not its age, protects it."""
    store = DataDir(str(tmp_path / "data"))
    with store.staged_dir("p", "out") as staging:
        (staging / "a.txt").write_text("A")
        aged(staging)
        store.write_bytes(b"x", "p", "other")
        assert staging.is_dir() and staging.name.startswith(f".out{STAGING_TAG}")
    assert store.read_bytes("p", "out", "a.txt") == b"A"
    assert names(tmp_path / "data" / "p") == ["other", "out"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the data dir, holding a secret."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret.txt").write_text("aws_secret_access_key = abc\n")
    return place


def refusal(attempt: Callable[..., object], *args: str) -> str:
    with pytest.raises(InvalidInputError) as caught:
        attempt(*args)
    return str(caught.value)


def test_no_symlink_inside_the_data_dir_is_followed_out_of_it(
    tmp_path: Path, outside: Path
) -> None:
    """Directory and file links leading out, dangling or not, and '..': every read, write and
    listing is refused in one line naming the link, and nothing outside changes."""
    root = tmp_path / "data"
    (root / "models").mkdir(parents=True)
    (root / "forecasts").symlink_to(outside)
    (root / "forecast-reports").symlink_to(outside / "not-yet")
    (root / "models" / "champion.json").symlink_to(outside / "secret.txt")
    store = DataDir(str(root))

    attempts: list[tuple[str, Callable[[], object]]] = [
        ("forecasts", lambda: store.write_bytes(b"x", "forecasts", "series=a", "f.parquet")),
        ("forecasts", lambda: store.read_bytes("forecasts/secret.txt")),
        ("forecast-reports", lambda: store.staged_dir("forecast-reports", "r").__enter__()),
        ("models/champion.json", lambda: store.read_bytes("models", "champion.json")),
        ("..", lambda: store.read_bytes("..", "outside", "secret.txt")),
        ("missing/../..", lambda: store.read_bytes("missing", "..", "..", "outside", "secret.txt")),
    ]
    for link, attempt in attempts:
        message = refusal(attempt)
        assert message.startswith(f"{root}/{link}: leads out of the data dir {root};")
        assert "\n" not in message and "aws_secret" not in message
    for reader in (store.list_dir, store.exists, store.uri):
        assert refusal(reader, "forecasts", "secret.txt").startswith(f"{root}/forecasts:")
    assert names(outside) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "aws_secret_access_key = abc\n"


def test_links_that_stay_inside_the_data_dir_are_followed(tmp_path: Path) -> None:
    """A link within the root, and a root that is itself a link, are the operator's choice."""
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "alias").symlink_to(tmp_path / "data" / "real")
    (tmp_path / "linked-root").symlink_to(tmp_path / "data")
    store = DataDir(str(tmp_path / "linked-root"))
    store.write_bytes(b"inside", "alias", "f.txt")
    assert (tmp_path / "data" / "real" / "f.txt").read_bytes() == b"inside"
    assert store.read_bytes("alias", "f.txt") == b"inside" and store.list_dir("alias") == ["f.txt"]
