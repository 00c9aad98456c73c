"""What `wavecast retrain|forecast|monitor|models` and wavecast.api share: a config in, the
flow's own result out, on PREFECT_API_URL's server or wavecast's background one. Messages are
in the command line's words; wavecast.api puts them in its callers' (in_callers_words).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from wavecast.errors import InvalidInputError
from wavecast.panel import first_unknown, series_homes
from wavecast.storage import DataDir

if TYPE_CHECKING:
    from wavecast.config import ForecastConfig, MonitorConfig, RetrainConfig
    from wavecast.monitoring import MonitorSummary
    from wavecast.panel import RetrainRun
    from wavecast.panel_forecast import ForecastRun


def check_known_series(root: DataDir, series: Iterable[str]) -> None:
    """Series asked for by name must be in the data dir's panel."""
    from wavecast.tables import shown_id

    unknown = first_unknown(root, series)
    if unknown is not None:
        raise InvalidInputError(f"--series {shown_id(unknown)}: no such series in {root.uri()}")


def series_store(data_dir: str | os.PathLike[str], series: str | None) -> DataDir:
    """The registry of the data dir's own series, or of its panel's `series`."""
    root = DataDir(os.fspath(data_dir))
    if series is None:
        return root
    check_known_series(root, [series])
    return series_homes(root, [series])[series].store


def checked_retrain(config: RetrainConfig) -> RetrainConfig:
    """The config to run, its defaults taken from the data (said on stderr), before Prefect
    or TensorFlow load; InvalidInputError in one line for what cannot be trained on."""
    from wavecast.validate import validate_inputs

    config, chosen = validate_inputs(config)
    if chosen:
        print(f"wavecast: {chosen}", file=sys.stderr)
    return config


def run_retrain(config: RetrainConfig) -> RetrainRun:
    """The retrain flow on a checked config (checked_retrain)."""
    with on_prefect():
        from wavecast.flows.retrain import retrain as retrain_flow

        return retrain_flow(config)


def run_forecast(config: ForecastConfig) -> ForecastRun:
    """The forecast flow, once the series asked for and a single series' champion and source
    are known to be usable: before a Prefect server starts for a run that cannot forecast."""
    from wavecast.forecasting import latest_window
    from wavecast.panel_forecast import forecast_keys

    check_known_series(DataDir(config.data_dir), config.series)
    if forecast_keys(config) == [None]:
        latest_window(config)  # no usable champion, a short source, ...
    with on_prefect():
        from wavecast.flows.forecast import forecast as forecast_flow

        return forecast_flow(config)


def run_monitor(config: MonitorConfig) -> MonitorSummary:
    """The monitor flow; nothing to monitor is a summary that says so, without a server. Drift
    events sent to wavecast's own server, which runs no deployments, are said on stderr."""
    from wavecast.monitoring import summarize, watched_series

    if not watched_series(config):
        return summarize([], 0, config, None)
    with on_prefect() as own_server:
        from wavecast.flows.monitor import monitor as monitor_flow

        summary = monitor_flow(config)
    if summary.events and own_server:
        print(
            f"wavecast: {summary.events} drift event(s) went to wavecast's own Prefect server, "
            "which runs no deployments: set PREFECT_API_URL to the server running the "
            "deployments (make serve) for automations to retrain",
            file=sys.stderr,
        )
    return summary


@contextlib.contextmanager
def on_prefect() -> Iterator[bool]:
    """Runs inside it report to a Prefect server (use_prefect; True: wavecast's own). On
    wavecast's own server, which runs no automations, nothing watches flow-run heartbeats: none
    are sent, and a run's end does not wait up to a second for the heartbeat thread's sleep
    (~3 % of a cold retrain)."""
    if not use_prefect():
        yield False
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield True


def use_prefect() -> bool:
    """PREFECT_API_URL's server, else wavecast's background one (True: it runs no deployments),
    started by the first caller. Refused in a worker process that is importing the caller's
    script: panels fan out on processes that import `__main__`, so a script must call
    wavecast under `if __name__ == "__main__":` (a notebook need not)."""
    if getattr(sys.modules.get("__main__"), "__name__", None) == "__mp_main__":
        raise RuntimeError(
            "wavecast was called while a worker process imported your script: put the calls "
            'under `if __name__ == "__main__":`, as any script using process pools must'
        )
    from wavecast.flows.embedded_server import use_server_for_this_command

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    timeout_s = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    own = use_server_for_this_command(timeout_s) is not None
    from wavecast.tasks.prefect_support import quiet_expected_failures

    quiet_expected_failures()  # a refused input is the caller's one line, not a traceback
    return own
