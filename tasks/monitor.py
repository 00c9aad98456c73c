"""Prefect face of monitoring: score stored forecasts, show the verdicts, emit drift events."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from wavecast.cache_keys import stable_hash
from wavecast.config import MonitorConfig
from wavecast.errors import InvalidInputError
from wavecast.monitoring import (
    SeriesScore,
    drift_event,
    monitor_table,
    score_each,
    watched_series,
    write_monitor_report,
)
from wavecast.realized import Watched
from wavecast.tables import shown_id
from wavecast.tasks.prefect_support import IO_RETRIES


@task(name="find-forecasts", cache_policy=NO_CACHE, **IO_RETRIES)
def find_forecasts(config: MonitorConfig) -> list[Watched]:
    watched = watched_series(config)
    logger = get_run_logger()
    if not watched:
        logger.info("Nothing to monitor: no forecasts in %s", config.data_dir)
    else:
        logger.info("Monitoring %d series' forecasts in %s", len(watched), config.data_dir)
    return watched


@task(name="score-forecasts", cache_policy=NO_CACHE, **IO_RETRIES)
def score_forecasts(watched: list[Watched], config: MonitorConfig) -> list[SeriesScore]:
    """Each series against its champion, the source read once. In a panel, a series whose
    champion or source cannot be read is left out with a warning; a lone series' problem is
    the run's."""
    logger = get_run_logger()
    scores = []
    for one, score in zip(watched, score_each(watched, config), strict=True):
        if isinstance(score, InvalidInputError):
            if len(watched) == 1:
                raise score
            logger.warning("Series %s not monitored: %s", shown_id(one.name), score)
            continue
        logger.info("Series %s: %s", shown_id(one.name), score.health.reason)
        scores.append(score)
    return scores


@task(name="announce-drift", cache_policy=NO_CACHE, **IO_RETRIES)
def announce_drift(scores: list[SeriesScore], config: MonitorConfig) -> int:
    """A `wavecast.forecast.drift` event per drifting series, delivered or the task fails:
    a drift nobody hears about is worse than a failed run."""
    drifting = [score for score in scores if score.health.drift]
    send_events([drift_event(score, config) for score in drifting])
    for score in drifting:
        get_run_logger().warning("Drift in %s: %s", shown_id(score.name), score.health.reason)
    return len(drifting)


def send_events(events: list[dict[str, object]]) -> None:
    """Post the events and wait for the server's answer: `emit_event` would queue them in the
    background and only log a failure to deliver."""
    if not events:
        return
    from prefect.client.orchestration import get_client
    from prefect.events import Event

    body = [Event.model_validate(event).model_dump(mode="json") for event in events]
    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=body)


@task(name="publish-monitor", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_monitor(scores: list[SeriesScore], config: MonitorConfig) -> str | None:
    """The verdict table and the error-over-time page, where a person opening the run looks."""
    if not scores:
        return None
    rows = monitor_table(scores)
    drifting = sum(1 for score in scores if score.health.drift)
    create_table_artifact(
        rows, key="wavecast-monitor", description=f"{drifting} of {len(scores)} series drifting"
    )
    run_key = flow_run.get_id() or stable_hash(*(s.name for s in scores))
    page = write_monitor_report(scores, config, str(run_key))
    create_link_artifact(page, link_text="Realized error over time", key="wavecast-monitor-plot")
    get_run_logger().info("Monitor report: %s", page)
    return page
