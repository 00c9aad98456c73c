"""Build and fit the recurrent forecaster; Keras is imported only when training really runs."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, ConfigDict

from tasks.config import ModelSpec, TrainSpec
from tasks.prefect_support import content_cache
from tasks.storage import DataDir, stable_hash
from tasks.windows import DatasetRef, read_split

if TYPE_CHECKING:
    import keras

EpochCallback = Callable[[int, float], None]
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
UNTRAINED_FILE = "untrained_predictions.npy"


class TrainedRef(BaseModel):
    """A trained model on disk and how it got there."""

    model_config = ConfigDict(frozen=True)

    train_id: str
    uri: str
    dataset_id: str
    model: ModelSpec
    train: TrainSpec
    epochs_run: int
    final_loss: float
    seconds: float


def scaling_for(spec: ModelSpec, train_inputs: np.ndarray) -> tuple[float, float]:
    """(offset, scale) the model standardizes with; (0, 1) leaves inputs as they are."""
    std = float(train_inputs.std())
    in_unit_range = bool(np.abs(train_inputs).max() <= 5.0)
    if spec.scaling == "none" or (spec.scaling == "auto" and in_unit_range) or std == 0.0:
        return 0.0, 1.0
    return float(train_inputs.mean()), std


def build_model(spec: ModelSpec, input_len: int, mean: float, scale: float) -> keras.Model:
    """Raw window in, raw forecast out: scaling is part of the saved model, not the caller."""
    import keras

    cells = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    window = keras.Input(shape=(input_len,), name="window")
    hidden = keras.layers.Rescaling(1 / scale, offset=-mean / scale, name="standardize")(window)
    hidden = keras.layers.Reshape((input_len, 1), name="as_sequence")(hidden)
    hidden = cells[spec.cell](spec.units, name=spec.cell)(hidden)
    hidden = keras.layers.Dense(1, name="forecast")(hidden)
    forecast = keras.layers.Rescaling(scale, offset=mean, name="to_series_scale")(hidden)
    return keras.Model(window, forecast, name=f"wavecast_{spec.cell}")


def fit_model(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    spec: TrainSpec,
    on_epoch: EpochCallback | None = None,
) -> list[float]:
    """`model.fit` with the configured batches; one graph call per epoch instead of per step."""
    import keras

    steps_per_epoch = math.ceil(len(inputs) / spec.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate),
        loss="mse",
        steps_per_execution=steps_per_epoch,
    )
    callbacks: list[keras.callbacks.Callback] = []
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch(epoch, float(logs["loss"]))
            )
        )
    history = model.fit(
        inputs,
        targets,
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return [float(v) for v in history.history["loss"]]


def training_location(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    identity = stable_hash(dataset.dataset_id, model.model_dump_json(), train.model_dump_json())
    return data_dir, ("training", identity)


def train_on_dataset(
    dataset: DatasetRef,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    data_dir: str,
    on_epoch: EpochCallback | None = None,
) -> TrainedRef:
    """Seed, fit on the train split, and store the model, its loss curve and its untrained guess."""
    import keras

    began = time.perf_counter()
    _, train_x, train_y = read_split(dataset, "train", data_dir)
    _, test_x, _ = read_split(dataset, "test", data_dir)
    keras.utils.set_random_seed(train_spec.seed)
    model = build_model(model_spec, dataset.spec.input_len, *scaling_for(model_spec, train_x))
    untrained = model.predict(test_x, verbose=0).reshape(-1)
    losses = fit_model(model, train_x, train_y, train_spec, on_epoch)
    _, parts = training_location(dataset, model_spec, train_spec, data_dir)
    store = DataDir(data_dir)
    with store.staged_dir(*parts) as staging:
        model.save(staging / MODEL_FILE)
        (staging / HISTORY_FILE).write_text(json.dumps({"loss": losses}))
        np.save(staging / UNTRAINED_FILE, untrained, allow_pickle=False)
    return TrainedRef(
        train_id=parts[-1],
        uri=store.uri(*parts),
        dataset_id=dataset.dataset_id,
        model=model_spec,
        train=train_spec,
        epochs_run=len(losses),
        final_loss=losses[-1],
        seconds=round(time.perf_counter() - began, 3),
    )


def load_model(data_dir: str, *parts: str) -> keras.Model:
    """Load a stored model; safe_mode refuses any file that would run arbitrary code."""
    import keras

    with DataDir(data_dir).local_file(*parts) as path:
        return keras.saving.load_model(path, safe_mode=True)


def epoch_reporter(epochs: int, min_interval_s: float = 1.0) -> EpochCallback:
    """Every epoch's loss to the run log; progress to an artifact at most once a second."""
    logger = get_run_logger()
    progress_id = create_progress_artifact(
        progress=0.0, key="wavecast-training", description="Training epochs completed (%)"
    )
    assert isinstance(progress_id, UUID), "called from a synchronous task"
    last_update = time.monotonic()

    def report(epoch: int, loss: float) -> None:
        nonlocal last_update
        done = epoch + 1
        logger.info("epoch %d/%d loss %.6g", done, epochs, loss)
        if done == epochs or time.monotonic() - last_update >= min_interval_s:
            update_progress_artifact(progress_id, progress=100.0 * done / epochs)
            last_update = time.monotonic()

    return report


@task(name="train-model", **content_cache(training_location))
def train_model(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, data_dir: str
) -> TrainedRef:
    trained = train_on_dataset(dataset, model, train, data_dir, epoch_reporter(train.epochs))
    get_run_logger().info(
        "Trained %s in %.1f s, final loss %.3g",
        trained.train_id,
        trained.seconds,
        trained.final_loss,
    )
    return trained


def untrained_predictions(trained: TrainedRef, data_dir: str) -> np.ndarray:
    store = DataDir(data_dir)
    with store.local_file("training", trained.train_id, UNTRAINED_FILE) as path:
        return np.load(path, allow_pickle=False)


def loss_history(trained: TrainedRef, data_dir: str) -> list[float]:
    payload: dict[str, Any] = DataDir(data_dir).read_json(
        "training", trained.train_id, HISTORY_FILE
    )
    return [float(v) for v in payload["loss"]]
