"""prefect.yaml end to end: a real server, `prefect deploy --all`, a process worker, and the
runs its deployments start: scheduled and on-demand retrains, forecasts, the drift loop.

No mocks: `prefect server start` on a free loopback port with a throwaway PREFECT_HOME, the
repository's own prefect.yaml deployed from the repo root, and a `prefect worker start` that
runs the flow in a subprocess, exactly as a user's machine would. Every process started here
(and any flow-run process the worker spawned) is stopped afterwards, even on failure.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import served_files, tiny_config
from tests.servers import (
    REPO,
    Stack,
    completed_run_of,
    deploy_with_worker,
    environment_without_prefect,
    running_server,
    task_states,
)
from tests.test_cli_args import WAVECAST

SCHEDULED, ON_DEMAND = "scheduled-retrain", "on-demand"
CACHED_STAGES = ("write-windows", "train-model", "evaluate-model")
UNCHANGED = "no new data: model unchanged"
RUN_TIMEOUT = 240.0
FORECAST_WITHIN_S = 90.0  # after a retrain completes, its data dir's forecast has too

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]


def deployment_spec(name: str) -> dict[str, Any]:
    """One deployment of the repository's prefect.yaml, YAML anchors merged."""
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return next(spec for spec in document["deployments"] if spec["name"] == name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real Prefect server, prefect.yaml deployed, a process worker: shared by this module's
    tests (each on its own data dir), stopped with everything it started."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        running_server(tmp_path_factory.mktemp("deployed")) as started,
        temporary_settings({PREFECT_API_URL: started.api_url}),
    ):
        # Runs are confined to the checkout unless the operator names more (docs/operations.md):
        # these tests' data dirs and sources are under pytest's temporary directory.
        started.env["WAVECAST_ALLOWED_ROOTS"] = f"{REPO},{tmp_path_factory.getbasetemp()}"
        began = time.monotonic()
        deploy_with_worker(started, deployment_spec(SCHEDULED)["work_pool"]["name"])
        started.timings["pool + deploy"] = time.monotonic() - began
        yield started


def run_deployment_once(stack: Stack, deployment_id: Any, parameters: dict[str, Any]) -> Any:
    """Create a run of the deployment, let the worker execute it, return the final flow run.

    Waits on the server's event stream for the run's final state, not by polling its state.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.flow_runs import wait_for_flow_run

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        try:
            run = asyncio.run(wait_for_flow_run(run.id, timeout=int(RUN_TIMEOUT)))
        except FlowRunWaitTimeout:
            stuck = client.read_flow_run(run.id).state_name
            pytest.fail(f"run stuck in {stuck}\n{stack.logs()}")
    assert run.state_name == "Completed", f"{run.state}\n{stack.logs()}"
    return run


def run_artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found if artifact.key}


def check_deployments(stack: Stack) -> Any:
    """Both deployments carry prefect.yaml's settings; returns the scheduled one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import CronSchedule

    spec = deployment_spec(SCHEDULED)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"retrain/{SCHEDULED}")
        on_demand = client.read_deployment_by_name(f"retrain/{ON_DEMAND}")
    expected = [(s["cron"], s["timezone"]) for s in spec["schedules"]]
    schedules = [s.schedule for s in deployment.schedules]
    crons = [(s.cron, s.timezone) for s in schedules if isinstance(s, CronSchedule)]
    assert crons == expected, f"{crons} != {expected}\n{stack.logs()}"
    assert deployment.parameters == spec["parameters"]
    assert deployment.work_pool_name == spec["work_pool"]["name"]
    limit = spec["concurrency_limit"]
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == limit["limit"]
    assert deployment.concurrency_options is not None
    assert deployment.concurrency_options.collision_strategy.value == limit["collision_strategy"]
    directory = "prefect.deployments.steps.set_working_directory"
    assert deployment.pull_steps == [{directory: {"directory": str(REPO)}}]
    assert on_demand.schedules == []
    assert on_demand.parameters == deployment_spec(ON_DEMAND)["parameters"]
    return deployment


def tiny_parameters(data_dir: Path) -> dict[str, Any]:
    """A seconds-long retrain that beats persistence (tests/conftest.py's tiny_config)."""
    return {"config": tiny_config(data_dir).model_dump(mode="json")}


def assert_served_from_cache(stack: Stack, flow_run_id: Any) -> None:
    states = task_states(flow_run_id)
    assert {stage: states[stage] for stage in CACHED_STAGES} == dict.fromkeys(
        CACHED_STAGES, "Cached"
    ), f"{states}\n{stack.logs()}"
    assert UNCHANGED in str(run_artifacts(flow_run_id)["wavecast-report"].data)


@contextmanager
def command_on_its_own_server(
    tmp_path: Path, config: dict[str, Any]
) -> Iterator[Callable[[], None]]:
    """`wavecast retrain` as `make run` runs it: no PREFECT_API_URL, its own PREFECT_HOME.

    Started on entering and left to run (it shares nothing with the test's server, so the
    test goes on meanwhile); the callable yielded waits for it and asserts it succeeded. It
    is killed on leaving if still running (its own server ends with it)."""
    env = environment_without_prefect(
        PREFECT_HOME=str(tmp_path / "own-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    train, model = config["train"], config["model"]
    argv = [
        *("--length", str(config["series"]["length"]), "--units", str(model["units"])),
        *("--epochs", str(train["epochs"]), "--batch-size", str(train["batch_size"])),
        *("--learning-rate", str(train["learning_rate"]), "--data-dir", config["data_dir"]),
    ]
    log = tmp_path / "own-server-retrain.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WAVECAST), "retrain", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def finished() -> None:
        assert process.wait(timeout=300) == 0, log.read_text()[-3000:]

    try:
        yield finished
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_yaml_deploys_and_a_worker_runs_then_serves_from_cache(
    stack: Stack, tmp_path: Path
) -> None:
    data_dir, by_hand = tmp_path / "data", tmp_path / "by-hand"
    tiny = tiny_parameters(data_dir)
    timings = stack.timings
    # What `make run` trains (the command, on its own server and PREFECT_HOME), the
    # deployment's worker finds in the data dir's cache (checked last). It shares nothing
    # with the deployment's runs, so it trains while they are checked.
    with command_on_its_own_server(tmp_path, tiny_parameters(by_hand)["config"]) as by_hand_done:
        deployment = check_deployments(stack)

        started, before = time.monotonic(), datetime.now(timezone.utc)
        first = run_deployment_once(stack, deployment.id, tiny)
        timings["cold run"] = time.monotonic() - started
        artifacts = run_artifacts(first.id)
        assert artifacts["wavecast-metrics"].type == "table"
        table = str(artifacts["wavecast-metrics"].data)
        assert all(word in table for word in ("validation_mse", "naive", "network", "ets")), table
        assert artifacts["wavecast-report"].type == "markdown"
        assert UNCHANGED not in str(artifacts["wavecast-report"].data)
        started = time.monotonic()
        forecast_run = completed_run_of(
            stack, "forecast/after-retrain", before, FORECAST_WITHIN_S, data_dir
        )
        timings["forecast after retrain"] = time.monotonic() - started
        assert "wavecast-forecast" in run_artifacts(forecast_run.id), stack.logs()
        assert list((data_dir / "forecasts").rglob("*.parquet")), "forecast in another data dir"
        (model_file,) = served_files(data_dir)
        assert (data_dir / "models" / "champion.json").is_file()
        model_bytes = model_file.read_bytes()

        started = time.monotonic()
        second = run_deployment_once(stack, deployment.id, tiny)
        timings["unchanged rerun"] = time.monotonic() - started
        assert_served_from_cache(stack, second.id)
        assert served_files(data_dir) == [model_file]
        assert model_file.read_bytes() == model_bytes

        # The worker's first run on what the command trained retrains nothing.
        by_hand_done()
    assert_served_from_cache(
        stack, run_deployment_once(stack, deployment.id, tiny_parameters(by_hand)).id
    )
    panel_on_demand(stack, tmp_path)
    print("\n" + "\n".join(f"{step:>16}: {seconds:6.1f} s" for step, seconds in timings.items()))


def panel_on_demand(stack: Stack, tmp_path: Path) -> None:
    """The deployment the docs say to run with your own settings takes a panel too: the same
    retrain flow trains every series, each into its own data dir."""
    from prefect.client.orchestration import get_client

    source, data_dir = tmp_path / "panel.csv", tmp_path / "panel-data"
    rows = [f"{key},{t},{np.sin(t / 3 + i):.6f}" for i, key in enumerate("abc") for t in range(60)]
    source.write_text("series,t,value\n" + "\n".join(rows) + "\n")
    settings = {"source": str(source), "id_column": "series", "column": "value"}
    config = {"series": settings, "selection": {"candidates": ["naive", "linear"]}}
    with get_client(sync_client=True) as client:
        on_demand = client.read_deployment_by_name(f"retrain/{ON_DEMAND}")
    parameters = {"config": {**config, "data_dir": str(data_dir)}}
    run = run_deployment_once(stack, on_demand.id, parameters)
    table = str(run_artifacts(run.id)["wavecast-series"].data)
    assert all(f'"{key}"' in table for key in "abc"), table
    assert len(list(data_dir.glob("series/*/models/champion.json"))) == 3, stack.logs()


PERIOD, NOISE, POINTS, APPENDED = 20, 0.05, 200, 12
RETRAIN_WITHIN_S = 120.0  # the acceptance: from the drift event to a completed retrain


def sine_rows(start: int, stop: int, amplitude: float, seed: int) -> str:
    """CSV rows `date,sales` of a noisy sine of period PERIOD, one per day."""
    noise = np.random.default_rng(seed).normal(0, NOISE, stop - start)
    days = np.datetime64("2026-01-01") + np.arange(start, stop)
    values = amplitude * np.sin(2 * np.pi * np.arange(start, stop) / PERIOD) + noise
    return "".join(f"{day},{value:.17g}\n" for day, value in zip(days, values, strict=True))


def wavecast(stack: Stack, *argv: str) -> str:
    """A wavecast command against the test's server; its last stdout line."""
    done = subprocess.run(
        [str(WAVECAST), *argv], env=stack.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"wavecast {argv[0]}: {done.stderr[-3000:]}\n{stack.logs()}"
    return done.stdout.strip().splitlines()[-1]


def forecast_origins(data_dir: Path) -> set[tuple[str, Any]]:
    """(model version, origin) of every stored forecast; origins are stored as timestamps."""
    import pyarrow.parquet as pq

    found: set[tuple[str, Any]] = set()
    for path in (data_dir / "forecasts").rglob("*.parquet"):
        table = pq.read_table(path, columns=["model_version", "origin"])
        found.update(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))
    return found


def monitor(stack: Stack, data_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        wavecast(stack, "monitor", "--data-dir", str(data_dir), "--json")
    )
    return result


def test_drift_retrains_the_series_and_a_newer_forecast_follows(
    stack: Stack, tmp_path: Path
) -> None:
    """Forecasts scored on a real server: values that follow the pattern raise nothing; values
    whose amplitude tripled emit `wavecast.forecast.drift`, and with no other command the
    on-drift deployment retrains that series from the event's config and a newer forecast
    follows."""
    source, data_dir = tmp_path / "sales.csv", tmp_path / "data"
    history = "date,sales\n" + sine_rows(0, POINTS, 1.0, seed=0)
    source.write_text(history)
    before = datetime.now(timezone.utc)
    wavecast(
        stack,
        *("retrain", "--source", str(source), "--data-dir", str(data_dir), "--steps", "4"),
        *("--units", "8", "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.01"),
    )
    completed_run_of(stack, "forecast/after-retrain", before, FORECAST_WITHIN_S, data_dir)
    (first_forecast,) = forecast_origins(data_dir)

    source.write_text(history + sine_rows(POINTS, POINTS + APPENDED, 1.0, seed=1))
    calm = monitor(stack, data_dir)
    assert calm["events"] == 0 and not calm["series"]["sales"]["drift"], calm
    assert calm["series"]["sales"]["realized"] == 4, calm  # every step of the forecast

    source.write_text(history + sine_rows(POINTS, POINTS + APPENDED, 3.0, seed=1))
    drifted_at = datetime.now(timezone.utc)
    drifted = monitor(stack, data_dir)
    assert drifted["events"] == 1 and drifted["series"]["sales"]["drift"], drifted
    assert drifted["series"]["sales"]["error_ratio"] > 2.0, drifted

    retrain = completed_run_of(stack, "retrain/on-drift", drifted_at, RETRAIN_WITHIN_S, data_dir)
    config = retrain.parameters["config"]  # templated from the event: this series' config
    assert config["data_dir"] == str(data_dir) and config["series"]["source"] == str(source)
    assert config["windows"]["steps"] == 4
    completed_run_of(stack, "forecast/after-retrain", retrain.created, FORECAST_WITHIN_S, data_dir)
    newer = forecast_origins(data_dir) - {first_forecast}
    last_day = np.datetime64("2026-01-01") + POINTS + APPENDED - 1
    assert any(np.datetime64(origin, "D") == last_day for _, origin in newer), newer
