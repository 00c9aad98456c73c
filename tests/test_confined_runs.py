"""A run a worker starts for a deployment is confined even when the operator set no
WAVECAST_ALLOWED_ROOTS; a run by hand keeps the environment's rule (unconfined when unset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow

from tests.conftest import tiny_config
from wavecast.config import ForecastConfig
from wavecast.confinement import ROOTS_VARIABLE
from wavecast.errors import InvalidInputError
from wavecast.flows.forecast import forecast
from wavecast.flows.retrain import retrain

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A worker's working directory, the data dir its deployment names, a place outside."""
    named = {name: tmp_path / name for name in ("work", "configured", "outside")}
    for place in named.values():
        place.mkdir()
    monkeypatch.chdir(named["work"])
    monkeypatch.setenv(ROOTS_VARIABLE, "")  # restored after: the run sets it in this process
    monkeypatch.delenv(ROOTS_VARIABLE)
    return named


def run_of_deployment(
    deployed: dict[str, Any], asked: dict[str, Any], job_variables: dict[str, Any] | None = None
) -> str:
    """The error of a forecast run a worker would execute: a deployment with parameters
    `deployed`, run with parameters `asked` and `job_variables` (an event's or an API
    caller's)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(forecast)
        deployment = client.create_deployment(flow_id, "confined", parameters=deployed)
        flow_run = client.create_flow_run_from_deployment(
            deployment, parameters=asked, job_variables=job_variables
        )
    state: Any = run_flow(forecast, flow_run=flow_run, parameters=asked, return_type="state")
    with pytest.raises(InvalidInputError) as refused:
        state.result()
    return str(refused.value)


def test_a_deployment_run_is_confined_to_its_directory_and_its_deployments_data_dir(
    places: dict[str, Path],
) -> None:
    deployed = {"config": {"data_dir": str(places["configured"])}}
    outside = {"config": ForecastConfig(data_dir=str(places["outside"] / "data"))}
    message = run_of_deployment(deployed, outside)
    assert message.startswith(f"--data-dir {places['outside']}/data: outside the allowed roots")
    assert f"({places['work']}, {places['configured']})" in message
    inside = {"config": ForecastConfig(data_dir=str(places["configured"]))}
    assert "outside the allowed roots" not in run_of_deployment(deployed, inside)
    assert list(places["outside"].iterdir()) == []


def test_a_runs_job_variables_cannot_widen_the_roots(places: dict[str, Path]) -> None:
    """A process worker puts a run's job variable `env` into the run's environment: the
    limits are refused there, whoever sets them, and nothing outside is touched."""
    deployed = {"config": {"data_dir": str(places["configured"])}}
    outside = {"config": ForecastConfig(data_dir=str(places["outside"] / "data"))}
    widened = {"env": {ROOTS_VARIABLE: "/", "OTHER": "1"}}
    message = run_of_deployment(deployed, outside, widened)
    assert message == (
        f"job variable env {ROOTS_VARIABLE}: wavecast's limits come from the worker's "
        "environment or the deployment, not from a run's job variables; run it without "
        "that variable"
    )
    other = run_of_deployment(deployed, outside, {"env": {"OTHER": "1"}})
    assert other.startswith(f"--data-dir {places['outside']}/data: outside the allowed roots")
    assert list(places["outside"].iterdir()) == []


def test_a_run_by_hand_stays_unconfined_without_the_variable(places: dict[str, Path]) -> None:
    with pytest.raises(InvalidInputError) as refused:
        forecast(ForecastConfig(data_dir=str(places["outside"] / "data")))
    assert "outside the allowed roots" not in str(refused.value)


def test_a_retrain_given_chained_urls_with_symlinked_heads_is_refused_in_one_line(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a drift event could carry: a source and a data dir whose heads are symlinks in a
    root, to a file and a directory outside it (read, and written into, before)."""
    work, outside = places["work"], places["outside"]
    monkeypatch.setenv(ROOTS_VARIABLE, str(work))
    (outside / "series.csv").write_text("value\n" + "".join(f"{i % 7}\n" for i in range(120)))
    (work / "link.csv").symlink_to(outside / "series.csv")
    (work / "linkdir").symlink_to(outside)
    config = tiny_config(work / "data")
    chained = config.series.model_copy(update={"source": f"file://{work}/link.csv::zip://x"})
    for update in ({"series": chained}, {"data_dir": f"file://{work}/linkdir::file://x"}):
        with pytest.raises(InvalidInputError, match=r"^--\S+ \S+: a chained URL \(::\) is not"):
            retrain(config.model_copy(update=update))
    assert sorted(p.name for p in outside.iterdir()) == ["series.csv"]
