"""Shared benchmark plumbing: timed subprocesses, medians, a throwaway Prefect server, a table."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WAVECAST = [sys.executable, "-m", "wavecast.flows.cli"]  # the command, in this interpreter
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
}


@dataclass
class Row:
    """One line of the results table: a measurement, its baseline and the goal for the ratio."""

    name: str
    value: float
    baseline_name: str = ""
    baseline: float = float("nan")
    goal: float | None = None
    unit: str = "s"
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline == self.baseline else float("nan")


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment plus quiet defaults and the repo on PYTHONPATH."""
    env = {**os.environ, **QUIET_ENV, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 3600, cwd: Path = ROOT
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command to completion (in `cwd`, by default this tree); its wall-clock seconds
    and result. A failure is fatal."""
    began = time.perf_counter()
    done = subprocess.run(
        list(argv), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"benchmark command failed ({done.returncode}): {' '.join(argv)}")
    return seconds, done


def last_json(output: str) -> dict[str, Any]:
    """The last line of a child's stdout that parses as a JSON object."""
    for line in reversed(output.strip().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            payload = json.loads(line)
            if isinstance(payload, dict):
                return payload
    raise SystemExit(f"no JSON result in output:\n{output[-2000:]}")


def only_series(run: dict[str, Any]) -> dict[str, Any]:
    """The one series' result in a `--json` run table (`{"series": {name: ...}, ...}`)."""
    (result,) = run["series"].values()
    return dict(result)


def max_rss_mib(time_v_stderr: str) -> float:
    """Peak RSS from GNU time -v output, in MiB."""
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_stderr)
    if found is None:
        raise SystemExit("no 'Maximum resident set size' in /usr/bin/time -v output")
    return int(found.group(1)) / 1024


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc), children before grandchildren."""
    found, queue = [], [pid]
    while queue:
        for task in Path(f"/proc/{queue.pop(0)}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                queue += children
    return found


def status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


@dataclass
class TreeMemory:
    """Resident memory of a command and all its descendants, sampled while it runs.

    `peak_sum_mib` is the largest sampled sum over the processes alive at once; `hwm_sum_mib`
    adds up each process's own peak (VmHWM), an upper bound that no sampling can miss.
    """

    peak_sum_mib: float = 0.0
    hwm_kib: dict[int, int] = field(default_factory=dict)

    @property
    def hwm_sum_mib(self) -> float:
        return sum(self.hwm_kib.values()) / 1024

    def sample(self, root: int) -> None:
        pids = descendants(root)
        total = sum(status_kib(pid, "VmRSS") for pid in pids)
        self.peak_sum_mib = max(self.peak_sum_mib, total / 1024)
        for pid in pids:
            self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), status_kib(pid, "VmHWM"))


def run_sampling_memory(
    argv: Sequence[str], env: Mapping[str, str], every_s: float = 0.02
) -> tuple[float, TreeMemory, str]:
    """Run a command to completion while sampling its process tree's memory; its stderr."""
    memory, stderr = TreeMemory(), []
    began = time.perf_counter()
    process = subprocess.Popen(
        list(argv), cwd=ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    pipe = process.stderr
    assert pipe is not None
    reader = threading.Thread(target=lambda: stderr.append(pipe.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        memory.sample(process.pid)
        time.sleep(every_s)
    reader.join()
    seconds, text = time.perf_counter() - began, stderr[0].decode(errors="replace")
    if process.returncode != 0:
        sys.stderr.write(text[-3000:])
        raise SystemExit(f"benchmark command failed ({process.returncode}): {' '.join(argv)}")
    return seconds, memory, text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def prefect_server(home: Path, timeout_s: float = 240) -> Iterator[dict[str, str]]:
    """Start `prefect server start` on a free 127.0.0.1 port with its own PREFECT_HOME.

    Yields the environment a client needs (PREFECT_HOME, PREFECT_API_URL); stops the server's
    process group on exit.
    """
    port = free_port()
    env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    prefect = Path(sys.executable).with_name("prefect")
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=child_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(env["PREFECT_API_URL"], server, timeout_s)
        yield env
    finally:
        stop_group(server)
        log.close()


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"prefect server exited with {server.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2):
            return
        time.sleep(0.5)
    raise SystemExit(f"prefect server not healthy after {timeout_s:.0f} s")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the process group we started, then SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def format_value(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}" if value == value else "-"


def print_table(rows: Sequence[Row]) -> None:
    """Medians, their baselines, ratios and goals, as one fixed-width table."""
    header = f"{'measurement':<44}{'median':>12}  {'baseline':<34}{'median':>12}"
    print(f"\n{header}{'ratio':>8}{'goal':>8}  met")
    print("-" * (len(header) + 21))
    for row in rows:
        ratio = f"{row.ratio:.3f}" if row.ratio == row.ratio else "-"
        goal = f"<={row.goal:g}" if row.goal is not None else ""
        met = "" if row.goal is None or row.ratio != row.ratio else str(row.ratio <= row.goal)
        print(
            f"{row.name:<44}{format_value(row.value, row.unit):>12}  {row.baseline_name:<34}"
            f"{format_value(row.baseline, row.unit):>12}{ratio:>8}{goal:>8}  {met}"
        )
        if row.note:
            print(f"    {row.note}")
