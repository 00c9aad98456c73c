"""`wavecast retrain --id-column` and `wavecast forecast` on a panel, as a user runs them,
against a real server: bad series skipped, every good one published and forecast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.servers import Stack
from tests.test_panel import CJK_ID, LONG_ID, write_odd_ids, write_panel

WAVECAST = Path(sys.executable).with_name("wavecast")
TINY = ("--units", "4", "--epochs", "3", "--batch-size", "16")

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack(real_server: Stack) -> Stack:
    return real_server  # the session's: each test here has a data dir of its own


def wavecast(stack: Stack, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WAVECAST), *argv], env=stack.env, capture_output=True, text=True, timeout=500
    )


def test_a_panel_publishes_its_good_series_and_forecasts_each(stack: Stack, tmp_path: Path) -> None:
    source, data_dir = write_panel(tmp_path / "panel.csv"), str(tmp_path / "data")
    panel = ("--source", str(source), "--id-column", "store", "--column", "sales")

    trained = wavecast(stack, "retrain", *panel, *TINY, "--data-dir", data_dir, "--json")
    forecast = wavecast(stack, "forecast", "--data-dir", data_dir, "--json")

    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout.splitlines()[-1])
    assert sorted(summary["series"]) == ["a", "b", "c"]
    assert {"version", "promoted", "metrics", "baselines"} <= set(summary["series"]["a"])
    assert sorted(summary["skipped"]) == ["flat", "nan", "short"]
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    forecasts = json.loads(forecast.stdout.splitlines()[-1])
    assert sorted(forecasts["series"]) == ["a", "b", "c"]
    assert forecasts["series"]["b"]["version"] == summary["series"]["b"]["version"]


def test_a_panel_with_no_trainable_series_exits_2(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    pd.DataFrame({"store": ["x"] * 4 + ["y"] * 30, "sales": [1.0] * 4 + [2.0] * 30}).to_csv(
        source, index=False
    )

    result = wavecast(
        stack, "retrain", "--source", str(source), "--id-column", "store",
        "--data-dir", str(tmp_path / "data"), *TINY,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith("wavecast: error: no series of")
    assert "skipped" in result.stdout and "constant at 2" in result.stdout


def test_odd_ids_each_train_and_forecast_and_an_empty_one_is_skipped(
    stack: Stack, tmp_path: Path
) -> None:
    """007 and 7 stay two series; a 300-character and a CJK id, too long for a directory
    named after them, train, forecast, are listed and monitored under their own names."""
    source, data_dir = write_odd_ids(tmp_path / "panel.csv"), str(tmp_path / "data")
    panel = ("--source", str(source), "--id-column", "store", "--column", "sales")
    good = sorted(["007", "7", LONG_ID, CJK_ID])

    trained = wavecast(stack, "retrain", *panel, *TINY, "--data-dir", data_dir, "--json")
    forecast = wavecast(stack, "forecast", "--data-dir", data_dir, "--json")
    listed = wavecast(stack, "models", "list", "--data-dir", data_dir)
    monitored = wavecast(stack, "monitor", "--data-dir", data_dir, "--json")

    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout.splitlines()[-1])
    assert sorted(summary["series"]) == good
    assert summary["skipped"] == {
        "": f"--id-column store: 40 row(s) of {source} have an empty or missing id, "
        "the first at data row 1 (line 2 of a CSV)"
    }
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    forecasts = json.loads(forecast.stdout.splitlines()[-1])
    assert sorted(forecasts["series"]) == good and forecasts["skipped"] == {}
    for key in good:
        assert forecasts["series"][key]["version"] == summary["series"][key]["version"]
    assert listed.returncode == 0, listed.stderr[-3000:]
    champions = {(key, summary["series"][key]["version"]) for key in good}
    assert {tuple(line.split()[:2]) for line in listed.stdout.splitlines()[1:]} == champions
    assert monitored.returncode == 0, monitored.stderr[-3000:]
    assert sorted(json.loads(monitored.stdout.splitlines()[-1])["series"]) == good
