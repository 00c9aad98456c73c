"""Prefect face of the series stage: cached on the source's content, retried on I/O faults."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.prefect_support import IO_RETRIES, content_cache
from wavecast.config import SeriesSpec
from wavecast.generate import SeriesRef, series_location, store_series


@task(name="generate-series", **content_cache(series_location), **IO_RETRIES)
def generate_series(spec: SeriesSpec, data_dir: str) -> SeriesRef:
    series = store_series(spec, data_dir)
    get_run_logger().info(
        "Series %s: %d points from %s (content %s)",
        series.series_id,
        series.n_points,
        series.source,
        series.content_hash,
    )
    return series
