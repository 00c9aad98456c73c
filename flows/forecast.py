"""The forecast flow: the champion forecasts past the end of the source as it is now."""

from __future__ import annotations

from prefect import flow

from wavecast.config import ForecastConfig
from wavecast.panel_forecast import ForecastRun
from wavecast.tasks.forecast import find_series, forecast_on_runner, publish_forecasts
from wavecast.tasks.prefect_support import confine_deployment_run, unvisited


@flow(
    name="forecast", description="Forecast the steps after the source's last point, with intervals."
)
def forecast(config: ForecastConfig | None = None) -> ForecastRun:
    """Nothing is cached: a forecast is cheap, and its input is whatever the source holds now.

    Each series (the data dir's own, or every series of a panel) forecasts from its own
    champion into the data dir's one dataset; a large panel in parts on the task runner
    --runner picks, as a retrain does.
    """
    confine_deployment_run()
    config = config or ForecastConfig()
    keys = find_series(config)
    parts = forecast_on_runner(keys, config)
    return publish_forecasts(unvisited(parts), config)
