"""Process helpers for tests: who is a child of whom, who is still alive, what may not import."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path


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
