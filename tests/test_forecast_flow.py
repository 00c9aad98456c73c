"""The forecast flow after a retrain, under Prefect's test harness: rows, bands, idempotence."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.conftest import tiny_config
from tests.test_forecast import naive_champion, naive_panel, values_csv
from tests.test_registry import SECRET, V1
from wavecast.config import ForecastConfig, RetrainConfig
from wavecast.errors import InvalidInputError
from wavecast.evaluate import ERRORS_FILE, SPEC_FILE
from wavecast.flows.forecast import forecast
from wavecast.flows.retrain import retrain
from wavecast.home import SeriesHome
from wavecast.panel_forecast import ForecastRun
from wavecast.records import ForecastSummary

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def three_step_config(data_dir: Path) -> RetrainConfig:
    base = tiny_config(data_dir)
    windows = base.windows.model_copy(update={"horizon": 1, "steps": 3})
    return base.model_copy(update={"windows": windows})


def test_the_champion_forecasts_three_steps_with_nested_intervals(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    trained = retrain(three_step_config(data_dir)).only()
    assert trained.promoted and len(trained.metrics.per_step) == 3

    summary = forecast(ForecastConfig(data_dir=str(data_dir))).only()
    assert isinstance(summary, ForecastSummary)

    assert summary.version == trained.version and summary.origin == "119"
    assert [row["target"] for row in summary.forecasts] == ["120", "121", "122"]
    for row in summary.forecasts:
        bounds = [row["lo-95"], row["lo-80"], row["forecast"], row["hi-80"], row["hi-95"]]
        assert bounds == sorted(bounds), row
    assert set(summary.coverage) == {"80", "95"}
    table = ds.dataset(summary.path, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3
    assert set(table.column("model_version").to_pylist()) == {trained.version}
    assert table.column("series").to_pylist() == ["sine"] * 3
    # Nixtla's spelling of the bounds in the dataset and the JSON, as in the Python frames.
    stored = set(table.column_names)
    assert {"lo-80", "hi-80", "lo-95", "hi-95"} <= stored and not {"lo_80", "lo_95"} & stored
    assert '"lo-80":' in summary.model_dump_json() and "lo_" not in summary.model_dump_json()
    assert Path(summary.report.removeprefix("file://")).is_file()

    forecast(ForecastConfig(data_dir=str(data_dir)))  # the same origin, the same version
    again = ds.dataset(summary.path, format="parquet", partitioning="hive").to_table()
    assert again.num_rows == 3


def test_forecasting_without_a_champion_is_bad_input(tmp_path: Path) -> None:
    state = forecast(ForecastConfig(data_dir=str(tmp_path / "empty")), return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidInputError, match=r"no champion in .*run wavecast retrain first"):
        state.result()
    assert not (tmp_path / "empty").exists()


def no_usable_champion(data_dir: str, why: str) -> str:
    return (
        f"no usable champion in {data_dir}: version {V1} cannot serve: {why}; promote a "
        "version that can (wavecast models list) or retrain"
    )


def test_a_damaged_champion_fails_the_run_in_one_line_that_quotes_nothing(tmp_path: Path) -> None:
    data_dir = naive_champion(tmp_path, values_csv(30))
    (data_dir / "models" / V1 / SPEC_FILE).write_text(SECRET)

    state = forecast(ForecastConfig(data_dir=str(data_dir)), return_state=True)

    assert state.is_failed()
    expected = no_usable_champion(str(data_dir), "forecaster.json is not a forecaster spec")
    assert state.message is not None and expected in state.message
    assert "AKID" not in state.message and len(state.message.splitlines()) == 1
    assert not (data_dir / "forecasts").exists()


def test_damaged_series_are_skipped_and_the_others_forecast(tmp_path: Path) -> None:
    """Of four series, b's forecaster and c's held-out errors are damaged: a and d forecast
    their last values (2 and 32), b and c are skipped, each with its reason."""
    panel = naive_panel(tmp_path, ("a", "b", "c", "d"))
    own = {key: Path(SeriesHome(str(panel), key).uri()) for key in "abcd"}
    (own["b"] / "models" / V1 / SPEC_FILE).write_text(SECRET)
    (own["c"] / "models" / V1 / ERRORS_FILE).write_text(SECRET)

    summary = forecast(ForecastConfig(data_dir=str(panel), levels=(80.0,)))

    assert isinstance(summary, ForecastRun)
    assert {
        key: [row["forecast"] for row in one.forecasts] for key, one in summary.series.items()
    } == {
        "a": [2.0],
        "d": [32.0],
    }
    assert summary.skipped == {
        "b": no_usable_champion(str(own["b"]), "forecaster.json is not a forecaster spec"),
        "c": f"version {V1}: {ERRORS_FILE} does not hold one row of held-out errors per window: "
        "retrain it",
    }
    table = ds.dataset(summary.path, format="parquet", partitioning="hive").to_table()
    assert sorted(zip(table["series"].to_pylist(), table["forecast"].to_pylist(), strict=True)) == [
        ("a", 2.0),
        ("d", 32.0),
    ]
