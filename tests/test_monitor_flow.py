"""The monitor flow after a retrain and a forecast, under Prefect's test harness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.conftest import tiny_config
from wavecast.config import ForecastConfig, MonitorConfig
from wavecast.errors import InvalidInputError
from wavecast.flows.forecast import forecast
from wavecast.flows.monitor import monitor
from wavecast.flows.retrain import retrain

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_server")]

POINTS = 120


def sine_csv(path: Path, points: int, amplitude: float = 1.0) -> None:
    """A `value` column: the tutorial's sine at 120 points, continued past them."""
    x = np.linspace(-3 * np.pi, 3 * np.pi, POINTS)
    step = x[1] - x[0]
    values = np.sin(x[0] + step * np.arange(points))
    values[POINTS:] *= amplitude
    path.write_text("value\n" + "".join(f"{v:.17g}\n" for v in values))


def test_realized_forecasts_are_written_once_and_judged(tmp_path: Path) -> None:
    source, data_dir = tmp_path / "series.csv", tmp_path / "data"
    sine_csv(source, POINTS)
    base = tiny_config(data_dir)
    windows = base.windows.model_copy(update={"steps": 3})
    series = base.series.model_copy(update={"source": str(source)})
    retrain(base.model_copy(update={"windows": windows, "series": series}))
    config = MonitorConfig(data_dir=str(data_dir))
    forecast(ForecastConfig(data_dir=str(data_dir)))  # targets 121, 122, 123

    sine_csv(source, POINTS + 3)  # 120, 121, 122 arrive: two targets realize
    first = monitor(config)
    assert first.events == 0
    health = first.series["value"]
    assert health.realized == 2 and not health.drift and health.error_ratio is not None
    again = monitor(config)  # a rerun replaces the realized rows, never adds to them
    realized = ds.dataset(again.path, format="parquet", partitioning="hive").to_table()
    assert sorted(realized["target"].to_pylist()) == [121, 122]  # typed, as stored
    assert again.series == first.series
    assert Path(str(again.report).removeprefix("file://")).is_file()

    source.write_text("value\n" + "x\n" * (POINTS + 3))  # the trained column is not numeric now
    state = monitor(config, return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidInputError, match="numeric"):
        state.result()


def test_no_forecasts_is_nothing_to_monitor(tmp_path: Path) -> None:
    summary = monitor(MonitorConfig(data_dir=str(tmp_path / "empty")))
    assert summary.series == {} and summary.events == 0
    assert summary.note is not None and summary.note.startswith("nothing to monitor")
