"""The server a command starts for itself answers only that command: a password made for
it alone, which other users of the machine never see."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.servers import environment_without_prefect

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
        env=environment_without_prefect(PREFECT_API_AUTH_STRING="wavecast:inherited"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"none": 401, "guess": 401, "own": 200}
