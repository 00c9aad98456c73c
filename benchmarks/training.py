"""Training alone, one way per process: `python -m benchmarks.training MODE [--epochs N]`.

Modes, all on the tutorial's data and config (795 train windows, SimpleRNN(100) -> Dense(1),
Adam 1e-3 on MSE, batch 32, shuffled, seed 0), as wavecast builds the model:
  fit            plain model.fit on the model as Keras runs it by default (unroll=False)
  fit-unrolled   plain model.fit on wavecast's model (short windows unrolled)
  wavecast       wavecast.train.fit_model: the same arithmetic, one graph call per epoch
Prints one JSON line: seconds inside the fit call (tracing included, imports and data
preparation excluded), final loss and the test MSE on the 199 test windows.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

MODES = ("fit", "fit-unrolled", "wavecast")


def tutorial_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from wavecast.windows import make_windows, split_index

    values = np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 1000))
    _, inputs, targets = make_windows(values, 5, 2)
    cut = split_index(len(inputs), 0.8)
    return inputs[:cut], targets[:cut], inputs[cut:], targets[cut:]


def train(mode: str, epochs: int) -> dict[str, float]:
    import keras

    from wavecast import architectures
    from wavecast.config import ModelSpec, TrainSpec
    from wavecast.engine import fit_model

    train_x, train_y, test_x, test_y = tutorial_arrays()
    spec = TrainSpec(epochs=epochs)
    if mode == "fit":
        architectures.UNROLL_MAX_STEPS = dict.fromkeys(architectures.UNROLL_MAX_STEPS, 0)
    keras.utils.set_random_seed(spec.seed)
    model = architectures.build_model(ModelSpec(), 5, 0.0, 1.0, seed=spec.seed)
    began = time.perf_counter()
    if mode == "wavecast":
        losses = fit_model(model, train_x, train_y, spec)
    else:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate), loss="mse")
        history = model.fit(
            train_x, train_y, batch_size=spec.batch_size, epochs=epochs, shuffle=True, verbose=0
        )
        losses = [float(v) for v in history.history["loss"]]
    seconds = time.perf_counter() - began
    forecast = np.asarray(model.predict(test_x, verbose=0)).reshape(-1)
    test_mse = float(np.mean((forecast - test_y) ** 2))
    return {"seconds": seconds, "final_loss": losses[-1], "test_mse": test_mse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps({"mode": args.mode, **train(args.mode, args.epochs)}))


if __name__ == "__main__":
    main()
