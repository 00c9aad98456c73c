"""Prediction intervals from a forecaster's absolute errors on held-out windows: split-conformal
where there are enough of them (a half-width per step that covers a new window's error with at
least the nominal probability when errors are exchangeable, whatever their distribution), and
a Student-t bound on their RMS where there are too few for the level: never infinite. Never
narrower than the data's resolution either (resolution_floor): a fit exact to round-off has
errors of 1e-15 that say nothing about the next one."""

from __future__ import annotations

import math

import numpy as np

# The narrowest half-width an interval may have, relative to the series' mean magnitude.
RELATIVE_RESOLUTION = 1e-6


def resolution_floor(values: np.ndarray) -> float:
    """A millionth of the series' mean magnitude: held-out errors below it are round-off."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return RELATIVE_RESOLUTION * float(np.mean(np.abs(finite))) if finite.size else 0.0


def conformal_half_widths(errors: np.ndarray, level: float, floor: float = 0.0) -> np.ndarray:
    """Per step (column), the ceil((n+1)·level)-th smallest absolute error of n windows.

    That is the finite-sample quantile ceil((n+1)(1-alpha))/n with level = 1-alpha. With too
    few windows for the level (rank > n: 19 are needed for 95 %), conformal gives no finite
    bound; then the Gaussian prediction bound with the RMS error unknown, t(n-1 dof, or 1 for a
    single error) x RMS x sqrt(1 + 1/n), and never less than the largest error seen. With one
    error that is 12.7x it at 95 %: wide, as knowing so little should be.
    """
    errors = as_rows(errors)
    n = len(errors)
    rank = math.ceil((n + 1) * level)
    if rank <= n:
        return np.maximum(np.partition(errors, rank - 1, axis=0)[rank - 1], floor)
    if n == 0:
        return np.full(errors.shape[1], np.inf)
    from scipy import stats

    quantile = float(stats.t.ppf((1 + level) / 2, max(n - 1, 1)))
    rms = np.sqrt(np.mean(np.square(errors), axis=0))
    bound = np.maximum(quantile * rms * math.sqrt(1 + 1 / n), errors.max(axis=0))
    return np.maximum(bound, floor)


def held_out_coverage(errors: np.ndarray, level: float, floor: float = 0.0) -> float:
    """Share of errors inside the interval, calibrated on the first half of the held-out
    windows and measured on the second half (which calibration never saw), over all steps."""
    errors = as_rows(errors)
    half = len(errors) // 2
    checked = errors[half:]
    if not half or not checked.size:  # nothing to calibrate on, or nothing to check
        return math.nan
    return float(np.mean(checked <= conformal_half_widths(errors[:half], level, floor)))


def as_rows(errors: np.ndarray) -> np.ndarray:
    """(windows, steps) float64; a 1-D array is one step per window, and zero windows of any
    step count stay a (0, steps) array instead of failing to reshape."""
    errors = np.asarray(errors, dtype=np.float64)
    return errors.reshape(len(errors), math.prod(errors.shape[1:]))
