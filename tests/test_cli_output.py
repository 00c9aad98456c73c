"""What `wavecast forecast` prints: each step's date, forecast and first interval."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from wavecast.flows.cli import print_panel_forecast, step_text

pytestmark = pytest.mark.unit

ROW = {"step": 1, "target": "2025-01-01T00:00:00", "forecast": 124.94, "lo-80": 120.0}
ROW |= {"hi-80": 129.5, "lo-95": 110.0, "hi-95": 140.0}


def test_a_step_shows_its_date_forecast_and_narrowest_interval() -> None:
    assert step_text(ROW) == "2025-01-01T00:00:00  124.9  80 %: [120, 129.5]"
    assert step_text({"target": "17", "forecast": 2.0}) == "17  2"


def test_a_panel_shows_each_series_first_and_last_step(capsys: pytest.CaptureFixture[str]) -> None:
    last = {**ROW, "step": 12, "target": "2025-12-01T00:00:00", "forecast": 130.0}
    one = SimpleNamespace(forecasts=(ROW, last))
    panel = SimpleNamespace(series={"s0": one}, skipped={"s1": "no champion"}, path="data/f")
    print_panel_forecast(panel)
    assert capsys.readouterr().out.splitlines() == [
        "s0              2025-01-01T00:00:00  124.9  80 %: [120, 129.5]  ... 12 steps to "
        "2025-12-01T00:00:00  130  80 %: [120, 129.5]",
        "s1              not forecast: no champion",
        "dataset  data/f",
    ]
