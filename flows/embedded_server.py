"""The Prefect server a command or API call runs on when none is configured.

By default (WAVECAST_SERVER=background) the first command starts one in the background and
later commands reuse it, so only the first waits for a server's start (~15-20 s on 2 cores).
It answers only callers that know its password, kept with its address in
$PREFECT_HOME/wavecast-server.json (readable by this user alone); `wavecast server stop` ends
it. WAVECAST_SERVER=command gives each command a server of its own instead, described below.

A server for one command, that dies with the command, even under `kill -9`.

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
import base64
import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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
SERVER_RECORD = "wavecast-server.json"  # in PREFECT_HOME: address, password, pid
SERVER_LOG = "wavecast-server.log"


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
    """Point Prefect at a server unless one is configured: the background one (started if
    none answers), or with WAVECAST_SERVER=command one that ends with this command.
    Returns the server's API URL, or None when a configured server is used."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    if os.environ.get("WAVECAST_SERVER", "background") == "command":
        api_url, auth = start_for_this_command(timeout_s)
    else:
        api_url, auth = background_server(timeout_s)
    point_prefect_at(api_url, auth)
    return api_url


def point_prefect_at(api_url: str, auth: str) -> None:
    from prefect.context import refresh_global_settings_context

    os.environ.update(PREFECT_API_URL=api_url, PREFECT_API_AUTH_STRING=auth)
    refresh_global_settings_context()  # Prefect's own hook for changed environment variables


def launch_server(**where: Any) -> tuple[subprocess.Popen[bytes], str, str]:
    """`prefect server start` (API only) on a free loopback port, asking for a password made
    for it alone: (process, its API URL, the password). `where`: Popen's options for its
    output and process group."""
    port = free_port()
    auth = f"wavecast:{secrets.token_urlsafe(24)}"
    prefect = Path(sys.executable).with_name("prefect")
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**SERVER_SETTINGS, **os.environ, "PREFECT_SERVER_API_AUTH_STRING": auth},
        stdin=subprocess.DEVNULL,
        **where,
    )
    return process, f"http://127.0.0.1:{port}/api", auth


def start_for_this_command(timeout_s: float) -> tuple[str, str]:
    """A throwaway server that stops at exit, after Prefect's exit handlers have sent the last
    logs and events (exit handlers run last-registered first, and theirs register once a run
    starts)."""
    process, api_url, auth = launch_server(
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=end_with_parent,  # before any thread of ours exists
        process_group=0,  # not the terminal's: Ctrl-C stops the command, which stops it last
    )
    atexit.register(stop, process)
    wait_until_healthy(process, api_url, timeout_s)
    return api_url, auth


def prefect_home() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def accepts(api_url: str, auth: str) -> bool:
    """Whether the server at api_url is up and knows this password: ours, not a stranger that
    took its port after a reboot."""
    token = base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(
        f"{api_url}/admin/version", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def read_record(home: Path) -> dict[str, str] | None:
    try:
        record = json.loads((home / SERVER_RECORD).read_text())
    except (OSError, ValueError):
        return None
    complete = isinstance(record, dict) and {"api_url", "auth", "pid"} <= set(record)
    return record if complete else None


def background_server(timeout_s: float) -> tuple[str, str]:
    """The background server's (api_url, password): the recorded one if it answers, else a
    new one, started once however many commands ask at the same moment (a lock file)."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    with (home / f"{SERVER_RECORD}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = read_record(home)
        if record is not None and accepts(record["api_url"], record["auth"]):
            return record["api_url"], record["auth"]
        api_url, auth, pid = start_in_background(home, timeout_s)
        text = json.dumps({"api_url": api_url, "auth": auth, "pid": pid})
        staged = home / f".{SERVER_RECORD}.{pid}"
        staged.touch(mode=0o600)
        staged.write_text(text)
        staged.replace(home / SERVER_RECORD)
    print(
        f"wavecast: started a Prefect server at {api_url.removesuffix('/api')} for this and "
        "later commands (stop it: wavecast server stop)",
        file=sys.stderr,
    )
    return api_url, auth


def start_in_background(home: Path, timeout_s: float) -> tuple[str, str, int]:
    """A server in a session of its own (no terminal's Ctrl-C reaches it) that outlives this
    process; its output goes to $PREFECT_HOME/wavecast-server.log."""
    with (home / SERVER_LOG).open("ab") as log:
        process, api_url, auth = launch_server(
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_until_healthy(process, api_url, timeout_s)
    return api_url, auth, process.pid


def is_recorded_server(pid: int, api_url: str) -> bool:
    """Whether pid is still the server the record names (not a pid reused since)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    port = api_url.rsplit(":", 1)[-1].split("/")[0]
    return b"server" in command and b"start" in command and port.encode() in command


def stop_background_server() -> str:
    """Stop the background server, if one is recorded and still running; what happened."""
    home = prefect_home()
    record = read_record(home)
    if record is None:
        return "no wavecast server is recorded"
    (home / SERVER_RECORD).unlink(missing_ok=True)
    pid, api_url = int(record["pid"]), record["api_url"]
    if not is_recorded_server(pid, api_url):
        return f"the server at {api_url} was no longer running"
    os.killpg(pid, signal.SIGTERM)  # its session's group: the server and any child of it
    deadline = time.monotonic() + STOP_GRACE_S
    while is_recorded_server(pid, api_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_recorded_server(pid, api_url):
        os.killpg(pid, signal.SIGKILL)
    return f"stopped the Prefect server at {api_url.removesuffix('/api')}"
