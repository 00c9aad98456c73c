"""Metrics and the two baselines, on values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavecast.config import WindowSpec
from wavecast.evaluate import CandidateScore, candidates_line, linear_forecast
from wavecast.forecasters.linear import QR_ROWS, linear_fits
from wavecast.metrics import LeastSquares, persistence_forecast, regression_metrics
from wavecast.windows import make_windows, split_index

pytestmark = pytest.mark.unit


def test_metrics_on_hand_computed_values() -> None:
    """Errors [1, 0, 2]: MSE 5/3, MAE 1, RMSE sqrt(5/3)."""
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    assert m.mse == pytest.approx(5 / 3)
    assert m.mae == pytest.approx(1.0)
    assert m.rmse == pytest.approx(math.sqrt(5 / 3))


def test_metrics_accept_a_column_forecast_and_integer_truth() -> None:
    """A Keras-shaped (n, 1) forecast scores like a flat one: errors [-1, 3] -> MSE 5, MAE 2."""
    m = regression_metrics(np.array([1, 2]), np.array([[0.0], [5.0]]))
    assert (m.mse, m.mae) == pytest.approx((5.0, 2.0))


def test_persistence_is_each_windows_last_value() -> None:
    """Tomorrow looks like today: column -1 of the inputs."""
    inputs = np.array([[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])
    assert np.array_equal(persistence_forecast(inputs), np.array([[3.0], [9.0]]))


def recurrence(n: int) -> np.ndarray:
    """y_t = 0.5 y_{t-1} - 0.2 y_{t-2} + 1, from y_0 = 0, y_1 = 5, without noise."""
    y = [0.0, 5.0]
    while len(y) < n:
        y.append(0.5 * y[-1] - 0.2 * y[-2] + 1.0)
    return np.array(y)


def fitted(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The linear AR's weights (the intercept last), as the linear forecaster fits them."""
    solver = LeastSquares()
    solver.add(inputs, targets)
    return solver.weights()


def test_linear_ar_recovers_a_known_recurrence() -> None:
    """Weights come back as [-0.2, 0.5] (oldest lag first) and intercept 1, forecasts exact."""
    y = recurrence(16)
    _, inputs, targets = make_windows(y, 2, 1)
    weights = fitted(inputs, targets)
    assert weights == pytest.approx([-0.2, 0.5, 1.0], abs=1e-8)
    assert linear_forecast(weights, inputs) == pytest.approx(targets, abs=1e-10)


def test_one_pass_fits_each_prefix_as_its_own_fit_would() -> None:
    """The validation fit (first 9,000 windows) and the full fit come from one pass over
    blocks of QR_ROWS windows, and match separate least-squares fits of those windows."""
    rng = np.random.default_rng(7)
    values = np.cumsum(rng.standard_normal(QR_ROWS + 3000))
    spec = WindowSpec(input_len=3, horizon=1, steps=2)
    _, inputs, targets = make_windows(values, 3, 1, 2)
    ends = (9000, len(inputs))
    fits = linear_fits(values, spec, ends)
    for end, weights in zip(ends, fits, strict=True):
        design = np.column_stack([inputs[:end], np.ones(end)])
        expected, *_ = np.linalg.lstsq(design, targets[:end], rcond=None)
        assert weights == pytest.approx(expected, rel=1e-7, abs=1e-9)
    assert not np.allclose(fits[0], fits[1], rtol=0, atol=1e-12)  # two fits, not one twice
    with pytest.raises(ValueError, match="fit ends must ascend: 9000 after 9500"):
        linear_fits(values, spec, (9500, 9000))


def test_linear_ar_recovers_the_sine_recurrence() -> None:
    """A sampled sine obeys y[t+1] = 2cos(w) y[t] - y[t-1]: weights [-1, 2cos(w), 0]."""
    x = np.linspace(-3 * np.pi, 3 * np.pi, 1000)
    _, inputs, targets = make_windows(np.sin(x), 2, 1)
    weights = fitted(inputs, targets)
    assert weights == pytest.approx([-1.0, 2 * math.cos(x[1] - x[0]), 0.0], abs=1e-9)


def test_baselines_on_the_tutorial_sine() -> None:
    """Fitted on train only, the linear baseline is near-exact on test; persistence is not."""
    _, inputs, targets = make_windows(np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 1000)), 5, 2)
    cut = split_index(len(targets), 0.8)
    forecasts = {
        "linear": linear_forecast(fitted(inputs[:cut], targets[:cut]), inputs[cut:]),
        "persistence": persistence_forecast(inputs[cut:]),
    }
    assert regression_metrics(targets[cut:], forecasts["linear"]).mse < 1e-20
    assert np.array_equal(forecasts["persistence"], inputs[cut:, -1:])
    # two steps of 6π/999 on a unit sine: persistence errs by up to ~2 * 0.0189
    assert 1e-4 < regression_metrics(targets[cut:], forecasts["persistence"]).mse < 1e-2


def test_the_candidates_log_line_ranks_by_validation_and_names_the_unscored() -> None:
    candidates = [
        CandidateScore(forecaster="network", validation_mse=3.3e-6),
        CandidateScore(forecaster="arima", validation_mse=math.nan, note="too short"),
        CandidateScore(forecaster="linear", validation_mse=5.15e-31),
    ]
    assert candidates_line(candidates) == "linear 5.2e-31, network 3.3e-06; not scored: arima"
