"""A panel's forecast and monitor read each source once, whatever the number of series, and
give every series what the single-series path would: its values, its policy, its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import forecast_here
from tests.test_forecast import naive_panel
from tests.test_registry import METRICS, V1, V2, linear_spec, naive_version, version_with
from wavecast import generate, monitoring
from wavecast.config import ForecastConfig, MonitorConfig, SeriesSpec
from wavecast.errors import InvalidInputError
from wavecast.evaluate import SPEC_FILE
from wavecast.generate import load_series
from wavecast.home import SeriesHome
from wavecast.monitoring import score_each, watched_series
from wavecast.panel_forecast import forecast_keys
from wavecast.registry import record_champion
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every source read_table reads from now on, through the real reader."""
    reads: list[str] = []
    real = generate.read_source

    def counting(source: str) -> bytes:
        reads.append(source)
        return real(source)

    monkeypatch.setattr(generate, "read_source", counting)
    return reads


def last_values(forecasts: dict) -> dict[str, list[float]]:
    return {key: [row["forecast"] for row in one.forecasts] for key, one in forecasts.items()}


def test_a_panel_forecast_and_its_monitor_each_read_the_source_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Series number k ends on k * 10 + 2, which its naive champion forecasts."""
    panel = naive_panel(tmp_path, ("a", "b", "c"))
    source = str(tmp_path / "panel.csv")
    reads = counted_reads(monkeypatch)
    config = ForecastConfig(data_dir=str(panel), levels=(80.0,))

    forecasts = forecast_here(config, forecast_keys(config))

    assert reads == [source]
    assert last_values(forecasts.series) == {"a": [2.0], "b": [12.0], "c": [22.0]}
    assert forecasts.skipped == {}
    reads.clear()
    monitor = MonitorConfig(data_dir=str(panel))
    scores = score_each(watched_series(monitor), monitor)
    assert reads == [source]
    assert [getattr(score, "name", score) for score in scores] == ["a", "b", "c"]


def own_champion(panel: Path, key: str, series: SeriesSpec) -> None:
    own = Path(SeriesHome(str(panel), key).uri())
    naive_version(own, V1, series=series)
    record_champion(DataDir(str(own)), V1, METRICS, "promote", "first")


def test_each_series_keeps_its_own_source_policy_and_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read per source: b's NaN is refused under its --missing error, as the single-series
    path words it, while c's interpolate policy fills its own; d's champion names another
    file; x is in no source. Each problem is its series' alone."""
    source = tmp_path / "panel.csv"
    rows = [f"a,{row % 9}" for row in range(30)]
    rows += [f"b,{'nan' if row == 7 else 10 + row % 9}" for row in range(30)]
    rows += [f"c,{'nan' if row == 29 else 20 + row % 9}" for row in range(30)]
    source.write_text("store,value\n" + "".join(f"{row}\n" for row in rows))
    other = tmp_path / "other.csv"
    other.write_text("store,value\n" + "".join(f"d,{row % 9}\n" for row in range(30)))
    panel = tmp_path / "panel"
    specs = {
        "a": SeriesSpec(source=str(source), id_column="store", series=("a",)),
        "b": SeriesSpec(source=str(source), id_column="store", series=("b",)),
        "c": SeriesSpec(
            source=str(source), id_column="store", series=("c",), missing="interpolate"
        ),
        "d": SeriesSpec(source=str(other), id_column="store", series=("d",)),
        "x": SeriesSpec(source=str(source), id_column="store", series=("x",)),
    }
    for key, spec in specs.items():
        own_champion(panel, key, spec)
    reads = counted_reads(monkeypatch)
    config = ForecastConfig(data_dir=str(panel), levels=(80.0,))

    forecasts = forecast_here(config, forecast_keys(config))

    assert sorted(reads) == sorted([str(source), str(other)])
    # c's last value, NaN, interpolates to its neighbour's: 20 + 28 % 9 = 21.
    assert last_values(forecasts.series) == {"a": [2.0], "c": [21.0], "d": [2.0]}
    single: dict[str, str] = {}
    for key in ("b", "x"):
        with pytest.raises(InvalidInputError) as raised:
            load_series(specs[key])
        single[key] = str(raised.value)
    assert forecasts.skipped == single
    assert single["x"] == f"--series x: not in {source}"
    at = "at data row 38 (line 39 of a CSV)"  # b's 8th row, the file's 38th: not "row 7"
    assert f"1 NaN/infinite value(s) {at}, which --missing error refuses" in single["b"]


def linear_champion(panel: Path, key: str, weight: float) -> None:
    """Series `key`'s champion becomes V2: a linear AR whose six weights are all `weight`."""
    own = Path(SeriesHome(str(panel), key).uri())
    series = SeriesSpec(source=str(panel.parent / "panel.csv"), id_column="store", series=(key,))
    spec = {SPEC_FILE: linear_spec([[weight]] * 6)}
    version_with(own, V2, spec, series=series, forecaster="linear")
    record_champion(DataDir(str(own)), V2, METRICS, "promote", "second")


def test_a_champion_whose_weights_overflow_is_refused_at_load_and_the_others_forecast(
    tmp_path: Path,
) -> None:
    """1e308 is a finite weight: the registry refuses it as it loads the champion (its
    forecast of any window overflows), b alone is skipped, in a sentence."""
    panel = naive_panel(tmp_path, ("a", "b", "c"))
    linear_champion(panel, "b", 1e308)
    config = ForecastConfig(data_dir=str(panel), levels=(80.0,))

    forecasts = forecast_here(config, forecast_keys(config))

    assert last_values(forecasts.series) == {"a": [2.0], "c": [22.0]}
    assert forecasts.skipped["b"].startswith(f"no usable champion in {panel}/series/b")
    assert "weights whose forecasts overflow" in forecasts.skipped["b"]


def test_an_absurd_forecast_is_refused_for_its_series(tmp_path: Path) -> None:
    """Weights of 1e6 load (their forecasts of any series stay finite) but forecast b, whose
    history spans 8, about 5e8 away from its last value: no series means that."""
    panel = naive_panel(tmp_path, ("a", "b"))
    linear_champion(panel, "b", 1e6)
    config = ForecastConfig(data_dir=str(panel), levels=(80.0,))

    forecasts = forecast_here(config, forecast_keys(config))

    assert last_values(forecasts.series) == {"a": [2.0]}
    assert f"version {V2} (linear) forecast a value " in forecasts.skipped["b"]
    assert "times the range of its history from its last value" in forecasts.skipped["b"]


def test_a_series_whose_scoring_fails_is_its_own_reason_and_the_others_are_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any failure scoring b (here a ZeroDivisionError) is b's sentence, not the panel's."""
    panel = naive_panel(tmp_path, ("a", "b", "c"))
    config = ForecastConfig(data_dir=str(panel), levels=(80.0,))
    forecast_here(config, forecast_keys(config))
    real = monitoring.held_out_rmse

    def failing_for_b(store: DataDir, version: str, spread: float) -> np.ndarray:
        if store.uri().endswith("/series/b"):
            raise ZeroDivisionError("float division by zero")
        return real(store, version, spread)

    monkeypatch.setattr(monitoring, "held_out_rmse", failing_for_b)
    monitor = MonitorConfig(data_dir=str(panel))

    scores = score_each(watched_series(monitor), monitor)

    assert [getattr(score, "name", None) for score in scores] == ["a", None, "c"]
    assert str(scores[1]) == "could not be scored: float division by zero"
