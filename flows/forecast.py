"""The forecast flow: the champion forecasts past the end of the source as it is now."""

from __future__ import annotations

from prefect import flow

from wavecast.config import ForecastConfig
from wavecast.panel_forecast import PanelForecast
from wavecast.records import ForecastSummary
from wavecast.tasks.forecast import (
    find_panel_series,
    forecast_from_model,
    forecast_on_runner,
    publish_forecast,
    publish_panel_forecast,
    read_latest_window,
    write_forecast_rows,
)
from wavecast.tasks.prefect_support import confine_deployment_run, unvisited


@flow(
    name="forecast", description="Forecast the steps after the source's last point, with intervals."
)
def forecast(config: ForecastConfig | None = None) -> ForecastSummary | PanelForecast:
    """Nothing is cached: a forecast is cheap, and its input is whatever the source holds now.

    A panel's data dir forecasts each series from its own champion, into one dataset; a
    large panel in parts on the task runner --runner picks, as a panel retrain does.
    """
    confine_deployment_run()
    config = config or ForecastConfig()
    keys = find_panel_series(config)
    if keys:
        parts = forecast_on_runner(keys, config)
        return publish_panel_forecast(unvisited(parts), unvisited(keys), config)
    window = read_latest_window(config)
    predicted = forecast_from_model(window, config)
    path = write_forecast_rows(predicted, window.home)
    return publish_forecast(predicted, window, window.home, path)
