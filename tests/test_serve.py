"""`make serve` as an operator gets it: an authenticated Prefect server on 127.0.0.1 and a
worker whose runs may touch only this checkout's data/ and the sources prefect.yaml names.

Runs flows/serve.sh itself (what `make serve` calls) with its state in a temporary
directory, then attacks it: requests without the secret, and a forged drift event whose
config points a retrain at files outside the allowed roots.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import PREFECT, REPO, environment_without_prefect, pause_schedules
from wavecast.flows.embedded_server import free_port

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]
SERVE = REPO / "flows" / "serve.sh"
SECRET_LINE = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG"


@dataclass
class Served:
    run_dir: Path
    api_url: str
    env: dict[str, str]  # a client's: the API's address and the secret
    output: str = ""  # what `make serve` printed

    @property
    def auth(self) -> str:
        return (self.run_dir / "auth").read_text().strip()

    def status(self, path: str, auth: str | None = None) -> int:
        """The HTTP status of POST <api>/<path> with an empty filter."""
        request = urllib.request.Request(
            f"{self.api_url}/{path}", data=b"{}", headers={"Content-Type": "application/json"}
        )
        if auth is not None:
            request.add_header("Authorization", f"Basic {b64encode(auth.encode()).decode()}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def prefect(self, *args: str, authenticated: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if not authenticated:
            env.pop("PREFECT_API_AUTH_STRING")
        return subprocess.run(
            [str(PREFECT), *args], env=env, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    run_dir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = environment_without_prefect(
        BIN=str(Path(sys.executable).parent),
        SERVE_DIR=str(run_dir),
        SERVE_PORT=str(port),
        SERVE_PREFECT_HOME=str(run_dir / "prefect-home"),
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    env.pop("WAVECAST_ALLOWED_ROOTS", None)  # serve.sh's own default is what is under test
    try:
        started = subprocess.run(
            ["bash", str(SERVE), "start"], env=env, capture_output=True, text=True, timeout=600
        )
        logs = "\n".join(p.read_text() for p in run_dir.glob("*.log"))
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{logs}"
        api_url = f"http://127.0.0.1:{port}/api"
        auth = (run_dir / "auth").read_text().strip()
        client_env = environment_without_prefect(
            PREFECT_API_URL=api_url, PREFECT_API_AUTH_STRING=auth, PREFECT_HOME=str(run_dir)
        )
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}):
            pause_schedules()  # no real tick may run in the checkout's data/ during the test
            yield Served(run_dir, api_url, client_env, started.stdout + started.stderr)
    finally:
        subprocess.run(["bash", str(SERVE), "stop"], env=env, capture_output=True, timeout=120)


def test_serve_says_what_it_deployed_once_and_no_start_a_worker_hint(served: Served) -> None:
    """It starts the worker itself: prefect deploy's hint per deployment would mislead."""
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert f"serve: {len(deployments)} deployments of prefect.yaml deployed" in served.output
    assert "start a worker" not in served.output


def test_the_api_refuses_requests_without_the_secret_kept_in_a_private_file(
    served: Served,
) -> None:
    assert (served.run_dir / "auth").stat().st_mode & 0o777 == 0o600
    assert served.status("flow_runs/filter") == 401
    assert served.status("flow_runs/filter", auth="wavecast:guessed") == 401
    assert served.status("flow_runs/filter", auth=served.auth) == 200
    refused = served.prefect("deployment", "ls", authenticated=False)
    assert refused.returncode != 0
    listed = served.prefect("deployment", "ls")  # the README's way: PREFECT_API_AUTH_STRING
    assert listed.returncode == 0 and "on-drift" in listed.stdout, listed.stderr


def test_the_worker_confines_runs_to_the_checkouts_data_and_named_sources(served: Served) -> None:
    worker = (served.run_dir / "worker.pid").read_text().strip()
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    assert f"WAVECAST_ALLOWED_ROOTS={REPO}/data,{REPO}/panel.csv".encode() in environ


def on_drift_runs_of(series: str) -> list[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/on-drift")
        runs = client.read_flow_runs()
    return [
        run
        for run in runs
        if run.deployment_id == deployment.id
        and run.parameters.get("config", {}).get("data_dir", "").endswith(series)
    ]


def final_run(series: str, timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = on_drift_runs_of(series)
        if runs and runs[0].state is not None and runs[0].state.is_final():
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no on-drift run for {series} ended within {timeout_s:.0f} s")


def test_a_forged_drift_event_cannot_point_a_retrain_outside_the_allowed_roots(
    served: Served, tmp_path: Path
) -> None:
    """Even with the secret (a stolen one, or a careless automation): the event's config is
    the run's config, and the worker's rules stop it before it reads or writes anything."""
    outside = tmp_path / "outside"
    outside.mkdir()
    source = outside / "credentials.csv"
    source.write_text(f"[default]\n{SECRET_LINE}\n")
    series = f"forged-{uuid.uuid4().hex[:8]}"
    payload = {"config": {"data_dir": str(outside / series), "series": {"source": str(source)}}}
    resource = f"wavecast.series.{series}"
    event = ("event", "emit", "wavecast.forecast.drift", "--resource-id", resource)

    unauthenticated = served.prefect(*event, "--payload", json.dumps(payload), authenticated=False)
    assert unauthenticated.returncode != 0  # without the secret the event never arrives

    emitted = served.prefect(*event, "--payload", json.dumps(payload))
    assert emitted.returncode == 0, emitted.stderr
    run = final_run(series)
    message = str(run.state.message)
    assert run.state_name == "Failed", message
    assert "outside the allowed roots" in message and "WAVECAST_ALLOWED_ROOTS" in message
    assert "\n" not in message and SECRET_LINE not in message
    assert sorted(p.name for p in outside.iterdir()) == ["credentials.csv"]  # nothing written
    assert len(on_drift_runs_of(series)) == 1  # the unauthenticated event started nothing
