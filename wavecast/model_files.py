"""A training's files (the Keras model, its history, its held-out forecasts) and loading them:
every model is loaded with safe_mode, and a panel's shared network once per process."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.config import ModelSpec, TrainSpec
from wavecast.engine import forecast_in_chunks, model_forecast, traced_forward
from wavecast.storage import DataDir

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
TRAINED_FILE = "trained.json"
UNTRAINED_FILE = "untrained_predictions.npy"
VALIDATION_FILE = "validation_predictions.npy"  # the twin's forecasts of the held-out windows


# A panel's global twin, trained without any series' held-out windows (global_network).
VALIDATION_MODEL_FILE = "validation.keras"
WEIGHTS_FILE = "weights.npz"  # a global network's Dense weights by layer name (global_serving)


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
    # A panel's global network (wavecast.global_network): its files are in `uri` itself,
    # shared by every series of the panel, and it has no per-series validation forecasts.
    shared: bool = False


def load_model(store: DataDir, *parts: str) -> keras.Model:
    """Load a stored model; safe_mode refuses any file that would run arbitrary code."""
    import keras

    with store.local_file(*parts) as path:
        return keras.saving.load_model(path, safe_mode=True)


def training_file(
    trained: TrainedRef, store: DataDir, name: str
) -> tuple[DataDir, tuple[str, ...]]:
    """Where one of a training's files is: in the series' data dir, or a shared network's own."""
    if trained.shared:
        return DataDir(trained.uri), (name,)
    return store, ("training", trained.train_id, name)


class SharedNetwork(NamedTuple):
    """A panel's network as loaded (in NumPy where its weights file allows: global_serving),
    and the file's bytes it was loaded from: a version serves it only while the version's
    own copy is the same bytes."""

    model: Any  # keras.Model | global_serving.NumpyGlobalNetwork, called alike
    file_bytes: bytes
    store: DataDir  # its directory, opened once


@functools.lru_cache(maxsize=4)
def shared_network(uri: str) -> SharedNetwork:
    """A panel's global network, loaded once per process for all the series that serve or
    forecast with it: its directory is content-addressed and never rewritten, so the loaded
    copy stays current. FileNotFoundError when it is gone."""
    from wavecast.global_serving import numpy_network

    store = DataDir(uri)
    file_bytes = store.read_bytes(MODEL_FILE)
    served = numpy_network(store.read_bytes(WEIGHTS_FILE)) if store.exists(WEIGHTS_FILE) else None
    return SharedNetwork(served or load_model(store, MODEL_FILE), file_bytes, store)


@functools.lru_cache(maxsize=4)
def shared_forecaster(uri: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A panel's network (or its twin) through one traced graph, for every series that
    scores it in its evaluation."""
    model = load_model(DataDir(uri), name)
    forward = traced_forward(model, model.input_shape[-1])
    return functools.partial(forecast_in_chunks, forward)


def trained_forecaster(trained: TrainedRef, store: DataDir) -> Callable[[np.ndarray], np.ndarray]:
    """The trained network's forecasts of raw windows, from its stored file."""
    if trained.shared:
        return shared_forecaster(trained.uri, MODEL_FILE)
    model = load_model(store, "training", trained.train_id, MODEL_FILE)
    return functools.partial(model_forecast, model)


def untrained_predictions(trained: TrainedRef, store: DataDir) -> np.ndarray:
    with store.local_file("training", trained.train_id, UNTRAINED_FILE) as path:
        return np.load(path, allow_pickle=False)


def validation_predictions(trained: TrainedRef, store: DataDir) -> np.ndarray:
    with store.local_file("training", trained.train_id, VALIDATION_FILE) as path:
        return np.load(path, allow_pickle=False)


def loss_history(trained: TrainedRef, store: DataDir) -> list[float]:
    store, parts = training_file(trained, store, HISTORY_FILE)
    payload: dict[str, Any] = store.read_json(*parts)
    return [float(v) for v in payload["loss"]]
