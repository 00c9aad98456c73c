"""Honest evaluation: the saved model and two naive baselines on the same test windows."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.memory import release_unused_memory
from wavecast.plots import plot_forecasts, plot_loss
from wavecast.storage import DataDir, code_fingerprint, stable_hash
from wavecast.train import (
    MODEL_FILE,
    TrainedRef,
    load_model,
    loss_history,
    model_forecast,
    untrained_predictions,
)
from wavecast.windows import DatasetRef, iter_split

PLOTS = ("loss.png", "predictions.png", "untrained.png")
BATCH_ROWS = 1 << 16  # windows per batch when streaming a split
SAMPLE_WINDOWS = 2000  # test windows kept for plots and the publish round-trip check
Forecaster = Callable[[np.ndarray], np.ndarray]
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.npy"


class Metrics(BaseModel):
    """Errors of one forecaster on one split; non-finite values stay standard JSON strings."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    mse: float
    rmse: float
    mae: float


class Evaluation(BaseModel):
    """Test-split scores of the model and its baselines, and where the plots are."""

    model_config = ConfigDict(frozen=True)

    uri: str
    evaluation_id: str
    train_id: str
    n_test: int
    metrics: Metrics
    baselines: dict[str, Metrics]
    plots: tuple[str, ...] = PLOTS


@dataclass
class ErrorTotals:
    """Running sums of errors, so metrics over any number of batches need O(1) memory."""

    squared: float = 0.0
    absolute: float = 0.0
    count: int = 0

    def add(self, truth: np.ndarray, forecast: np.ndarray) -> None:
        errors = np.asarray(forecast, dtype=np.float64).reshape(-1) - np.asarray(truth).reshape(-1)
        self.squared += float(errors @ errors)
        self.absolute += float(np.abs(errors).sum())
        self.count += len(errors)

    def metrics(self) -> Metrics:
        mse = self.squared / self.count
        return Metrics(mse=mse, rmse=math.sqrt(mse), mae=self.absolute / self.count)


def regression_metrics(truth: np.ndarray, forecast: np.ndarray) -> Metrics:
    totals = ErrorTotals()
    totals.add(truth, forecast)
    return totals.metrics()


class LeastSquares:
    """Streaming least squares by incremental QR: as stable as lstsq, memory of one batch."""

    def __init__(self) -> None:
        self.r: np.ndarray | None = None

    def add(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        block = np.column_stack([inputs, np.ones(len(inputs)), targets])
        stacked = block if self.r is None else np.vstack([self.r, block])
        self.r = np.asarray(np.linalg.qr(stacked, mode="r"))  # R only: no Q to build

    def weights(self) -> np.ndarray:
        """Weights of the inputs, then the intercept."""
        assert self.r is not None, "no rows were added"
        n_weights = self.r.shape[1] - 1
        weights, *_ = np.linalg.lstsq(self.r[:, :n_weights], self.r[:, n_weights], rcond=None)
        return np.asarray(weights)


def persistence_forecast(inputs: np.ndarray) -> np.ndarray:
    """Tomorrow looks like today: each window's last value."""
    return np.asarray(inputs[:, -1])


def fit_linear_ar(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares weights (last one the intercept) of a linear autoregression."""
    solver = LeastSquares()
    solver.add(inputs, targets)
    return solver.weights()


def linear_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    return np.asarray(inputs @ weights[:-1] + weights[-1])


def score_split(
    dataset: DatasetRef,
    data_dir: str,
    forecasters: Mapping[str, Forecaster],
    keep: int = SAMPLE_WINDOWS,
) -> tuple[dict[str, Metrics], dict[str, np.ndarray]]:
    """Metrics of each forecaster over the whole test split, plus the first `keep` forecasts."""
    totals = {name: ErrorTotals() for name in forecasters}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("start", "truth", *forecasters)}
    seen = 0
    for starts, inputs, targets in iter_split(dataset, "test", data_dir, BATCH_ROWS):
        room = max(keep - seen, 0)
        # Copies: even an empty slice of a chunk pins its whole row group (~8 MB) in memory.
        kept["start"].append(starts[:room].copy())
        kept["truth"].append(targets[:room].copy())
        for name, forecaster in forecasters.items():
            forecast = np.asarray(forecaster(inputs)).reshape(-1)
            totals[name].add(targets, forecast)
            kept[name].append(forecast[:room].copy())
        seen += len(starts)
    sample = {name: np.concatenate(parts) for name, parts in kept.items()}
    return {name: t.metrics() for name, t in totals.items()}, sample


def keras_forecaster(model: Any) -> Forecaster:
    return functools.partial(model_forecast, model)


def evaluate_trained(dataset: DatasetRef, trained: TrainedRef, data_dir: str) -> Evaluation:
    """Reload the saved model as a user would, score it and the baselines, and draw the plots."""
    release_unused_memory()
    solver = LeastSquares()
    for _, inputs, targets in iter_split(dataset, "train", data_dir, BATCH_ROWS):
        solver.add(inputs, targets)
    weights = solver.weights()
    release_unused_memory()
    model = load_model(data_dir, "training", trained.train_id, MODEL_FILE)
    forecasters: dict[str, Forecaster] = {
        "model": keras_forecaster(model),
        "persistence": persistence_forecast,
        "linear": functools.partial(linear_forecast, weights),
    }
    scores, sample = score_split(dataset, data_dir, forecasters)
    store = DataDir(data_dir)
    _, parts = evaluation_location(dataset, trained, data_dir)
    evaluation = Evaluation(
        uri=store.uri(*parts),
        evaluation_id=parts[-1],
        train_id=trained.train_id,
        n_test=dataset.n_test,
        metrics=scores.pop("model"),
        baselines=scores,
    )
    starts, truth = sample.pop("start"), sample.pop("truth")
    untrained = untrained_predictions(trained, data_dir)[: len(starts)]
    with store.staged_dir(*parts) as staging:
        (staging / METRICS_FILE).write_text(evaluation.model_dump_json(indent=2))
        np.save(staging / PREDICTIONS_FILE, sample["model"], allow_pickle=False)
        plot_loss(loss_history(trained, data_dir), staging / PLOTS[0])
        plot_forecasts(starts, truth, sample, "Test forecasts", staging / PLOTS[1])
        untrained_plot = {"untrained model": untrained}
        plot_forecasts(
            starts[: len(untrained)],
            truth[: len(untrained)],
            untrained_plot,
            "Before training",
            staging / PLOTS[2],
        )
    return evaluation


def stored_predictions(evaluation: Evaluation, data_dir: str) -> np.ndarray:
    """The evaluated model's test forecasts, as scored."""
    store = DataDir(data_dir)
    with store.local_file("evaluations", evaluation.evaluation_id, PREDICTIONS_FILE) as path:
        return np.load(path, allow_pickle=False)


def evaluation_location(
    dataset: DatasetRef, trained: TrainedRef, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    return data_dir, ("evaluations", stable_hash(trained.train_id, code_fingerprint(__name__)))


def metrics_table(evaluation: Evaluation) -> list[dict[str, float | str]]:
    """Rows of model vs baselines, the shape Prefect's table artifact and the CLI both show."""
    rows: list[dict[str, float | str]] = [
        {"forecaster": "model", **evaluation.metrics.model_dump()}
    ]
    rows += [{"forecaster": k, **m.model_dump()} for k, m in evaluation.baselines.items()]
    return rows
