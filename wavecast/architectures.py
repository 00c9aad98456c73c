"""The per-series networks' architectures and their input scaling (the tutorial's recurrent
net and the relative recipe); Keras is imported only when a model is built."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from wavecast.config import ModelSpec

if TYPE_CHECKING:
    import keras

# Recurrent layers over windows at most this long are unrolled (measured faster on CPU).
UNROLL_MAX_STEPS = {"simple": 32, "lstm": 5, "gru": 5}


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
