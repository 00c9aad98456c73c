"""A second interpreter that imports Keras while this one starts Prefect, then runs the
TensorFlow-bound stages.

Importing TensorFlow and Keras takes ~6 s of one core, Prefect ~3.5 s of another: in one
process a cold retrain pays both in turn. `wavecast retrain` spawns a KerasProcess first
thing (its interpreter starts while the command parses and validates), has it import Keras
once training will really run (`import_keras`), and runs the stages that need Keras (train,
evaluate, stage, promote) there through `run_with_keras`. Without an active
KerasProcess (tests, deployed flow runs) the same functions simply run in the caller.

Calls are plain functions of this package (never Prefect code: the child must not import
Prefect, or it would pay that import too), picklable arguments in, a picklable result out.
Callable keyword arguments (progress callbacks) stay in the caller: the child gets a stand-in
that relays every call back, and the caller runs it while it waits.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

Result = TypeVar("Result")
ACTIVE: ContextVar[KerasProcess | None] = ContextVar("wavecast_keras_process", default=None)
STOP_TIMEOUT_S = 0.2  # an idle child stops at once; one busy importing is killed
REAP_TIMEOUT_S = 10.0  # a child whose pipe closed is exiting: wait for its exit code


class KerasProcessError(RuntimeError):
    """The Keras process died (killed, out of memory) before answering a call."""


class RemoteError(Exception):
    """The traceback of an exception raised in the Keras process, shown as its cause."""


class KerasProcess:
    """One spawned child that imports Keras when told to, then serves calls one at a time.

    Until told, it imports `preload` (the code its calls will need), one module at a time,
    stopping as soon as a request arrives: idle time before the go, never a delay after it.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=serve, args=(child_end, tuple(preload)), name="wavecast-keras", daemon=True
        )
        self.process.start()
        child_end.close()
        self.lock = threading.Lock()
        self.used = False  # told to import or call anything: from then on it stops politely

    def import_keras(self) -> None:
        """Have the child import Keras now, without waiting; a call made meanwhile queues."""
        self.used = True
        self.connection.send(("import", "keras"))

    def call(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        """function(*args, **kwargs) in the child; its exception, if any, is raised here."""
        relayed = {name: value for name, value in kwargs.items() if callable(value)}
        data = {name: value for name, value in kwargs.items() if name not in relayed}
        with self.lock:
            self.used = True
            try:
                self.connection.send(("call", function, args, data, tuple(relayed)))
            except BrokenPipeError:
                raise self.died("before") from None
            try:
                return self.await_result(relayed)
            except (KeyboardInterrupt, SystemExit):
                self.process.kill()  # half a call done: nothing it does next is wanted
                raise

    def await_result(self, relayed: dict[str, Callable[..., Any]]) -> Any:
        while True:
            kind, *payload = self.receive()
            if kind == "relay":
                name, relayed_args = payload
                relayed[name](*relayed_args)
            elif kind == "error":
                error, remote_traceback = payload
                raise error from RemoteError(remote_traceback)
            else:
                return payload[0]

    def receive(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.connection.recv()
        except EOFError:
            raise self.died("during") from None
        return message

    def died(self, when: str) -> KerasProcessError:
        self.process.join(timeout=REAP_TIMEOUT_S)
        code = self.process.exitcode
        return KerasProcessError(f"the Keras process exited with code {code} {when} a call")

    def close(self) -> None:
        """Ask the child to finish, and kill it if it does not; closing twice is harmless.

        A standby that was never used holds nothing but preloaded modules: it is killed at
        once rather than waited for while it finishes its current import (up to ~0.2 s).
        """
        if self.connection.closed:
            return
        if self.used:
            with contextlib.suppress(OSError):
                self.connection.send(None)
            self.process.join(timeout=STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def exit_with_parent() -> None:
    """Exit as soon as the parent is gone, even mid-training: killing `wavecast` kills it all."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="wavecast-parent-watch", daemon=True).start()


def relay(connection: Connection, name: str, *args: Any) -> None:
    connection.send(("relay", name, args))


def serve(connection: Connection, preload: tuple[str, ...] = ()) -> None:
    """The child's main loop: import what it is told, answer calls, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    exit_with_parent()
    for module in preload:
        if connection.poll():  # the parent has spoken: that comes first
            break
        with contextlib.suppress(ImportError):  # left for the call that needs it to report
            importlib.import_module(module)
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # TensorFlow's teardown takes 1-2 s and saves nothing
        if request[0] == "import":
            importlib.import_module(request[1])
            continue
        _, function, args, kwargs, relayed = request
        for name in relayed:
            kwargs[name] = functools.partial(relay, connection, name)
        try:
            connection.send(("result", function(*args, **kwargs)))
        except BaseException as error:  # reported to the caller, which decides what it means
            connection.send(("error", portable(error), traceback.format_exc()))


def portable(error: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError naming it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


@contextlib.contextmanager
def activated(process: KerasProcess) -> Iterator[KerasProcess]:
    """`run_with_keras` uses `process` until the block ends, which closes the process."""
    token = ACTIVE.set(process)
    try:
        yield process
    finally:
        ACTIVE.reset(token)
        process.close()


def keras_process() -> contextlib.AbstractContextManager[KerasProcess]:
    """A KerasProcess importing Keras right away, active for the block."""
    process = KerasProcess()
    process.import_keras()
    return activated(process)


def run_with_keras(function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """function(*args, **kwargs) in the active KerasProcess, or here when there is none."""
    process = ACTIVE.get()
    if process is None:
        return function(*args, **kwargs)
    return process.call(function, *args, **kwargs)
