"""Choosing among candidates scored at rolling origins: the validation windows they are
scored on, their targets, and the choice (the combination unless one is clearly better).

An origin is the index of the last observed point; a forecast from it covers the targets
values[origin + horizon + k] for k < steps, the same targets as the window that ends there.
The candidates themselves are wavecast.forecasters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# A single candidate serves only when its validation MSE is this share below the
# combination's: a choice on a closer margin is a choice on noise (a 1.4 % margin lost 28 %
# on test; margins of 5-30 % all lost to always combining on M1 and M3), and combinations win
# the field's competitions. An exact fit (the sine's linear AR) still clears it.
CLEAR_MARGIN = 0.5
MAX_VALIDATION_WINDOWS = 200


def validation_size(n_train: int) -> int:
    """Windows at the end of the train split held out for choosing: a quarter, at most 200,
    and at least one whenever one window is left to fit on."""
    if n_train < 2:
        return 0
    return min(max(n_train // 4, 1), MAX_VALIDATION_WINDOWS)


def window_origins(first_window: int, count: int, input_len: int) -> np.ndarray:
    return np.arange(first_window, first_window + count, dtype=np.int64) + input_len - 1


def targets_at(values: np.ndarray, origins: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """(origins, steps) true values each origin's forecast is scored on."""
    return np.asarray(values)[origins[:, None] + horizon + np.arange(steps)]


def mse_of(forecasts: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error; NaN when there is nothing to score or any forecast is not finite."""
    if forecasts.size == 0 or not np.isfinite(forecasts).all():
        return math.nan
    return float(np.mean(np.square(forecasts - truth)))


def best_candidate(validation_mse: Mapping[str, float], order: Sequence[str]) -> str:
    """The combination, unless a single candidate's validation MSE is clearly lower
    (CLEAR_MARGIN below it); else the lowest validation MSE, a tie going to the candidate
    listed first (the simpler one)."""
    finite = [(mse, order.index(name), name) for name, mse in validation_mse.items() if mse == mse]
    if not finite:
        raise ValueError("no candidate has a finite validation score")
    best_mse, _, best = min(finite)
    combined = validation_mse.get("combination", math.nan)
    if combined == combined and best_mse > (1 - CLEAR_MARGIN) * combined:
        return "combination"
    return best
