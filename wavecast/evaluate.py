"""Honest evaluation: the saved model and two naive baselines on the same test windows."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.memory import release_unused_memory
from wavecast.plots import plot_forecasts, plot_loss
from wavecast.storage import DataDir, code_fingerprint, stable_hash
from wavecast.train import (
    MODEL_FILE,
    TrainedRef,
    build_linear_model,
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
ERRORS_FILE = "test_abs_errors.npy"  # the published forecaster's |error| per window and step
LINEAR_MODEL_FILE = "linear.keras"  # the linear AR as a one-layer Keras model
LINEAR_MODEL = "linear (Keras)"


class StepMetrics(BaseModel):
    """Errors of one forecaster at one step ahead; non-finite values stay JSON strings."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    mse: float
    rmse: float
    mae: float


class Metrics(StepMetrics):
    """Errors over every step, and at each step (first the target `horizon` steps ahead)."""

    per_step: tuple[StepMetrics, ...] = ()


class Published(BaseModel):
    """The forecaster a version serves, and why: the network, or the linear AR where the
    network forecasts worse (a one-layer Keras model: same file, loading and forecasts)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    forecaster: Literal["network", "linear"] = "network"
    mse: float
    reason: str = ""


class Evaluation(BaseModel):
    """Test-split scores of the model and its baselines, the forecaster to publish, and where
    the plots are."""

    model_config = ConfigDict(frozen=True)

    uri: str
    evaluation_id: str
    train_id: str
    n_test: int
    metrics: Metrics
    baselines: dict[str, Metrics]
    published: Published
    plots: tuple[str, ...] = PLOTS


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


def linear_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """(windows, steps) forecasts of the weights fit_linear_ar returned."""
    weights = np.reshape(weights, (inputs.shape[1] + 1, -1))
    return np.asarray(inputs @ weights[:-1] + weights[-1])


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


def evaluate_trained(
    dataset: DatasetRef, trained: TrainedRef, data_dir: str, reuse: bool = False
) -> Evaluation:
    """Reload the saved model as a user would, score it and the baselines, and draw the plots.

    With `reuse`, a complete evaluation already at this content-addressed place is returned.
    """
    store = DataDir(data_dir)
    _, parts = evaluation_location(dataset, trained, data_dir)
    existing = store.completed_record(Evaluation, *parts, METRICS_FILE) if reuse else None
    if existing is not None:
        return existing
    release_unused_memory()
    solver = LeastSquares()
    for _, inputs, targets in iter_split(dataset, "train", data_dir, BATCH_ROWS):
        solver.add(inputs, targets)
    weights = solver.weights()
    release_unused_memory()
    model = load_model(data_dir, "training", trained.train_id, MODEL_FILE)
    linear_model = build_linear_model(weights)
    forecasters: dict[str, Forecaster] = {
        "model": keras_forecaster(model),
        "persistence": functools.partial(persistence_forecast, steps=dataset.spec.steps),
        "linear": functools.partial(linear_forecast, weights),
        LINEAR_MODEL: keras_forecaster(linear_model),
    }
    # Both servable forecasters keep their errors: which one serves is known after scoring.
    scores, sample = score_split(dataset, data_dir, forecasters, errors_of=("model", LINEAR_MODEL))
    network, linear = scores.pop("model"), scores.pop(LINEAR_MODEL)
    published = choose_forecaster(network, linear)
    evaluation = Evaluation(
        uri=store.uri(*parts),
        evaluation_id=parts[-1],
        train_id=trained.train_id,
        n_test=dataset.n_test,
        metrics=network,
        baselines=scores,
        published=published,
    )
    chosen = "model" if published.forecaster == "network" else LINEAR_MODEL
    starts, truth = sample["start"], sample["truth"]
    predictions, errors = sample[chosen], sample[f"{chosen} errors"]
    untrained = untrained_predictions(trained, data_dir)[: len(starts)]
    first = {name: sample[name][:, 0] for name in ("model", "persistence", "linear")}  # step 1
    with store.staged_dir(*parts) as staging:
        (staging / METRICS_FILE).write_text(evaluation.model_dump_json(indent=2))
        linear_model.save(staging / LINEAR_MODEL_FILE)
        np.save(staging / PREDICTIONS_FILE, predictions, allow_pickle=False)
        np.save(staging / ERRORS_FILE, errors, allow_pickle=False)
        plot_loss(loss_history(trained, data_dir), staging / PLOTS[0])
        plot_forecasts(starts, truth[:, 0], first, "Test forecasts", staging / PLOTS[1])
        plot_forecasts(
            starts[: len(untrained)],
            truth[: len(untrained), 0],
            {"untrained model": untrained.reshape(len(untrained), -1)[:, 0]},
            "Before training",
            staging / PLOTS[2],
        )
    return evaluation


def choose_forecaster(network: Metrics, linear: Metrics) -> Published:
    """The network unless the linear AR forecasts the test split better (or the network's
    score is not a number): never publish worse than a baseline anyone can fit in one line."""
    if network.mse <= linear.mse:
        reason = f"network test MSE {network.mse:.3g} <= linear AR {linear.mse:.3g}"
        return Published(forecaster="network", mse=network.mse, reason=reason)
    reason = f"linear AR test MSE {linear.mse:.3g} < network {network.mse:.3g}"
    return Published(forecaster="linear", mse=linear.mse, reason=reason)


def stored_predictions(evaluation: Evaluation, data_dir: str) -> np.ndarray:
    """The published forecaster's test forecasts, as scored."""
    store = DataDir(data_dir)
    with store.local_file("evaluations", evaluation.evaluation_id, PREDICTIONS_FILE) as path:
        return np.load(path, allow_pickle=False)


def evaluation_location(
    dataset: DatasetRef, trained: TrainedRef, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    return data_dir, ("evaluations", stable_hash(trained.train_id, code_fingerprint(__name__)))


def metrics_table(evaluation: Evaluation) -> list[dict[str, float | str]]:
    """Rows of model vs baselines, the shape Prefect's table artifact and the CLI both show."""
    named = {"model": evaluation.metrics, **evaluation.baselines}
    return [{"forecaster": name, **m.model_dump(exclude={"per_step"})} for name, m in named.items()]
