"""Honest evaluation: the saved model and two naive baselines on the same test windows."""

from __future__ import annotations

import json
import math

import numpy as np
from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict

from tasks.plots import plot_forecasts, plot_loss
from tasks.prefect_support import IO_RETRIES, content_cache
from tasks.storage import DataDir
from tasks.train import MODEL_FILE, TrainedRef, load_model, loss_history, untrained_predictions
from tasks.windows import DatasetRef, read_split

PLOTS = ("loss.png", "predictions.png", "untrained.png")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.npy"


class Metrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    mse: float
    rmse: float
    mae: float


class Evaluation(BaseModel):
    """Test-split scores of the model and its baselines, and where the plots are."""

    model_config = ConfigDict(frozen=True)

    uri: str
    train_id: str
    n_test: int
    metrics: Metrics
    baselines: dict[str, Metrics]
    plots: tuple[str, ...] = PLOTS


def regression_metrics(truth: np.ndarray, forecast: np.ndarray) -> Metrics:
    errors = np.asarray(forecast, dtype=np.float64).reshape(-1) - np.asarray(truth).reshape(-1)
    mse = float(np.mean(errors**2))
    return Metrics(mse=mse, rmse=math.sqrt(mse), mae=float(np.mean(np.abs(errors))))


def persistence_forecast(inputs: np.ndarray) -> np.ndarray:
    """Tomorrow looks like today: each window's last value."""
    return np.asarray(inputs[:, -1])


def fit_linear_ar(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares weights (last one the intercept) of a linear autoregression."""
    design = np.column_stack([inputs, np.ones(len(inputs))])
    weights, *_ = np.linalg.lstsq(design, targets, rcond=None)
    return np.asarray(weights)


def linear_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    return np.asarray(inputs @ weights[:-1] + weights[-1])


def baseline_forecasts(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray
) -> dict[str, np.ndarray]:
    """The yardsticks a forecaster must beat, fitted on train only and scored on test."""
    return {
        "persistence": persistence_forecast(test_x),
        "linear": linear_forecast(fit_linear_ar(train_x, train_y), test_x),
    }


def evaluate_trained(dataset: DatasetRef, trained: TrainedRef, data_dir: str) -> Evaluation:
    """Reload the saved model as a user would, score it and the baselines, and draw the plots."""
    _, train_x, train_y = read_split(dataset, "train", data_dir)
    starts, test_x, test_y = read_split(dataset, "test", data_dir)
    model = load_model(data_dir, "training", trained.train_id, MODEL_FILE)
    forecast = model.predict(test_x, verbose=0).reshape(-1)
    baselines = baseline_forecasts(train_x, train_y, test_x)
    store = DataDir(data_dir)
    parts = ("evaluations", trained.train_id)
    evaluation = Evaluation(
        uri=store.uri(*parts),
        train_id=trained.train_id,
        n_test=len(test_y),
        metrics=regression_metrics(test_y, forecast),
        baselines={name: regression_metrics(test_y, f) for name, f in baselines.items()},
    )
    with store.staged_dir(*parts) as staging:
        (staging / METRICS_FILE).write_text(evaluation.model_dump_json(indent=2))
        np.save(staging / PREDICTIONS_FILE, forecast, allow_pickle=False)
        plot_loss(loss_history(trained, data_dir), staging / PLOTS[0])
        plot_forecasts(
            starts, test_y, {"model": forecast, **baselines}, "Test forecasts", staging / PLOTS[1]
        )
        untrained = {"untrained model": untrained_predictions(trained, data_dir)}
        plot_forecasts(starts, test_y, untrained, "Before training", staging / PLOTS[2])
    return evaluation


def stored_predictions(evaluation: Evaluation, data_dir: str) -> np.ndarray:
    """The evaluated model's test forecasts, as scored."""
    with DataDir(data_dir).local_file("evaluations", evaluation.train_id, PREDICTIONS_FILE) as path:
        return np.load(path, allow_pickle=False)


def evaluation_location(
    dataset: DatasetRef, trained: TrainedRef, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    return data_dir, ("evaluations", trained.train_id)


def metrics_table(evaluation: Evaluation) -> list[dict[str, float | str]]:
    """Rows of model vs baselines, the shape Prefect's table artifact and the CLI both show."""
    rows: list[dict[str, float | str]] = [
        {"forecaster": "model", **evaluation.metrics.model_dump()}
    ]
    rows += [{"forecaster": k, **m.model_dump()} for k, m in evaluation.baselines.items()]
    return rows


@task(name="evaluate-model", **content_cache(evaluation_location), **IO_RETRIES)
def evaluate_model(dataset: DatasetRef, trained: TrainedRef, data_dir: str) -> Evaluation:
    evaluation = evaluate_trained(dataset, trained, data_dir)
    get_run_logger().info("Test metrics: %s", json.dumps(metrics_table(evaluation)))
    return evaluation
