"""The linear AR: least-squares weights of the window's points (and an intercept) per step,
applied with NumPy; serving it imports no TensorFlow."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wavecast.candidates import validation_size
from wavecast.config import WindowSpec
from wavecast.forecasters.forecaster import (
    Backtest,
    Forecaster,
    ForecasterSpec,
    Plan,
    Sources,
    Trial,
    WindowForecaster,
    copy_spec,
)
from wavecast.generate import MAX_MAGNITUDE
from wavecast.metrics import BATCH_ROWS, LeastSquares
from wavecast.windows import Chunk, DatasetRef, make_windows

ROUND_TRIP_TOLERANCE = 1e-4  # of the forecasts' scale; float32 rounding is ~1e-6 of it
# The linear AR competes with at least this many fitting windows per weight: on fewer it
# overfits (on M3's monthly series with 24 inputs it lost to ETS, Theta and their mean).
LINEAR_WINDOWS_PER_WEIGHT = 4
# Windows per incremental QR step: its input copies stay ~4 MB (64 inputs), where the
# streaming batch (metrics.BATCH_ROWS) made ~130 MB of them, the 5M-point run's peak.
QR_ROWS = 1 << 13


def linear_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """(windows, steps) forecasts of a linear AR's weights (the intercept last)."""
    weights = np.reshape(weights, (inputs.shape[1] + 1, -1))
    return np.asarray(inputs @ weights[:-1] + weights[-1])


def windows_ending_at(values: np.ndarray, origins: np.ndarray, input_len: int) -> np.ndarray:
    """(origins, input_len) windows whose last point is each origin, as views of `values`."""
    views = np.lib.stride_tricks.sliding_window_view(np.asarray(values, np.float64), input_len)
    return views[np.asarray(origins) - (input_len - 1)]


def series_windows(values: np.ndarray, dataset: DatasetRef) -> Chunk:
    """The dataset's windows as views of the series it was built from: no copy, no read."""
    spec = dataset.spec
    return make_windows(values, spec.input_len, spec.horizon, spec.steps)


def linear_weights(values: np.ndarray, dataset: DatasetRef, fit_end: int) -> np.ndarray:
    """The linear AR fitted on the first `fit_end` windows, read as views of the series."""
    return linear_fits(values, dataset.spec, (fit_end,))[0]


def linear_fits(values: np.ndarray, spec: WindowSpec, fit_ends: Sequence[int]) -> list[np.ndarray]:
    """The linear AR fitted on the first `end` windows for each of the ascending `fit_ends`,
    in one pass: the validation fit and the full one cost one fit, not two (4M windows of 64
    points: seconds each). Blocks of QR_ROWS windows keep the QR's copies a few MB."""
    _, inputs, targets = make_windows(values, spec.input_len, spec.horizon, spec.steps)
    solver, fits, start = LeastSquares(), [], 0
    for fit_end in fit_ends:
        if fit_end < start:
            raise ValueError(f"fit ends must ascend: {fit_end} after {start}")
        for first in range(start, fit_end, QR_ROWS):
            stop = min(first + QR_ROWS, fit_end)
            solver.add(inputs[first:stop], targets[first:stop])
        fits.append(solver.weights())
        start = fit_end
    return fits


def test_forecasts(
    forecaster: WindowForecaster, values: np.ndarray, dataset: DatasetRef
) -> np.ndarray:
    """A forecaster's forecasts of every test window, a batch of views at a time (a matmul
    of a strided view copies it whole: 512 MB for a million 64-point windows)."""
    _, inputs, _ = series_windows(values, dataset)
    test, steps = inputs[dataset.n_train :], dataset.spec.steps
    return np.concatenate(
        [
            np.reshape(forecaster(np.asarray(test[start : start + BATCH_ROWS])), (-1, steps))
            for start in range(0, len(test), BATCH_ROWS)
        ]
    )


def weights_fit(weights: tuple[tuple[float, ...], ...], shape: tuple[int, int]) -> bool:
    """Whether stored weights are of `shape` (input_len + 1 by steps) and forecast finitely
    every window a series may hold (values up to generate.MAX_MAGNITUDE): 1e308 is a finite
    weight whose forecast of any window is infinite."""
    rows = len(weights) == shape[0] and all(len(row) == shape[1] for row in weights)
    if not rows:
        return False
    array = np.asarray(weights, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        largest = np.abs(array[:-1]).sum(axis=0) * MAX_MAGNITUDE + np.abs(array[-1])
    return bool(np.isfinite(array).all() and np.isfinite(largest).all())


def check_round_trip(served: Path, test_x: np.ndarray, expected: np.ndarray) -> None:
    """A published linear AR's spec must read back and forecast what was evaluated.

    Up to float32 rounding of the stored windows: the tolerance is a share
    (ROUND_TRIP_TOLERANCE) of the forecasts' own scale, their largest magnitude, so it means
    the same for a series in units or in millions, and at points near zero.
    """
    weights = ForecasterSpec.model_validate_json(served.read_text()).weights
    forecast = linear_forecast(np.asarray(weights, np.float64), test_x)
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    worst = float(np.max(np.abs(forecast - expected), initial=0.0))
    if not worst <= ROUND_TRIP_TOLERANCE * scale:
        raise RuntimeError(
            f"{served} does not reproduce its evaluation "
            f"(max diff {worst:.3g}, {worst / scale:.3g} of the forecasts' scale)"
        )


def too_few_windows(fit_windows: int, input_len: int) -> str:
    """Why the linear AR is not fitted on `fit_windows` windows ("" when it is)."""
    needed = LINEAR_WINDOWS_PER_WEIGHT * (input_len + 1)
    if fit_windows >= needed:
        return ""
    weights = input_len + 1
    return f"not fitted: {fit_windows} windows, fewer than the {needed} its {weights} weights need"


class LinearForecaster(Forecaster):
    """The linear AR's stored weights, applied to the window ending at each origin."""

    def __init__(self, weights: tuple[tuple[float, ...], ...]) -> None:
        self.weights = np.asarray(weights, np.float64)

    def forecasts(
        self,
        values: np.ndarray,
        origins: np.ndarray,
        horizon: int,
        steps: int,
        chosen_forms: bool = False,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        windows = windows_ending_at(values, origins, len(self.weights) - 1)
        return linear_forecast(self.weights, windows)

    @classmethod
    def absence(cls, name: str, plan: Plan) -> str:
        spec, n_train = plan.train_windows()
        return too_few_windows(n_train - validation_size(n_train), spec.input_len)

    @classmethod
    def backtest(cls, name: str, trial: Trial, scores: Backtest) -> None:
        """Fitted on the windows before the validation block, on series long enough
        (LINEAR_WINDOWS_PER_WEIGHT); then on every train window, for the test windows."""
        dataset = trial.dataset
        short = too_few_windows(dataset.n_train - trial.n_validation, dataset.spec.input_len)
        if short:
            scores.notes[name] = short
            return
        fit_end = dataset.n_train - trial.n_validation
        validation_weights, scores.linear_weights = linear_fits(
            trial.values, dataset.spec, (fit_end, dataset.n_train)
        )
        _, inputs, _ = series_windows(trial.values, dataset)
        scores.validation[name] = linear_forecast(
            validation_weights, np.asarray(inputs[fit_end : dataset.n_train])
        )

    @classmethod
    def test_forecasts(cls, trial: Trial, scores: Backtest) -> np.ndarray:
        assert scores.linear_weights is not None, "the linear AR was combined without weights"
        reader = functools.partial(linear_forecast, scores.linear_weights)
        return test_forecasts(reader, trial.values, trial.dataset)

    @classmethod
    def save(cls, staging: Path, sources: Sources) -> None:
        copy_spec(staging, sources)
        test_x, expected = sources.evaluated()
        check_round_trip(staging / cls.served_file, test_x, expected)
