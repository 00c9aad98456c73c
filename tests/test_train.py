"""Training on tiny data: the fast loop is model.fit's arithmetic, seeded, saved and reloadable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.conftest import raw_series
from wavecast.architectures import build_model, scaling_for
from wavecast.config import ModelSpec, SeriesSpec, TrainSpec, WindowSpec
from wavecast.engine import TrainingEngine, fit_model, fit_order
from wavecast.home import SeriesHome
from wavecast.model_files import (
    HISTORY_FILE,
    MODEL_FILE,
    loss_history,
    untrained_predictions,
    validation_predictions,
)
from wavecast.storage import DataDir
from wavecast.train import train_on_dataset, validation_twin
from wavecast.windows import DatasetRef, build_windows, make_windows, read_split

if TYPE_CHECKING:
    import keras

SINE = np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 120))
TINY_MODEL = ModelSpec(units=4)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetRef, str]:
    """120-point sine -> 114 windows of 5: 91 train (5 batches of 16 and one of 11), 23 test."""
    data_dir = str(tmp_path_factory.mktemp("train") / "data")
    series = raw_series(SeriesSpec(length=120), DataDir(data_dir))
    return build_windows(series, WindowSpec(), SeriesHome(data_dir)), data_dir


def tiny_arrays() -> tuple[np.ndarray, np.ndarray]:
    _, inputs, targets = make_windows(SINE, 5, 2)
    return np.asarray(inputs[:91]), np.asarray(targets[:91])


def seeded_fit(fast: bool, seed: int, spec: TrainSpec) -> tuple[list[float], list[np.ndarray]]:
    """The same model and data through fit_model or plain model.fit."""
    import keras

    inputs, targets = tiny_arrays()
    keras.utils.set_random_seed(seed)
    model = build_model(TINY_MODEL, 5, 0.0, 1.0, seed=seed)
    if fast:
        losses = fit_model(model, inputs, targets, spec)
    else:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate), loss="mse")
        history = model.fit(
            inputs, targets, batch_size=spec.batch_size, epochs=spec.epochs, shuffle=True, verbose=0
        )
        losses = [float(v) for v in history.history["loss"]]
    return losses, model.get_weights()


@pytest.mark.fit
def test_fast_loop_is_model_fit_arithmetic() -> None:
    """Same seed: the per-epoch losses and the final weights of both loops agree."""
    spec = TrainSpec(epochs=3, batch_size=16, learning_rate=0.01)
    fast_losses, fast_weights = seeded_fit(True, 3, spec)
    fit_losses, fit_weights = seeded_fit(False, 3, spec)
    np.testing.assert_allclose(fast_losses, fit_losses, rtol=1e-5)
    for fast, fitted in zip(fast_weights, fit_weights, strict=True):
        np.testing.assert_allclose(fast, fitted, rtol=1e-4, atol=1e-6)


def other_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Another level and scale than tiny_arrays', and 64 windows: no short last batch."""
    _, inputs, targets = make_windows(3.0 + 2.0 * np.cos(np.linspace(0, 7 * np.pi, 70)), 5, 2)
    return np.asarray(inputs), np.asarray(targets)


@pytest.mark.fit
@pytest.mark.parametrize("recipe", ["tutorial", "relative"])
def test_engine_trains_each_series_as_a_model_of_its_own(recipe: str) -> None:
    """Three series one after the other on one engine, from one trace: each gets bit for bit the
    losses, weights and forecasts it gets on a model built and fitted for it alone (the third
    has the first one's window count, so its shuffle order is the one the engine kept). Another
    seed is set before each, as another trainer would: the engine draws under its own."""
    import keras

    spec = ModelSpec.model_validate({"recipe": recipe, "units": 4, "scaling": "standard"})
    train = TrainSpec(epochs=3, batch_size=16, learning_rate=0.01, seed=4)
    engine = TrainingEngine()
    scalings = []
    tiny_x, tiny_y = tiny_arrays()
    for inputs, targets in ((tiny_x, tiny_y), other_arrays(), (1 - 2 * tiny_x, 1 - 2 * tiny_y)):
        scalings.append(scaling_for(spec, inputs))
        keras.utils.set_random_seed(train.seed + 1)
        trainer = engine.trainer(spec, train, 5, 1, scalings[-1])
        losses = trainer.fit(inputs, targets, train.epochs)
        keras.utils.set_random_seed(train.seed)
        alone = build_model(spec, 5, *scalings[-1], seed=train.seed)
        assert fit_model(alone, inputs, targets, train) == losses
        for reused, own in zip(trainer.model.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_array_equal(reused, own)
        np.testing.assert_array_equal(trainer.model(inputs), alone(inputs))
    assert len(set(scalings)) == 3
    assert engine.trainer(spec, train, 5, 1, scalings[0]) is trainer
    assert trainer.epoch.experimental_get_tracing_count() == 1  # type: ignore[attr-defined]


@pytest.mark.fit
def test_same_seed_same_losses_other_seed_other_losses() -> None:
    spec = TrainSpec(epochs=2, batch_size=16)
    first, _ = seeded_fit(True, 7, spec)
    again, _ = seeded_fit(True, 7, spec)
    other, _ = seeded_fit(True, 8, spec)
    assert first == again
    assert first != other


QUIET_BUILD = """
import sys, numpy as np, keras
from wavecast.config import ModelSpec
from wavecast.architectures import build_model
for cell in ("simple", "lstm", "gru"):
    keras.utils.set_random_seed(11)
    model = build_model(ModelSpec.model_validate({"cell": cell, "units": 3}), 5, 0.0, 1.0)
    np.savez(f"{sys.argv[1]}/{cell}.npz", *(v.numpy() for v in model.trainable_variables))
"""


@pytest.fixture(scope="module")
def quiet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keras' own seeded weights, built unseeded after set_random_seed in a process where no
    other thread draws from `random` (under pytest, earlier Prefect tests leave such threads).
    """
    out = tmp_path_factory.mktemp("quiet")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", QUIET_BUILD, str(out)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def drawn_weights(model: keras.Model) -> list[np.ndarray]:
    """The weights the initializers drew (the scaling weights are set, not drawn)."""
    return [variable.numpy() for variable in model.trainable_variables]


@pytest.mark.flow  # quiet_weights builds its reference in a fresh interpreter
@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_seeded_weights_ignore_other_users_of_python_random(cell: str, quiet_weights: Path) -> None:
    """Another thread drawing from `random` (Prefect's websocket pings do) changes nothing."""
    import random

    spec = ModelSpec.model_validate({"cell": cell, "units": 3})
    built = []
    for disturbance in (0, 1, 5):
        for _ in range(disturbance):
            random.random()
        built.append(drawn_weights(build_model(spec, 5, 0.0, 1.0, seed=11)))
    for weights in built[1:]:
        for got, expected in zip(weights, built[0], strict=True):
            np.testing.assert_array_equal(got, expected)
    other = drawn_weights(build_model(spec, 5, 0.0, 1.0, seed=12))
    assert not np.array_equal(other[0], built[0][0])
    with np.load(quiet_weights / f"{cell}.npz") as quiet:
        reference = [quiet[f"arr_{i}"] for i in range(len(quiet.files))]
    for got, expected in zip(built[0], reference, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.unit
def test_epoch_order_is_model_fits_permutation() -> None:
    """Seeded, model.fit replays one permutation every epoch; unseeded, it draws afresh."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    seeded = fit_order(50)
    orders = [seeded(epoch).numpy() for epoch in range(3)]
    assert sorted(orders[0]) == list(range(50))
    assert all(np.array_equal(orders[0], order) for order in orders)
    tf.random.set_seed(None)
    try:
        fresh = fit_order(50)
        drawn = [fresh(epoch).numpy() for epoch in range(3)]
        assert not np.array_equal(drawn[1], drawn[2])
    finally:
        keras.utils.set_random_seed(0)


@pytest.mark.fit
def test_epoch_callback_gets_every_epoch_loss() -> None:
    import keras

    inputs, targets = tiny_arrays()
    keras.utils.set_random_seed(0)
    seen: list[tuple[int, float]] = []
    losses = fit_model(
        build_model(TINY_MODEL, 5, 0.0, 1.0, seed=0),
        inputs,
        targets,
        TrainSpec(epochs=3, batch_size=16),
        lambda epoch, loss: seen.append((epoch, loss)),
    )
    assert seen == list(enumerate(losses))


@pytest.mark.fit
def test_smoke_train_save_reload(tiny_dataset: tuple[DatasetRef, str]) -> None:
    """Two seeded epochs: loss falls, one forecast per window, the saved model reloads safely."""
    import keras

    dataset, data_dir = tiny_dataset
    trained = train_on_dataset(
        dataset, TINY_MODEL, TrainSpec(epochs=2, batch_size=16), SeriesHome(data_dir)
    )
    losses = loss_history(trained, DataDir(data_dir))
    assert trained.epochs_run == len(losses) == 2 and losses[1] < losses[0]
    assert trained.final_loss == losses[-1]
    model_file = Path(trained.uri) / MODEL_FILE
    reloaded = keras.saving.load_model(model_file, safe_mode=True)
    _, test_x, _ = read_split(dataset, "test", DataDir(data_dir))
    forecast = reloaded.predict(test_x, verbose=0)
    assert forecast.shape == (dataset.n_test, 1)
    assert untrained_predictions(trained, DataDir(data_dir)).shape == (dataset.n_test, 1)
    again = keras.saving.load_model(model_file, safe_mode=True).predict(test_x, verbose=0)
    np.testing.assert_array_equal(forecast, again)
    assert json.loads((Path(trained.uri) / HISTORY_FILE).read_text())["loss"] == losses


@pytest.mark.fit
@pytest.mark.parametrize("recipe", ["tutorial", "relative"])
def test_reloaded_model_predicts_as_trained(recipe: str, tmp_path: Path) -> None:
    """A model an engine reused, saved: it loads in safe mode with this series' scaling."""
    import keras

    spec = ModelSpec.model_validate({"recipe": recipe, "units": 4, "scaling": "standard"})
    train = TrainSpec(epochs=2, batch_size=16)
    engine = TrainingEngine()
    engine.trainer(spec, train, 5, 1, (0.3, 2.0)).fit(*other_arrays(), train.epochs)
    inputs, targets = tiny_arrays()
    trainer = engine.trainer(spec, train, 5, 1, (-1.5, 4.0))
    trainer.fit(inputs, targets, train.epochs)
    trainer.model.save(tmp_path / MODEL_FILE)
    reloaded = keras.saving.load_model(tmp_path / MODEL_FILE, safe_mode=True)
    np.testing.assert_array_equal(reloaded(inputs), trainer.model(inputs))
    keras.utils.set_random_seed(train.seed)
    alone = build_model(spec, 5, -1.5, 4.0, seed=train.seed)
    fit_model(alone, inputs, targets, train)
    np.testing.assert_array_equal(reloaded(inputs), alone(inputs))


@pytest.mark.fit
def test_shared_engine_stores_the_model_fitted_alone(
    tiny_dataset: tuple[DatasetRef, str], tmp_path: Path
) -> None:
    """The validation twin and the published model share the engine's model, which already
    trained another series: what is stored is still the model, loss curve and validation
    forecasts of models built and fitted alone."""
    import keras

    dataset, data_dir = tiny_dataset
    spec, train = ModelSpec(units=4, scaling="standard"), TrainSpec(epochs=2, batch_size=16)
    other_dir = str(tmp_path / "other")
    other = build_windows(
        raw_series(SeriesSpec(length=100), DataDir(other_dir)),
        WindowSpec(),
        SeriesHome(other_dir),
    )
    engine = TrainingEngine()
    train_on_dataset(other, spec, train, SeriesHome(other_dir), engine=engine)
    trained = train_on_dataset(dataset, spec, train, SeriesHome(data_dir), engine=engine)
    _, train_x, train_y = read_split(dataset, "train", DataDir(data_dir))
    keras.utils.set_random_seed(train.seed)
    alone = build_model(spec, 5, *scaling_for(spec, train_x), seed=train.seed)
    assert loss_history(trained, DataDir(data_dir)) == fit_model(alone, train_x, train_y, train)
    stored = keras.saving.load_model(Path(trained.uri) / MODEL_FILE, safe_mode=True)
    _, test_x, _ = read_split(dataset, "test", DataDir(data_dir))
    np.testing.assert_array_equal(stored(test_x), alone(test_x))
    twin = validation_twin(spec, train, train_x, train_y)
    assert len(twin) > 0
    np.testing.assert_array_equal(validation_predictions(trained, DataDir(data_dir)), twin)


def imports_in_fresh_interpreter(modules: list[str], forbidden: set[str]) -> None:
    """Import `modules` in a new interpreter and fail if any `forbidden` package got loaded."""
    code = (
        f"import sys, {', '.join(modules)}\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
        "assert not loaded, loaded[:5]\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def core_modules() -> list[str]:
    root = Path(__file__).resolve().parents[1]
    files = (root / "wavecast").rglob("[!_]*.py")  # wavecast/*.py and its subpackages
    return sorted(".".join(p.relative_to(root).with_suffix("").parts) for p in files)


@pytest.mark.flow  # a fresh interpreter
def test_importing_the_pipeline_never_loads_tensorflow() -> None:
    """What a cached rerun imports: the flow, every task and core module and the CLI, not TF."""
    tasks = [
        "wavecast.tasks.retrain",
        "wavecast.tasks.windows",
        "wavecast.tasks.train",
        "wavecast.tasks.evaluate",
        "wavecast.tasks.publish",
    ]
    pipeline = ["wavecast.flows.cli", "wavecast.flows.retrain", *tasks, *core_modules()]
    imports_in_fresh_interpreter(pipeline, {"tensorflow", "keras"})


@pytest.mark.flow  # a fresh interpreter
def test_the_core_never_loads_prefect() -> None:
    """The Keras process imports only the core: Prefect there would cost it ~3.5 s more."""
    assert len(core_modules()) >= 14
    imports_in_fresh_interpreter(core_modules(), {"prefect", "tensorflow", "keras"})


@pytest.mark.flow  # a fresh interpreter
def test_importing_any_test_module_never_loads_tensorflow() -> None:
    """Collecting a tier (`-m unit`) imports every test module: none may pay for TensorFlow."""
    root = Path(__file__).resolve().parents[1]
    modules = sorted(f"tests.{p.stem}" for p in (root / "tests").glob("test_*.py"))
    assert len(modules) >= 14
    imports_in_fresh_interpreter(modules, {"tensorflow", "keras"})
