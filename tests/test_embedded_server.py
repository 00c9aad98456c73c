"""The server wavecast starts answers only the callers given its password, which other users
of the machine never see: a command's own, or the background one later commands reuse."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import environment_without_prefect
from wavecast.flows.embedded_server import answers

pytestmark = pytest.mark.flow

PROBE = """
import base64, json, os, urllib.error, urllib.request
from wavecast.flows.embedded_server import use_server_for_this_command

api_url = use_server_for_this_command(180)

def status(auth):
    request = urllib.request.Request(f"{api_url}/flows/filter", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code

own = os.environ["PREFECT_API_AUTH_STRING"]
print(json.dumps({"none": status(None), "guess": status("wavecast:guess"), "own": status(own)}))
"""


def test_a_commands_own_server_refuses_everyone_but_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environment_without_prefect(
            PREFECT_API_AUTH_STRING="wavecast:inherited", WAVECAST_SERVER="command"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"none": 401, "guess": 401, "own": 200}


BACKGROUND = """
from wavecast.flows.embedded_server import use_server_for_this_command
print(use_server_for_this_command(180))
"""


def run_python(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_background_server_starts_once_serves_later_commands_and_stops(
    tmp_path: Path,
) -> None:
    env = environment_without_prefect(PREFECT_HOME=str(tmp_path), WAVECAST_SERVER="background")
    stop = ["-m", "wavecast.flows.cli", "server", "stop"]
    try:
        first = run_python(["-c", BACKGROUND], env)
        second = run_python(["-c", BACKGROUND], env)
        api_url = first.stdout.strip()
        record = tmp_path / "wavecast-server.json"

        assert second.stdout.strip() == api_url and answers(api_url)
        assert "started a Prefect server" in first.stderr and "wavecast server stop" in first.stderr
        assert "started" not in second.stderr
        assert json.loads(record.read_text())["api_url"] == api_url
        assert stat.S_IMODE(record.stat().st_mode) & 0o077 == 0  # the password is this user's
    finally:
        stopped = run_python(stop, env)
    assert stopped.stdout.startswith("stopped the Prefect server at")
    assert not record.exists() and not answers(api_url)
    assert run_python(stop, env).stdout.strip() == "no wavecast server is recorded"
