"""Retention: exactly which versions and stored files a prune keeps (the champion, the one
before it, the newest K, the ones forecasts name; the newest version's caches, every kept
version's raw copy and source frame), that a dry run removes nothing, that nothing younger
than min_age_s goes, and that a prune during or after a failed run leaves the champion."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import Ran
from tests.test_registry import METRICS, NAIVE, manifest_for
from wavecast.cache_keys import cache_record_name
from wavecast.config import ModelSpec, RetentionSpec, SeriesSpec, TrainSpec, WindowSpec
from wavecast.evaluate import SPEC_FILE
from wavecast.model_files import TrainedRef
from wavecast.registry import MODELS, read_champion, record_champion, registry_lock, servable
from wavecast.retention import kept_versions, prune
from wavecast.staging import held
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit

HOUR = 3600.0
POLICY = RetentionSpec(keep_versions=2)  # min_age_s: the default hour


def v(n: int) -> str:
    """The name of version n: later n, later version; it ends with its evaluation's digits."""
    return f"202401{n:02d}T000000Z-{n:08x}"


def evaluation_of(n: int) -> str:
    return f"{n:08x}ffffffff"


def frame(letter: str) -> str:
    return f"frame-{letter * 16}.parquet"


def complete(root: Path, *parts: str) -> Path:
    """A complete content-addressed directory (its marker inside)."""
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_COMPLETE").write_text("complete\n")
    return folder


def publish(root: Path, n: int, source: str = "sine", network: str | None = None) -> str:
    """Version n as a run publishes it: raw{n}, win{n} and its evaluation beside it, and
    with `network`, scored with the panel's global/<network>."""
    manifest = manifest_for(WindowSpec(), SeriesSpec(source=source), "naive")
    training = None
    if network is not None:
        uri = str(root.parent.parent / "global" / network)
        training = TrainedRef(
            train_id=network,
            uri=uri,
            dataset_id=network,
            model=ModelSpec(),
            train=TrainSpec(),
            epochs_run=1,
            final_loss=0.1,
            seconds=1.0,
            shared=True,
        )
    manifest = manifest.model_copy(
        update={
            "series": manifest.series.model_copy(update={"series_id": f"raw{n}", "source": source}),
            "dataset": manifest.dataset.model_copy(update={"dataset_id": f"win{n}"}),
            "training": training,
        }
    )
    folder = complete(root, MODELS, v(n))
    (folder / "manifest.json").write_text(manifest.model_dump_json())
    (folder / SPEC_FILE).write_text(NAIVE.model_dump_json())
    complete(root, "raw", f"raw{n}")
    complete(root, "windows", f"win{n}")
    complete(root, "evaluations", evaluation_of(n))
    return v(n)


def promote(root: Path, *numbers: int) -> None:
    for n in numbers:
        record_champion(DataDir(str(root)), v(n), METRICS, "promote", "test")


def forecast_of(partition: Path, n: int) -> None:
    """A stored forecast by version n (forecasting.forecast_key's file name)."""
    partition.mkdir(parents=True, exist_ok=True)
    (partition / f"{v(n)}-{'0' * 12}.parquet").write_bytes(b"PAR1")


def age(root: Path, seconds: float = 2 * HOUR) -> None:
    """Everything under root made `seconds` older: written by earlier runs."""
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            when = path.lstat().st_mtime - seconds
            os.utime(path, (when, when), follow_symlinks=False)


def names(root: Path, *parts: str) -> set[str]:
    folder = root.joinpath(*parts)
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


def six_versions(root: Path) -> None:
    """Versions 1-6; 1 then 2 promoted; a forecast by 3; all of it written hours ago."""
    for n in range(1, 7):
        publish(root, n)
    promote(root, 1, 2)
    forecast_of(root / "forecasts" / "series=x", 3)
    age(root)


def test_kept_versions_are_the_champion_the_one_before_the_newest_and_the_forecast() -> None:
    versions = [v(n) for n in range(1, 7)]
    named = {v(3), v(9)}  # a forecast may name a version of another registry
    kept = kept_versions(versions, v(2), [v(1), v(2)], named, keep=2)
    assert kept == {v(1), v(2), v(3), v(5), v(6)}
    assert kept_versions(versions, None, [], set(), keep=3) == {v(4), v(5), v(6)}
    assert kept_versions(versions, v(6), [v(6)], set(), keep=1) == {v(6)}


def test_a_prune_keeps_exactly_what_the_rules_name(tmp_path: Path) -> None:
    root = tmp_path / "data"
    six_versions(root)
    report = prune(DataDir(str(root)), POLICY)
    kept = {v(1), v(2), v(3), v(5), v(6)}
    assert names(root, MODELS) == kept | {"champion.json", "promotions.jsonl", ".lock"}
    assert names(root, "raw") == {"raw1", "raw2", "raw3", "raw5", "raw6"}
    assert names(root, "windows") == {"win6"}
    assert names(root, "evaluations") == {evaluation_of(6)}
    assert report.kept_versions == 5 and not report.problems
    gone = {removal.path for removal in report.removed}
    assert gone == {
        f"{MODELS}/{v(4)}",
        "raw/raw4",
        *(f"windows/win{n}" for n in range(1, 6)),
        *(f"evaluations/{evaluation_of(n)}" for n in range(1, 6)),
    }
    assert all(removal.size > 0 for removal in report.removed)


def test_nothing_younger_than_min_age_goes(tmp_path: Path) -> None:
    """What a retrain running beside the prune may be writing or about to publish stays."""
    root = tmp_path / "data"
    six_versions(root)
    complete(root, "windows", "being-read")  # written now, referenced by no version yet
    os.utime(root / MODELS / v(4))  # a version touched now
    report = prune(DataDir(str(root)), POLICY)
    assert {"being-read", "win6"} <= names(root, "windows")
    assert v(4) in names(root, MODELS)
    assert report.too_young == 2
    assert v(4) not in names(prune_now(root, min_age_s=0.0), MODELS)


def prune_now(root: Path, **policy: float) -> Path:
    prune(DataDir(str(root)), RetentionSpec(keep_versions=2, **policy))
    return root


def test_a_dry_run_removes_nothing_and_names_what_a_prune_removes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    six_versions(root)
    before = snapshot(root)
    now = time.time()
    dry = prune(DataDir(str(root)), POLICY, dry_run=True, now=now)
    assert snapshot(root) == before
    assert dry.dry_run and dry.size > 0
    done = prune(DataDir(str(root)), POLICY, now=now)
    assert dry.removed == done.removed


def test_a_prune_after_failed_runs_keeps_the_champion_and_their_live_staging(
    tmp_path: Path,
) -> None:
    """The champion is the oldest version: five later candidates were kept out or their runs
    failed; one killed run left a staging dir, one running run holds its own."""
    root = tmp_path / "data"
    for n in range(1, 7):
        publish(root, n)
    promote(root, 1)
    killed = root / MODELS / f".{v(7)}.staging-{uuid.uuid4().hex}"
    running = root / MODELS / f".{v(8)}.staging-{uuid.uuid4().hex}"
    killed.mkdir()
    running.mkdir()
    age(root)
    champion_before = (root / MODELS / "champion.json").read_bytes()
    with held(str(running)):
        prune(DataDir(str(root)), POLICY)
        assert running.exists()
    assert not killed.exists()
    assert names(root, MODELS) >= {v(1), v(5), v(6)}
    assert {n for n in names(root, MODELS) if n.startswith("2024")} == {v(1), v(5), v(6)}
    assert (root / MODELS / "champion.json").read_bytes() == champion_before
    store = DataDir(str(root))
    champion = read_champion(store)
    assert champion is not None and champion.version == v(1)
    servable(store, v(1))  # still serves
    assert names(root, "raw") == {"raw1", "raw5", "raw6"}


def test_a_prune_during_a_run_waits_for_its_registry_lock(tmp_path: Path) -> None:
    """Publishing holds the registry lock: a prune never removes versions under it."""
    root = tmp_path / "data"
    six_versions(root)
    store = DataDir(str(root))
    done = threading.Event()

    def pruning() -> None:
        prune(DataDir(str(root)), POLICY)
        done.set()

    with registry_lock(store):
        worker = threading.Thread(target=pruning)
        worker.start()
        assert not done.wait(0.5)
        assert v(4) in names(root, MODELS)
    worker.join(10)
    assert done.is_set() and v(4) not in names(root, MODELS)
    champion = read_champion(store)
    assert champion is not None and champion.version == v(2)


def test_a_registry_whose_champion_cannot_be_read_keeps_every_version(tmp_path: Path) -> None:
    root = tmp_path / "data"
    six_versions(root)
    (root / MODELS / "champion.json").write_text("{damaged")
    (root / MODELS / "promotions.jsonl").write_text("")
    age(root)
    report = prune(DataDir(str(root)), POLICY)
    assert {v(n) for n in range(1, 7)} <= names(root, MODELS)
    assert any("champion.json cannot be read" in problem for problem in report.problems)


def test_a_panel_keeps_what_its_forecasts_frames_and_networks_need(tmp_path: Path) -> None:
    """A panel series' versions named by the panel's forecasts stay; a frame a kept version
    was trained on stays, another goes; the champion's network stays, an older one goes."""
    root = tmp_path / "panel"
    own = root / "series" / "s1"
    used, unused = frame("a"), frame("b")
    (root / "sources").mkdir(parents=True)
    for name in (used, unused):
        (root / "sources" / name).write_bytes(b"PAR1")
    publish(own, 1)
    publish(own, 2, source=str(root / "sources" / used))
    publish(own, 3)
    publish(own, 4, network="g1")
    complete(root, "global", "g0")
    complete(root, "global", "g1")
    promote(own, 3, 4)
    forecast_of(root / "forecasts" / "series=s1", 2)
    age(root)
    report = prune(DataDir(str(root)), RetentionSpec(keep_versions=1))
    assert {n for n in names(own, MODELS) if n.startswith("2024")} == {v(2), v(3), v(4)}
    assert names(root, "sources") == {used}
    assert names(root, "global") == {"g1"}
    assert report.kept_versions == 3


def test_a_series_retrained_alone_keeps_what_its_panel_s_forecasts_name(tmp_path: Path) -> None:
    """A drift retrain prunes the series' own data dir; the forecasts are its panel's."""
    root = tmp_path / "panel"
    own = root / "series" / "s1"
    for n in range(1, 4):
        publish(own, n)
    promote(own, 3)
    forecast_of(root / "forecasts" / "series=s1", 1)
    age(root)
    prune(DataDir(str(own)), RetentionSpec(keep_versions=1))
    assert {n for n in names(own, MODELS) if n.startswith("2024")} == {v(1), v(3)}


def test_cache_records_of_removed_outputs_go_with_them(tmp_path: Path) -> None:
    root = tmp_path / "data"
    six_versions(root)
    store = DataDir(str(root))
    cache = root / "cache"
    cache.mkdir()
    gone, kept = (
        cache_record_name(store, "windows", "win1"),
        cache_record_name(store, "windows", "win6"),
    )
    rebuilt = f"{kept}-rebuild-{uuid.uuid4().hex}"
    for name in (gone, kept, rebuilt, "someone-else-s-file"):
        (cache / name).write_text("{}")
    age(root)
    prune(DataDir(str(root)), POLICY)
    assert names(root, "cache") == {kept, "someone-else-s-file"}


def test_an_object_store_is_pruned_by_the_same_rules(tmp_path: Path) -> None:
    """memory:// has no locks and no times to edit: `now` is set hours ahead instead."""
    store = DataDir(f"memory://wavecast-retention-{uuid.uuid4().hex}")
    local = tmp_path / "data"
    six_versions(local)
    store.fs.put(str(local), store.root, recursive=True)
    store.fs.pipe(store.path(MODELS, f".champion.json.staging-{uuid.uuid4().hex}"), b"{")
    report = prune(DataDir(store.uri()), POLICY, now=time.time() + 2 * HOUR)
    versions = {n for n in store.list_dir(MODELS) if n.startswith("2024")}
    assert versions == {v(1), v(2), v(3), v(5), v(6)}
    assert store.list_dir("windows") == ["win6"]
    assert not [n for n in store.list_dir(MODELS) if ".staging-" in n]
    assert report.kept_versions == 5


def test_models_prune_dry_run_lists_and_keeps_then_prune_removes(
    tmp_path: Path, wavecast_main: Callable[..., Ran]
) -> None:
    root = tmp_path / "data"
    six_versions(root)
    before = snapshot(root)
    dry = wavecast_main(
        "models", "prune", "--data-dir", str(root), "--keep-versions", "2", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert snapshot(root) == before
    assert f"{MODELS}/{v(4)}  (not the champion" in dry.stdout
    assert dry.stdout.splitlines()[-1].startswith("would remove 12 entries (")
    done = wavecast_main("models", "prune", "--data-dir", str(root), "--keep-versions", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("removed 12 entries (")
    assert v(4) not in names(root, MODELS)
    refused = wavecast_main("models", "prune", "--data-dir", str(root), "--keep-versions", "0")
    assert refused.returncode == 2
    assert refused.stderr.startswith("wavecast: error: --keep-versions '0': ")


def test_a_prune_directly_inside_the_allowed_roots_looks_no_higher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make serve`'s worker allows data/ and nothing above it. Telling whether a data dir is
    a panel's series opened the directory two levels up, refused there: every retrain of
    data/ itself, or of a panel at data/<name>, failed in its prune-data-dir task."""
    allowed = tmp_path / "data"
    (allowed / "panel" / "series" / "s1").mkdir(parents=True)
    monkeypatch.setenv("WAVECAST_ALLOWED_ROOTS", str(allowed))
    for data_dir in (allowed, allowed / "panel"):
        assert prune(DataDir(str(data_dir)), POLICY).problems == ()
