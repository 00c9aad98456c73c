"""Prefect face of panels: split the source once, retrain batches of series, show the panel.

A batch is the unit a task runner (threads, or Dask workers through prefect-dask) receives.
Inside it, each series goes through the very tasks a single-series retrain runs, nested in
the batch task, so caching, retries, the training slot and the gate's rollback are the same.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.transactions import transaction

from tasks.evaluate import evaluate_model
from tasks.prefect_support import IO_RETRIES, cached_stage_options
from tasks.publish import announce_retrain, promote_version, publish_version
from tasks.train import train_model
from tasks.windows import write_windows
from wavecast.config import FanOutSpec, RetrainConfig, SeriesSpec, WindowSpec
from wavecast.errors import environment_problem
from wavecast.generate import SeriesRef
from wavecast.panel import (
    BatchResult,
    PanelSplit,
    PanelSummary,
    SeriesOutcome,
    panel_table,
    series_config,
    split_panel,
)
from wavecast.registry import one_line

# Each Dask worker trains one series at a time: one TensorFlow thread pool per core.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def task_runner_for(spec: FanOutSpec) -> Any:
    """Prefect's thread pool, or prefect-dask's runner on a given or a fresh local cluster."""
    workers = spec.workers or os.cpu_count() or 1
    if spec.runner == "local":
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if spec.dask_address:
        return DaskTaskRunner(address=spec.dask_address)
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


def retrain_one(series: SeriesRef, config: RetrainConfig) -> SeriesOutcome:
    """One series through the single-series stages, on its own data dir."""
    assert series.key is not None
    own = series_config(config, series.key)
    cached = cached_stage_options(own.data_dir, own.refresh)
    dataset = write_windows.with_options(**cached)(series, own.windows, own.data_dir)
    trained = train_model.with_options(**cached)(dataset, own.model, own.train, own.data_dir)
    evaluation = evaluate_model.with_options(**cached)(dataset, trained, own.data_dir)
    with transaction():  # a failed promotion rolls the staged version back out of its registry
        candidate = publish_version(own, dataset, trained, evaluation)
        summary = promote_version(own, dataset, evaluation, candidate)
    return SeriesOutcome.model_validate(summary.model_dump())


@task(name="retrain-batch", cache_policy=NO_CACHE)
def retrain_batch(batch: tuple[SeriesRef, ...], config: RetrainConfig) -> BatchResult:
    """Every series of the batch; one that fails is skipped with its reason, the rest go on.

    A fault of the storage itself (full disk, read-only, not a directory) would fail every
    series alike: it fails the batch, and so the run, at once.
    """
    logger = get_run_logger()
    series: dict[str, SeriesOutcome] = {}
    skipped: dict[str, str] = {}
    for ref in batch:
        assert ref.key is not None
        try:
            series[ref.key] = retrain_one(ref, config)
        except Exception as exc:
            if environment_problem(exc) is not None:
                raise
            skipped[ref.key] = one_line(exc)
            logger.warning("Series %s skipped: %s", ref.key, skipped[ref.key])
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
