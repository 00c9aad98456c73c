"""Prefect face of panels: split the source once, retrain batches of series, show the panel.

A batch is the unit a task runner (worker processes, or Dask workers through prefect-dask)
receives: a task run per series would cost more than training a small series (measured, see
benchmarks/README.md). Inside it, each series goes through the single-series stages, each
reusing its content-addressed output, so an unchanged series trains nothing.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ProcessPoolTaskRunner

from tasks.prefect_support import IO_RETRIES
from tasks.publish import announce_retrain
from tasks.train import training_slot
from wavecast.config import FanOutSpec, RetrainConfig, SeriesSpec, WindowSpec
from wavecast.errors import environment_problem, is_transient
from wavecast.generate import SeriesRef
from wavecast.panel import (
    BatchResult,
    PanelSplit,
    PanelSummary,
    SeriesOutcome,
    describe_outcome,
    panel_table,
    retrain_series,
    split_panel,
)
from wavecast.registry import one_line
from wavecast.storage import DataDir, stable_hash

# Each worker process trains one series at a time: one TensorFlow thread per worker.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def one_tensorflow_thread() -> None:
    """Run in each worker process before TensorFlow loads: N workers use N cores, not N**2."""
    os.environ.update(ONE_THREAD)


def worker_count(spec: FanOutSpec) -> int:
    return spec.workers or os.cpu_count() or 1


def task_runner_for(spec: FanOutSpec) -> Any:
    """Prefect's process pool, or prefect-dask's runner on a named or a fresh local cluster.

    Processes, not threads: tracing a Keras model is Python work that holds the GIL.
    """
    workers = worker_count(spec)
    if spec.runner == "local":
        return ProcessPoolTaskRunner(max_workers=workers, initializer=one_tensorflow_thread)
    import dask
    from prefect_dask import DaskTaskRunner

    # Dask's own setting (DASK_SCHEDULER_ADDRESS) when the config names no cluster.
    address = spec.dask_address or dask.config.get("scheduler-address", None)
    if address:
        return DaskTaskRunner(address=address)
    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": ONE_THREAD}
    return DaskTaskRunner(cluster_kwargs=cluster)


@task(name="split-panel", cache_policy=NO_CACHE, **IO_RETRIES)
def split_series(spec: SeriesSpec, windows: WindowSpec, data_dir: str) -> PanelSplit:
    split = split_panel(spec, windows, data_dir)
    logger = get_run_logger()
    logger.info("Panel %s: %d series to train", spec.source, len(split.series))
    for key, reason in split.skipped.items():
        logger.warning("Series %s skipped: %s", key, reason)
    return split


def one_training_per_batch(
    batch: tuple[SeriesRef, ...], config: RetrainConfig
) -> AbstractContextManager[None]:
    """A Prefect global concurrency limit of 1 per batch of series and data dir: another run
    of the same panel waits instead of training the same series at the same time."""
    keys = sorted(ref.key or "" for ref in batch)
    name = f"wavecast-train-{stable_hash(DataDir(config.data_dir).uri(), batch[0].source, *keys)}"
    return training_slot(name)


@task(name="retrain-batch", cache_policy=NO_CACHE, **IO_RETRIES)
def retrain_batch(batch: tuple[SeriesRef, ...], config: RetrainConfig) -> BatchResult:
    """Every series of the batch; one that fails is skipped with its reason, the rest go on.

    A storage fault that would fail every series alike (full disk, read-only) fails the run
    at once; a transient one retries the batch, whose finished series are then reused.
    """
    logger = get_run_logger()
    progress = create_progress_artifact(
        progress=0.0, key="wavecast-panel-progress", description="Series of this batch done (%)"
    )
    series: dict[str, SeriesOutcome] = {}
    skipped: dict[str, str] = {}
    with one_training_per_batch(batch, config):
        for done, ref in enumerate(batch, start=1):
            assert ref.key is not None
            try:
                outcome = retrain_series(ref, config, flow_run.get_id())
            except Exception as exc:
                if environment_problem(exc) is not None or is_transient(exc):
                    raise
                skipped[ref.key] = one_line(exc)
                logger.warning("Series %s skipped: %s", ref.key, skipped[ref.key])
            else:
                series[ref.key] = outcome
                logger.info("Series %s: %s", ref.key, describe_outcome(outcome))
            if isinstance(progress, UUID):
                update_progress_artifact(progress, progress=100.0 * done / len(batch))
    logger.info("Batch of %d: %d trained, %d skipped", len(batch), len(series), len(skipped))
    return BatchResult(series=series, skipped=skipped)


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
