"""Errors of forecasts (streamed over a split in O(1) memory) and the two baselines every
champion must beat: persistence and the linear AR, fitted by streaming least squares.

Besides the errors in the series' own units (MSE, RMSE, MAE), two scale-free scores that rank
and judge series of any scale, as the forecasting competitions score them:

- MASE: the MAE over the in-sample MAE of the seasonal naive forecast one step ahead on the
  train part of the series (`mase_scale`). Below 1 beats that naive forecast; NaN when the
  scale is 0 or unknown (a constant train part, or one no longer than a season).
- sMAPE: 200 * mean(|forecast - actual| / (|actual| + |forecast|)), in % (0 to 200); a
  target and forecast both 0 count as a perfect 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.engine import model_forecast
from wavecast.storage import DataDir
from wavecast.windows import DatasetRef, iter_split

BATCH_ROWS = 1 << 16  # windows per batch when streaming a split
SAMPLE_WINDOWS = 2000  # test windows kept for plots and the publish round-trip check
# A forecaster of raw windows: (windows, input_len) -> (windows, steps).
WindowForecaster = Callable[[np.ndarray], np.ndarray]


class StepMetrics(BaseModel):
    """Errors of one forecaster at one step ahead; non-finite values stay JSON strings.
    `mase` and `smape` are None in records written before they were scored."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    mse: float
    rmse: float
    mae: float
    mase: float | None = None
    smape: float | None = None


class Metrics(StepMetrics):
    """Errors over every step, and at each step (first the target `horizon` steps ahead)."""

    per_step: tuple[StepMetrics, ...] = ()


@dataclass
class ErrorTotals:
    """Running sums of errors per step, so metrics over any number of batches need O(1) memory."""

    squared: np.ndarray = field(default_factory=lambda: np.zeros(0))
    absolute: np.ndarray = field(default_factory=lambda: np.zeros(0))
    symmetric: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sMAPE's terms
    rows: int = 0

    def add(self, truth: np.ndarray, forecast: np.ndarray) -> None:
        """Add (windows, steps) forecasts and truth; 1-D arrays are one step."""
        truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
        forecast = np.asarray(forecast, dtype=np.float64).reshape(truth.shape)
        errors = forecast - truth
        if self.rows == 0:
            self.squared, self.absolute = np.zeros(truth.shape[1]), np.zeros(truth.shape[1])
            self.symmetric = np.zeros(truth.shape[1])
        self.squared = self.squared + np.einsum("ij,ij->j", errors, errors)
        self.absolute = self.absolute + np.abs(errors).sum(axis=0)
        self.symmetric = self.symmetric + symmetric_errors(truth, forecast).sum(axis=0)
        self.rows += len(errors)

    def metrics(self, scale: float | None = None) -> Metrics:
        """The scores so far; `scale` (mase_scale) gives MASE, None leaves it unknown."""
        steps = [
            scores(float(sq), float(ab), float(sy), self.rows, scale)
            for sq, ab, sy in zip(self.squared, self.absolute, self.symmetric, strict=True)
        ]
        overall = scores(
            float(self.squared.sum()),
            float(self.absolute.sum()),
            float(self.symmetric.sum()),
            self.rows * len(steps),
            scale,
        )
        return Metrics(**overall.model_dump(), per_step=tuple(steps))


def scores(
    squared: float, absolute: float, symmetric: float, count: int, scale: float | None = None
) -> StepMetrics:
    mse, mae = squared / count, absolute / count
    return StepMetrics(
        mse=mse,
        rmse=math.sqrt(mse),
        mae=mae,
        mase=None if scale is None else scaled_error(mae, scale),
        smape=200.0 * symmetric / count,
    )


def regression_metrics(
    truth: np.ndarray, forecast: np.ndarray, scale: float | None = None
) -> Metrics:
    totals = ErrorTotals()
    totals.add(truth, forecast)
    return totals.metrics(scale)


def mase_scale(history: np.ndarray, season: int = 1) -> float:
    """MASE's denominator: the mean absolute error of the seasonal naive forecast one step
    ahead (each value forecast by the one a season before) over `history`, the train part of
    the series; NaN when the history is no longer than a season."""
    values = np.asarray(history, dtype=np.float64)
    if len(values) <= season:
        return math.nan
    return float(np.mean(np.abs(values[season:] - values[:-season])))


def scaled_error(mae: float, scale: float) -> float:
    """MASE from an MAE and mase_scale's scale: NaN, never infinite, when the scale is 0 or
    unknown."""
    return mae / scale if scale > 0 else math.nan


def mase(truth: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error of forecasts over `scale` (mase_scale)."""
    errors = np.asarray(forecast, np.float64).reshape(np.shape(truth)) - np.asarray(truth)
    return scaled_error(float(np.mean(np.abs(errors))), scale)


def symmetric_errors(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Each target's |forecast - actual| / (|actual| + |forecast|), 0 where both are 0."""
    truth, forecast = np.asarray(truth, np.float64), np.asarray(forecast, np.float64)
    total = np.abs(truth) + np.abs(forecast)
    gap = np.abs(forecast - truth)
    return np.divide(gap, total, out=np.zeros_like(total), where=total != 0)


def smape(truth: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric mean absolute percentage error in % (0 to 200), 0 for a zero forecast of 0."""
    terms = symmetric_errors(truth, np.reshape(forecast, np.shape(truth)))
    return 200.0 * float(np.mean(terms))


def shown(value: float | None, unit: str = "") -> str:
    """A score as tables and lines show it: three significant digits; "-" when it was not
    scored (a record written before it was), "nan" when it cannot be (MASE of a zero scale)."""
    if value is None:
        return "-"
    return f"{value:.3g}{unit}" if value == value else "nan"


def scores_text(metrics: Metrics, coverage: Mapping[str, float] | None = None) -> str:
    """The scale-free scores in a few words: "MASE 0.81, sMAPE 9.3 %, 80 % interval covers
    79 %" (the first level's test coverage, when known)."""
    text = f"MASE {shown(metrics.mase)}, sMAPE {shown(metrics.smape, ' %')}"
    for level, share in list((coverage or {}).items())[:1]:
        text += f", {level} % interval covers {share:.0%}"
    return text


class LeastSquares:
    """Streaming least squares by incremental QR: as stable as lstsq, memory of one batch."""

    def __init__(self) -> None:
        self.r: np.ndarray | None = None
        self.n_targets = 1

    def add(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Rows of inputs and their targets: one column per target (step), fitted jointly."""
        targets = np.reshape(targets, (len(inputs), -1))
        self.n_targets = targets.shape[1]
        block = np.column_stack([inputs, np.ones(len(inputs)), targets])
        stacked = block if self.r is None else np.vstack([self.r, block])
        self.r = np.asarray(np.linalg.qr(stacked, mode="r"))  # R only: no Q to build

    def weights(self) -> np.ndarray:
        """(inputs + 1, targets): each column the inputs' weights then the intercept.

        R of [X 1 Y] holds every target's least-squares problem: R11 w = R12 column by
        column, one fit per step, from one pass over the data.
        """
        assert self.r is not None, "no rows were added"
        n_weights = self.r.shape[1] - self.n_targets
        weights, *_ = np.linalg.lstsq(self.r[:, :n_weights], self.r[:, n_weights:], rcond=None)
        return np.asarray(weights)


def persistence_forecast(inputs: np.ndarray, steps: int = 1) -> np.ndarray:
    """Tomorrow looks like today: each window's last value, at every step."""
    return np.repeat(np.asarray(inputs[:, -1:]), steps, axis=1)


def score_split(
    dataset: DatasetRef,
    store: DataDir,
    forecasters: Mapping[str, WindowForecaster],
    keep: int = SAMPLE_WINDOWS,
    errors_of: Sequence[str] = (),
    scale: float | None = None,
) -> tuple[dict[str, Metrics], dict[str, np.ndarray]]:
    """Metrics of each forecaster over the whole test split (MASE over `scale`), plus the
    first `keep` forecasts and, under "<name> errors", every absolute error of the
    forecasters `errors_of`."""
    totals = {name: ErrorTotals() for name in forecasters}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("start", "truth", *forecasters)}
    kept.update({f"{name} errors": [] for name in errors_of})
    seen = 0
    for starts, inputs, targets in iter_split(dataset, "test", store, BATCH_ROWS):
        room = max(keep - seen, 0)
        # Copies: even an empty slice of a chunk pins its whole row group (~8 MB) in memory.
        kept["start"].append(starts[:room].copy())
        kept["truth"].append(targets[:room].copy())
        for name, forecaster in forecasters.items():
            forecast = np.asarray(forecaster(inputs)).reshape(targets.shape)
            totals[name].add(targets, forecast)
            kept[name].append(forecast[:room].copy())
            if name in errors_of:
                kept[f"{name} errors"].append(np.abs(forecast - targets).astype(np.float32))
        seen += len(starts)
    sample = {name: np.concatenate(parts) for name, parts in kept.items() if parts}
    return {name: t.metrics(scale) for name, t in totals.items()}, sample


def keras_forecaster(model: Any) -> WindowForecaster:
    return functools.partial(model_forecast, model)
