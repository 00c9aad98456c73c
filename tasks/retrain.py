"""Prefect face of a retrain: split the source once, retrain its series, show the run.

A panel's series go to the task runner in batches (worker processes, or Dask workers through
prefect-dask): a task run per series would cost more than training a small series (measured,
see benchmarks/README.md). A run of one series runs each stage as a task of the flow instead
(TaskStages), cached by Prefect and shown in its UI. Either way each series goes through the
same stages (wavecast.series.retrain_stages), each reusing its content-addressed output, so an
unchanged series trains nothing.
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from wavecast.config import ModelSpec, RetrainConfig, SelectionSpec, TrainSpec, WindowSpec
from wavecast.engine import TrainingEngine
from wavecast.errors import environment_problem, is_transient
from wavecast.evaluate import Evaluation
from wavecast.generate import SeriesRef
from wavecast.home import SeriesHome
from wavecast.model_files import TrainedRef
from wavecast.panel import (
    BatchResult,
    RetrainRun,
    SourceSplit,
    describe_outcome,
    loads_models_per_series,
    panel_network,
    panel_rounds,
    panel_table,
    retrain_series,
    split_source,
)
from wavecast.publish import Candidate
from wavecast.records import RetrainSummary
from wavecast.registry import one_line
from wavecast.series import Stages, training_slot_name, trains_own_network
from wavecast.storage import DataDir
from wavecast.tables import shown_id
from wavecast.tasks.evaluate import evaluate_model
from wavecast.tasks.prefect_support import IO_RETRIES, ThrottledProgress, cached_stage_options
from wavecast.tasks.publish import announce_retrain, promote_version, publish_artifacts, stage
from wavecast.tasks.runners import interruptible, stop_if_interrupted, task_runner_for
from wavecast.tasks.runners import worker_count as runner_workers
from wavecast.tasks.train import epoch_reporter, train_model, training_slot
from wavecast.tasks.windows import write_windows
from wavecast.windows import DatasetRef

# Per-version artifacts (metrics table, report, links) for runs of up to this many series;
# beyond, the run's wavecast-series table lists every version and its report: 20,000 series
# would be 80,000 artifacts on the server.
ARTIFACT_SERIES = 50
Artifacts = Literal["every", "new", "none"]


class TaskStages(Stages):
    """Each stage as a task run of the flow: cached by Prefect on its content (results beside
    the data, see cached_stage_options), retried on transient faults, visible in the UI."""

    def windows(
        self, series: SeriesRef, spec: WindowSpec, home: SeriesHome, reuse: bool
    ) -> DatasetRef:
        cached = cached_stage_options(home.store, not reuse)
        return write_windows.with_options(**cached)(series, spec, home, reuse)

    def train(
        self,
        dataset: DatasetRef,
        model: ModelSpec,
        train: TrainSpec,
        selection: SelectionSpec,
        home: SeriesHome,
        reuse: bool,
    ) -> TrainedRef | None:
        if not trains_own_network(model, selection, dataset.n_train):
            return None  # no task, so no cache record per run, where no network competes
        cached = cached_stage_options(home.store, not reuse)
        return train_model.with_options(**cached)(dataset, model, train, selection, home, reuse)

    def evaluate(
        self,
        dataset: DatasetRef,
        trained: TrainedRef | None,
        selection: SelectionSpec,
        home: SeriesHome,
        reuse: bool,
    ) -> Evaluation:
        cached = cached_stage_options(home.store, not reuse)
        return evaluate_model.with_options(**cached)(dataset, trained, selection, home, reuse)

    def stage(
        self,
        config: RetrainConfig,
        home: SeriesHome,
        dataset: DatasetRef,
        trained: TrainedRef | None,
        evaluation: Evaluation,
    ) -> Candidate:
        return stage(config, home, dataset, trained, evaluation)

    def promote(
        self,
        config: RetrainConfig,
        home: SeriesHome,
        dataset: DatasetRef,
        evaluation: Evaluation,
        candidate: Candidate,
    ) -> RetrainSummary:
        return promote_version(config, home, dataset, evaluation, candidate)


@task(name="split-series", cache_policy=NO_CACHE, **IO_RETRIES)
def split_series(config: RetrainConfig) -> SourceSplit:
    """The source read once, and each series stored as its own copy (see split_source)."""
    split = split_source(config.series, config.windows, DataDir(config.data_dir))
    logger = get_run_logger()
    if len(split.series) == 1:
        (ref,) = split.series
        logger.info(
            "Series %s: %d points from %s (content %s)",
            ref.label,
            ref.n_points,
            ref.source,
            ref.content_hash,
        )
    if len(split.series) != 1 or split.skipped:
        logger.info("Source %s: %d series to train", config.series.source, len(split.series))
    for key, reason in split.skipped.items():
        logger.warning("Series %s skipped: %s", shown_id(key), reason)
    return split


@task(name="train-global-network", cache_policy=NO_CACHE, **IO_RETRIES)
def train_global_network(split: SourceSplit, config: RetrainConfig) -> TrainedRef | None:
    """The panel's one network (--network global), under the panel's own training slot."""
    with training_slot(training_slot_name(SeriesHome(config.data_dir))):
        network = panel_network(split, config, on_epoch=epoch_reporter(config.train.epochs))
    if network is not None:
        get_run_logger().info(
            "Global network %s on %d series: final loss %.3g, %.1f s",
            network.train_id,
            len(split.series),
            network.final_loss,
            network.seconds,
        )
    return network


def retrain_each(
    batch: tuple[SeriesRef, ...],
    config: RetrainConfig,
    stages: Stages,
    network: TrainedRef | None,
    artifacts: Artifacts,
    progress: ThrottledProgress | None = None,
) -> BatchResult:
    """Every series of the batch; a panel's series that fails is skipped with its reason, and
    the rest go on. A single series' failure (or a storage fault that would fail every series
    alike: full disk, read-only) fails the run at once; a transient one is retried.
    `progress` hears each series done (a panel's batch; one series' run shows its stages)."""
    logger = get_run_logger()
    series: dict[str, RetrainSummary] = {}
    skipped: dict[str, str] = {}
    for done, ref in enumerate(batch, start=1):
        stop_if_interrupted()
        label = ref.label
        try:
            outcome = retrain_series(ref, config, stages, network)
        except Exception as exc:
            stop_if_interrupted()  # Keras wraps an interrupt inside a layer in its own error
            if ref.key is None or environment_problem(exc) is not None or is_transient(exc):
                raise
            skipped[label] = one_line(exc)
            logger.warning("Series %s skipped: %s", shown_id(label), skipped[label])
        else:
            if artifacts == "every" or (artifacts == "new" and not outcome.unchanged):
                publish_artifacts(outcome, label if ref.key is not None else None)
            kept = outcome if len(batch) == 1 else outcome.model_copy(update={"candidates": ()})
            series[label] = kept
            logger.info("Series %s: %s", shown_id(label), describe_outcome(outcome))
        if progress is not None:
            progress.advance(done)
    if len(batch) > 1:
        logger.info("Batch of %d: %d trained, %d skipped", len(batch), len(series), len(skipped))
    return BatchResult(series=series, skipped=skipped)


@task(name="retrain-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def retrain_batch(
    batch: tuple[SeriesRef, ...],
    config: RetrainConfig,
    network: TrainedRef | None = None,
    artifacts: Artifacts = "none",
) -> BatchResult:
    """A batch of a panel's series, their stages as plain calls; the batch's networks train
    on one model per shape (TrainingEngine)."""
    stages = Stages(flow_run.get_id(), training_slot, TrainingEngine())
    description = "Series of this batch done (%)"
    progress = ThrottledProgress("wavecast-panel-progress", description, len(batch))
    with interruptible():
        return retrain_each(batch, config, stages, network, artifacts, progress)


def retrain_on_runner(
    series: tuple[SeriesRef, ...], config: RetrainConfig, network: TrainedRef | None
) -> list[BatchResult]:
    """The series' retrains. One series: each stage a task of this flow (TaskStages). A few:
    their batches in the flow's own process (FanOutSpec.runs_in_process). More: the batches
    mapped on a task runner of their own (task_runner_for), in rounds of fresh workers
    (panel_rounds), inside the calling flow run: chosen per run, where a flow's own runner is
    fixed when it is decorated. Not a subflow, whose parameters Prefect stores: a panel's
    series as one (20,000 of them) exceed the server's 512 KB limit on a run's parameters."""
    artifacts: Artifacts = (
        "every" if len(series) == 1 else "new" if len(series) <= ARTIFACT_SERIES else "none"
    )
    if len(series) == 1:
        stages = TaskStages(flow_run.get_id())  # its tasks take the slot and report epochs
        return [retrain_each(series, config, stages, network, artifacts)]
    spec = config.fan_out
    results: list[BatchResult] = []
    in_process = spec.runs_in_process(loads_models_per_series(config), len(series))
    for batches in panel_rounds(series, config, runner_workers(spec)):
        if in_process:
            results += [retrain_batch(batch, config, network, artifacts) for batch in batches]
            continue
        mapped = {
            "batch": batches,
            "config": unmapped(config),
            "network": unmapped(network),
            "artifacts": unmapped(artifacts),
        }
        with task_runner_for(spec) as runner:
            results += [future.result() for future in runner.map(retrain_batch, mapped)]
    return results


@task(name="publish-run", cache_policy=NO_CACHE)
def publish_run(run: RetrainRun) -> RetrainRun:
    """The run's table where a person opening the run looks, and one event for automations."""
    promoted = sum(outcome.promoted for outcome in run.series.values())
    create_table_artifact(
        panel_table(run),
        key="wavecast-series",
        description=f"{len(run.series)} series trained ({promoted} promoted), "
        f"{len(run.skipped)} skipped",
    )
    if len(run.series) != 1 or run.skipped:
        get_run_logger().info(
            "Retrain: %d series trained, %d promoted, %d skipped",
            len(run.series),
            promoted,
            len(run.skipped),
        )
    announce_retrain(
        run.data_dir, series=len(run.series), promoted=promoted, skipped=len(run.skipped)
    )
    return run
