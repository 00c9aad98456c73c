"""The forecast flow after a retrain, under Prefect's test harness: rows, bands, idempotence."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from flows.forecast import forecast
from flows.retrain import retrain
from tests.conftest import tiny_config
from wavecast.config import ForecastConfig, RetrainConfig
from wavecast.errors import InvalidInputError
from wavecast.records import ForecastSummary

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]


def three_step_config(data_dir: Path) -> RetrainConfig:
    base = tiny_config(data_dir)
    windows = base.windows.model_copy(update={"horizon": 1, "steps": 3})
    return base.model_copy(update={"windows": windows})


def test_the_champion_forecasts_three_steps_with_nested_intervals(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    trained = retrain(three_step_config(data_dir))
    assert trained.promoted and len(trained.metrics.per_step) == 3

    summary = forecast(ForecastConfig(data_dir=str(data_dir)))
    assert isinstance(summary, ForecastSummary)

    assert summary.version == trained.version and summary.origin == "119"
    assert [row["target"] for row in summary.forecasts] == ["120", "121", "122"]
    for row in summary.forecasts:
        bounds = [row["lo_95"], row["lo_80"], row["forecast"], row["hi_80"], row["hi_95"]]
        assert bounds == sorted(bounds), row
    assert set(summary.coverage) == {"80", "95"}
    table = ds.dataset(summary.path, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3
    assert set(table.column("model_version").to_pylist()) == {trained.version}
    assert table.column("series").to_pylist() == ["sine"] * 3
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
