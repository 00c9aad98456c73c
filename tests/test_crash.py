"""SIGKILL and concurrency against a real server: the registry and the forecasts dataset are
always consistent.

Each retrain or forecast is the real `wavecast` command in its own process, reporting to a real
`prefect server` on a loopback port, killed with SIGKILL at the named moment and then rerun.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.processes import children_of, import_blockers, wait_until_gone
from tests.servers import Stack, environment_without_prefect
from wavecast.registry import list_versions, read_promotions, servable
from wavecast.staging import STAGING_TAG, STALE_AFTER_S
from wavecast.storage import COMPLETE_MARKER, DataDir

WAVECAST = Path(sys.executable).with_name("wavecast")
STALLED_WAVECAST = Path(__file__).with_name("stalled_wavecast.py")
TINY = ("--length", "120", "--units", "8", "--batch-size", "16", "--learning-rate", "0.01")

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(real_server: Stack) -> Stack:
    return real_server  # the session's: each test here has a data dir of its own


class Command:
    """A `wavecast` command whose output a thread copies line by line into `log` as it comes."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process, self.log = process, log
        self.lines: list[str] = []
        self.closed = False  # the child's end of the pipe is shut: it exited
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self.copy_output, daemon=True)
        self.reader.start()

    def copy_output(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout, self.log.open("wb") as sink:
            for line in self.process.stdout:
                sink.write(line)
                sink.flush()
                with self.changed:
                    self.lines.append(line.decode(errors="replace"))
                    self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def output(self) -> str:
        with self.changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 180) -> None:
        """Block until a line of output matches `pattern`; fail if the run ends first."""
        regex = re.compile(pattern)
        scanned = 0

        def seen() -> bool:
            nonlocal scanned
            found = any(regex.search(line) for line in self.lines[scanned:])
            scanned = len(self.lines)
            return found or self.closed

        with self.changed:
            self.changed.wait_for(seen, timeout)
            matched = any(regex.search(line) for line in self.lines)
        assert matched, f"{'exited' if self.closed else 'timed out'} before {pattern!r}:\n" + (
            self.output()
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.reader.join(timeout=60)

    def finish(self) -> dict[str, object]:
        """Wait for the command, assert it succeeded, return its one series' JSON summary."""
        code = self.process.wait(timeout=300)
        self.reader.join(timeout=60)
        assert code == 0, self.output()
        run = json.loads(self.output().strip().splitlines()[-1])
        assert run["skipped"] == {}, run
        (summary,) = run["series"].values()
        assert isinstance(summary, dict)
        return summary


def start_retrain(
    stack: Stack, data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None
) -> Command:
    return start_command(
        stack, log, [str(WAVECAST), "retrain", "--data-dir", str(data_dir), *TINY, *args], env
    )


def start_command(
    stack: Stack, log: Path, command: list[str], env: dict[str, str] | None = None
) -> Command:
    process = subprocess.Popen(
        [*command, "--json"],
        env={**stack.env, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return Command(process, log)


def promotion_lines(data_dir: Path) -> list[dict[str, object]]:
    """models/promotions.jsonl line by line; a torn line fails the test (json raises)."""
    log = data_dir / "models" / "promotions.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def assert_consistent(data_dir: Path) -> None:
    """Every visible stage directory is complete; the champion is a loadable, complete version."""
    for stage in ("raw", "windows", "training", "evaluations", "models"):
        for entry in (data_dir / stage).glob("*"):
            if entry.is_dir() and STAGING_TAG not in entry.name:
                assert (entry / COMPLETE_MARKER).is_file(), f"{entry} visible but incomplete"
    store = DataDir(str(data_dir))
    events = promotion_lines(data_dir)
    assert len(read_promotions(store)) == len(events)  # the registry skips none of them
    champion_file = data_dir / "models" / "champion.json"
    if not champion_file.exists():
        assert events == []
        return
    champion = json.loads(champion_file.read_text())["version"]
    assert champion in list_versions(store)
    assert events and events[-1]["version"] == champion
    servable(store, champion)  # the champion loads and forecasts its windows, or this raises


@dataclass
class KilledInTraining:
    data_dir: Path
    at_kill: Path  # a copy of data_dir as the killed run left it, before the rerun began
    rerun: Command


@pytest.fixture(scope="module")
def killed_in_training(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KilledInTraining]:
    """A retrain SIGKILLed at its first epoch, and the same command rerun at once.

    The killed run holds its series' training slot until the lease it no longer renews
    expires (tasks/train.py's TRAINING_LEASE_S, a minute: the shortest the server grants), so
    the rerun can only train after about a minute. It waits in the background while the
    module's other tests run: the first test judges the data dir the kill left, the last
    one this rerun."""
    root = tmp_path_factory.mktemp("killed-in-training")
    data_dir = root / "data"
    run = start_retrain(stack, data_dir, root / "retrain.log", "--epochs", "300")
    run.wait_for(r"epoch 1/300")  # 299 epochs (~5 s) still to go
    run.kill()
    shutil.copytree(data_dir, root / "at-kill", symlinks=True)
    rerun = start_retrain(stack, data_dir, root / "rerun.log", "--epochs", "300")
    try:
        yield KilledInTraining(data_dir, root / "at-kill", rerun)
    finally:
        if rerun.process.poll() is None:  # its test did not run, or failed before finishing it
            rerun.kill()


def test_killed_while_training_leaves_no_champion_and_nothing_half_visible(
    killed_in_training: KilledInTraining,
) -> None:
    assert_consistent(killed_in_training.at_kill)
    assert not (killed_in_training.at_kill / "models" / "champion.json").exists()


@pytest.fixture(scope="module")
def champion_dir(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a champion and no forecasts yet, trained once by the default tiny
    retrain; its command's output is in retrain.log beside it. Tests copy it before changing
    anything."""
    data_dir = tmp_path_factory.mktemp("champion") / "data"
    start_retrain(stack, data_dir, data_dir.parent / "retrain.log").finish()
    return data_dir


def test_killed_while_publishing_keeps_a_valid_champion(
    stack: Stack, champion_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(champion_dir, data_dir)  # a first retrain's champion
    first = json.loads((data_dir / "models" / "champion.json").read_text())
    run = start_retrain(stack, data_dir, tmp_path / "b.log", "--seed", "3")
    run.wait_for(r"evaluate-model-\w+' - Finished")
    run.kill()
    assert_consistent(data_dir)
    champion = json.loads((data_dir / "models" / "champion.json").read_text())["version"]
    assert champion in (first["version"], *list_versions(DataDir(str(data_dir))))

    rerun = start_retrain(stack, data_dir, tmp_path / "c.log", "--seed", "3").finish()
    assert rerun["champion"] is not None
    assert_consistent(data_dir)


def test_two_retrains_started_together_both_complete_and_a_rerun_starts_no_tensorflow(
    stack: Stack, tmp_path: Path
) -> None:
    """Two identical retrains at once: one version, promoted once. Then the same command
    again: every Keras-bound stage is a cache hit, so TensorFlow is never imported."""
    data_dir = tmp_path / "data"
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    runs = [start_retrain(stack, data_dir, log, "--epochs", "10") for log in logs]
    summaries = [run.finish() for run in runs]

    assert summaries[0]["version"] == summaries[1]["version"]  # same training, one version
    assert sorted(bool(s["promoted"]) for s in summaries) == [False, True]
    assert len(promotion_lines(data_dir)) == 1
    assert_consistent(data_dir)
    assert not [p for p in (data_dir / "models").iterdir() if STAGING_TAG in p.name]
    assert len([p for p in (data_dir / "windows").iterdir() if STAGING_TAG not in p.name]) == 1

    log = tmp_path / "rerun.log"
    blockers = import_blockers(tmp_path, ("tensorflow", "keras"))
    blocked = {"PYTHONPATH": os.pathsep.join([blockers, stack.env.get("PYTHONPATH", "")])}
    rerun = start_retrain(stack, data_dir, log, "--epochs", "10", env=blocked).finish()
    assert rerun["unchanged"] is True
    assert "was imported" not in log.read_text()  # nor in a child: its stderr is this log


def server_log_messages(stack: Stack, flow_run_name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        get_client(sync_client=True) as client,
    ):
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
        )
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return [entry.message for entry in logs]


def test_the_command_exits_only_after_its_logs_reach_the_server(
    stack: Stack, champion_dir: Path
) -> None:
    """Prefect's log queue is drained at exit: the run's last lines reach the server (a line
    the command had not sent when it exited never will, so reading them later is as strict)."""
    log = champion_dir.parent / "retrain.log"  # the fixture's retrain, run to completion
    name = re.search(r"Beginning flow run '([^']+)'", log.read_text())
    assert name is not None, log.read_text()
    messages = server_log_messages(stack, name.group(1))
    assert any(message.startswith("Promoted") for message in messages), messages
    assert messages[-1] == "Finished in state Completed()", messages


def test_killing_a_command_on_its_own_server_leaves_no_server(tmp_path: Path) -> None:
    """Without a configured server the command starts one; `kill -9` of the command ends it."""
    env = environment_without_prefect(
        PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    process = subprocess.Popen(
        [str(WAVECAST), "retrain", "--data-dir", str(tmp_path / "data"), *TINY, "--epochs", "3000"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run = Command(process, tmp_path / "run.log")
    run.wait_for(r"epoch 1/3000")
    (server,) = children_of(process.pid)
    assert "server" in Path(f"/proc/{server}/cmdline").read_text()
    run.kill()
    assert wait_until_gone([server]) == [], f"server {server} outlived the command"


def start_forecast(stack: Stack, data_dir: Path, log: Path, stall_at: str | None) -> Command:
    """`wavecast forecast`, or with `stall_at` the same command stopped there (see
    stalled_wavecast.py)."""
    program = [sys.executable, str(STALLED_WAVECAST)] if stall_at else [str(WAVECAST)]
    env = {"WAVECAST_STALL_AT": stall_at} if stall_at else None
    return start_command(stack, log, [*program, "forecast", "--data-dir", str(data_dir)], env)


def forecast_rows(data_dir: Path) -> list[tuple[object, ...]]:
    """The forecasts dataset as a dashboard reads it: (series, origin, step, version) per row."""
    table = ds.dataset(data_dir / "forecasts", partitioning="hive").to_table()
    columns = ("series", "origin", "step", "model_version")
    return sorted(zip(*(table[name].to_pylist() for name in columns), strict=True))


def test_a_forecast_killed_while_writing_never_shows_readers_a_staging_file(
    stack: Stack, champion_dir: Path, tmp_path: Path
) -> None:
    """kill -9 with the staging file half written, then with one complete but not yet
    renamed: readers see the previous forecast, once, at once and after a rerun; old
    leftovers are swept."""
    data_dir = tmp_path / "data"
    shutil.copytree(champion_dir, data_dir)
    start_forecast(stack, data_dir, tmp_path / "first.log", None).finish()
    before = forecast_rows(data_dir)
    (published,) = (data_dir / "forecasts").glob("series=*/*.parquet")
    assert len(set(before)) == len(before) > 0

    leftovers = []
    for stall_at in ("write", "rename"):
        run = start_forecast(stack, data_dir, tmp_path / f"killed-{stall_at}.log", stall_at)
        run.wait_for(rf"stalled at the {stall_at} of ")
        run.kill()
        (staging,) = (
            p for p in published.parent.iterdir() if STAGING_TAG in p.name and p not in leftovers
        )
        assert staging.name.startswith(f".{published.name}{STAGING_TAG}")
        if stall_at == "write":
            assert 0 < staging.stat().st_size < published.stat().st_size
        else:  # a complete forecast: a reader that saw it would count every row twice
            assert pq.read_table(staging).num_rows == len(before)
        assert forecast_rows(data_dir) == before
        leftovers.append(staging)

    start_forecast(stack, data_dir, tmp_path / "rerun.log", None).finish()
    assert forecast_rows(data_dir) == before  # the same origin and version: replaced
    assert all(staging.exists() for staging in leftovers)  # too recent to tell from live ones

    for staging in leftovers:
        past = staging.stat().st_mtime - STALE_AFTER_S - 60
        os.utime(staging, (past, past))
    start_forecast(stack, data_dir, tmp_path / "sweep.log", None).finish()
    assert sorted(p.name for p in published.parent.iterdir()) == [published.name]
    assert forecast_rows(data_dir) == before


def test_killed_while_training_then_rerun_completes(killed_in_training: KilledInTraining) -> None:
    """Last in the module: the rerun started by killed_in_training has waited out the killed
    run's training slot meanwhile."""
    summary = killed_in_training.rerun.finish()
    assert summary["promoted"] is True
    assert_consistent(killed_in_training.data_dir)
