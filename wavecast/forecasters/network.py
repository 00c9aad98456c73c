"""The network as a version serves it: the series' own Keras model, or its panel's global
network (--network global), loaded once per process for every series that serves it and, where
its weights file allows, run in NumPy (global_serving)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wavecast.engine import model_forecast
from wavecast.errors import unusable
from wavecast.forecasters.forecaster import (
    Backtest,
    Forecaster,
    Plan,
    Sources,
    Trial,
    WindowForecaster,
)
from wavecast.forecasters.linear import series_windows, test_forecasts, windows_ending_at
from wavecast.metrics import BATCH_ROWS, keras_forecaster
from wavecast.model_files import (
    MODEL_FILE,
    VALIDATION_MODEL_FILE,
    TrainedRef,
    load_model,
    shared_forecaster,
    shared_network,
    validation_predictions,
)
from wavecast.storage import DataDir
from wavecast.windows import shortened_note

if TYPE_CHECKING:
    from wavecast.config import SelectionSpec, WindowSpec
    from wavecast.records import Manifest
    from wavecast.windows import DatasetRef

LOG = logging.getLogger(__name__)


def forecasts_at(
    forecaster: WindowForecaster,
    values: np.ndarray,
    origins: np.ndarray,
    input_len: int,
    steps: int,
) -> np.ndarray:
    """(origins, steps) forecasts from the windows of `input_len` points ending at each
    origin, a batch at a time (the windows of a whole split could take gigabytes)."""
    parts = [
        np.reshape(
            forecaster(windows_ending_at(values, origins[start : start + BATCH_ROWS], input_len)),
            (-1, steps),
        )
        for start in range(0, len(origins), BATCH_ROWS)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, steps))


def check_same_file(copy: Path, source: DataDir, *parts: str) -> None:
    """A network is evaluated from its training's own file, loaded with safe_mode as a user
    loads it (a panel's once for all its series): a version's copy reproduces that evaluation
    when it is that file, byte for byte. Loading the copy again cost ~0.2 s per series, a
    sixth of a per-series network's whole retrain, and one more model that Keras keeps."""
    if one_file(copy, source, *parts):
        return
    if copy.read_bytes() != source.read_bytes(*parts):
        raise RuntimeError(f"{copy} is not a complete copy of {source.uri(*parts)}")


def one_file(path: str | Path, source: DataDir, *parts: str) -> bool:
    """Whether the local file `path` is the very file `parts` name in `source` (a hard link:
    DataDir.link_to_local), so the same bytes without reading them: a panel network's version
    copy usually is, and forecasting 20,000 series then reads no 3 MB copy per series."""
    if not source.is_local:
        return False
    try:
        return Path(path).samefile(source.path(*parts))
    except OSError:  # one is missing: the caller's own read says so
        return False


def network_validation(
    trained: TrainedRef, values: np.ndarray, dataset: DatasetRef, n_validation: int, store: DataDir
) -> np.ndarray:
    """The network's forecasts of the validation windows, by a twin that never saw them: the
    series' own twin stored them; a panel's global twin forecasts them here."""
    if not trained.shared:
        return validation_predictions(trained, store)
    _, inputs, _ = series_windows(values, dataset)
    twin = shared_forecaster(trained.uri, VALIDATION_MODEL_FILE)
    return twin(np.asarray(inputs[dataset.n_train - n_validation : dataset.n_train]))


def network_absence(dataset: DatasetRef, selection: SelectionSpec) -> str:
    """Why a series has no network to score."""
    if dataset.shortened:
        return f"not trained: {dataset.shortened}"
    if not selection.trains_network(dataset.n_train):
        return too_few_train_windows(dataset.n_train, selection)
    return "not trained here: the panel's global network is scored when its panel retrains"


def too_few_train_windows(n_train: int, selection: SelectionSpec) -> str:
    return (
        f"not trained: {n_train} train windows, fewer than --network-min-windows "
        f"{selection.network_min_windows}"
    )


class NetworkForecaster(Forecaster):
    """The series' own network (model.keras, loaded with safe_mode): it reads the last window."""

    served_file = MODEL_FILE

    def __init__(self, model: Any, input_len: int) -> None:
        self.model, self.input_len = model, input_len

    def scorer(self) -> WindowForecaster:
        """Its forecasts of raw windows, as its evaluation scored them."""
        return keras_forecaster(self.model)

    def forecasts(
        self,
        values: np.ndarray,
        origins: np.ndarray,
        horizon: int,
        steps: int,
        chosen_forms: bool = False,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        if network_point is not None:
            return np.reshape(np.asarray(network_point, np.float64), (len(origins), steps))
        return forecasts_at(self.scorer(), values, origins, self.input_len, steps)

    def forecast(
        self,
        history: np.ndarray,
        horizon: int,
        steps: int,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        if network_point is not None:
            return network_point
        return model_forecast(self.model, history[-self.input_len :][None, :])[0]

    def stored_windows(self, input_len: int) -> WindowForecaster | None:
        return self.scorer() if input_len == self.input_len else None

    @classmethod
    def absence(cls, name: str, plan: Plan) -> str:
        """A series too short for its windows has no network; a series' own network needs
        --network-min-windows train windows (a panel's is trained on every series' windows)."""
        spec, n_train = plan.train_windows()
        if spec != plan.windows:
            return f"not trained: {shortened_note(plan.windows, spec, plan.n_points)}"
        if not plan.panel_network and not plan.selection.trains_network(n_train):
            return too_few_train_windows(n_train, plan.selection)
        return ""

    @classmethod
    def backtest(cls, name: str, trial: Trial, scores: Backtest) -> None:
        """Trained by the training stage (or its panel's): scored here on the validation
        windows by its twin; a series without one says why."""
        if trial.trained is None:
            scores.notes[name] = network_absence(trial.dataset, trial.selection)
            return
        scores.validation[name] = network_validation(
            trial.trained, trial.values, trial.dataset, trial.n_validation, trial.store
        )

    @classmethod
    def test_forecasts(cls, trial: Trial, scores: Backtest) -> np.ndarray:
        assert trial.network is not None, "the network was combined without its forecaster"
        return test_forecasts(trial.network, trial.values, trial.dataset)

    @classmethod
    def save(cls, staging: Path, sources: Sources) -> None:
        """The training's network file, as the version's own (a hard link where it can be:
        DataDir.link_to_local): rolling back or forecasting never depends on a panel's
        directory, and removing that directory leaves the version's file whole."""
        assert sources.network is not None, "the network was published without a training"
        source, parts = sources.network
        source.link_to_local(staging, *parts).rename(staging / MODEL_FILE)
        check_same_file(staging / MODEL_FILE, source, *parts)

    @classmethod
    def save_as_member(cls, staging: Path, sources: Sources) -> None:
        cls.save(staging, sources)


class GlobalNetworkForecaster(NetworkForecaster):
    """A panel's one network (--network global), loaded once per process: its evaluation
    scored it through one traced graph for all its series (shared_forecaster), and its
    series' latest windows are forecast in one call (batched_network)."""

    def __init__(self, model: Any, input_len: int, uri: str) -> None:
        super().__init__(model, input_len)
        self.uri = uri

    def scorer(self) -> WindowForecaster:
        return shared_forecaster(self.uri, MODEL_FILE)

    def batched_network(self) -> Any | None:
        return self.model


def load_network(
    store: DataDir, version_dir: tuple[str, ...], manifest: Manifest
) -> NetworkForecaster:
    """The version's network: its panel's, loaded once for all, when the version's copy is
    that file byte for byte; else its own file, loaded and tried as any model is."""
    shared = panel_network_copy(store, version_dir, manifest)
    if shared is not None:
        return shared
    spec = manifest.dataset.spec
    return NetworkForecaster(stored_model(store, version_dir, spec), spec.input_len)


def panel_network_copy(
    store: DataDir, version_dir: tuple[str, ...], manifest: Manifest
) -> GlobalNetworkForecaster | None:
    """The panel network (--network global) a version serves a byte-for-byte copy of, loaded
    once per process for all the series that serve it; None for any other version, or when
    the panel's own file is gone or differs from the version's copy (which is then loaded
    and checked as any model is)."""
    training = manifest.training
    if training is None or not training.shared:
        return None
    try:
        shared = shared_network(training.uri)
    except FileNotFoundError:
        return None
    copy = (*version_dir, MODEL_FILE)
    linked = store.is_local and one_file(store.path(*copy), shared.store, MODEL_FILE)
    if not linked and store.read_bytes(*copy) != shared.file_bytes:
        return None
    network = shared.model
    spec = manifest.dataset.spec
    shapes = ((None, spec.input_len), (None, spec.steps))
    if (network.input_shape, network.output_shape) != shapes:
        return None
    return GlobalNetworkForecaster(network, spec.input_len, training.uri)


def stored_model(store: DataDir, version_dir: tuple[str, ...], spec: WindowSpec) -> Any:
    """The Keras model, if safe_mode loads it and it forecasts the version's own windows."""
    version = version_dir[-1]
    try:
        model = load_model(store, *version_dir, MODEL_FILE)
    except Exception as exc:  # garbage, truncated, or code that safe_mode refuses to run
        LOG.info("%s does not load: %s", store.uri(*version_dir, MODEL_FILE), exc)
        why = f"{MODEL_FILE} does not load with safe_mode ({type(exc).__name__})"
        raise unusable(version, why) from None
    if not finite_weights(model):
        raise unusable(version, f"{MODEL_FILE} holds weights that are not finite")
    expected = f"{spec.steps} step(s) from a window of {spec.input_len} point(s)"
    try:
        shape = model_forecast(model, np.zeros((1, spec.input_len))).shape
    except Exception:  # a model built for other windows
        shape = None
    if shape != (1, spec.steps):
        raise unusable(version, f"{MODEL_FILE} does not forecast {expected}")
    return model


def finite_weights(model: Any) -> bool:
    """Whether every weight of a Keras model is finite: a NaN (or a float32 overflow of
    1e308) forecasts NaN or infinity whatever the window."""
    return all(np.isfinite(np.asarray(weight)).all() for weight in model.get_weights())
