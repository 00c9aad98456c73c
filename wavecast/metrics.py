"""Errors of forecasts (streamed over a split in O(1) memory) and the two baselines every
champion must beat: persistence and the linear AR, fitted by streaming least squares."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.engine import model_forecast
from wavecast.windows import DatasetRef, iter_split

BATCH_ROWS = 1 << 16  # windows per batch when streaming a split
SAMPLE_WINDOWS = 2000  # test windows kept for plots and the publish round-trip check
Forecaster = Callable[[np.ndarray], np.ndarray]


class StepMetrics(BaseModel):
    """Errors of one forecaster at one step ahead; non-finite values stay JSON strings."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    mse: float
    rmse: float
    mae: float


class Metrics(StepMetrics):
    """Errors over every step, and at each step (first the target `horizon` steps ahead)."""

    per_step: tuple[StepMetrics, ...] = ()


@dataclass
class ErrorTotals:
    """Running sums of errors per step, so metrics over any number of batches need O(1) memory."""

    squared: np.ndarray = field(default_factory=lambda: np.zeros(0))
    absolute: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rows: int = 0

    def add(self, truth: np.ndarray, forecast: np.ndarray) -> None:
        """Add (windows, steps) forecasts and truth; 1-D arrays are one step."""
        truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
        errors = np.asarray(forecast, dtype=np.float64).reshape(truth.shape) - truth
        if self.rows == 0:
            self.squared, self.absolute = np.zeros(truth.shape[1]), np.zeros(truth.shape[1])
        self.squared = self.squared + np.einsum("ij,ij->j", errors, errors)
        self.absolute = self.absolute + np.abs(errors).sum(axis=0)
        self.rows += len(errors)

    def metrics(self) -> Metrics:
        steps = [
            scores(float(sq), float(ab), self.rows)
            for sq, ab in zip(self.squared, self.absolute, strict=True)
        ]
        overall = scores(
            float(self.squared.sum()), float(self.absolute.sum()), self.rows * len(steps)
        )
        return Metrics(**overall.model_dump(), per_step=tuple(steps))


def scores(squared: float, absolute: float, count: int) -> StepMetrics:
    mse = squared / count
    return StepMetrics(mse=mse, rmse=math.sqrt(mse), mae=absolute / count)


def regression_metrics(truth: np.ndarray, forecast: np.ndarray) -> Metrics:
    totals = ErrorTotals()
    totals.add(truth, forecast)
    return totals.metrics()


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


def fit_linear_ar(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares weights (last one the intercept) of a linear autoregression."""
    solver = LeastSquares()
    solver.add(inputs, targets)
    return solver.weights()


def score_split(
    dataset: DatasetRef,
    data_dir: str,
    forecasters: Mapping[str, Forecaster],
    keep: int = SAMPLE_WINDOWS,
    errors_of: Sequence[str] = (),
) -> tuple[dict[str, Metrics], dict[str, np.ndarray]]:
    """Metrics of each forecaster over the whole test split, plus the first `keep` forecasts
    and, under "<name> errors", every absolute error of the forecasters `errors_of`."""
    totals = {name: ErrorTotals() for name in forecasters}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("start", "truth", *forecasters)}
    kept.update({f"{name} errors": [] for name in errors_of})
    seen = 0
    for starts, inputs, targets in iter_split(dataset, "test", data_dir, BATCH_ROWS):
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
    return {name: t.metrics() for name, t in totals.items()}, sample


def keras_forecaster(model: Any) -> Forecaster:
    return functools.partial(model_forecast, model)
