"""The loop closed on a real server: forecasts scored, drift emitted, a retrain follows alone.

`prefect server start`, prefect.yaml deployed, a process worker: retrain and forecast a CSV
series; values that follow the pattern raise nothing; values whose amplitude tripled make
`wavecast monitor` emit `wavecast.forecast.drift`, and with no other command the on-drift
deployment retrains that series from the event's config and a newer forecast follows.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.servers import Stack, completed_run_of, deploy_with_worker, running_server
from tests.test_cli_args import WAVECAST

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

PERIOD, NOISE, POINTS, APPENDED = 20, 0.05, 200, 12
RETRAIN_WITHIN_S = 120.0  # the acceptance: from the drift event to a completed retrain
FORECAST_WITHIN_S = 90.0


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


def forecast_origins(data_dir: Path) -> set[tuple[str, str]]:
    """(model version, origin) of every stored forecast."""
    import pyarrow.parquet as pq

    found: set[tuple[str, str]] = set()
    for path in (data_dir / "forecasts").rglob("*.parquet"):
        table = pq.read_table(path, columns=["model_version", "origin"])
        found.update(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))
    return found


def monitor(stack: Stack, data_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        wavecast(stack, "monitor", "--data-dir", str(data_dir), "--json")
    )
    return result


def test_drift_retrains_the_series_and_a_newer_forecast_follows(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    source, data_dir = tmp_path / "sales.csv", tmp_path / "data"
    history = "date,sales\n" + sine_rows(0, POINTS, 1.0, seed=0)
    source.write_text(history)
    with running_server(tmp_path) as stack, temporary_settings({PREFECT_API_URL: stack.api_url}):
        deploy_with_worker(stack, "wavecast")
        before = datetime.now(timezone.utc)
        wavecast(
            stack,
            *("retrain", "--source", str(source), "--data-dir", str(data_dir), "--steps", "4"),
            *("--units", "8", "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.01"),
        )
        completed_run_of(stack, "forecast/after-retrain", before, FORECAST_WITHIN_S)
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

        retrain = completed_run_of(stack, "retrain/on-drift", drifted_at, RETRAIN_WITHIN_S)
        config = retrain.parameters["config"]  # templated from the event: this series' config
        assert config["data_dir"] == str(data_dir) and config["series"]["source"] == str(source)
        assert config["windows"]["steps"] == 4
        completed_run_of(stack, "forecast/after-retrain", retrain.created, FORECAST_WITHIN_S)
        newer = forecast_origins(data_dir) - {first_forecast}
        last_day = str(np.datetime64("2026-01-01") + POINTS + APPENDED - 1)
        assert any(origin.startswith(last_day) for _, origin in newer), newer
