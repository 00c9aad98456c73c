"""Prefect face of the windowing stage: cached on the series and window spec."""

from __future__ import annotations

from prefect import get_run_logger, task

from wavecast.config import WindowSpec
from wavecast.generate import SeriesRef
from wavecast.home import SeriesHome
from wavecast.tasks.prefect_support import IO_RETRIES, content_cache
from wavecast.windows import DatasetRef, build_windows, dataset_location


@task(name="write-windows", **content_cache(dataset_location), **IO_RETRIES)
def write_windows(
    series: SeriesRef, spec: WindowSpec, home: SeriesHome, reuse: bool = True
) -> DatasetRef:
    dataset = build_windows(series, spec, home, reuse=reuse)
    get_run_logger().info(
        "Dataset %s: %d windows (%d train / %d test) at %s",
        dataset.dataset_id,
        dataset.n_windows,
        dataset.n_train,
        dataset.n_test,
        dataset.uri,
    )
    return dataset
