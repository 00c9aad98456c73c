"""Split-conformal prediction intervals: from a model's absolute errors on held-out windows,
a half-width per step that covers a new window's error with at least the nominal probability
(when errors are exchangeable), whatever the model or the errors' distribution."""

from __future__ import annotations

import math

import numpy as np


def conformal_half_widths(errors: np.ndarray, level: float) -> np.ndarray:
    """Per step (column), the ceil((n+1)·level)-th smallest absolute error of n windows.

    That is the finite-sample quantile ceil((n+1)(1-alpha))/n with level = 1-alpha; with too few
    windows for the level (rank > n) the interval is infinite: nothing smaller is honest.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    n = len(errors)
    rank = math.ceil((n + 1) * level)
    if rank > n:
        return np.full(errors.shape[1], np.inf)
    return np.partition(errors, rank - 1, axis=0)[rank - 1]


def held_out_coverage(errors: np.ndarray, level: float) -> float:
    """Share of errors inside the interval, calibrated on the first half of the held-out
    windows and measured on the second half (which calibration never saw), over all steps."""
    errors = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    half = len(errors) // 2
    widths = conformal_half_widths(errors[:half], level)
    checked = errors[half:]
    return float(np.mean(checked <= widths)) if checked.size else math.nan
