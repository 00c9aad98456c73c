"""Real Prefect servers for tests: start one on a free loopback port, stop all it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wavecast.flows.embedded_server import FILE_LEASES, answers, free_port

REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
STARTUP_TIMEOUT = 180.0


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries marker: ours, including the worker's flow-run children."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError):
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, give it 15 s, then SIGKILL it."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
            return


@dataclass
class Stack:
    """A Prefect server and its clients, all sharing one throwaway PREFECT_HOME."""

    root: Path
    api_url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """A long-running prefect command in its own process group, logging to a file."""
        with (self.root / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(PREFECT), *args],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def cli(self, *args: str) -> str:
        """A prefect command run to completion from the repo root; its output, or a failure."""
        done = subprocess.run(
            [str(PREFECT), *args],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def logs(self) -> str:
        return "\n".join(tail(log) for log in sorted(self.root.glob("*.log")))


def wait_healthy(stack: Stack, server: subprocess.Popen[bytes]) -> None:
    """Poll /health until it answers; between polls, wait on the server exiting instead."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not answers(stack.api_url):
        assert time.monotonic() < deadline, f"server not healthy in time\n{stack.logs()}"
        with suppress(subprocess.TimeoutExpired):
            server.wait(timeout=0.5)
        assert server.poll() is None, f"server exited ({server.returncode})\n{stack.logs()}"


def environment_without_prefect(**settings: str) -> dict[str, str]:
    """This process's environment minus every PREFECT_ setting of the shell, plus `settings`:
    a child that must not reach a server or profile it was not given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(settings)
    return env


@contextlib.contextmanager
def running_server(root: Path) -> Iterator[Stack]:
    """A real `prefect server start` on a free port; everything it started is ended after."""
    marker = f"wavecast-test-{uuid.uuid4().hex}"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = environment_without_prefect(
        PREFECT_HOME=str(root / "prefect-home"),  # database, profiles and result storage
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=FILE_LEASES,
        PREFECT_WORKER_QUERY_SECONDS="1",  # poll for runs every second, not every 10
        PWD=str(REPO),  # prefect.yaml's pull step records {{ $PWD }}
        TF_CPP_MIN_LOG_LEVEL="2",
        WAVECAST_TEST_MARKER=marker,
    )
    stack = Stack(root=root, api_url=api_url, env=env)
    try:
        started = time.monotonic()
        server = stack.start("server", "server", "start", "--host", "127.0.0.1", f"--port={port}")
        wait_healthy(stack, server)
        stack.timings["server healthy"] = time.monotonic() - started
        yield stack
    finally:
        for process in reversed(stack.processes):  # the worker before its server
            stop(process)
        for pid in processes_with(marker):  # flow runs the worker started in new sessions
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


FINAL_TASK_STATES = ("Completed", "Cached", "Failed", "Crashed", "Cancelled")


RETRAIN_TASKS = 8  # split, windows, train, evaluate, stage, promote, prune, publish


def task_states(
    flow_run_id: Any, tasks: int = RETRAIN_TASKS, timeout_s: float = 120
) -> dict[str, str]:
    """Final state name of each of a flow run's `tasks` task runs, by task name.

    The server records task runs from events, asynchronously: right after a flow run ends its
    database may still lack a task run or say Running, for seconds on a loaded machine. So
    this polls until every task run is there and final. (Replaying the event stream instead
    raced the server's batched event writes and missed runs.)
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            states = {run.name.rsplit("-", 1)[0]: str(run.state_name) for run in runs}
            settled = all(state in FINAL_TASK_STATES for state in states.values())
            if len(states) == tasks and settled:
                return states
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {timeout_s:.0f} s the server knows {len(states)} of {tasks} task "
                    f"runs of flow run {flow_run_id}, or not all final: {states}"
                )
            time.sleep(0.5)


FAILED_RUN_STATES = ("Failed", "Crashed", "Cancelled")


def completed_run_of(
    stack: Stack, deployment_name: str, after: datetime, timeout_s: float, data_dir: Path
) -> Any:
    """The first run of a deployment on `data_dir` created after `after` to complete, polled
    from the API (a flow run's state is written by the call that sets it: no event lag)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        while True:
            runs = [
                run
                for run in client.read_flow_runs(deployment_filter=only)
                if run.created is not None
                and run.created > after
                and run.parameters.get("config", {}).get("data_dir") == str(data_dir)
            ]
            for run in sorted(runs, key=lambda run: str(run.created)):
                assert run.state_name not in FAILED_RUN_STATES, f"{run.state}\n{stack.logs()}"
                if run.state_name == "Completed":
                    return run
            seen = [str(run.state_name) for run in runs]
            assert time.monotonic() < deadline, (
                f"no run of {deployment_name} completed within {timeout_s:.0f} s "
                f"(runs: {seen})\n{stack.logs()}"
            )
            time.sleep(1)


def deploy_with_worker(stack: Stack, pool: str) -> None:
    """prefect.yaml deployed and a process worker polling its pool, with every schedule
    paused: a real tick must not land in a test's worker."""
    stack.cli("work-pool", "create", pool, "--type", "process")
    stack.start("worker", "worker", "start", "--pool", pool)  # starts while deploy runs
    stack.cli("--no-prompt", "deploy", "--all")
    pause_schedules()


def pause_schedules() -> None:
    """Every deployment's schedules paused, on the server the current settings name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            for schedule in deployment.schedules:
                client.update_deployment_schedule(deployment.id, schedule.id, active=False)
