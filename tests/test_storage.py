"""DataDir on a local path, a file:// URI and an in-memory object store; stable_hash."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from wavecast.storage import COMPLETE_MARKER, STAGING_TAG, DataDir, stable_hash

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


def test_a_stage_fingerprint_covers_the_code_it_runs_and_nothing_else() -> None:
    """Editing the plots re-evaluates but never retrains; the report touches no cached stage."""
    from wavecast.storage import reached_modules

    stages = {
        name: reached_modules(f"wavecast.{name}")
        for name in ("generate", "windows", "train", "evaluate")
    }
    assert "wavecast.plots" in stages["evaluate"] and "wavecast.train" in stages["evaluate"]
    assert "wavecast.plots" not in stages["train"]
    assert "wavecast.windows" in stages["train"] and "wavecast.generate" in stages["windows"]
    assert all("wavecast.report" not in reached for reached in stages.values())
    assert all("wavecast.publish" not in reached for reached in stages.values())
