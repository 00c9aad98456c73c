"""Candidate forecasters by exact indices and hand-computed values; choice on validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import raw_series
from wavecast.backtest import PREFERENCE
from wavecast.candidates import (
    CLEAR_MARGIN,
    best_candidate,
    targets_at,
    validation_size,
    window_origins,
)
from wavecast.config import RetrainConfig, SelectionSpec
from wavecast.evaluate import SPEC_FILE, Evaluation, evaluate_trained
from wavecast.forecasters.combination import (
    COMBINATION_POOL,
    combination_members,
    combination_weights,
    inverse_error_weights,
)
from wavecast.forecasters.forecaster import ForecasterSpec
from wavecast.forecasters.kinds import from_spec
from wavecast.forecasters.statistical import (
    classical_model,
    model_form,
    seasonal_naive,
    statistical_forecasts,
)
from wavecast.home import SeriesHome
from wavecast.intervals import conformal_half_widths
from wavecast.storage import DataDir
from wavecast.times import inferred_season
from wavecast.windows import DatasetRef, build_windows

pytestmark = pytest.mark.unit


def test_origins_and_targets_are_the_windows_own() -> None:
    """Window i (input_len 3) ends at i + 2; horizon 2, 2 steps: values[i+4], values[i+5]."""
    values = np.arange(20.0) * 10
    origins = window_origins(4, 3, input_len=3)
    assert origins.tolist() == [6, 7, 8]
    assert targets_at(values, origins, horizon=2, steps=2).tolist() == [
        [80.0, 90.0],
        [90.0, 100.0],
        [100.0, 110.0],
    ]


def test_seasonal_naive_takes_the_latest_value_a_season_back() -> None:
    """Season 4 from origin 9: leads 1..5 map to 6, 7, 8, 9, 6 (lead 5 is two seasons back)."""
    values = np.arange(12.0)
    forecast = seasonal_naive(values, np.array([9]), horizon=1, steps=5, season=4)
    assert forecast.tolist() == [[6.0, 7.0, 8.0, 9.0, 6.0]]
    # Shorter history than a season: the last value.
    assert seasonal_naive(values, np.array([1]), 1, 1, 4).tolist() == [[1.0]]


@pytest.mark.parametrize(("n_train", "held_out"), [(1, 0), (2, 1), (7, 1), (8, 2), (5000, 200)])
def test_validation_is_a_quarter_of_the_train_windows_at_most_200(
    n_train: int, held_out: int
) -> None:
    assert validation_size(n_train) == held_out


def test_the_best_validation_score_wins_and_a_tie_goes_to_the_simpler() -> None:
    assert best_candidate({"ets": 2.0, "theta": 1.0, "naive": 3.0}, PREFERENCE) == "theta"
    assert best_candidate({"network": 1.0, "naive": 1.0}, PREFERENCE) == "naive"
    assert best_candidate({"ets": math.nan, "linear": 5.0}, PREFERENCE) == "linear"


def test_the_combination_holds_every_scored_candidate_of_its_pool() -> None:
    """Seasonal naive, the linear AR, ETS, Theta, ARIMA and the network whenever scored,
    whatever their scores; naive never."""
    scores = {"naive": 4.0, "ets": 1.0, "theta": 2.0, "arima": math.nan, "seasonal_naive": 3.0}
    assert combination_members(scores) == ("seasonal_naive", "ets", "theta")
    every = scores | {"network": 9.0, "arima": 1.0, "linear": 0.5}
    assert combination_members(every) == COMBINATION_POOL


def test_a_single_candidate_serves_only_when_clearly_better_than_the_combination() -> None:
    """Theta 1.4 % below the combination (the weekly CO2 case): the combination serves;
    at the margin below it, theta; an exact fit (the sine's linear AR) always clears it."""
    assert best_candidate({"theta": 0.2065, "combination": 0.2095}, PREFERENCE) == "combination"
    at_margin = (1 - CLEAR_MARGIN) * 0.2
    assert best_candidate({"ets": at_margin, "combination": 0.2}, PREFERENCE) == "ets"
    assert best_candidate({"ets": at_margin * 1.001, "combination": 0.2}, PREFERENCE) == (
        "combination"
    )
    assert best_candidate({"linear": 5e-31, "combination": 1e-7}, PREFERENCE) == "linear"


def test_combination_weights_are_inverse_validation_errors() -> None:
    """Errors 1, 2, 4: inverses 1, 1/2, 1/4 over 7/4 = 4/7, 2/7, 1/7; an exact member
    takes all the weight."""
    assert inverse_error_weights([1.0, 2.0, 4.0]).tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert inverse_error_weights([0.0, 2.0]).tolist() == [1.0, 0.0]


def test_a_member_under_the_minimum_share_is_left_out_of_the_combination() -> None:
    """Errors 1, 2, 100 give inverse shares 100/151, 50/151, 1/151: the last is under 5 %
    and left out, the rest renormalized to 2/3, 1/3; an exact fit outweighs every other, so
    nothing is combined."""
    members, weights = combination_weights({"ets": 1.0, "theta": 2.0, "naive": 100.0})
    assert members == ("ets", "theta")
    assert weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert combination_weights({"linear": 5e-31, "network": 4e-7, "ets": 8e-6})[0] == ()


def test_a_weighted_combination_with_a_linear_member_is_remade_from_its_spec() -> None:
    """Linear AR y = 2 * last + 1 (weights [[2], [1]]) and naive, weighted 0.25 / 0.75:
    after 1..6, linear 13, naive 6: 0.25 * 13 + 0.75 * 6 = 7.75."""
    spec = ForecasterSpec(
        forecaster="combination",
        season=1,
        members=("linear", "naive"),
        weights=((2.0,), (1.0,)),
        member_weights=(0.25, 0.75),
    )
    values = np.arange(1.0, 7.0)
    assert from_spec(spec).forecast(values, horizon=1, steps=1).tolist() == [7.75]


def test_ets_carries_a_linear_trend_forward() -> None:
    """A noiseless line 3 + 2t: AutoETS forecasts the next points to 0.1 % of their level."""
    values = 3.0 + 2.0 * np.arange(60.0)
    origins = np.array([39, 49])
    forecasts, form = statistical_forecasts("ets", values, origins, 1, 3, season=1)
    truth = targets_at(values, origins, 1, 3)
    assert np.allclose(forecasts, truth, rtol=1e-3)
    assert form.startswith("ETS(")


def test_a_stored_spec_refits_on_the_series_it_is_given() -> None:
    """The combination of naive and seasonal naive: the mean of their forecasts by hand."""
    spec = ForecasterSpec(forecaster="combination", season=3, members=("naive", "seasonal_naive"))
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # naive: 6, 6; seasonal naive (season 3): values[3], values[4] = 4, 5.
    assert from_spec(spec).forecast(values, horizon=1, steps=2).tolist() == [5.0, 5.5]


@pytest.mark.parametrize(
    ("freq", "season"), [("MS", 12), ("QS", 4), ("D", 7), ("h", 24), ("W", 52), ("YS", None)]
)
def test_season_is_inferred_from_the_time_step(freq: str, season: int | None) -> None:
    times = pd.date_range("2020-01-01", periods=30, freq=freq).to_numpy()
    assert inferred_season(times) == season


def test_candidates_are_comma_separated_and_unknown_ones_refused() -> None:
    assert SelectionSpec.model_validate({"candidates": "ets, theta"}).candidates == ("ets", "theta")
    with pytest.raises(ValueError, match="candidates"):
        SelectionSpec.model_validate({"candidates": "ets,prophet"})
    with pytest.raises(ValueError, match="combination weighs other candidates"):
        SelectionSpec.model_validate({"candidates": "combination"})


def evaluated(
    source: Path, tmp_path: Path, candidates: str, input_len: int, steps: int
) -> tuple[RetrainConfig, DatasetRef, Evaluation]:
    """Store, window and evaluate a file source with these candidates and no network."""
    config = RetrainConfig.model_validate(
        {
            "series": {"source": str(source)},
            "windows": {"input_len": input_len, "horizon": 1, "steps": steps},
            "selection": {"candidates": candidates},
            "data_dir": str(tmp_path / "data"),
        }
    )
    data_dir = config.data_dir
    dataset = build_windows(
        raw_series(config.series, DataDir(data_dir)), config.windows, SeriesHome(data_dir)
    )
    return config, dataset, evaluate_trained(dataset, None, config.selection, SeriesHome(data_dir))


def test_a_random_walk_still_gets_a_champion_with_finite_intervals(tmp_path: Path) -> None:
    """No candidate beats the last value on a random walk: naive (or close) serves anyway,
    chosen on validation, with its test scores and a statistical spec on disk."""
    rng = np.random.default_rng(3)
    source = tmp_path / "walk.csv"
    pd.DataFrame({"value": np.cumsum(rng.standard_normal(80))}).to_csv(source, index=False)
    _, dataset, evaluation = evaluated(source, tmp_path, "linear,naive,theta", 6, 3)

    scores = {c.forecaster: c for c in evaluation.candidates}
    assert set(scores) == {"linear", "naive", "theta"}
    chosen = evaluation.published.forecaster
    assert scores[chosen].validation_mse == min(c.validation_mse for c in scores.values())
    assert evaluation.metrics == scores[chosen].test
    assert evaluation.n_validation == validation_size(dataset.n_train) == 14
    if chosen != "linear":
        assert (Path(evaluation.uri) / SPEC_FILE).exists()
    errors = np.load(Path(evaluation.uri) / "test_abs_errors.npy")
    assert errors.shape == (evaluation.n_validation + dataset.n_test, 3)
    assert np.isfinite(conformal_half_widths(errors, 0.95)).all()


def test_a_statistical_champion_is_refitted_when_it_forecasts(tmp_path: Path) -> None:
    """A monthly file: season 12 inferred, the champion a JSON spec (no model.keras), its
    forecast the spec refitted on the source as of now, every bound finite and nested."""
    from wavecast.config import ForecastConfig
    from wavecast.forecasting import forecast_window, latest_window
    from wavecast.publish import promote_candidate, stage_version

    months = pd.date_range("2015-01-01", periods=96, freq="MS")
    season = 10 + 3 * np.sin(2 * np.pi * np.arange(96) / 12)
    source = tmp_path / "sales.csv"
    noise = np.random.default_rng(5).normal(0, 0.2, 96)
    pd.DataFrame({"date": months, "sales": season + noise}).to_csv(source, index=False)
    config, dataset, evaluation = evaluated(source, tmp_path, "naive,seasonal_naive,theta", 12, 6)
    data_dir = config.data_dir
    assert dataset.series.season == 12
    home = SeriesHome(config.data_dir)
    summary = promote_candidate(
        config, home, dataset, evaluation, stage_version(config, home, dataset, None, evaluation)
    )

    version_dir = Path(summary.model_dir)
    assert summary.promoted and evaluation.published.season == 12
    assert evaluation.published.forecaster in ("seasonal_naive", "theta")
    assert (version_dir / SPEC_FILE).exists() and not (version_dir / "model.keras").exists()
    forecast = forecast_window(
        latest_window(ForecastConfig(data_dir=data_dir)), DataDir(data_dir), (80, 95)
    )
    assert forecast.forecaster == evaluation.published.forecaster
    if forecast.forecaster == "seasonal_naive":  # the same months a year earlier, exactly
        values = (season + noise)[-12:-6]
        assert [row["forecast"] for row in forecast.rows] == pytest.approx(values.tolist())
    for row in forecast.rows:
        bounds = [row["lo-95"], row["lo-80"], row["forecast"], row["hi-80"], row["hi-95"]]
        assert all(math.isfinite(float(b)) for b in bounds)
        assert bounds == sorted(bounds)


NO_TENSORFLOW_FORECAST = """
import json, sys
from wavecast.config import ForecastConfig
from wavecast.forecasting import forecast_window, latest_window
from wavecast.storage import DataDir
window = latest_window(ForecastConfig(data_dir=sys.argv[1]))
forecast = forecast_window(window, DataDir(sys.argv[1]), (80,))
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "forecaster": forecast.forecaster,
                  "forecasts": [row["forecast"] for row in forecast.rows]}))
"""


def test_a_linear_champion_is_its_weights_and_forecasts_without_tensorflow(tmp_path: Path) -> None:
    """A sine obeys a linear recurrence: the linear AR wins, its version holds its weights
    (forecaster.json, no model.keras), and a forecast in a fresh process continues the sine
    without importing TensorFlow."""
    import subprocess
    import sys

    from wavecast.publish import promote_candidate, stage_version

    points = np.sin(np.arange(120) * 0.3)
    source = tmp_path / "sine.csv"
    pd.DataFrame({"value": points[:100]}).to_csv(source, index=False)
    config, dataset, evaluation = evaluated(source, tmp_path, "linear,naive", 4, 3)
    home = SeriesHome(config.data_dir)
    summary = promote_candidate(
        config, home, dataset, evaluation, stage_version(config, home, dataset, None, evaluation)
    )

    version_dir = Path(summary.model_dir)
    assert summary.promoted and evaluation.published.forecaster == "linear"
    assert not (version_dir / "model.keras").exists()
    spec = ForecasterSpec.model_validate_json((version_dir / SPEC_FILE).read_text())
    assert np.asarray(spec.weights).shape == (5, 3)
    done = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW_FORECAST, config.data_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["forecaster"] == "linear" and result["tensorflow"] is False
    assert result["forecasts"] == pytest.approx(points[100:103], abs=1e-9)


@pytest.mark.parametrize(
    "candidates", ["network,naive,seasonal_naive,ets,theta,combination", "network"]
)
def test_a_series_too_short_for_its_windows_is_forecast_by_what_needs_none(
    tmp_path: Path, candidates: str
) -> None:
    """30 months, 24 inputs, 18 steps (43 points needed): windows of one point, the network
    not trained and its note saying why in a sentence; a champion anyway (naive stands in
    when nothing asked for can compete), 18 finite, nested bounds."""
    from wavecast.config import ForecastConfig
    from wavecast.forecasting import forecast_window, latest_window
    from wavecast.publish import promote_candidate, stage_version

    months = pd.date_range("2020-01-01", periods=30, freq="MS")
    noise = np.random.default_rng(1).normal(0, 0.3, 30)
    sales = 20 + 4 * np.sin(2 * np.pi * np.arange(30) / 12) + noise
    source = tmp_path / "short.csv"
    pd.DataFrame({"date": months, "sales": sales}).to_csv(source, index=False)
    config, dataset, evaluation = evaluated(source, tmp_path, candidates, 24, 18)
    assert dataset.spec.input_len == 1 and dataset.shortened.startswith("30 points")

    notes = {c.forecaster: c.note for c in evaluation.candidates}
    assert notes["network"] == f"not trained: {dataset.shortened}"
    if candidates == "network":
        assert evaluation.published.forecaster == "naive"
        assert notes["naive"].startswith("stands in")
    else:
        assert evaluation.published.forecaster != "network"
    home = SeriesHome(config.data_dir)
    summary = promote_candidate(
        config, home, dataset, evaluation, stage_version(config, home, dataset, None, evaluation)
    )
    assert summary.promoted
    data_dir = config.data_dir
    forecast = forecast_window(
        latest_window(ForecastConfig(data_dir=data_dir)), DataDir(data_dir), (80, 95)
    )
    assert len(forecast.rows) == 18
    for row in forecast.rows:
        bounds = [row["lo-95"], row["lo-80"], row["forecast"], row["hi-80"], row["hi-95"]]
        assert all(math.isfinite(float(b)) for b in bounds)
        assert bounds == sorted(bounds)


def monthly_series(n: int = 150) -> np.ndarray:
    t = np.arange(n)
    noise = np.random.default_rng(0).normal(0, 5, n)
    return 100 + 0.3 * t + 20 * np.sin(2 * np.pi * t / 12) + noise


@pytest.mark.parametrize("name", ["arima", "ets"])
def test_a_recorded_form_refits_to_the_searched_models_forecast(name: str) -> None:
    """Serving refits the order or components the retrain chose, not the search: on the same
    data, the same forecast."""
    values = monthly_series()
    searched = classical_model(name, 12).fit(values)
    form = model_form(name, searched)
    refitted = classical_model(name, 12, form)
    assert type(refitted).__name__ == ("ARIMA" if name == "arima" else "AutoETS")
    np.testing.assert_allclose(
        refitted.forecast(y=values, h=12)["mean"], searched.predict(h=12)["mean"], rtol=1e-9
    )


def test_forms_are_read_as_statsforecast_writes_them() -> None:
    seasonal = classical_model("arima", 12, "ARIMA(0,0,0)(1,1,2)[12] with drift        ")
    assert (seasonal.order, seasonal.seasonal_order, seasonal.season_length) == (
        (0, 0, 0),
        (1, 1, 2),
        12,
    )
    assert seasonal.include_drift and seasonal.include_mean
    plain = classical_model("arima", 12, "ARIMA(2,0,1) with zero mean")
    assert (plain.order, plain.season_length, plain.include_mean) == ((2, 0, 1), 1, False)
    damped = classical_model("ets", 12, "ETS(M,Ad,N)")
    assert (damped.model, damped.damped) == ("MAN", True)
    assert type(classical_model("arima", 12, "something else")).__name__ == "AutoARIMA"


def test_a_stored_champion_serves_in_its_recorded_form() -> None:
    """ARIMA(0,1,0) recorded: the refit on a seasonal series is that random walk (its
    forecast the last value), not what a new search would choose."""
    values = monthly_series()
    spec = ForecasterSpec(
        forecaster="arima", season=12, members=("arima",), forms={"arima": "ARIMA(0,1,0)"}
    )
    searched = ForecasterSpec(forecaster="arima", season=12, members=("arima",))
    np.testing.assert_allclose(from_spec(spec).forecast(values, 1, 12), np.full(12, values[-1]))
    assert not np.allclose(from_spec(searched).forecast(values, 1, 12), values[-1])
