"""The training engine: model.fit's exact batches and update as one compiled graph call per
epoch (`Trainer`), one trainer per architecture and shapes kept across a process's series
(`TrainingEngine`), and streaming from Parquet for splits too big to hold (`fit_stream`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from wavecast.architectures import build_model, set_scaling
from wavecast.config import ModelSpec, TrainSpec

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

EpochCallback = Callable[[int, float], None]
EpochFunction = Callable[["tf.Tensor", "tf.Tensor", "tf.Tensor"], "tf.Tensor"]
FORECAST_BATCH = 4096
TF_SEED_MODULUS = 2**31 - 1  # tensorflow.python.framework.random_seed truncates seeds to it


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
