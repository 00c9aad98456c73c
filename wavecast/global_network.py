"""One network for a whole panel: trained once on every series' windows, forecasting them all
in one batched call (the global models of neuralforecast, Darts and GluonTS).

The network is of the N-BEATS family (Oreshkin et al., ICLR 2020): generic blocks of a
fully connected stack on the residual of the window, each subtracting its backcast from the
residual and adding its forecast of every step at once, plus a linear path; a few such stacks
(an ensemble of seeds) trained side by side and combined by their median.

Series of any magnitude share the network because each window is scaled inside the model:
level = the window's last value, scale = its mean magnitude (floored, so an all-zero window
gives finite numbers), forecast = level + scale * network(scaled window). The scaling
is made of keras.ops nodes of the functional graph, which Keras serializes by name: the saved
model loads with safe_mode and no custom objects, where a Lambda layer would be refused.
Keras is imported only inside the functions that build, train or run the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from wavecast.cache_keys import cache_version, stable_hash
from wavecast.candidates import validation_size
from wavecast.config import ModelSpec, TrainSpec
from wavecast.engine import EpochCallback, batched_epoch, epoch_rng, run_epochs
from wavecast.model_files import (
    HISTORY_FILE,
    MODEL_FILE,
    TRAINED_FILE,
    VALIDATION_MODEL_FILE,
    WEIGHTS_FILE,
    TrainedRef,
)
from wavecast.storage import DataDir
from wavecast.windows import DatasetRef, make_windows, read_split

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# A series' windows dataset and the data dir it lives in (the series' own).
Located = tuple[DatasetRef, DataDir]

ABSOLUTE_FLOOR = 1e-30  # only an all-zero window reaches it: 0 / floor is 0, never NaN
# Training targets further than this many scales from the last value are clipped to it: after
# an all-zero window (intermittent demand) any change is ~1e30 scales, which would swamp
# every other window's loss.
SCALED_TARGET_LIMIT = 100.0
# Windows an epoch draws (without replacement, a fresh draw each epoch) from a larger panel:
# an epoch of 20,000 series' 3.3 million windows would be 3,200 steps.
EPOCH_WINDOWS = 1 << 16
MIN_BATCHES = 8  # steps an epoch makes at least (epoch_batch)
BLOCKS = 3  # generic blocks per stack
LAYERS = 2  # fully connected layers per block
# The learning rate decays along a cosine to this share of itself over the training's steps.
FINAL_LEARNING_RATE_SHARE = 0.05


def window_level_and_scale(
    window: keras.KerasTensor,
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """(level, scale), each (batch, 1): the last value, and the window's mean magnitude
    (mean |x|, floored so an all-zero window gives finite numbers). Both move with the data's
    scale (a*x gives a*level and |a|*scale), so the forecast is scale-equivariant: a series
    in millions is forecast as one in units. Errors in these units are relative ones, as the
    competitions' sMAPE and MAPE judge them: on M3's monthly series this scale gave a lower
    sMAPE and MASE than the mean absolute deviation (benchmarks/README). It is never below
    half that deviation, so no window is scaled up further than by the deviation."""
    from keras import ops

    level = ops.take(window, [-1], axis=1)
    magnitude = ops.mean(ops.abs(window), axis=1, keepdims=True)
    return level, ops.maximum(magnitude, ABSOLUTE_FLOOR)


def build_global_parts(
    input_len: int, steps: int, width: int, members: int, seed: int | None
) -> keras.Model:
    """Raw window in; (level, scale, each member's scaled change) out: what training needs,
    sharing every layer with the forecasting model that forecasting_model wraps around it.

    Each member is an N-BEATS stack on the scaled window (nbeats_stack), seeded apart, so
    the same seed gives the same initial weights; members are trained side by side, each on
    its own loss, as independent as separate trainings.
    """
    import keras
    from keras import ops

    window = keras.Input(shape=(input_len,), name="window")
    level, scale = window_level_and_scale(window)
    scaled = (window - level) / scale
    changes = [
        nbeats_stack(scaled, steps, width, None if seed is None else seed * members + m, f"m{m}")
        for m in range(members)
    ]
    change = ops.stack(changes, axis=1)
    level = ops.repeat(level, steps, axis=1)
    scale = ops.repeat(scale, steps, axis=1)
    return keras.Model(window, [level, scale, change], name="wavecast_global_parts")


def nbeats_stack(
    scaled: keras.KerasTensor, steps: int, width: int, seed: int | None, name: str
) -> keras.KerasTensor:
    """BLOCKS generic N-BEATS blocks: LAYERS ReLU layers of `width` on the residual, a linear
    backcast taken off the residual, a linear forecast of every step summed; plus a
    zero-initialized linear path of the scaled window (the linear AR inside the network)."""
    import keras

    def init(number: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=None if seed is None else seed * 100 + number)

    input_len = int(scaled.shape[1])
    residual, forecasts = scaled, []
    for block in range(BLOCKS):
        hidden = residual
        for layer in range(LAYERS):
            dense = keras.layers.Dense(
                width,
                "relu",
                kernel_initializer=init(block * 10 + layer),
                name=f"{name}_b{block}_fc{layer}",
            )
            hidden = dense(hidden)
        forecast = keras.layers.Dense(
            steps, kernel_initializer=init(block * 10 + 8), name=f"{name}_b{block}_forecast"
        )
        forecasts.append(forecast(hidden))
        if block < BLOCKS - 1:
            backcast = keras.layers.Dense(
                input_len, kernel_initializer=init(block * 10 + 9), name=f"{name}_b{block}_backcast"
            )(hidden)
            residual = keras.layers.Subtract(name=f"{name}_b{block}_residual")([residual, backcast])
    highway = keras.layers.Dense(steps, kernel_initializer="zeros", name=f"{name}_highway")
    forecasts.append(highway(scaled))
    return keras.layers.Add(name=f"{name}_change")(forecasts)


def forecasting_model(parts: keras.Model) -> keras.Model:
    """Raw window in, raw forecasts out: level + scale * the members' median change, on the
    parts' own layers."""
    import keras
    from keras import ops

    level, scale, change = parts.outputs
    forecast = level + scale * ops.median(change, axis=1)
    return keras.Model(parts.inputs[0], forecast, name=parts.name.replace("_parts", ""))


def dense_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every Dense layer's kernel and bias, as "<layer>/kernel" and "<layer>/bias"."""
    import keras

    weights = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"] = kernel, bias
    return weights


def series_windows(values: np.ndarray, input_len: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of every window of one series whose targets it holds, horizon 1."""
    _, inputs, targets = make_windows(np.asarray(values, dtype=np.float64), input_len, 1, steps)
    return inputs, targets


def pooled_windows(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Every series' (inputs, targets) stacked into one float32 pair: a series with no window
    adds nothing, so any panel trains whatever its shortest series."""
    xs, ys = [], []
    for inputs, targets in pairs:
        if len(inputs):
            xs.append(np.asarray(inputs, np.float32))
            ys.append(np.reshape(np.asarray(targets, np.float32), (len(inputs), -1)))
    if not xs:
        raise ValueError("no series has a full window: nothing to train the global network on")
    return np.concatenate(xs), np.concatenate(ys)


def scaled_loss(
    parts: keras.Model,
) -> Callable[[tf.Tensor, tf.Tensor, bool], tf.Tensor]:
    """Mean absolute error in each window's own scale, every member's: the forecast's error
    divided by that window's scale, so a series in millions weighs as much as one in units
    (as MASE does); targets beyond SCALED_TARGET_LIMIT scales count as at the limit."""
    import tensorflow as tf

    def loss(x: tf.Tensor, y: tf.Tensor, training: bool) -> tf.Tensor:
        level, scale, change = parts(x, training=training)
        target = tf.clip_by_value((y - level) / scale, -SCALED_TARGET_LIMIT, SCALED_TARGET_LIMIT)
        return tf.reduce_mean(tf.abs(target[:, None, :] - change))

    return loss


def global_epoch(
    parts: keras.Model, x: np.ndarray, y: np.ndarray, train: TrainSpec, per_epoch: int
) -> Callable[[tf.Tensor], tf.Tensor]:
    """One epoch as one graph call: `per_epoch` windows in a given order, in batches of
    `train.batch_size` (the last one shorter), Adam on the scaled loss with a learning rate
    decaying along a cosine over all the training's steps; returns the epoch's mean loss
    weighted by batch size."""
    import keras
    import tensorflow as tf

    total_steps = train.epochs * -(-per_epoch // train.batch_size)
    rate = keras.optimizers.schedules.CosineDecay(
        train.learning_rate, total_steps, alpha=FINAL_LEARNING_RATE_SHARE
    )
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    variables = parts.trainable_variables
    optimizer.build(variables)
    loss_of = scaled_loss(parts)
    data_x, data_y = tf.constant(x), tf.constant(y)

    def step(bx: tf.Tensor, by: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_of(bx, by, True)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    epoch = batched_epoch(step, x.shape[1], y.shape[1], train.batch_size)
    return lambda order: epoch(data_x, data_y, order)


def train_pooled(
    x: np.ndarray,
    y: np.ndarray,
    model_spec: ModelSpec,
    train: TrainSpec,
    on_epoch: EpochCallback | None = None,
) -> tuple[keras.Model, list[float]]:
    """One network trained on windows `x` and targets `y` of many series, every epoch
    visiting all of them in a fresh order drawn from (seed, epoch) only, so a run is
    reproducible. Returns the forecasting model and the per-epoch losses (scaled MAE).
    """
    import keras

    keras.utils.set_random_seed(train.seed)
    seed = train.seed
    parts = build_global_parts(x.shape[1], y.shape[1], model_spec.width, model_spec.members, seed)
    per_epoch = min(len(x), EPOCH_WINDOWS)
    train = train.model_copy(update={"batch_size": epoch_batch(per_epoch, train.batch_size)})
    epoch = global_epoch(parts, x, y, train, per_epoch)

    def shuffled(index: int) -> tf.Tensor:
        return epoch(epoch_rng(train.seed, index).permutation(len(x))[:per_epoch])

    losses = run_epochs(shuffled, train.epochs, on_epoch)
    return forecasting_model(parts), losses


def epoch_batch(per_epoch: int, batch_size: int) -> int:
    """The batch size asked for, cut so an epoch makes at least MIN_BATCHES steps: a panel of
    three series' 100 windows would otherwise learn from one step an epoch."""
    return max(1, min(batch_size, per_epoch // MIN_BATCHES))


def global_location(
    datasets: Sequence[DatasetRef], model: ModelSpec, train: TrainSpec
) -> tuple[str, ...]:
    """Where under the panel's data dir: global/<id>, named by every series' windows, the
    model and training settings and this stage's version, so an unchanged panel finds its
    network and trains nothing."""
    ids = sorted(dataset.dataset_id for dataset in datasets)
    version = cache_version("global_network")
    identity = stable_hash(*ids, model.model_dump_json(), train.model_dump_json(), version)
    return ("global", identity)


def pooled_train_windows(
    located: Sequence[Located],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every series' train windows as one float32 (inputs, targets) pair, read series by series
    into arrays sized from the datasets' counts (no list of copies to concatenate), and a mask
    of the rows that are some series' validation windows (its last validation_size)."""
    spec = located[0][0].spec
    total = sum(dataset.n_train for dataset, _ in located)
    x = np.empty((total, spec.input_len), np.float32)
    y = np.empty((total, spec.steps), np.float32)
    held_out = np.zeros(total, bool)
    end = 0
    for dataset, own in located:
        _, inputs, targets = read_split(dataset, "train", own)
        start, end = end, end + len(inputs)
        x[start:end], y[start:end] = inputs, targets.reshape(len(inputs), -1)
        held_out[end - validation_size(len(inputs)) : end] = True
    return x, y, held_out


def train_panel_network(
    located: Sequence[Located],
    model: ModelSpec,
    train: TrainSpec,
    store: DataDir,
    *,
    reuse: bool,
    on_epoch: EpochCallback | None = None,
) -> TrainedRef:
    """The panel's network, trained once on the train windows of every series (read from each
    series' windows dataset), stored in the panel's `store` (global/<id>) beside its twin.

    The twin sees no series' validation windows (the last validation_size of its train
    split), so each series scores it there as honestly as its own network's twin; the
    published network saw them all. With `reuse`, a complete training there is returned.
    """
    parts = global_location([dataset for dataset, _ in located], model, train)
    existing = store.completed_record(TrainedRef, *parts, TRAINED_FILE) if reuse else None
    if existing is not None:
        return existing
    began = time.perf_counter()
    x, y, held_out = pooled_train_windows(located)
    twin, _ = train_pooled(x[~held_out], y[~held_out], model, train)
    network, losses = train_pooled(x, y, model, train, on_epoch)
    trained = TrainedRef(
        train_id=parts[-1],
        uri=store.uri(*parts),
        dataset_id=parts[-1],
        model=model,
        train=train,
        epochs_run=len(losses),
        final_loss=losses[-1],
        seconds=round(time.perf_counter() - began, 3),
        shared=True,
    )
    with store.staged_dir(*parts) as staging:
        network.save(staging / MODEL_FILE)
        weights = dense_weights(network)  # served without Keras: global_serving
        np.savez(staging / WEIGHTS_FILE, **weights)  # type: ignore[arg-type]
        twin.save(staging / VALIDATION_MODEL_FILE)
        (staging / HISTORY_FILE).write_text(json.dumps({"loss": losses}))
        (staging / TRAINED_FILE).write_text(trained.model_dump_json())
    return trained
