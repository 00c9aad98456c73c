"""The global network on tiny panels: it learns, its forecasts move with the data's scale and
level, it survives a save and a safe_mode load, and a flat or short series gets a number."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from wavecast.config import ModelSpec, TrainSpec
from wavecast.engine import model_forecast
from wavecast.global_network import (
    EPOCH_WINDOWS,
    MIN_BATCHES,
    SCALED_TARGET_LIMIT,
    build_global_parts,
    dense_weights,
    epoch_batch,
    forecasting_model,
    pooled_windows,
    series_windows,
    train_pooled,
    window_level_and_scale,
)
from wavecast.global_serving import numpy_network

if TYPE_CHECKING:
    import keras

INPUT_LEN, STEPS = 12, 3
TINY = ModelSpec(width=16, members=2)
TRAIN = TrainSpec(epochs=15, batch_size=16, learning_rate=1e-2, seed=3)


def seasonal(n: int, amplitude: float, level: float, seed: int) -> np.ndarray:
    """A monthly-like sine with noise, at its own amplitude and level."""
    noise = np.random.default_rng(seed).standard_normal(n)
    return level + amplitude * (np.sin(np.arange(n) * 2 * np.pi / 12) + 0.1 * noise)


def tiny_panel() -> list[np.ndarray]:
    """Three series five orders of magnitude apart; the last too short for any window."""
    return [seasonal(60, 1.0, 5.0, 0), seasonal(80, 100.0, 1000.0, 1), seasonal(14, 0.01, -3, 2)]


def last_windows(panel: list[np.ndarray]) -> np.ndarray:
    """Each series' last INPUT_LEN values, one float32 row per series: what a panel's
    network forecasts from (panel_forecast.batched_points stacks them so)."""
    return np.stack([np.asarray(values[-INPUT_LEN:], np.float32) for values in panel])


@pytest.fixture(scope="module")
def trained() -> tuple[keras.Model, list[float]]:
    pairs = [series_windows(values, INPUT_LEN, STEPS) for values in tiny_panel()]
    return train_pooled(*pooled_windows(pairs), TINY, TRAIN)


@pytest.mark.unit
def test_level_and_scale_by_hand() -> None:
    """[1, 2, 3, 6]: last value 6, mean magnitude 3; [-4, 4, -4, 4]: 4 and 4; a constant
    window of 4s: 4; an all-zero one the absolute floor, never zero."""
    import keras

    window = keras.Input(shape=(4,))
    stats = keras.Model(window, list(window_level_and_scale(window)))
    rows = np.array([[1, 2, 3, 6], [-4, 4, -4, 4], [4, 4, 4, 4], [0, 0, 0, 0]], np.float32)
    level, scale = (np.asarray(part)[:, 0] for part in stats(rows))
    np.testing.assert_allclose(level, [6, 4, 4, 0])
    np.testing.assert_allclose(scale[:3], [3, 4, 4], rtol=1e-6)
    assert 0 < scale[3] < 1e-20


@pytest.mark.fit
def test_loss_goes_down_and_short_series_is_still_forecast(
    trained: tuple[keras.Model, list[float]],
) -> None:
    model, losses = trained
    assert len(losses) == TRAIN.epochs
    assert losses[-1] < 0.5 * losses[0]
    panel = tiny_panel()
    assert len(series_windows(panel[2], INPUT_LEN, STEPS)[0]) == 0  # it trained on nothing
    forecast = model_forecast(model, last_windows(panel))
    assert forecast.shape == (3, STEPS)
    assert np.isfinite(forecast).all()


@pytest.mark.fit
def test_same_seed_same_training() -> None:
    pairs = [series_windows(values, INPUT_LEN, STEPS) for values in tiny_panel()[:1]]
    quick = TRAIN.model_copy(update={"epochs": 2})
    x, y = pooled_windows(pairs)
    first, second = train_pooled(x, y, TINY, quick), train_pooled(x, y, TINY, quick)
    assert first[1] == second[1]
    window = last_windows(tiny_panel()[:1])
    np.testing.assert_array_equal(
        model_forecast(first[0], window), model_forecast(second[0], window)
    )


@pytest.mark.fit
@pytest.mark.parametrize("factor", [1000.0, 0.001, 7.0])
def test_forecast_moves_with_the_data_s_scale(
    trained: tuple[keras.Model, list[float]], factor: float
) -> None:
    """Per-window scaling: factor * window is forecast as factor * forecast, up to float32
    rounding (judged on the data's own scale)."""
    model = trained[0]
    windows = last_windows(tiny_panel()[:2]).astype(np.float64)
    base = model_forecast(model, windows).astype(np.float64)
    moved = model_forecast(model, windows * factor).astype(np.float64)
    tolerance = 1e-5 * factor * np.abs(windows).max(axis=1)
    assert (np.abs(moved - base * factor) <= tolerance[:, None]).all()
    assert not np.allclose(base, base[:, :1] * np.ones(STEPS))  # not a trivial constant


@pytest.mark.fit
def test_saved_model_loads_with_safe_mode_and_forecasts_the_same(
    trained: tuple[keras.Model, list[float]], tmp_path: Path
) -> None:
    import keras

    model = trained[0]
    path = tmp_path / "global.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    windows = last_windows(tiny_panel())
    np.testing.assert_array_equal(
        model_forecast(loaded, windows),
        model_forecast(model, windows),
    )


@pytest.mark.unit
def test_a_lambda_would_not_load_with_safe_mode(tmp_path: Path) -> None:
    """Why the scaling is built from keras.ops nodes and not a Lambda layer."""
    import keras

    window = keras.Input(shape=(4,))
    keras.Model(window, keras.layers.Lambda(lambda x: x * 2)(window)).save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(tmp_path / "l.keras", safe_mode=True)


@pytest.mark.unit
def test_flat_windows_give_their_own_value() -> None:
    """A constant window scales to zeros: its forecast is its own value, finite even at 0."""
    model = forecasting_model(build_global_parts(INPUT_LEN, STEPS, width=4, members=2, seed=0))
    windows = np.stack([np.full(INPUT_LEN, 250.0), np.zeros(INPUT_LEN), np.full(INPUT_LEN, -2.0)])
    forecast = model_forecast(model, windows)
    assert np.isfinite(forecast).all()
    np.testing.assert_allclose(forecast, windows[:, :STEPS], rtol=1e-3, atol=1e-20)


@pytest.mark.fit
def test_a_jump_after_zeros_does_not_swamp_training() -> None:
    """Intermittent demand: after twelve zeros the next value is ~1e30 scales away; clipped,
    the epoch losses stay at most SCALED_TARGET_LIMIT and training still proceeds."""
    intermittent = np.r_[np.zeros(12), 5.0, np.zeros(12), 3.0, np.zeros(12)]
    pairs = [series_windows(v, INPUT_LEN, STEPS) for v in (*tiny_panel()[:1], intermittent)]
    quick = TRAIN.model_copy(update={"epochs": 3})
    model, losses = train_pooled(*pooled_windows(pairs), TINY, quick)
    assert all(np.isfinite(loss) and loss <= SCALED_TARGET_LIMIT for loss in losses)
    assert np.isfinite(model_forecast(model, last_windows([intermittent]))).all()


@pytest.mark.unit
def test_no_window_anywhere_is_refused() -> None:
    pairs = [series_windows(values, INPUT_LEN, STEPS) for values in tiny_panel()[2:]]
    with pytest.raises(ValueError, match="no series has a full window"):
        train_pooled(*pooled_windows(pairs), TINY, TRAIN)


@pytest.mark.unit
def test_a_small_panel_still_makes_several_steps_an_epoch() -> None:
    """An epoch makes at least MIN_BATCHES steps: 112 windows in batches of at most 14; a
    large panel's epoch is capped at EPOCH_WINDOWS windows in the batches asked for."""
    assert epoch_batch(112, 1024) == 112 // MIN_BATCHES == 14
    assert epoch_batch(112, 8) == 8
    assert epoch_batch(3, 1024) == 1
    assert epoch_batch(EPOCH_WINDOWS, 1024) == 1024


def saved_weights(weights: dict[str, np.ndarray], path: Path) -> bytes:
    np.savez(path, **weights)  # type: ignore[arg-type]
    return path.read_bytes()


@pytest.mark.fit
def test_numpy_serving_forecasts_what_keras_does(
    trained: tuple[keras.Model, list[float]], tmp_path: Path
) -> None:
    """The trained network's Dense weights, run in NumPy: the same forecasts as Keras' to
    float32 precision, an all-zero window and a median of two members included."""
    model = trained[0]
    windows = np.vstack([last_windows(tiny_panel()[:2]), np.zeros((1, INPUT_LEN))])
    served = numpy_network(saved_weights(dense_weights(model), tmp_path / "w.npz"))

    assert served is not None and served.members == 2
    assert (served.input_shape, served.output_shape) == (model.input_shape, model.output_shape)
    expected = model_forecast(model, windows)
    np.testing.assert_allclose(
        served(windows), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )
    assert not np.allclose(served(windows)[0], served(windows)[1])


@pytest.mark.fit
def test_weights_of_another_architecture_are_left_to_keras(
    trained: tuple[keras.Model, list[float]], tmp_path: Path
) -> None:
    weights = dense_weights(trained[0])
    extra = {**weights, "m0_b3_fc0/kernel": np.zeros((16, 16)), "m0_b3_fc0/bias": np.zeros(16)}
    missing = {k: v for k, v in weights.items() if not k.startswith("m1_highway")}
    assert numpy_network(saved_weights(extra, tmp_path / "extra.npz")) is None
    assert numpy_network(saved_weights(missing, tmp_path / "missing.npz")) is None
