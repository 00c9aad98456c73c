"""The rules every series follows, alone or in a panel, in every run (scheduled, by hand, drift).

One identity (the series' id and own rows: generate.series_identity), one set of checks
(check_trainable), one training slot per series (training_slot_name, keyed on the series' own
data dir), one reuse rule (a complete, content-addressed output is reused whatever Prefect's
result store holds) and one sequence of stages (retrain_stages). A run of one series runs
each stage as a Prefect task, for its progress, cache and retries; a batch of a panel runs
them as plain calls, where a task run per stage would cost more than training a small series
(benchmarks/README.md). The Stages given decide which; the sequence is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from wavecast.cache_keys import stable_hash
from wavecast.config import (
    ModelSpec,
    RetrainConfig,
    SelectionSpec,
    SeriesSpec,
    TrainSpec,
    WindowSpec,
)
from wavecast.engine import EpochCallback, TrainingEngine
from wavecast.errors import InvalidInputError
from wavecast.evaluate import Evaluation, evaluate_trained
from wavecast.generate import LoadedSeries, SeriesRef, load_series, series_key, store_loaded
from wavecast.home import SeriesHome
from wavecast.model_files import TRAINED_FILE, TrainedRef
from wavecast.publish import Candidate, promote_candidate, stage_version
from wavecast.records import RetrainSummary
from wavecast.registry import read_champion, read_manifest, remove_version
from wavecast.storage import DataDir
from wavecast.train import completed_training, train_on_dataset
from wavecast.windows import DatasetRef, build_windows, check_length

# Takes the named training slot for the block it guards (a Prefect global concurrency limit
# in the flows; nothing, for a caller that trains alone).
SlotTaker = Callable[[str], AbstractContextManager[None]]


def no_slot(name: str) -> AbstractContextManager[None]:
    return nullcontext()


def check_varies(values: np.ndarray, source: str) -> None:
    if len(values) and np.ptp(values) == 0:
        raise InvalidInputError(
            f"--source {source}: constant at {values[0]:g}: nothing to learn beyond persistence"
        )


def check_trainable(series: LoadedSeries, source: str, windows: WindowSpec) -> None:
    """What a series must be to be trained on, wherever it comes from: not constant, and long
    enough for a train and a test window."""
    check_varies(series.values, source)
    check_length(len(series.values), windows)


def prepare_series(spec: SeriesSpec, windows: WindowSpec, store: DataDir) -> SeriesRef:
    """The one series a spec names, checked and stored under its identity (see store_loaded)."""
    loaded = load_series(spec)
    check_trainable(loaded, spec.source, windows)
    return store_loaded(loaded, spec.source, store, key=series_key(spec))


def training_slot_name(home: SeriesHome) -> str:
    """The one training slot of a series, keyed on its own data dir: a panel batch, a
    single-series retrain of a panel series (a drift event) and a schedule all take this one.
    A panel's global network takes its root's (the home of key None)."""
    return f"wavecast-train-{stable_hash(home.uri())}"


def trains_own_network(model: ModelSpec, selection: SelectionSpec, n_train: int) -> bool:
    """Whether a series trains a network of its own: the network competes and has its
    windows; with --network global its network is the panel's, trained once by the panel."""
    return model.network == "per-series" and selection.trains_network(n_train)


def train_when_needed(
    dataset: DatasetRef,
    model: ModelSpec,
    train: TrainSpec,
    selection: SelectionSpec,
    home: SeriesHome,
    *,
    reuse: bool,
    take_slot: SlotTaker = no_slot,
    on_epoch: EpochCallback | None = None,
    engine: TrainingEngine | None = None,
) -> TrainedRef | None:
    """The series' own network where it competes (None elsewhere, and with --network global,
    whose network its panel trains): a complete training is reused without waiting for the
    slot; otherwise the series' slot is taken, and a training another run finished meanwhile
    is reused rather than done twice. `engine` is the caller's, when it trains many series
    (see TrainingEngine)."""
    if dataset.shortened or not trains_own_network(model, selection, dataset.n_train):
        return None
    done = completed_training(dataset, model, train, home) if reuse else None
    if done is not None:
        return done
    with take_slot(training_slot_name(home)):
        return train_on_dataset(
            dataset, model, train, home, on_epoch=on_epoch, reuse=reuse, engine=engine
        )


def panel_network_of(home: SeriesHome) -> TrainedRef | None:
    """The global network this series' champion was scored with, if it is still complete: what
    a retrain of one series of a --network global panel (a drift event) scores again on the
    series' data as of now. The network itself retrains only with its panel."""
    store = home.store
    champion = read_champion(store)
    manifest = read_manifest(store, champion.version) if champion else None
    training = manifest.training if manifest else None
    if training is None or not training.shared:
        return None
    return DataDir(training.uri).completed_record(TrainedRef, TRAINED_FILE)


class Stages:
    """The per-series stages as plain calls. tasks.retrain.TaskStages runs each as a Prefect
    task instead (a run of one series: its stages in Prefect's UI, cached by Prefect), and
    retrain_stages is the one sequence both follow. `engine` is the caller's, kept across its
    series so their networks reuse one model and its graphs; `take_slot` takes a series'
    training slot; `on_epoch` hears each epoch's loss."""

    def __init__(
        self,
        run_id: str | None = None,
        take_slot: SlotTaker = no_slot,
        engine: TrainingEngine | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.run_id = run_id
        self.take_slot = take_slot
        self.engine = engine
        self.on_epoch = on_epoch

    def windows(
        self, series: SeriesRef, spec: WindowSpec, home: SeriesHome, reuse: bool
    ) -> DatasetRef:
        return build_windows(series, spec, home, reuse=reuse)

    def train(
        self,
        dataset: DatasetRef,
        model: ModelSpec,
        train: TrainSpec,
        selection: SelectionSpec,
        home: SeriesHome,
        reuse: bool,
    ) -> TrainedRef | None:
        return train_when_needed(
            dataset,
            model,
            train,
            selection,
            home,
            reuse=reuse,
            take_slot=self.take_slot,
            on_epoch=self.on_epoch,
            engine=self.engine,
        )

    def evaluate(
        self,
        dataset: DatasetRef,
        trained: TrainedRef | None,
        selection: SelectionSpec,
        home: SeriesHome,
        reuse: bool,
    ) -> Evaluation:
        return evaluate_trained(dataset, trained, selection, home, reuse=reuse)

    def stage(
        self,
        config: RetrainConfig,
        home: SeriesHome,
        dataset: DatasetRef,
        trained: TrainedRef | None,
        evaluation: Evaluation,
    ) -> Candidate:
        return stage_version(config, home, dataset, trained, evaluation, self.run_id)

    def promote(
        self,
        config: RetrainConfig,
        home: SeriesHome,
        dataset: DatasetRef,
        evaluation: Evaluation,
        candidate: Candidate,
    ) -> RetrainSummary:
        return promote_candidate(config, home, dataset, evaluation, candidate)


def retrain_stages(
    series: SeriesRef,
    config: RetrainConfig,
    home: SeriesHome,
    stages: Stages | None = None,
    network: TrainedRef | None = None,
) -> RetrainSummary:
    """Window, train, evaluate, stage and promote one stored series in its `home` (config's
    data_dir is its own), the same sequence whoever runs the stages (Stages). `network` is the
    panel's global network, scored as this series' network (--network global). A promotion
    that fails removes the version it staged, so a failed run leaves the registry as it was.
    """
    stages = stages or Stages()
    reuse = not config.refresh
    dataset = stages.windows(series, config.windows, home, reuse)
    if dataset.shortened:  # the panel's network reads windows this series cannot fill
        network = None
    trained = network or stages.train(
        dataset, config.model, config.train, config.selection, home, reuse
    )
    evaluation = stages.evaluate(dataset, trained, config.selection, home, reuse)
    candidate = stages.stage(config, home, dataset, trained, evaluation)
    try:
        return stages.promote(config, home, dataset, evaluation, candidate)
    except BaseException:
        if candidate.created:
            remove_version(home.store, candidate.version)
        raise
