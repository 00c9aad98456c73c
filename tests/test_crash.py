"""SIGKILL and concurrency against a real server: the registry is always consistent.

Each retrain is the real `wavecast` command in its own process, reporting to a real
`prefect server` on a loopback port, killed with SIGKILL at the named moment and then rerun.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import import_blockers
from tests.servers import Stack, running_server
from wavecast.registry import list_versions, read_promotions
from wavecast.storage import COMPLETE_MARKER, STAGING_TAG, DataDir

WAVECAST = Path(sys.executable).with_name("wavecast")
TINY = ("--length", "120", "--units", "4", "--batch-size", "16")

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_server(tmp_path_factory.mktemp("crash-server")) as started:
        yield started


def start_retrain(
    stack: Stack, data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [str(WAVECAST), "retrain", "--data-dir", str(data_dir), "--json", *TINY, *args],
            env={**stack.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_for_log(process: subprocess.Popen[bytes], log: Path, pattern: str) -> None:
    deadline = time.monotonic() + 180
    while not re.search(pattern, log.read_text(errors="replace")):
        assert process.poll() is None, f"exited before {pattern!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"never saw {pattern!r}:\n{log.read_text()}"
        time.sleep(0.1)


def finish(process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    """Wait for a retrain, assert it succeeded, return its JSON summary."""
    assert process.wait(timeout=300) == 0, log.read_text()
    summary: dict[str, object] = json.loads(log.read_text().strip().splitlines()[-1])
    return summary


def assert_consistent(data_dir: Path) -> None:
    """Every visible stage directory is complete; the champion is a loadable, complete version."""
    for stage in ("raw", "windows", "training", "evaluations", "models"):
        for entry in (data_dir / stage).glob("*"):
            if entry.is_dir() and STAGING_TAG not in entry.name:
                assert (entry / COMPLETE_MARKER).is_file(), f"{entry} visible but incomplete"
    store = DataDir(str(data_dir))
    events = read_promotions(store)  # raises on a torn line
    champion_file = data_dir / "models" / "champion.json"
    if not champion_file.exists():
        assert events == []
        return
    champion = json.loads(champion_file.read_text())["version"]
    assert champion in list_versions(store)
    assert events and events[-1]["version"] == champion
    import keras

    keras.saving.load_model(data_dir / "models" / champion / "model.keras", safe_mode=True)


def test_killed_while_training_then_rerun_completes(stack: Stack, tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "retrain.log"
    process = start_retrain(stack, data_dir, log, "--epochs", "300")
    wait_for_log(process, log, r"epoch 1/300")  # 299 epochs (~5 s) still to go
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert_consistent(data_dir)
    assert not (data_dir / "models" / "champion.json").exists()

    rerun = start_retrain(stack, data_dir, tmp_path / "rerun.log", "--epochs", "300")
    summary = finish(rerun, tmp_path / "rerun.log")
    assert summary["promoted"] is True
    assert_consistent(data_dir)


def test_killed_while_publishing_keeps_a_valid_champion(stack: Stack, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = finish(start_retrain(stack, data_dir, tmp_path / "a.log"), tmp_path / "a.log")
    log = tmp_path / "b.log"
    process = start_retrain(stack, data_dir, log, "--seed", "3")
    wait_for_log(process, log, r"evaluate-model-\w+' - Finished")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert_consistent(data_dir)
    champion = json.loads((data_dir / "models" / "champion.json").read_text())["version"]
    assert champion in (first["version"], *list_versions(DataDir(str(data_dir))))

    rerun = finish(
        start_retrain(stack, data_dir, tmp_path / "c.log", "--seed", "3"), tmp_path / "c.log"
    )
    assert rerun["champion"] is not None
    assert_consistent(data_dir)


def test_two_retrains_started_together_both_complete(stack: Stack, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    processes = [start_retrain(stack, data_dir, log, "--epochs", "5") for log in logs]
    summaries = [finish(p, log) for p, log in zip(processes, logs, strict=True)]

    assert summaries[0]["version"] == summaries[1]["version"]  # same training, one version
    assert sorted(bool(s["promoted"]) for s in summaries) == [False, True]
    assert len(read_promotions(DataDir(str(data_dir)))) == 1
    assert_consistent(data_dir)
    assert not [p for p in (data_dir / "models").iterdir() if STAGING_TAG in p.name]
    assert len([p for p in (data_dir / "windows").iterdir() if STAGING_TAG not in p.name]) == 1


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
    stack: Stack, tmp_path: Path
) -> None:
    """Prefect's log queue is drained at exit: the run's last lines reach the server."""
    log = tmp_path / "run.log"
    finish(start_retrain(stack, tmp_path / "data", log), log)
    name = re.search(r"Beginning flow run '([^']+)'", log.read_text())
    assert name is not None, log.read_text()
    messages = server_log_messages(stack, name.group(1))
    assert any(message.startswith("Promoted") for message in messages), messages
    assert messages[-1] == "Finished in state Completed()", messages


def test_an_unchanged_rerun_starts_no_tensorflow_anywhere(stack: Stack, tmp_path: Path) -> None:
    """Every Keras-bound stage is a cache hit: TensorFlow is never imported."""
    data_dir, first_log, log = tmp_path / "data", tmp_path / "first.log", tmp_path / "rerun.log"
    finish(start_retrain(stack, data_dir, first_log, "--epochs", "5"), first_log)
    blocked = {"PYTHONPATH": import_blockers(tmp_path, ("tensorflow", "keras"))}
    rerun = finish(start_retrain(stack, data_dir, log, "--epochs", "5", env=blocked), log)
    assert rerun["unchanged"] is True
    assert "was imported" not in log.read_text()  # nor in a child: its stderr is this log
