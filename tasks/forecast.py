"""Prefect face of forecasting: read the source as of now, forecast, write, show."""

from __future__ import annotations

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from wavecast.config import ForecastConfig
from wavecast.forecasting import (
    forecast_window,
    latest_window,
    summarize_forecast,
    write_forecast_report,
    write_forecasts,
)
from wavecast.panel_forecast import (
    PanelForecast,
    PartForecast,
    forecast_keys,
    forecast_part,
    forecast_parts,
    panel_forecast,
)
from wavecast.records import Forecast, ForecastSummary, LatestWindow
from wavecast.tasks.prefect_support import IO_RETRIES
from wavecast.tasks.runners import check_cluster, task_runner_for

# A panel run's table artifact shows this many series (12 rows each at most): a person reads
# the first ones there; every series is in the panel's page and dataset.
TABLE_SERIES = 100


@task(name="read-latest-window", cache_policy=NO_CACHE, **IO_RETRIES)
def read_latest_window(config: ForecastConfig) -> LatestWindow:
    window = latest_window(config)
    get_run_logger().info(
        "Series %s: %d points from %s, last at %s; forecasting with %s",
        window.series,
        window.n_points,
        window.source,
        window.origin,
        window.version,
    )
    return window


@task(name="forecast-from-model", cache_policy=NO_CACHE)
def forecast_from_model(window: LatestWindow, config: ForecastConfig) -> Forecast:
    forecast = forecast_window(window, config.data_dir, config.levels)
    coverage = ", ".join(f"{level} %: {value:.3f}" for level, value in forecast.coverage.items())
    get_run_logger().info(
        "%d step(s) after %s; held-out interval coverage %s",
        len(forecast.rows),
        forecast.origin,
        coverage,
    )
    return forecast


@task(name="write-forecasts", cache_policy=NO_CACHE, **IO_RETRIES)
def write_forecast_rows(forecast: Forecast, data_dir: str) -> str:
    path = write_forecasts(forecast, data_dir, flow_run.get_id())
    get_run_logger().info("Forecasts written to %s", path)
    return path


@task(name="publish-forecast", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_forecast(
    forecast: Forecast, window: LatestWindow, data_dir: str, path: str
) -> ForecastSummary:
    """The table and the fan chart, where a person opening the run looks for them."""
    page = write_forecast_report(forecast, window, data_dir)
    create_table_artifact(
        [dict(row) for row in forecast.rows],
        key="wavecast-forecast",
        description=f"{forecast.series} from {forecast.origin} by {forecast.version}",
    )
    create_link_artifact(page, link_text="Fan chart and forecast table", key="wavecast-fan-chart")
    return summarize_forecast(forecast, path, page)


@task(name="find-panel-series", cache_policy=NO_CACHE, **IO_RETRIES)
def find_panel_series(config: ForecastConfig) -> list[str]:
    keys = forecast_keys(config)
    if keys:
        get_run_logger().info("Panel %s: forecasting %d series", config.data_dir, len(keys))
    return keys


@task(name="forecast-panel-series", cache_policy=NO_CACHE, **IO_RETRIES)
def forecast_panel_series(keys: list[str], config: ForecastConfig) -> PartForecast:
    """Each series from its own champion, the source read once; one that cannot forecast (bad
    input, a champion that cannot serve, a permanent storage fault) is skipped with its reason."""
    part = forecast_part(config, keys, flow_run.get_id())
    logger = get_run_logger()
    for key, reason in part.skipped.items():
        logger.warning("Series %s not forecast: %s", key, reason)
    logger.info("%d series forecast, %d skipped", len(part.forecasts), len(part.skipped))
    return part


def forecast_on_runner(keys: list[str], config: ForecastConfig) -> list[PartForecast]:
    """The panel's parts (forecast_parts) mapped on the run's task runner, as a panel retrain's
    batches are; a panel of one part is forecast in the flow's own process, which has no
    worker to start."""
    parts = forecast_parts(keys, config.fan_out)
    if len(parts) == 1:
        return [forecast_panel_series(parts[0], config)]
    check_cluster(config.fan_out)
    with task_runner_for(config.fan_out) as runner:
        futures = runner.map(forecast_panel_series, {"keys": parts, "config": unmapped(config)})
        return [future.result() for future in futures]


@task(name="publish-panel-forecast", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_panel_forecast(
    parts: list[PartForecast], keys: list[str], config: ForecastConfig
) -> PanelForecast:
    """The panel's page, and a table of its first series' forecasts where a person opening
    the run looks (every series is in the page and the dataset)."""
    forecasts = panel_forecast(parts, keys, config.data_dir)
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
        create_link_artifact(page, link_text="Panel forecast page", key="wavecast-fan-chart")
    get_run_logger().info(
        "Forecasts of %d series written to %s", len(forecasts.series), forecasts.path
    )
    return forecasts
