"""A Prefect server for one command, that dies with the command, even under `kill -9`.

Prefect's own ephemeral server is a child process that stops only through an exit handler,
so a killed `wavecast retrain` left it running. This starts the same server through
Prefect's public command (`prefect server start`, API only, on a free loopback port) with
Linux's parent-death signal set, so the kernel ends it whenever this process ends. (Elsewhere
than Linux the signal is not set, and a killed command leaves the server as before.) It asks
for a password made for this command alone, so nobody else on the machine can post events
or runs to it while it lives.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl option: signal this process when its parent dies
# Leases of concurrency slots on disk, and the service that frees expired ones, so a slot a
# killed run held is given back to the next run. No scheduler: this server runs no schedules.
FILE_LEASES = "prefect.server.concurrency.lease_storage.filesystem"
SERVER_SETTINGS = {
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": FILE_LEASES,
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
}
STOP_GRACE_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def end_with_parent() -> None:
    """Runs in the server's process before it starts: SIGTERM it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def answers(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_healthy(process: subprocess.Popen[bytes], api_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers(api_url):
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)  # a server's start-up has no event to wait on: poll its health


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def use_server_for_this_command(timeout_s: float) -> str | None:
    """Start a throwaway server unless one is configured, and point Prefect at it.

    It stops at exit, after Prefect's exit handlers have sent the last logs and events
    (exit handlers run last-registered first, and theirs register once a run starts).
    Returns the server's API URL, or None when a configured server is used.
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    auth = f"wavecast:{secrets.token_urlsafe(24)}"
    process = subprocess.Popen(
        command,
        env={**SERVER_SETTINGS, **os.environ, "PREFECT_SERVER_API_AUTH_STRING": auth},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=end_with_parent,  # before any thread of ours exists
        process_group=0,  # not the terminal's: Ctrl-C stops the command, which stops it last
    )
    atexit.register(stop, process)
    wait_until_healthy(process, api_url, timeout_s)
    os.environ.update(PREFECT_API_URL=api_url, PREFECT_API_AUTH_STRING=auth)
    refresh_global_settings_context()  # Prefect's own hook for changed environment variables
    return api_url
