"""Process helpers for tests: who is a child of whom, who is still alive, what may not import."""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

INTERRUPTED = 3  # the exit code of sleep_until_interrupted's process after SIGINT


def children_of(pid: int) -> list[int]:
    """Direct children of a live process (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by init, or by us if we are its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until_gone(pids: list[int], timeout_s: float = 60) -> list[int]:
    """The pids still running after up to `timeout_s` seconds of waiting for them to exit.

    Waits on a pidfd per process (readable once it has exited), so it returns the moment the
    last one goes, child of ours or not, without reaping anything.
    """
    watched: dict[int, int] = {}  # pidfd -> pid
    poller = select.poll()
    try:
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # already gone and reaped
            watched[pidfd] = pid
            poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while watched and (left := deadline - time.monotonic()) > 0:
            for pidfd, _ in poller.poll(left * 1000):
                poller.unregister(pidfd)
                del watched[pidfd]
                os.close(pidfd)
    finally:
        for pidfd in watched:
            os.close(pidfd)
    return [pid for pid in pids if is_running(pid)]


def import_blockers(root: Path, names: tuple[str, ...]) -> str:
    """A directory to put first on PYTHONPATH so that importing any of `names` fails loudly."""
    blockers = root / "blockers"
    for name in names:
        (blockers / name).mkdir(parents=True, exist_ok=True)
        (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    return str(blockers)


HEAVY_MODULES = ("prefect", "tensorflow", "keras")  # what a refusal must come before
Ran = subprocess.CompletedProcess[str]  # a command's exit code, stdout and stderr
CLI = "wavecast.flows.cli"


def loads_blocked(module: str, blocked: tuple[str, ...]) -> bool:
    """Whether importing `module` in a fresh process would import one of the `blocked`
    packages. Beyond those packages themselves, every module of wavecast.flows and
    wavecast.tasks but the command line is taken to load them: a flow or task module imports
    Prefect at its top. (test_the_core_never_loads_prefect keeps the core, wavecast/ and its
    subpackages, free of Prefect, TensorFlow and Keras;
    test_the_command_refuses_as_main_does_in_this_process runs the command line in a fresh
    process with them blocked.)"""
    top = module.partition(".")[0]
    if top in blocked:
        return True
    pipeline = module.split(".")[1:2] in (["flows"], ["tasks"]) and module.count(".") > 1
    return bool(blocked) and pipeline and top == "wavecast" and module != CLI


@contextlib.contextmanager
def imports_blocked(blocked: tuple[str, ...]) -> Iterator[None]:
    """In this thread, importing any of the `blocked` packages, or a module that would (see
    loads_blocked), fails as import_blockers makes it fail in a fresh process: even where an
    earlier test already loaded it. Other threads import as ever."""
    original = builtins.__import__
    thread = threading.get_ident()

    def guarded(
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> Any:
        if threading.get_ident() == thread:
            package = (globals or {}).get("__package__")
            full = importlib.util.resolve_name("." * level + name, package) if level else name
            loaded = [
                f"{full}.{item}" for item in fromlist or () if f"{full}.{item}" in sys.modules
            ]
            for module in (full, *loaded):
                if loads_blocked(module, blocked):
                    raise ImportError(f"{module} was imported")
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded
    try:
        yield
    finally:
        builtins.__import__ = original


def sleep_until_interrupted(ready: Any, ignore: bool) -> None:
    """A stand-in pool worker (a spawned process's target): says it is ready, then sleeps
    until SIGINT ends it with exit code INTERRUPTED, or for ever if it `ignore`s SIGINT."""
    if ignore:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ready.set()  # the parent may signal before set() returns here
        time.sleep(600)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
