"""The forecaster registry (wavecast.forecasters.kinds): every kind a version can serve is
saved into a version directory, loaded back from it and forecasts what it forecast before;
a name no kind has is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from tests.test_registry import keras_file, manifest_for
from wavecast.config import ForecasterName, ModelSpec, SeriesSpec, TrainSpec, WindowSpec
from wavecast.engine import model_forecast
from wavecast.errors import InvalidInputError
from wavecast.forecasters import kinds
from wavecast.forecasters.forecaster import SPEC_FILE, Forecaster, ForecasterSpec, Located, Sources
from wavecast.forecasters.linear import linear_forecast, windows_ending_at
from wavecast.forecasters.network import NetworkForecaster
from wavecast.model_files import MODEL_FILE, TrainedRef, load_model
from wavecast.registry import MODELS, UnusableVersionError, servable
from wavecast.storage import DataDir

pytestmark = pytest.mark.unit

WINDOWS = WindowSpec(input_len=5, steps=2)
VALUES = 10 + np.sin(np.arange(60.0) / 3) + np.arange(60.0) / 20
WEIGHTS = ((0.1, 0.0), (0.0, 0.1), (0.2, 0.1), (0.3, 0.2), (0.4, 0.6), (0.5, -0.5))
SPECS = {
    "naive": ForecasterSpec(forecaster="naive", season=1, members=("naive",)),
    "seasonal_naive": ForecasterSpec(
        forecaster="seasonal_naive", season=4, members=("seasonal_naive",)
    ),
    "arima": ForecasterSpec(
        forecaster="arima", season=1, members=("arima",), forms={"arima": "ARIMA(1,1,0)"}
    ),
    "linear": ForecasterSpec(forecaster="linear", season=1, members=("linear",), weights=WEIGHTS),
    "combination": ForecasterSpec(
        forecaster="combination",
        season=4,
        members=("seasonal_naive", "linear", "network"),
        weights=WEIGHTS,
        member_weights=(0.5, 0.3, 0.2),
    ),
}


def sources(tmp_path: Path, spec: ForecasterSpec | None) -> Sources:
    """What an evaluation and a training leave: a spec, a Keras network, the test windows."""
    tmp_path.mkdir(exist_ok=True)
    store = DataDir(str(tmp_path))
    if spec is not None:
        (tmp_path / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
    (tmp_path / MODEL_FILE).write_bytes(keras_file(tmp_path, WINDOWS.input_len, WINDOWS.steps))
    test_x = windows_ending_at(VALUES, np.arange(40, 55), WINDOWS.input_len)
    weights = np.asarray(WEIGHTS)
    evaluated = (test_x, linear_forecast(weights, test_x))
    return Sources(Located(store, (SPEC_FILE,)), Located(store, (MODEL_FILE,)), lambda: evaluated)


def published(
    tmp_path: Path, chosen: str, members: tuple[str, ...], shared: bool = False
) -> Forecaster:
    """kinds.save_published into a version directory, then kinds.load_served from it."""
    made = sources(tmp_path / "evaluation", SPECS.get(chosen))
    version = "20240102T030405Z-aaaaaaaa"
    staging = tmp_path / "data" / MODELS / version
    staging.mkdir(parents=True)
    kinds.save_published(staging, chosen, members, made)
    assert (staging / kinds.served_file(chosen)).exists()
    manifest = manifest_for(WINDOWS, SeriesSpec(), chosen)
    if shared:
        trained = TrainedRef(
            train_id="t",
            uri=str(tmp_path / "evaluation"),
            dataset_id="d",
            model=ModelSpec(),
            train=TrainSpec(),
            epochs_run=1,
            final_loss=0.0,
            seconds=0.0,
            shared=True,
        )
        manifest = manifest.model_copy(update={"training": trained})
    return kinds.load_served(DataDir(str(tmp_path / "data")), (MODELS, version), manifest)


@pytest.mark.parametrize("chosen", ["naive", "seasonal_naive", "arima", "linear"])
def test_a_spec_forecaster_round_trips_through_a_version(tmp_path: Path, chosen: str) -> None:
    loaded = published(tmp_path, chosen, (chosen,))
    before = kinds.from_spec(SPECS[chosen])
    assert loaded.forecast(VALUES, 1, 2).tolist() == before.forecast(VALUES, 1, 2).tolist()
    origins = np.arange(30, 50)
    assert np.array_equal(
        loaded.forecasts(VALUES, origins, 1, 2), before.forecasts(VALUES, origins, 1, 2)
    )
    assert loaded.stored_windows(WINDOWS.input_len) is None and loaded.batched_network() is None


@pytest.mark.parametrize("shared", [False, True])
def test_a_network_round_trips_through_a_version(tmp_path: Path, shared: bool) -> None:
    """The series' own network, or its panel's (loaded once, batched across its series)."""
    loaded = published(tmp_path, "network", ("network",), shared=shared)
    model = load_model(DataDir(str(tmp_path / "evaluation")), MODEL_FILE)
    expected = model_forecast(model, VALUES[-WINDOWS.input_len :][None, :])[0]
    assert np.allclose(loaded.forecast(VALUES, 1, 2), expected, rtol=1e-6)
    assert (tmp_path / "data" / MODELS).joinpath(
        "20240102T030405Z-aaaaaaaa", MODEL_FILE
    ).read_bytes() == (tmp_path / "evaluation" / MODEL_FILE).read_bytes()
    assert loaded.stored_windows(WINDOWS.input_len) is not None
    assert loaded.stored_windows(WINDOWS.input_len + 1) is None
    assert (loaded.batched_network() is not None) == shared and not loaded.refits


def test_a_combination_holding_the_network_round_trips_with_its_network(tmp_path: Path) -> None:
    members = SPECS["combination"].members
    loaded = published(tmp_path, "combination", members)
    network = NetworkForecaster(load_model(DataDir(str(tmp_path / "evaluation")), MODEL_FILE), 5)
    before = kinds.from_spec(SPECS["combination"], network)
    assert np.allclose(loaded.forecast(VALUES, 1, 2), before.forecast(VALUES, 1, 2), rtol=1e-6)
    assert loaded.refits
    point = np.array([100.0, 200.0])  # the network's forecast, batched with other series'
    by_hand = (
        0.5 * VALUES[[-4, -3]]
        + 0.3 * linear_forecast(np.asarray(WEIGHTS), VALUES[-5:][None, :])[0]
        + 0.2 * point
    )
    assert np.allclose(loaded.forecast(VALUES, 1, 2, point), by_hand)


def test_a_linear_ar_that_does_not_reproduce_its_evaluation_is_not_published(
    tmp_path: Path,
) -> None:
    made = sources(tmp_path, SPECS["linear"])
    test_x, expected = made.evaluated()
    wrong = made._replace(evaluated=lambda: (test_x, expected + 1.0))
    (tmp_path / "version").mkdir()
    with pytest.raises(RuntimeError, match="does not reproduce its evaluation"):
        kinds.save_published(tmp_path / "version", "linear", ("linear",), wrong)


def test_an_unknown_kind_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        kinds.kind_of("prophet")
    assert str(raised.value).startswith("unknown forecaster 'prophet': one of network, linear")
    assert len(str(raised.value).splitlines()) == 1
    spec = ForecasterSpec(forecaster="prophet", season=1, members=("naive",))
    folder = tmp_path / MODELS / "20240102T030405Z-aaaaaaaa"
    folder.mkdir(parents=True)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())
    (folder / "manifest.json").write_text(
        manifest_for(WINDOWS, SeriesSpec(), "naive").model_dump_json()
    )
    with pytest.raises(UnusableVersionError) as refused:
        servable(DataDir(str(tmp_path)), "20240102T030405Z-aaaaaaaa")
    assert str(refused.value) == (
        "version 20240102T030405Z-aaaaaaaa cannot serve: forecaster.json names no known "
        "statistical forecaster"
    )


def test_every_name_a_selection_accepts_has_a_kind() -> None:
    assert set(get_args(ForecasterName)) == set(kinds.KINDS)
