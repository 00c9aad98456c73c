"""Prefect face of forecasting: every series' champion on its source as of now, written, shown."""

from __future__ import annotations

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from wavecast.config import ForecastConfig
from wavecast.panel_forecast import (
    ForecastRun,
    PartForecast,
    forecast_keys,
    forecast_part,
    forecast_parts,
    panel_forecast,
)
from wavecast.storage import DataDir
from wavecast.tables import shown_id
from wavecast.tasks.prefect_support import IO_RETRIES
from wavecast.tasks.runners import check_cluster, task_runner_for

# A panel run's table artifact shows this many series (12 rows each at most): a person reads
# the first ones there; every series is in the panel's page and dataset.
TABLE_SERIES = 100


@task(name="find-series", cache_policy=NO_CACHE, **IO_RETRIES)
def find_series(config: ForecastConfig) -> list[str | None]:
    """The series to forecast (see forecast_keys): the data dir's own, or a panel's."""
    keys = forecast_keys(config)
    if keys != [None]:
        get_run_logger().info("Panel %s: forecasting %d series", config.data_dir, len(keys))
    return keys


@task(name="forecast-series", cache_policy=NO_CACHE, **IO_RETRIES)
def forecast_series(keys: list[str | None], config: ForecastConfig) -> PartForecast:
    """Each series from its own champion, the source read once; a panel's series that cannot
    forecast (bad input, a champion that cannot serve, a permanent storage fault) is skipped
    with its reason, a single series' fails the run."""
    part = forecast_part(config, keys, flow_run.get_id())
    logger = get_run_logger()
    for key, reason in part.skipped.items():
        logger.warning("Series %s not forecast: %s", shown_id(key), reason)
    for key, made in part.forecasts.items():
        steps = ", ".join(f"{row['target']}: {row['forecast']:.4g}" for row in made.rows[:3])
        logger.info("Series %s by %s from %s: %s", shown_id(key), made.version, made.origin, steps)
    if len(keys) > 1:
        logger.info("%d series forecast, %d skipped", len(part.forecasts), len(part.skipped))
    return part


def forecast_on_runner(keys: list[str | None], config: ForecastConfig) -> list[PartForecast]:
    """The series in parts (forecast_parts) mapped on the run's task runner, as a retrain's
    batches are; a run of one part (one series, or a small panel) is forecast in the flow's
    own process, which has no worker to start."""
    parts = forecast_parts(keys, config.fan_out)
    if len(parts) == 1:
        return [forecast_series(parts[0], config)]
    check_cluster(config.fan_out)
    with task_runner_for(config.fan_out) as runner:
        futures = runner.map(forecast_series, {"keys": parts, "config": unmapped(config)})
        return [future.result() for future in futures]


@task(name="publish-forecasts", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_forecasts(parts: list[PartForecast], config: ForecastConfig) -> ForecastRun:
    """The run's page, and a table of its first series' forecasts where a person opening
    the run looks (every series is in the page and the dataset)."""
    forecasts = panel_forecast(parts, DataDir(config.data_dir))
    shown = list(forecasts.series.items())[:TABLE_SERIES]
    rows = [
        {"series": key, "origin": summary.origin, **row}
        for key, summary in shown
        for row in summary.forecasts
    ]
    create_table_artifact(
        rows,
        key="wavecast-forecast",
        description=f"{len(forecasts.series)} series forecast, {len(forecasts.skipped)} "
        f"skipped; the first {len(shown)} shown, all in {forecasts.path}",
    )
    if shown:
        page = shown[0][1].report
        create_link_artifact(page, link_text="Fan charts and forecasts", key="wavecast-fan-chart")
    get_run_logger().info(
        "Forecasts of %d series written to %s", len(forecasts.series), forecasts.path
    )
    return forecasts
