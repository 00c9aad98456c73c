"""The Keras process: calls run in the child, callbacks and errors come back, nothing outlives
the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import children_of, is_running, wait_until_gone
from wavecast.errors import InvalidInputError
from wavecast.keras_process import (
    KerasProcess,
    KerasProcessError,
    RemoteError,
    keras_process,
    run_with_keras,
)


def count_in(steps: int, on_step: Callable[[int, int], None]) -> tuple[int, bool]:
    """Report each step, then say which process ran and whether Keras was loaded there."""
    for step in range(steps):
        on_step(step, os.getpid())
    return os.getpid(), "keras" in sys.modules


def reject(value: str) -> None:
    raise InvalidInputError(f"--source {value}: no such file")


class UnpicklableError(Exception):
    def __init__(self, handle: object, message: str) -> None:
        super().__init__(message)
        self.handle = handle

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("cannot pickle")


def raise_unpicklable() -> None:
    raise UnpicklableError(object(), "tensor handle lost")


def die(code: int) -> None:
    os._exit(code)


def loaded(*modules: str) -> list[str]:
    return [name for name in modules if name in sys.modules]


def test_a_standby_process_imports_keras_only_when_told() -> None:
    """What the CLI starts before validating: Keras only once training will really run."""
    standby = KerasProcess()
    try:
        assert standby.call(loaded, "prefect", "keras", "tensorflow") == []
        standby.import_keras()
        assert standby.call(loaded, "prefect", "keras", "tensorflow") == ["keras", "tensorflow"]
    finally:
        standby.close()
        standby.close()  # twice is harmless


def test_an_unused_standby_is_killed_not_asked_to_stop() -> None:
    """A rerun closes its standby, usually mid-preload: nothing it holds is worth waiting for.

    Even an idle one is killed (a used one would exit 0 when asked, see `child` below).
    """
    standby = KerasProcess()
    time.sleep(3)  # long past its start-up: idle, waiting for a request
    standby.close()
    assert standby.process.exitcode == -signal.SIGKILL


def test_a_preload_that_fails_leaves_the_process_serving() -> None:
    """Preloading is a head start, never a new way to fail: the call reports what it needs."""
    process = KerasProcess(preload=("no_such_module_wavecast", "wavecast.train"))
    try:
        time.sleep(3)  # past both preloads
        assert process.call(loaded, "wavecast.train") == ["wavecast.train"]
    finally:
        process.close()


def test_preloading_waits_for_no_one() -> None:
    """Preloads fill idle time only: a request already waiting is served before any import."""
    eager = KerasProcess(preload=("keras",))  # ~6 s of import if it were not interrupted
    try:
        assert eager.call(loaded, "keras") == []
    finally:
        eager.close()
    patient = KerasProcess(preload=("wavecast.train",))
    try:
        time.sleep(5)  # idle time: ten times what importing wavecast.train takes
        assert patient.call(loaded, "wavecast.train", "keras") == ["wavecast.train"]
    finally:
        patient.close()


@pytest.fixture(scope="module")
def child() -> Iterator[KerasProcess]:
    process = KerasProcess()
    process.import_keras()
    yield process
    process.close()
    assert process.process.exitcode == 0  # asked to stop, it stopped by itself


def test_calls_run_in_the_child_with_keras_loaded_and_callbacks_run_here(
    child: KerasProcess,
) -> None:
    steps: list[tuple[int, int]] = []
    pid, keras_loaded = child.call(count_in, 3, on_step=lambda *step: steps.append(step))
    assert pid == child.process.pid != os.getpid()
    assert keras_loaded
    assert steps == [(0, pid), (1, pid), (2, pid)]  # relayed in order, while the call ran


def test_without_an_active_process_calls_run_here() -> None:
    steps: list[tuple[int, int]] = []
    pid, _ = run_with_keras(count_in, 2, on_step=lambda *step: steps.append(step))
    assert pid == os.getpid()
    assert steps == [(0, pid), (1, pid)]


def test_an_error_comes_back_with_its_type_and_the_remote_traceback(
    child: KerasProcess,
) -> None:
    with pytest.raises(InvalidInputError, match="no such file") as raised:
        child.call(reject, "missing.csv")
    assert isinstance(raised.value.__cause__, RemoteError)
    assert "in reject" in str(raised.value.__cause__)
    with pytest.raises(RuntimeError, match="UnpicklableError: tensor handle lost"):
        child.call(raise_unpicklable)
    assert child.call(count_in, 0, on_step=print)[0] == child.process.pid  # still serving


def test_inside_keras_process_calls_go_to_the_child_and_its_death_fails_them() -> None:
    """Not an OSError: a dead child is no transient fault, and retrying cannot revive it."""
    with keras_process():
        with pytest.raises(KerasProcessError, match="exited with code 3 during a call"):
            run_with_keras(die, 3)
        with pytest.raises(KerasProcessError, match="exited with code 3 before a call"):
            run_with_keras(die, 4)
    assert not issubclass(KerasProcessError, OSError)


def test_killing_the_command_kills_the_keras_process(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the child must notice its parent is gone."""
    script = (
        "import sys, time\n"
        "from wavecast.keras_process import keras_process\n"
        "with keras_process() as process:\n"
        "    print(process.process.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert is_running(child_pid)
    children = children_of(parent.pid)  # the Keras process and multiprocessing's tracker
    assert child_pid in children
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_until_gone(children) == []
