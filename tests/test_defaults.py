"""Dated data gets windows from its frequency where none were given; the tutorial's stay for
series without dates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavecast.config import RetrainConfig, SelectionSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.times import inferred_season
from wavecast.validate import dated_windows, panel_plots, validate_inputs

pytestmark = pytest.mark.unit


def test_monthly_data_forecasts_a_year_from_two_years_one_step_ahead() -> None:
    windows, chosen = dated_windows(WindowSpec(), season=12, typical_length=105)

    assert (windows.steps, windows.input_len, windows.horizon) == (12, 24, 1)
    assert chosen.startswith("monthly data: forecasting 12 step(s) ahead, 24 past values")


def test_inputs_stay_within_a_third_of_a_typical_series() -> None:
    windows, _ = dated_windows(WindowSpec(), season=4, typical_length=20)
    assert (windows.steps, windows.input_len) == (4, 6)


def test_what_the_user_set_stays_and_the_sentence_names_only_what_was_chosen() -> None:
    windows, chosen = dated_windows(WindowSpec(steps=6), season=12, typical_length=105)
    assert (windows.steps, windows.input_len, windows.horizon) == (6, 12, 1)
    assert "step(s) ahead" not in chosen and "12 past values" in chosen

    given = WindowSpec(steps=3, input_len=7, horizon=2)
    assert dated_windows(given, season=12, typical_length=105) == (given, "")


def test_dated_data_without_a_season_forecasts_one_step() -> None:
    windows, chosen = dated_windows(WindowSpec(), season=None, typical_length=12)
    assert (windows.steps, windows.input_len, windows.horizon) == (1, 4, 1)
    assert chosen.startswith("dated data:")


def monthly_csv(path: Path, n: int = 60) -> Path:
    t = np.arange(n)
    months = pd.date_range("2019-01-01", periods=n, freq="MS")
    frame = pd.DataFrame({"ds": months, "y": 100 + t + 10 * np.sin(2 * np.pi * t / 12)})
    frame.to_csv(path, index=False)
    return path


def test_validation_completes_a_dated_sources_windows_and_leaves_the_sine_alone(
    tmp_path: Path,
) -> None:
    source = monthly_csv(tmp_path / "monthly.csv")
    dated = RetrainConfig.model_validate(
        {"series": {"source": str(source)}, "data_dir": str(tmp_path / "data")}
    )
    config, chosen = validate_inputs(dated, available=1 << 34)
    assert (config.windows.steps, config.windows.input_len, config.windows.horizon) == (12, 20, 1)
    assert chosen.startswith("monthly data")

    sine = RetrainConfig(data_dir=str(tmp_path / "data"))
    assert validate_inputs(sine, available=1 << 34) == (sine, "")
    assert sine.windows == WindowSpec(input_len=5, horizon=2, steps=1)


def test_a_panel_of_thousands_draws_no_per_series_plots_unless_asked() -> None:
    selection, chosen = panel_plots(SelectionSpec(), n_series=20_000)
    assert selection.plots is False and chosen.startswith("20000 series: each series'")
    assert panel_plots(SelectionSpec(), n_series=1000) == (SelectionSpec(), "")
    asked = SelectionSpec(plots=True)
    assert panel_plots(asked, n_series=20_000) == (asked, "")


def test_shuffled_rows_are_still_monthly(tmp_path: Path) -> None:
    """The step is read from the dates in time order, whatever order the rows came in."""
    months = pd.date_range("2019-01-01", periods=60, freq="MS")
    panel = pd.concat(
        pd.DataFrame({"unique_id": key, "ds": months, "y": np.arange(60.0) + k})
        for k, key in enumerate("ab")
    )
    source = tmp_path / "shuffled.csv"
    panel.sample(frac=1, random_state=0).to_csv(source, index=False)
    config = RetrainConfig.model_validate(
        {"series": {"source": str(source), "id_column": "unique_id"}, "data_dir": str(tmp_path)}
    )
    validated, chosen = validate_inputs(config, available=1 << 34)
    assert (validated.windows.steps, validated.windows.input_len) == (12, 20)
    assert chosen.startswith("monthly data")
    assert inferred_season(months.to_numpy()[::-1].copy()) == 12


def panel_config(tmp_path: Path, lengths: dict[str, int], candidates: str) -> RetrainConfig:
    rows = [f"{key},{i % 7}" for key, n in lengths.items() for i in range(n)]
    source = tmp_path / "panel.csv"
    source.write_text("store,value\n" + "".join(f"{row}\n" for row in rows))
    return RetrainConfig.model_validate(
        {
            "series": {"source": str(source), "id_column": "store"},
            "model": {"network": "per-series"},
            "selection": {"candidates": candidates},
            "data_dir": str(tmp_path / "data"),
        }
    )


def test_a_panel_where_nothing_can_compete_is_refused_before_any_write(tmp_path: Path) -> None:
    """A per-series network needs 80 train windows: a panel whose longest series has 100
    points (75 train windows) cannot train one; one series of 200 points (155) can."""
    short = panel_config(tmp_path, {"a": 30, "b": 100}, "network")
    with pytest.raises(InvalidInputError) as raised:
        validate_inputs(short, available=2**40)
    assert str(raised.value) == (
        "--candidates network: none can compete on this source (network: not trained: 75 train "
        "windows, fewer than --network-min-windows 80); add naive, ets or theta"
    )
    assert not (tmp_path / "data").exists()
    validate_inputs(panel_config(tmp_path, {"a": 30, "b": 200}, "network"), available=2**40)


def test_a_season_no_series_can_repeat_is_refused_and_one_that_repeats_runs(
    tmp_path: Path,
) -> None:
    panel = panel_config(tmp_path, {"a": 30, "b": 48}, "naive,seasonal_naive")
    too_long = panel.model_copy(
        update={"selection": panel.selection.model_copy(update={"season": 48})}
    )
    with pytest.raises(InvalidInputError) as raised:
        validate_inputs(too_long, available=2**40)
    assert str(raised.value) == (
        "--season 48: no series is longer than one season (the longest has 48 points); give "
        "the season in steps of the data, or leave it unset for the one its dates imply"
    )
    repeats = panel.model_copy(
        update={"selection": panel.selection.model_copy(update={"season": 47})}
    )
    assert validate_inputs(repeats, available=2**40).config.selection.season == 47
