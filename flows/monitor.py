"""The monitor flow: how did the published forecasts do, and should a series retrain?"""

from __future__ import annotations

from prefect import flow

from wavecast.config import MonitorConfig
from wavecast.monitoring import MonitorSummary, summarize
from wavecast.tasks.monitor import announce_drift, find_forecasts, publish_monitor, score_forecasts
from wavecast.tasks.prefect_support import confine_deployment_run


@flow(name="monitor", description="Score stored forecasts against actuals; emit drift events.")
def monitor(config: MonitorConfig | None = None) -> MonitorSummary:
    """Nothing is cached: actuals arrive between runs. Drift is announced as an event, and
    prefect.yaml's retrain/on-drift deployment reacts to it."""
    confine_deployment_run()
    config = config or MonitorConfig()
    watched = find_forecasts(config)
    scores = score_forecasts(watched, config)
    report = publish_monitor(scores, config)
    events = announce_drift(scores, config)
    return summarize(scores, events, config, report)
