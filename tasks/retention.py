"""Prefect face of retention: a retrain's last step sweeps what its data dir no longer needs."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from wavecast.config import RetentionSpec
from wavecast.retention import prune
from wavecast.storage import DataDir
from wavecast.sweep import summary_line
from wavecast.tasks.prefect_support import IO_RETRIES


@task(name="prune-data-dir", cache_policy=NO_CACHE, **IO_RETRIES)
def prune_data_dir(data_dir: str, policy: RetentionSpec) -> None:
    """The retention rules (wavecast.retention) applied to the run's data dir; what could not
    be removed is a warning, never a failed retrain."""
    report = prune(DataDir(data_dir), policy)
    logger = get_run_logger()
    logger.info("Retention: %s", summary_line(report, policy.min_age_s))
    for problem in report.problems:
        logger.warning("Retention: %s", problem)
