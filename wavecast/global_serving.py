"""A panel's global network served in NumPy: a forecast command imports no TensorFlow.

Importing TensorFlow and Keras takes ~5 s of a forecast that otherwise takes ~2 s, and the
global network is a small stack of dense layers (global_network.nbeats_stack). Training
stores its dense layers' weights beside model.keras (model_files.WEIGHTS_FILE, written in the same
staged directory, so the two never disagree); serving runs the same arithmetic in float32.
A file whose layers are not exactly that stack's is served by Keras, as before.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from wavecast.global_network import ABSOLUTE_FLOOR, BLOCKS, LAYERS

MEMBER = re.compile(r"m(\d+)_")


def stack_layer_names(member: int) -> list[str]:
    """The Dense layers of member `member`'s stack, as nbeats_stack names them."""
    name = f"m{member}"
    names = [f"{name}_b{block}_fc{layer}" for block in range(BLOCKS) for layer in range(LAYERS)]
    names += [f"{name}_b{block}_forecast" for block in range(BLOCKS)]
    names += [f"{name}_b{block}_backcast" for block in range(BLOCKS - 1)]
    return [*names, f"{name}_highway"]


class NumpyGlobalNetwork:
    """The global network's forward pass (level + scale x the members' median change), called
    as a Keras model is: `network(windows)` or `network.predict(windows)`."""

    def __init__(self, weights: Mapping[str, np.ndarray], members: int) -> None:
        self.weights = {name: np.asarray(value, np.float32) for name, value in weights.items()}
        self.members = members
        highway = self.weights["m0_highway/kernel"]
        self.input_shape = (None, int(highway.shape[0]))
        self.output_shape = (None, int(highway.shape[1]))

    def dense(self, name: str, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(inputs @ self.weights[f"{name}/kernel"] + self.weights[f"{name}/bias"])

    def change(self, member: int, scaled: np.ndarray) -> np.ndarray:
        """One member's N-BEATS stack on the scaled windows (see global_network.nbeats_stack)."""
        name, residual = f"m{member}", scaled
        total = self.dense(f"{name}_highway", scaled)
        for block in range(BLOCKS):
            hidden = residual
            for layer in range(LAYERS):
                hidden = np.maximum(self.dense(f"{name}_b{block}_fc{layer}", hidden), 0)
            total = total + self.dense(f"{name}_b{block}_forecast", hidden)
            if block < BLOCKS - 1:
                residual = residual - self.dense(f"{name}_b{block}_backcast", hidden)
        return total

    def __call__(self, windows: np.ndarray, training: bool = False) -> np.ndarray:
        x = np.asarray(windows, np.float32)
        level = x[:, -1:]
        scale = np.maximum(np.mean(np.abs(x), axis=1, keepdims=True), np.float32(ABSOLUTE_FLOOR))
        scaled = (x - level) / scale
        changes = np.stack([self.change(m, scaled) for m in range(self.members)], axis=1)
        return np.asarray(level + scale * np.median(changes, axis=1), np.float32)

    def predict(self, windows: np.ndarray, **_: Any) -> np.ndarray:
        return self(windows)


def numpy_network(data: bytes) -> NumpyGlobalNetwork | None:
    """The network WEIGHTS_FILE's bytes describe, or None unless they hold exactly the Dense
    layers of 1..n members' stacks (anything else is served by Keras)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        weights = {name: stored[name] for name in stored.files}
    members = len({match.group(1) for name in weights if (match := MEMBER.match(name))})
    expected = {
        f"{layer}/{part}"
        for member in range(members)
        for layer in stack_layer_names(member)
        for part in ("kernel", "bias")
    }
    if not members or set(weights) != expected:
        return None
    return NumpyGlobalNetwork(weights, members)
