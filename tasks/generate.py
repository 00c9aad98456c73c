"""Prefect face of the series stage: reads the source every run, stores it when new."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from wavecast.config import SeriesSpec, WindowSpec
from wavecast.generate import SeriesRef
from wavecast.series import prepare_series
from wavecast.tasks.prefect_support import IO_RETRIES


# Not cached by Prefect: knowing that a file is unchanged means reading it, and that one read
# is all the stage does when it is (its stored copy is addressed by content).
@task(name="generate-series", cache_policy=NO_CACHE, **IO_RETRIES)
def generate_series(spec: SeriesSpec, windows: WindowSpec, data_dir: str) -> SeriesRef:
    series = prepare_series(spec, windows, data_dir)
    get_run_logger().info(
        "Series %s: %d points from %s (content %s)",
        series.series_id,
        series.n_points,
        series.source,
        series.content_hash,
    )
    return series
