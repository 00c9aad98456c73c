"""The panel's task runners when things go wrong: a Dask address nobody answers, and Ctrl-C.

The command tests run the real `wavecast retrain --id-column` in its own process, on its own
Prefect server, as a user at a terminal does.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from distributed import LocalCluster

import wavecast.tasks.runners
from tests.processes import INTERRUPTED, children_of, sleep_until_interrupted, wait_until_gone
from tests.servers import Stack, environment_without_prefect
from tests.test_crash import assert_consistent, start_command
from tests.test_panel import write_panel
from wavecast.config import FanOutSpec
from wavecast.errors import InvalidInputError
from wavecast.home import SeriesHome
from wavecast.series import training_slot_name
from wavecast.tasks.runners import (
    BatchInterruptedError,
    check_cluster,
    interruptible,
    stop_training,
    stop_workers,
)

WAVECAST = Path(sys.executable).with_name("wavecast")
# Three 80-point series, trained one after the other by one worker, each for a few seconds:
# long enough that the one in flight is still training when the interrupt lands.
# One worker process (not the command's own: --pool-from 1), one series at a time.
ONE_BY_ONE = ("--workers", "1", "--series-per-task", "1", "--pool-from", "1")
NETWORK_ONLY = ("--candidates", "network", "--network-min-windows", "0")
TINY = ("--units", "4", "--epochs", "300", "--batch-size", "16")
KEPT = "finished work is kept; rerun to resume"


@pytest.mark.unit
def test_an_address_of_no_known_scheme_is_refused_naming_where_it_came_from() -> None:
    with pytest.raises(InvalidInputError) as flag:
        check_cluster(FanOutSpec(runner="dask", dask_address="foo://x"))
    with dask.config.set({"scheduler-address": "bar://y"}), pytest.raises(InvalidInputError) as env:
        check_cluster(FanOutSpec(runner="dask"))

    assert str(flag.value).startswith("--dask-address foo://x: unknown address scheme 'foo'")
    assert str(env.value).startswith("DASK_SCHEDULER_ADDRESS bar://y: unknown address scheme 'bar'")


@pytest.mark.unit
def test_a_scheduler_that_answers_passes_and_no_address_needs_none() -> None:
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=None) as c:
        check_cluster(FanOutSpec(runner="dask", dask_address=c.scheduler_address))
    check_cluster(FanOutSpec(runner="dask"))  # a fresh LocalCluster per run: nothing to reach
    check_cluster(FanOutSpec(runner="local"))


@pytest.fixture
def worker_sigint(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as a fresh worker: its SIGINT handler and flags, restored after."""
    monkeypatch.setattr(wavecast.tasks.runners, "interrupted", False)
    monkeypatch.setattr(wavecast.tasks.runners, "training", False)
    previous = signal.signal(signal.SIGINT, stop_training)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.unit
@pytest.mark.usefixtures("worker_sigint")
def test_sigint_stops_the_batch_a_worker_runs_and_any_queued_after_it() -> None:
    reached = []
    with pytest.raises(BatchInterruptedError, match="rerun to train the rest"), interruptible():
        signal.raise_signal(signal.SIGINT)
        reached.append("after the signal")
    signal.raise_signal(signal.SIGINT)  # a second one, idle: the clean-up goes on
    with pytest.raises(BatchInterruptedError), interruptible():
        reached.append("a queued batch")

    assert reached == []


@pytest.mark.unit
@pytest.mark.usefixtures("worker_sigint")
def test_an_idle_worker_survives_sigint_and_starts_no_batch() -> None:
    signal.raise_signal(signal.SIGINT)  # raises nothing: the pool would count a death as broken

    assert wavecast.tasks.runners.interrupted is True
    with pytest.raises(BatchInterruptedError), interruptible():
        pytest.fail("a batch started on an interrupted worker")


@pytest.mark.flow
def test_stopping_workers_interrupts_each_and_kills_one_still_alive_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two spawned processes as a pool's workers: the one that hears SIGINT exits of it; the
    one that ignores it is killed once STOP_GRACE_S has passed, which ends the pool's wait."""
    monkeypatch.setattr(wavecast.tasks.runners, "STOP_GRACE_S", 1.0)
    spawn = multiprocessing.get_context("spawn")
    ready = [spawn.Event(), spawn.Event()]
    workers = [
        spawn.Process(target=sleep_until_interrupted, args=(event, ignore))
        for event, ignore in zip(ready, (False, True), strict=True)
    ]
    for worker in workers:
        worker.start()
    for event in ready:
        assert event.wait(120), "a worker did not start"
    started = time.monotonic()

    def close() -> None:  # as the pool's shutdown does: wait for the workers
        for worker in workers:
            worker.join(60)

    stop_workers(workers, close)

    assert [worker.exitcode for worker in workers] == [INTERRUPTED, -signal.SIGKILL]
    assert 1.0 <= time.monotonic() - started < 30


def own_server(tmp_path: Path) -> dict[str, str]:
    """No PREFECT_API_URL: the command starts its own server, as it does for a user."""
    return environment_without_prefect(
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )


def default_sigint() -> None:
    """In the child before exec: Python installs its Ctrl-C handler only if SIGINT is not
    ignored, and a test run started in the background inherits it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def panel_retrain(source: Path, data_dir: Path, *options: str) -> list[str]:
    return [
        str(WAVECAST), "retrain", "--source", str(source), "--id-column", "store",
        "--column", "sales", "--data-dir", str(data_dir), *ONE_BY_ONE, *NETWORK_ONLY, *TINY,
        *options,  # after ONE_BY_ONE: the last --workers counts
    ]  # fmt: skip


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for child in children_of(pid):
        tree += process_tree(child)
    return tree


def wait_for_file(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until `path` exists (no event to wait on); fail if the command ends first."""
    deadline = time.monotonic() + 240
    while not path.exists():
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def champions(data_dir: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in data_dir.glob("series/*/models/champion.json"))


@pytest.mark.flow
@pytest.mark.timeout(900)
def test_a_ctrl_c_stops_every_process_of_a_panel_and_a_rerun_trains_the_rest(
    tmp_path: Path,
) -> None:
    """A terminal's Ctrl-C signals the whole foreground job: the command, its workers (which
    Keras would turn into an ordinary error) and not its own server, in a group of its own.
    The command then interrupts and reaps its workers itself (InterruptibleProcessPool): the
    path a SIGINT to the command alone takes too (tested so once; one variant keeps the suite
    short)."""
    source, data_dir = write_panel(tmp_path / "panel.csv", broken=False), tmp_path / "data"
    env, log = own_server(tmp_path), tmp_path / "run.log"
    argv = panel_retrain(source, data_dir, "--json")
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=default_sigint,
        )  # fmt: skip
    wait_for_file(data_dir / "series" / "a" / "models" / "champion.json", process, log)
    tree = process_tree(process.pid)  # its server, one worker, multiprocessing's tracker
    server = next(p for p in tree if b"server" in Path(f"/proc/{p}/cmdline").read_bytes())
    assert os.getpgid(server) != process.pid, "the terminal's Ctrl-C would stop the server"
    os.killpg(process.pid, signal.SIGINT)

    assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert wait_until_gone(tree) == [], f"outlived the command: {wait_until_gone(tree, 0)}"
    output = log.read_text()
    assert output.splitlines()[-1] == f"wavecast: interrupted: {KEPT}"
    assert "Traceback" not in output
    assert champions(data_dir) == ["a"]
    assert not list(data_dir.glob("series/c/training/*")), "c trained after the interrupt"
    for series in ("a", "b", "c"):
        assert_consistent(data_dir / "series" / series)

    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert {key: (one["unchanged"], one["promoted"]) for key, one in summary["series"].items()} == {
        "a": (True, False),
        "b": (False, True),
        "c": (False, True),
    }
    assert champions(data_dir) == ["a", "b", "c"]


def training_now(stack: Stack, data_dir: Path) -> int:
    """How many of the panel's training slots are taken: workers that are training."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    names = {training_slot_name(SeriesHome(str(data_dir), key)) for key in ("a", "b", "c")}
    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        get_client(sync_client=True) as client,
    ):
        limits = client.read_global_concurrency_limits(limit=200)
    return sum(limit.active_slots for limit in limits if limit.name in names)


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""  # gone meanwhile


def wait_until_training(
    stack: Stack, data_dir: Path, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll (no event to wait on) until two of the panel's series train at once."""
    deadline = time.monotonic() + 300
    while training_now(stack, data_dir) < 2:
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no two series training:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


@pytest.mark.server
@pytest.mark.timeout(600)
def test_a_sigint_to_the_command_alone_interrupts_its_training_workers(
    real_server: Stack, tmp_path: Path
) -> None:
    """SIGINT to the command alone (`kill -INT`) while two workers train: the command
    interrupts them (InterruptibleProcessPool), they give back their training slots and exit,
    and nothing they trained is published. Trained to the end, 3000 epochs would take minutes,
    and a killed worker would hold its slot until its lease expired."""
    source, data_dir = write_panel(tmp_path / "panel.csv", broken=False), tmp_path / "data"
    options = ("--workers", "2", "--network", "per-series", "--epochs", "3000")
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            panel_retrain(source, data_dir, *options), env=real_server.env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=default_sigint,
        )  # fmt: skip
    try:
        wait_until_training(real_server, data_dir, process, log)
        tree = process_tree(process.pid)
        assert sum(b"spawn_main" in command_line(pid) for pid in tree) == 2  # the workers
        process.send_signal(signal.SIGINT)

        assert process.wait(timeout=60) == 130, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert wait_until_gone(tree) == [], f"outlived the command: {wait_until_gone(tree, 0)}"
    assert log.read_text().splitlines()[-1] == f"wavecast: interrupted: {KEPT}"
    assert "Traceback" not in log.read_text()
    assert training_now(real_server, data_dir) == 0
    assert champions(data_dir) == []


@pytest.mark.server
@pytest.mark.timeout(600)
@pytest.mark.parametrize("runner", ["local", "dask"])
def test_kill_9_of_a_panel_command_ends_its_workers_at_once(
    real_server: Stack, tmp_path: Path, runner: str
) -> None:
    """`kill -9` of a panel retrain while two workers train: every process it started ends
    within seconds. The pool's workers watch their parent (runners.exit_with_parent); a
    fresh LocalCluster's workers are children of nannies in the command's own process, and
    distributed ends a worker whose parent's pipe closes."""
    source, data_dir = write_panel(tmp_path / "panel.csv", broken=False), tmp_path / "data"
    options = ("--workers", "2", "--network", "per-series", "--runner", runner)
    run = start_command(
        real_server, tmp_path / "run.log", panel_retrain(source, data_dir, *options)
    )
    wait_until_training(real_server, data_dir, run.process, run.log)
    started = process_tree(run.process.pid)[1:]  # workers, multiprocessing's tracker
    workers = [pid for pid in started if b"spawn_main" in command_line(pid)]
    assert len(workers) == 2, [command_line(pid) for pid in started]

    run.process.kill()
    run.process.wait()
    try:
        left = wait_until_gone(started, timeout_s=10)
        assert left == [], f"outlived the command by 10 s: {[command_line(p) for p in left]}"
    finally:
        for pid in wait_until_gone(started, timeout_s=0):  # a failed run's orphans: end them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.reader.join(timeout=60)
