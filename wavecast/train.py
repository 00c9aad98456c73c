"""The training stage: fit a series' network on its windows dataset and store the training.

Small train splits are fitted in memory by the engine's `Trainer` (a process's
`TrainingEngine` builds and traces each graph once for thousands of series); larger ones
(STREAM_ABOVE_VALUES) are streamed from the Parquet dataset by `fit_stream` on a model of
their own, so memory stays bounded whatever the series length. The architectures are in
`architectures`, the loop in `engine`, the files and their loading in `model_files`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wavecast.architectures import (
    build_model,
    scaling_for,
    streamed_scaling,
)
from wavecast.cache_keys import cache_version, stable_hash
from wavecast.candidates import validation_size
from wavecast.config import ModelSpec, TrainSpec
from wavecast.engine import (
    EpochCallback,
    TrainingEngine,
    epoch_rng,
    fit_stream,
    model_forecast,
)
from wavecast.home import SeriesHome
from wavecast.memory import release_unused_memory
from wavecast.model_files import (
    HISTORY_FILE,
    MODEL_FILE,
    TRAINED_FILE,
    UNTRAINED_FILE,
    VALIDATION_FILE,
    TrainedRef,
)
from wavecast.storage import DataDir
from wavecast.windows import (
    DatasetRef,
    head_of_split,
    iter_split,
    read_split,
    shuffled_batches,
)

if TYPE_CHECKING:
    import keras

STREAM_ABOVE_VALUES = 1 << 23  # train windows x input_len beyond which training streams
UNTRAINED_WINDOWS = 10_000  # test windows the untrained model forecasts (the first ones)


def trains_streaming(n_train: int, input_len: int, stream_above: int = STREAM_ABOVE_VALUES) -> bool:
    """Whether a train split is too large to hold in memory, so it is streamed from Parquet."""
    return n_train * input_len > stream_above


def training_location(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, home: SeriesHome
) -> tuple[str, tuple[str, ...]]:
    version = cache_version("train")
    identity = stable_hash(
        dataset.dataset_id, model.model_dump_json(), train.model_dump_json(), version
    )
    return home.uri(), ("training", identity)


def completed_training(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, home: SeriesHome
) -> TrainedRef | None:
    """The training already complete at this content-addressed place, if there is one."""
    _, parts = training_location(dataset, model, train, home)
    return home.store.completed_record(TrainedRef, *parts, TRAINED_FILE)


def untrained_forecast(
    forecast: Callable[[np.ndarray], np.ndarray], dataset: DatasetRef, store: DataDir
) -> np.ndarray:
    """The untrained model on the first UNTRAINED_WINDOWS test windows (all of a small split)."""
    _, test_x, _ = head_of_split(dataset, "test", store, UNTRAINED_WINDOWS)
    return forecast(test_x)


def validation_twin(
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    train_x: np.ndarray,
    train_y: np.ndarray,
    engine: TrainingEngine | None = None,
) -> np.ndarray:
    """The network's validation forecasts: the same recipe, seed and epochs fitted without the
    train split's last validation_size windows, then forecasting them. Only the network needs
    a second fit to be scored as the other candidates are; the one it publishes saw them all.
    """
    held_out = validation_size(len(train_x))
    steps = np.reshape(train_y, (len(train_x), -1)).shape[1]
    if held_out == 0:
        return np.empty((0, steps))
    fit_x, fit_y = train_x[:-held_out], train_y[:-held_out]
    engine = TrainingEngine() if engine is None else engine
    scaling = scaling_for(model_spec, fit_x)
    twin = engine.trainer(model_spec, train_spec, train_x.shape[1], steps, scaling)
    twin.fit(fit_x, fit_y, train_spec.epochs)
    return twin.forecast(train_x[-held_out:])


def train_on_dataset(
    dataset: DatasetRef,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    home: SeriesHome,
    on_epoch: EpochCallback | None = None,
    stream_above: int = STREAM_ABOVE_VALUES,
    reuse: bool = False,
    engine: TrainingEngine | None = None,
) -> TrainedRef:
    """Seed, fit on the train split, and store the model, its loss curve and its untrained guess.

    A train split of at most `stream_above` input values (windows x input_len) is fitted in
    memory with model.fit's exact batches, by `engine`'s trainer (a new engine's without
    one); a larger one is streamed from Parquet in block-shuffled batches, with its scaling
    computed in one streaming pass, on a model of its own. The untrained guess covers the
    first UNTRAINED_WINDOWS test windows (all of them for a small split). With `reuse`, a
    complete training already at this content-addressed place is returned.
    """
    _, parts = training_location(dataset, model_spec, train_spec, home)
    store = home.store
    existing = completed_training(dataset, model_spec, train_spec, home) if reuse else None
    if existing is not None:
        return existing
    release_unused_memory()  # what earlier stages freed, before TensorFlow adds its ~450 MB
    began = time.perf_counter()
    if trains_streaming(dataset.n_train, dataset.spec.input_len, stream_above):
        fitted = fit_streamed(dataset, model_spec, train_spec, store, on_epoch)
    else:
        engine = TrainingEngine() if engine is None else engine
        fitted = fit_in_memory(dataset, model_spec, train_spec, store, on_epoch, engine)
    trained = TrainedRef(
        train_id=parts[-1],
        uri=store.uri(*parts),
        dataset_id=dataset.dataset_id,
        model=model_spec,
        train=train_spec,
        epochs_run=len(fitted.losses),
        final_loss=fitted.losses[-1],
        seconds=round(time.perf_counter() - began, 3),
    )
    with store.staged_dir(*parts) as staging:
        fitted.model.save(staging / MODEL_FILE)
        (staging / HISTORY_FILE).write_text(json.dumps({"loss": fitted.losses}))
        np.save(staging / UNTRAINED_FILE, fitted.untrained, allow_pickle=False)
        np.save(staging / VALIDATION_FILE, fitted.validation, allow_pickle=False)
        (staging / TRAINED_FILE).write_text(trained.model_dump_json())
    return trained


@dataclass(frozen=True)
class Fitted:
    """A fitted model and what train_on_dataset stores beside it."""

    model: keras.Model
    losses: list[float]
    untrained: np.ndarray
    validation: np.ndarray


def fit_in_memory(
    dataset: DatasetRef,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    store: DataDir,
    on_epoch: EpochCallback | None,
    engine: TrainingEngine,
) -> Fitted:
    """The validation twin, then the published model, on the engine's trainer: the twin goes
    first because both reuse the same model, which must hold the published weights at the end.
    """
    _, train_x, train_y = read_split(dataset, "train", store)
    validation = validation_twin(model_spec, train_spec, train_x, train_y, engine)
    input_len, steps = dataset.spec.input_len, dataset.spec.steps
    scaling = scaling_for(model_spec, train_x)
    trainer = engine.trainer(model_spec, train_spec, input_len, steps, scaling)
    untrained = untrained_forecast(trainer.forecast, dataset, store)
    losses = trainer.fit(train_x, train_y, train_spec.epochs, on_epoch)
    return Fitted(trainer.model, losses, untrained, validation)


def fit_streamed(
    dataset: DatasetRef,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    store: DataDir,
    on_epoch: EpochCallback | None,
) -> Fitted:
    """A split too large for memory, streamed from Parquet in block-shuffled batches on a model
    of its own (few series are this long, so none shares it); it is not fitted twice."""
    import keras

    input_len, steps = dataset.spec.input_len, dataset.spec.steps
    chunks = (x for _, x, _ in iter_split(dataset, "train", store))
    scaling = streamed_scaling(model_spec, chunks)
    release_unused_memory()
    keras.utils.set_random_seed(train_spec.seed)
    model = build_model(model_spec, input_len, *scaling, seed=train_spec.seed, steps=steps)
    untrained = untrained_forecast(functools.partial(model_forecast, model), dataset, store)
    release_unused_memory()

    def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = epoch_rng(train_spec.seed, epoch)
        size = train_spec.batch_size
        return shuffled_batches(dataset, "train", store, size, rng, np.float32)

    losses = fit_stream(model, batches, (input_len, steps), train_spec, on_epoch)
    return Fitted(model, losses, untrained, np.full((0, steps), np.nan))
