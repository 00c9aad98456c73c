"""Build and fit the recurrent forecaster; Keras is imported only when training really runs.

Small train splits are fitted in memory by a `Trainer`: model.fit's exact batches and update,
one compiled graph call per epoch. A `TrainingEngine` keeps one trainer per architecture and
shapes, so a process training thousands of series builds and traces each graph once and resets
weights, optimizer and scaling per series. Larger splits (STREAM_ABOVE_VALUES) are streamed from
the Parquet dataset by `fit_stream` on a model of their own, so memory stays bounded whatever
the series length.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.candidates import validation_size
from wavecast.config import ModelSpec, TrainSpec
from wavecast.memory import release_unused_memory
from wavecast.storage import DataDir, cache_version, stable_hash
from wavecast.windows import (
    DatasetRef,
    head_of_split,
    iter_split,
    read_split,
    shuffled_batches,
)

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

EpochCallback = Callable[[int, float], None]
EpochFunction = Callable[["tf.Tensor", "tf.Tensor", "tf.Tensor"], "tf.Tensor"]
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
TRAINED_FILE = "trained.json"
UNTRAINED_FILE = "untrained_predictions.npy"
VALIDATION_FILE = "validation_predictions.npy"  # the twin's forecasts of the held-out windows
# A panel's global twin, trained without any series' held-out windows (global_network).
VALIDATION_MODEL_FILE = "validation.keras"
STREAM_ABOVE_VALUES = 1 << 23  # train windows x input_len beyond which training streams
# Recurrent layers over windows at most this long are unrolled (measured faster on CPU).
UNROLL_MAX_STEPS = {"simple": 32, "lstm": 5, "gru": 5}
FORECAST_BATCH = 4096
TF_SEED_MODULUS = 2**31 - 1  # tensorflow.python.framework.random_seed truncates seeds to it
UNTRAINED_WINDOWS = 10_000  # test windows the untrained model forecasts (the first ones)


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


@dataclass(frozen=True)
class Moments:
    """Count, mean, sum of squared deviations and largest magnitude of values seen so far."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    max_abs: float = 0.0

    def add(self, values: np.ndarray) -> Moments:
        """Merge a chunk (Chan et al.'s parallel update): stable for any number of chunks."""
        if values.size == 0:
            return self
        mean = float(values.mean())
        m2 = float(np.square(values - mean).sum())
        count = self.count + values.size
        delta = mean - self.mean
        return Moments(
            count=count,
            mean=self.mean + delta * values.size / count,
            m2=self.m2 + m2 + delta**2 * self.count * values.size / count,
            max_abs=max(self.max_abs, float(np.abs(values).max())),
        )

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


def choose_scaling(spec: ModelSpec, mean: float, std: float, max_abs: float) -> tuple[float, float]:
    """(offset, scale) the model standardizes with; (0, 1) leaves inputs as they are."""
    if spec.scaling == "none" or (spec.scaling == "auto" and max_abs <= 5.0) or std == 0.0:
        return 0.0, 1.0
    return mean, std


def network_inputs(spec: ModelSpec, windows: np.ndarray) -> np.ndarray:
    """What the recurrent net reads: the window as is, or relative to its last value."""
    return windows - windows[:, -1:] if spec.recipe == "relative" else windows


def scaling_for(spec: ModelSpec, train_inputs: np.ndarray) -> tuple[float, float]:
    """Scaling from train inputs held in memory."""
    seen = network_inputs(spec, train_inputs)
    std, max_abs = float(seen.std()), float(np.abs(seen).max())
    return choose_scaling(spec, float(seen.mean()), std, max_abs)


def streamed_scaling(spec: ModelSpec, chunks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Scaling from train inputs read chunk by chunk, never all at once."""
    if spec.scaling == "none":
        return 0.0, 1.0
    moments = Moments()
    for chunk in chunks:
        moments = moments.add(network_inputs(spec, chunk))
    return choose_scaling(spec, moments.mean, moments.std, moments.max_abs)


def initializer_seeds(cell: str, seed: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seeded arguments for the recurrent layer and the dense layer, drawn as Keras draws them.

    Unseeded, Keras seeds each initializer from Python's global `random`, which any thread
    may advance between keras.utils.set_random_seed and the layers' creation (Prefect's
    websocket keepalives do), so the same seed could give other weights. The same sequence
    drawn from a private Random(seed), in Keras' own order, gives the weights a quiet process
    gets, every time.
    """
    if seed is None:
        return {}, {}
    import keras

    draws = random.Random(seed)

    def draw() -> int:
        return draws.randint(1, int(1e9))  # keras.random.make_default_seed

    glorot, orthogonal = keras.initializers.GlorotUniform, keras.initializers.Orthogonal
    if cell == "simple":  # its cell makes its dropout seed generator first
        recurrent = {"seed": draw(), "kernel_initializer": glorot(seed=draw())}
        recurrent["recurrent_initializer"] = orthogonal(seed=draw())
    else:
        recurrent = {"kernel_initializer": glorot(seed=draw())}
        recurrent["recurrent_initializer"] = orthogonal(seed=draw())
        recurrent["seed"] = draw()
    return recurrent, {"kernel_initializer": glorot(seed=draw())}


def build_model(
    spec: ModelSpec,
    input_len: int,
    mean: float,
    scale: float,
    seed: int | None = None,
    steps: int = 1,
) -> keras.Model:
    """Raw window in, `steps` raw forecasts out (direct multi-output): scaling is part of the
    saved model, not the caller, and only Keras' own layers are used, so it loads anywhere
    with safe_mode. The scaling is held in weights (set_scaling), so a reused model takes
    another series' scaling without being rebuilt.

    With `seed`, the initial weights are those keras.utils.set_random_seed(seed) gives in a
    quiet process, whatever other threads do (see initializer_seeds). Short windows are
    unrolled (UNROLL_MAX_STEPS, by cell): the same arithmetic without a while-loop per step,
    about 3x faster for the tutorial's SimpleRNN(100) over 5 steps.
    """
    import keras

    window = keras.Input(shape=(input_len,), name="window")
    forecast = RECIPES[spec.recipe](spec, window, seed, steps)
    model = keras.Model(window, forecast, name=f"wavecast_{spec.recipe}_{spec.cell}")
    set_scaling(model, spec, mean, scale)
    return model


def scaling_layer(size: int, name: str) -> keras.layers.Layer:
    """x * factor + shift per value, as Rescaling computes it, with factor and shift held in
    frozen weights instead of constants, so a traced graph reads each series' own values.

    Not Normalization: it keeps its mean and variance as tensors copied when they are set,
    which a traced graph would keep. The initializers draw no seed, so the recurrent and
    dense layers' seeded weights are unchanged.
    """
    import keras

    return keras.layers.EinsumDense(
        "ab,b->ab",
        output_shape=size,
        bias_axes="b",
        kernel_initializer="ones",
        bias_initializer="zeros",
        trainable=False,
        name=name,
    )


def set_scaling(model: keras.Model, spec: ModelSpec, mean: float, scale: float) -> None:
    """Write a series' scaling into the model: in, Rescaling(1 / scale, offset=-mean / scale)'s
    arithmetic; out, Rescaling(scale, offset=mean)'s (the relative recipe has no offset)."""
    offset = mean if spec.recipe == "tutorial" else 0.0
    for name, factor, shift in (
        ("standardize", 1 / scale, -offset / scale),
        ("to_series_scale", scale, offset),
    ):
        layer = model.get_layer(name)
        size = layer.kernel.shape[0]
        layer.set_weights([np.full(size, factor, np.float32), np.full(size, shift, np.float32)])


def recurrent_forecast(
    spec: ModelSpec, inputs: keras.KerasTensor, seed: int | None, steps: int
) -> keras.KerasTensor:
    """The recurrent cell over the (scaled) window, then a Dense(steps) head."""
    import keras

    cells = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    recurrent_seeds, dense_seeds = initializer_seeds(spec.cell, seed)
    input_len = int(inputs.shape[1])
    hidden = keras.layers.Reshape((input_len, 1), name="as_sequence")(inputs)
    unroll = input_len <= UNROLL_MAX_STEPS[spec.cell]
    hidden = cells[spec.cell](spec.units, unroll=unroll, name=spec.cell, **recurrent_seeds)(hidden)
    return keras.layers.Dense(steps, name="forecast", **dense_seeds)(hidden)


def tutorial_network(
    spec: ModelSpec, window: keras.KerasTensor, seed: int | None, steps: int
) -> keras.KerasTensor:
    """The tutorial's model: SimpleRNN(100) -> Dense on the (standardized) window."""
    scaled = scaling_layer(int(window.shape[1]), "standardize")(window)
    hidden = recurrent_forecast(spec, scaled, seed, steps)
    return scaling_layer(steps, "to_series_scale")(hidden)


def relative_network(
    spec: ModelSpec, window: keras.KerasTensor, seed: int | None, steps: int
) -> keras.KerasTensor:
    """Forecast the change from the window's last value (per-window normalization, as
    N-BEATS- and DeepAR-style models do), as the recurrent net's output plus a linear map of
    the same inputs (LSTNet's highway, starting at zero): a level the net never saw in
    training, or a trend, is carried by the last value and the linear path.
    """
    import keras

    input_len = int(window.shape[1])
    as_sequence = keras.layers.Reshape((input_len, 1), name="window_sequence")(window)
    last = keras.layers.Cropping1D((input_len - 1, 0), name="last_point")(as_sequence)
    last = keras.layers.Flatten(name="last_value")(last)
    level = keras.layers.Flatten(name="level")(keras.layers.RepeatVector(input_len)(last))
    relative = keras.layers.Subtract(name="relative")([window, level])
    scaled = scaling_layer(input_len, "standardize")(relative)
    network = recurrent_forecast(spec, scaled, seed, steps)
    highway = keras.layers.Dense(steps, kernel_initializer="zeros", name="highway")(scaled)
    change = keras.layers.Add(name="change")([network, highway])
    change = scaling_layer(steps, "to_series_scale")(change)
    ahead = keras.layers.Flatten(name="level_ahead")(keras.layers.RepeatVector(steps)(last))
    return keras.layers.Add(name="forecast_value")([ahead, change])


RECIPES = {"tutorial": tutorial_network, "relative": relative_network}


def compile_model(model: keras.Model, spec: TrainSpec) -> None:
    """Adam on MSE, exactly what model.fit would be compiled with."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate), loss="mse")
    model.optimizer.build(model.trainable_variables)


def train_step(model: keras.Model) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Keras' own TensorFlow train_step minus its metric bookkeeping: forward, loss, update."""
    import tensorflow as tf

    variables = model.trainable_variables

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    return step


def fit_order(n_samples: int) -> Callable[[int], tf.Tensor]:
    """Each epoch's sample order, drawn the way model.fit(shuffle=True) draws it on arrays.

    Keras' ArrayDataAdapter shuffles an index range with tf.random.shuffle inside a tf.data
    map. Under a global seed (keras.utils.set_random_seed) every new iterator replays the same
    draw, so model.fit repeats one permutation every epoch; without one it draws afresh. Two
    draws tell which case this is; a replayed order is then reused instead of redrawn (~10 ms).
    """
    import tensorflow as tf

    def permutation(_: tf.Tensor) -> tf.Tensor:
        indices = tf.range(n_samples, dtype=tf.int64)
        return tf.random.shuffle(indices)

    orders = tf.data.Dataset.range(1).map(permutation)
    first, second = next(iter(orders)), next(iter(orders))
    replayed = bool(tf.reduce_all(first == second))

    def order(epoch: int) -> tf.Tensor:
        if epoch == 0:
            return first
        return second if epoch == 1 or replayed else next(iter(orders))

    return order


def use_global_seed(seed: int) -> None:
    """keras.utils.set_random_seed(seed), unless TensorFlow's global seed already is `seed`
    (which is all fit_order's draw depends on). Setting it clears every traced function's
    kernels (TensorFlow's context caches): the next call of a recurrent network's epoch graph
    then spends ~0.7 s rebuilding them, which a panel paid twice per series."""
    import keras
    import tensorflow as tf

    current, _ = tf.compat.v1.get_seed(None)  # TensorFlow keeps it modulo TF_SEED_MODULUS
    if current != seed % TF_SEED_MODULUS:
        keras.utils.set_random_seed(seed)


def run_epochs(
    epoch: Callable[[int], tf.Tensor], epochs: int, on_epoch: EpochCallback | None
) -> list[float]:
    """Call a compiled epoch `epochs` times; each loss reaches Python (and `on_epoch`) once."""
    losses: list[float] = []
    for index in range(epochs):
        losses.append(float(epoch(index)))
        if on_epoch is not None:
            on_epoch(index, losses[-1])
    return losses


def epoch_function(model: keras.Model, batch: int) -> EpochFunction:
    """One epoch of model.fit's training steps on `model` as one graph call (batched_epoch)."""
    input_len, steps = int(model.input_shape[1]), int(model.output_shape[1])
    return batched_epoch(train_step(model), input_len, steps, batch)


def batched_epoch(
    step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], input_len: int, steps: int, batch: int
) -> EpochFunction:
    """One epoch as one graph call on (inputs, targets, order): model.fit's batches of `batch`
    windows in that order, the last one shorter, each a `step` (which returns its loss); the
    epoch loss is model.fit's too, the batch losses' mean weighted by batch size.

    The data are arguments of any number of windows, not captured constants, so one trace
    serves every series of the model's shape.
    """
    import tensorflow as tf

    signature = (
        tf.TensorSpec((None, input_len), tf.float32),
        tf.TensorSpec((None, steps), tf.float32),
        tf.TensorSpec((None,), tf.int64),
    )

    @tf.function(autograph=False, input_signature=signature)
    def epoch(x: tf.Tensor, y: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
        ex, ey = tf.gather(x, order), tf.gather(y, order)
        n_samples = tf.shape(order)[0]
        n_full = n_samples // batch
        cut = n_full * batch
        full_x = tf.reshape(ex[:cut], (n_full, batch, input_len))
        full_y = tf.reshape(ey[:cut], (n_full, batch, steps))

        def body(i: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return i + 1, total + step(full_x[i], full_y[i]) * batch

        _, total = tf.while_loop(lambda i, _: i < n_full, body, (tf.constant(0), tf.constant(0.0)))
        tail = n_samples - cut
        total = tf.cond(
            tail > 0,
            lambda: total + step(ex[cut:], ey[cut:]) * tf.cast(tail, tf.float32),
            lambda: total,
        )
        return total / tf.cast(n_samples, tf.float32)

    return epoch


def fit_arrays(
    epoch: EpochFunction,
    inputs: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    on_epoch: EpochCallback | None = None,
    order: Callable[[int], tf.Tensor] | None = None,
) -> list[float]:
    """Run a compiled epoch on windows held in memory, in model.fit's order (fit_order's,
    drawn now unless given)."""
    import tensorflow as tf

    x = tf.constant(inputs, tf.float32)
    y = tf.constant(np.reshape(targets, (len(inputs), -1)), tf.float32)
    order = fit_order(len(inputs)) if order is None else order
    return run_epochs(lambda index: epoch(x, y, order(index)), epochs, on_epoch)


def fit_model(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    spec: TrainSpec,
    on_epoch: EpochCallback | None = None,
) -> list[float]:
    """model.fit(batch_size, epochs, shuffle=True)'s arithmetic on a model of its own, traced
    for it alone: what a Trainer does, for a caller that trains one model once."""
    compile_model(model, spec)
    epoch = epoch_function(model, spec.batch_size)
    return fit_arrays(epoch, inputs, targets, spec.epochs, on_epoch)


def reset_optimizer(optimizer: keras.optimizers.Optimizer, learning_rate: float) -> None:
    """The optimizer as compile_model leaves it: no steps taken, zero moments, this rate."""
    import keras

    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    optimizer.learning_rate = learning_rate


@dataclass
class Trainer:
    """A model built, compiled and traced once; `reset` makes it the untrained model of the
    next series, as build_model with the same seed and compile_model would give it."""

    model: keras.Model
    spec: ModelSpec
    initial: list[np.ndarray]  # the seeded initializers' values, drawn once
    epoch: EpochFunction
    forward: Callable[[tf.Tensor], tf.Tensor]
    seed: int
    # fit_order by number of windows, drawn under the trainer's seed, under which model.fit's
    # permutation depends on the count alone: drawn once per count.
    orders: dict[int, Callable[[int], tf.Tensor]] = field(default_factory=dict)

    def reset(self, train: TrainSpec, mean: float, scale: float) -> keras.Model:
        """Seeded weights, this series' scaling and a fresh optimizer."""
        self.model.set_weights(self.initial)
        set_scaling(self.model, self.spec, mean, scale)
        reset_optimizer(self.model.optimizer, train.learning_rate)
        return self.model

    def fit(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        epochs: int,
        on_epoch: EpochCallback | None = None,
    ) -> list[float]:
        """The reset model fitted as fit_model fits a model of its own."""
        if len(inputs) not in self.orders:
            use_global_seed(self.seed)
            self.orders[len(inputs)] = fit_order(len(inputs))
        order = self.orders[len(inputs)]
        return fit_arrays(self.epoch, inputs, targets, epochs, on_epoch, order)

    def forecast(self, inputs: np.ndarray) -> np.ndarray:
        """model_forecast's forecasts through a graph traced once, not an eager call per series."""
        return forecast_in_chunks(self.forward, inputs)


def traced_forward(model: keras.Model, input_len: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model's inference as one graph for any number of windows: an eager call of a
    recurrent model costs ~0.1 s, which a model forecasting many series pays once."""
    import tensorflow as tf

    signature = (tf.TensorSpec((None, input_len), tf.float32),)
    return tf.function(lambda x: model(x, training=False), input_signature=signature)


def forecast_in_chunks(forward: Callable[[tf.Tensor], tf.Tensor], inputs: np.ndarray) -> np.ndarray:
    chunks = range(0, len(inputs), FORECAST_BATCH)
    forecasts = [forward(np.asarray(inputs[i : i + FORECAST_BATCH], np.float32)) for i in chunks]
    return np.concatenate([np.asarray(f) for f in forecasts]).reshape(len(inputs), -1)


def new_trainer(spec: ModelSpec, train: TrainSpec, input_len: int, steps: int) -> Trainer:
    model = build_model(spec, input_len, 0.0, 1.0, seed=train.seed, steps=steps)
    compile_model(model, train)
    epoch = epoch_function(model, train.batch_size)
    forward = traced_forward(model, input_len)
    return Trainer(model, spec, model.get_weights(), epoch, forward, train.seed)


class TrainingEngine:
    """Trainers by architecture and shapes, for as many series as its holder trains.

    Building a model and tracing its graphs costs more than fitting a small series, and
    TensorFlow and Keras keep memory for every model built (TF #61791, Keras #17458); a
    trainer is built and traced once and reset for every series of its shape.
    """

    def __init__(self) -> None:
        self._trainers: dict[tuple[ModelSpec, int, int, int, int], Trainer] = {}

    def trainer(
        self,
        spec: ModelSpec,
        train: TrainSpec,
        input_len: int,
        steps: int,
        scaling: tuple[float, float],
    ) -> Trainer:
        """The trainer of this shape, reset to its seeded start with this scaling."""
        key = (spec, input_len, steps, train.batch_size, train.seed)
        if key not in self._trainers:
            self._trainers[key] = new_trainer(spec, train, input_len, steps)
        trainer = self._trainers[key]
        trainer.reset(train, *scaling)
        return trainer


def fit_stream(
    model: keras.Model,
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]],
    shape: tuple[int, int],
    spec: TrainSpec,
    on_epoch: EpochCallback | None = None,
) -> list[float]:
    """Train on batches read while training: `batches(epoch)` yields one epoch's (x, y),
    x of `shape[0]` inputs and y of `shape[1]` targets per row.

    The data pass through a two-batch prefetch queue, so memory is a shuffle block plus a few
    batches however large the split; the epoch still runs as one graph call.
    """
    import tensorflow as tf

    compile_model(model, spec)
    epochs_started = 0

    def one_epoch() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal epochs_started
        epochs_started += 1
        for x, y in batches(epochs_started - 1):
            yield x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    signature = (
        tf.TensorSpec((None, shape[0]), tf.float32),
        tf.TensorSpec((None, shape[1]), tf.float32),
    )
    data = tf.data.Dataset.from_generator(one_epoch, output_signature=signature).prefetch(2)
    step = train_step(model)

    @tf.function
    def epoch() -> tf.Tensor:
        # An explicit iterator: `for x, y in data` would become data.reduce(), which runs
        # every step in tf.data's function runtime, about five times slower.
        total, count = tf.constant(0.0), tf.constant(0.0)
        stream = iter(data)
        batch = stream.get_next_as_optional()
        while batch.has_value():
            x, y = batch.get_value()
            size = tf.cast(tf.shape(x)[0], tf.float32)
            total += step(x, y) * size
            count += size
            batch = stream.get_next_as_optional()
        return total / count

    return run_epochs(lambda _: epoch(), spec.epochs, on_epoch)


def trains_streaming(n_train: int, input_len: int, stream_above: int = STREAM_ABOVE_VALUES) -> bool:
    """Whether a train split is too large to hold in memory, so it is streamed from Parquet."""
    return n_train * input_len > stream_above


def training_location(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    version = cache_version("train")
    identity = stable_hash(
        dataset.dataset_id, model.model_dump_json(), train.model_dump_json(), version
    )
    return data_dir, ("training", identity)


def completed_training(
    dataset: DatasetRef, model: ModelSpec, train: TrainSpec, data_dir: str
) -> TrainedRef | None:
    """The training already complete at this content-addressed place, if there is one."""
    _, parts = training_location(dataset, model, train, data_dir)
    return DataDir(data_dir).completed_record(TrainedRef, *parts, TRAINED_FILE)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The streaming path's shuffle for one epoch: a function of the seed and epoch only."""
    return np.random.default_rng([seed, epoch])


def model_forecast(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The model's forecasts for raw windows, one row of steps per window.

    Up to FORECAST_BATCH windows go through one eager call: model.predict would first trace
    a graph (~0.4 s), which costs more than such a call. Larger inputs use predict, whose
    graph is traced once per model and reused for every later chunk.
    """
    if len(inputs) > FORECAST_BATCH:
        forecast = model.predict(inputs, batch_size=FORECAST_BATCH, verbose=0)
    else:
        forecast = model(inputs, training=False)
    return np.asarray(forecast).reshape(len(inputs), -1)


def untrained_forecast(
    forecast: Callable[[np.ndarray], np.ndarray], dataset: DatasetRef, data_dir: str
) -> np.ndarray:
    """The untrained model on the first UNTRAINED_WINDOWS test windows (all of a small split)."""
    _, test_x, _ = head_of_split(dataset, "test", data_dir, UNTRAINED_WINDOWS)
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
    data_dir: str,
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
    _, parts = training_location(dataset, model_spec, train_spec, data_dir)
    store = DataDir(data_dir)
    existing = completed_training(dataset, model_spec, train_spec, data_dir) if reuse else None
    if existing is not None:
        return existing
    release_unused_memory()  # what earlier stages freed, before TensorFlow adds its ~450 MB
    began = time.perf_counter()
    if trains_streaming(dataset.n_train, dataset.spec.input_len, stream_above):
        fitted = fit_streamed(dataset, model_spec, train_spec, data_dir, on_epoch)
    else:
        engine = TrainingEngine() if engine is None else engine
        fitted = fit_in_memory(dataset, model_spec, train_spec, data_dir, on_epoch, engine)
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
    data_dir: str,
    on_epoch: EpochCallback | None,
    engine: TrainingEngine,
) -> Fitted:
    """The validation twin, then the published model, on the engine's trainer: the twin goes
    first because both reuse the same model, which must hold the published weights at the end.
    """
    _, train_x, train_y = read_split(dataset, "train", data_dir)
    validation = validation_twin(model_spec, train_spec, train_x, train_y, engine)
    input_len, steps = dataset.spec.input_len, dataset.spec.steps
    scaling = scaling_for(model_spec, train_x)
    trainer = engine.trainer(model_spec, train_spec, input_len, steps, scaling)
    untrained = untrained_forecast(trainer.forecast, dataset, data_dir)
    losses = trainer.fit(train_x, train_y, train_spec.epochs, on_epoch)
    return Fitted(trainer.model, losses, untrained, validation)


def fit_streamed(
    dataset: DatasetRef,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    data_dir: str,
    on_epoch: EpochCallback | None,
) -> Fitted:
    """A split too large for memory, streamed from Parquet in block-shuffled batches on a model
    of its own (few series are this long, so none shares it); it is not fitted twice."""
    import keras

    input_len, steps = dataset.spec.input_len, dataset.spec.steps
    chunks = (x for _, x, _ in iter_split(dataset, "train", data_dir))
    scaling = streamed_scaling(model_spec, chunks)
    release_unused_memory()
    keras.utils.set_random_seed(train_spec.seed)
    model = build_model(model_spec, input_len, *scaling, seed=train_spec.seed, steps=steps)
    untrained = untrained_forecast(functools.partial(model_forecast, model), dataset, data_dir)
    release_unused_memory()

    def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = epoch_rng(train_spec.seed, epoch)
        size = train_spec.batch_size
        return shuffled_batches(dataset, "train", data_dir, size, rng, np.float32)

    losses = fit_stream(model, batches, (input_len, steps), train_spec, on_epoch)
    return Fitted(model, losses, untrained, np.full((0, steps), np.nan))


def load_model(data_dir: str, *parts: str) -> keras.Model:
    """Load a stored model; safe_mode refuses any file that would run arbitrary code."""
    import keras

    with DataDir(data_dir).local_file(*parts) as path:
        return keras.saving.load_model(path, safe_mode=True)


def training_file(trained: TrainedRef, data_dir: str, name: str) -> tuple[DataDir, tuple[str, ...]]:
    """Where one of a training's files is: in the series' data dir, or a shared network's own."""
    if trained.shared:
        return DataDir(trained.uri), (name,)
    return DataDir(data_dir), ("training", trained.train_id, name)


class SharedNetwork(NamedTuple):
    """A panel's network as loaded, and the file's bytes it was loaded from: a version
    serves it only while the version's own copy is the same bytes."""

    model: keras.Model
    file_bytes: bytes


@functools.lru_cache(maxsize=4)
def shared_network(uri: str, name: str) -> SharedNetwork:
    """A panel's global network (or its twin), loaded once per process for all the series
    that score, serve or forecast with it: its directory is content-addressed and never
    rewritten, so the loaded copy stays current. FileNotFoundError when it is gone."""
    file_bytes = DataDir(uri).read_bytes(name)
    return SharedNetwork(load_model(uri, name), file_bytes)


@functools.lru_cache(maxsize=4)
def shared_forecaster(uri: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """shared_network's forecasts through one traced graph, for every series that uses it."""
    model = shared_network(uri, name).model
    forward = traced_forward(model, model.input_shape[-1])
    return functools.partial(forecast_in_chunks, forward)


def trained_forecaster(trained: TrainedRef, data_dir: str) -> Callable[[np.ndarray], np.ndarray]:
    """The trained network's forecasts of raw windows, from its stored file."""
    if trained.shared:
        return shared_forecaster(trained.uri, MODEL_FILE)
    model = load_model(data_dir, "training", trained.train_id, MODEL_FILE)
    return functools.partial(model_forecast, model)


def untrained_predictions(trained: TrainedRef, data_dir: str) -> np.ndarray:
    store = DataDir(data_dir)
    with store.local_file("training", trained.train_id, UNTRAINED_FILE) as path:
        return np.load(path, allow_pickle=False)


def validation_predictions(trained: TrainedRef, data_dir: str) -> np.ndarray:
    store = DataDir(data_dir)
    with store.local_file("training", trained.train_id, VALIDATION_FILE) as path:
        return np.load(path, allow_pickle=False)


def loss_history(trained: TrainedRef, data_dir: str) -> list[float]:
    store, parts = training_file(trained, data_dir, HISTORY_FILE)
    payload: dict[str, Any] = store.read_json(*parts)
    return [float(v) for v in payload["loss"]]
