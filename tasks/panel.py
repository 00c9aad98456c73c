"""Prefect face of panels: split the source once, retrain batches of series, show the panel.

A batch is the unit a task runner (worker processes, or Dask workers through prefect-dask)
receives: a task run per series would cost more than training a small series (measured, see
benchmarks/README.md). Inside it, each series goes through the single-series stages, each
reusing its content-addressed output, so an unchanged series trains nothing.
"""

from __future__ import annotations

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from wavecast.config import RetrainConfig, SeriesSpec, WindowSpec
from wavecast.engine import TrainingEngine
from wavecast.errors import environment_problem, is_transient
from wavecast.generate import SeriesRef
from wavecast.model_files import TrainedRef
from wavecast.panel import (
    BatchResult,
    PanelSplit,
    PanelSummary,
    SeriesOutcome,
    describe_outcome,
    loads_models_per_series,
    panel_network,
    panel_table,
    retrain_series,
    split_panel,
)
from wavecast.registry import one_line
from wavecast.series import training_slot_name
from wavecast.tables import shown_id
from wavecast.tasks.prefect_support import IO_RETRIES, ThrottledProgress
from wavecast.tasks.publish import announce_retrain
from wavecast.tasks.runners import (
    interruptible,
    stop_if_interrupted,
    task_runner_for,
)
from wavecast.tasks.train import epoch_reporter, training_slot


@task(name="split-panel", cache_policy=NO_CACHE, **IO_RETRIES)
def split_series(spec: SeriesSpec, windows: WindowSpec, data_dir: str) -> PanelSplit:
    split = split_panel(spec, windows, data_dir)
    logger = get_run_logger()
    logger.info("Panel %s: %d series to train", spec.source, len(split.series))
    for key, reason in split.skipped.items():
        logger.warning("Series %s skipped: %s", shown_id(key), reason)
    return split


@task(name="train-global-network", cache_policy=NO_CACHE, **IO_RETRIES)
def train_global_network(split: PanelSplit, config: RetrainConfig) -> TrainedRef | None:
    """The panel's one network (--network global), under the panel's own training slot."""
    with training_slot(training_slot_name(config.data_dir)):
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


@task(name="retrain-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def retrain_batch(
    batch: tuple[SeriesRef, ...], config: RetrainConfig, network: TrainedRef | None = None
) -> BatchResult:
    """Every series of the batch; one that fails is skipped with its reason, the rest go on.

    A storage fault that would fail every series alike (full disk, read-only) fails the run
    at once; a transient one retries the batch, whose finished series are then reused.
    """
    logger = get_run_logger()
    description = "Series of this batch done (%)"
    progress = ThrottledProgress("wavecast-panel-progress", description, len(batch))
    series: dict[str, SeriesOutcome] = {}
    skipped: dict[str, str] = {}
    engine = TrainingEngine()  # the batch's series train on one model per shape
    with interruptible():
        for done, ref in enumerate(batch, start=1):
            assert ref.key is not None
            stop_if_interrupted()
            try:
                run_id = flow_run.get_id()
                outcome = retrain_series(ref, config, run_id, training_slot, engine, network)
            except Exception as exc:
                stop_if_interrupted()  # Keras wraps an interrupt inside a layer in its own error
                if environment_problem(exc) is not None or is_transient(exc):
                    raise
                skipped[ref.key] = one_line(exc)
                logger.warning("Series %s skipped: %s", shown_id(ref.key), skipped[ref.key])
            else:
                series[ref.key] = outcome
                logger.info("Series %s: %s", shown_id(ref.key), describe_outcome(outcome))
            progress.advance(done)
    logger.info("Batch of %d: %d trained, %d skipped", len(batch), len(series), len(skipped))
    return BatchResult(series=series, skipped=skipped)


def retrain_on_runner(
    batches: list[tuple[SeriesRef, ...]], config: RetrainConfig, network: TrainedRef | None
) -> list[BatchResult]:
    """The batches in the flow's own process when they are few (FanOutSpec.runs_in_process),
    else mapped on a task runner of their own (task_runner_for), inside the calling flow run:
    chosen per run, where a flow's own runner is fixed when it is decorated. Not a subflow,
    whose parameters Prefect stores: a panel's series as one (20,000 of them) exceed the
    server's 512 KB limit on a run's parameters."""
    n_series = sum(map(len, batches))
    if config.fan_out.runs_in_process(loads_models_per_series(config), n_series):
        return [retrain_batch(batch, config, network) for batch in batches]
    mapped = {"batch": batches, "config": unmapped(config), "network": unmapped(network)}
    with task_runner_for(config.fan_out) as runner:
        return [future.result() for future in runner.map(retrain_batch, mapped)]


@task(name="publish-panel", cache_policy=NO_CACHE)
def publish_panel(summary: PanelSummary) -> PanelSummary:
    """The panel's table where a person opening the run looks, and one event for the panel."""
    promoted = sum(outcome.promoted for outcome in summary.series.values())
    create_table_artifact(
        panel_table(summary),
        key="wavecast-panel",
        description=f"{len(summary.series)} series trained ({promoted} promoted), "
        f"{len(summary.skipped)} skipped",
    )
    get_run_logger().info(
        "Panel: %d series trained, %d promoted, %d skipped",
        len(summary.series),
        promoted,
        len(summary.skipped),
    )
    announce_retrain(summary.data_dir, series=len(summary.series), promoted=promoted, panel=True)
    return summary
