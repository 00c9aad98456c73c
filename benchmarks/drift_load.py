"""Drift under load (issue 35, item 9): `python -m benchmarks.drift_load [--series N]`.

`make serve` (flows/serve.sh: an authenticated Prefect server, a process worker, prefect.yaml
deployed) with its state in a temporary directory; a panel of N series (benchmarks.panel's
sines, P points each) trained with cheap candidates into <tmp>/data/panel, so the load is
the automation's, not training's; forecasts from the after-retrain run the training fires.
Then drift, as it happens: every series gets new points (a level shift), and the monitor's
own functions (watched_series, score_each, drift_event, send_events) judge the panel against
them and post one drift event per series, all N in one request. The script waits for every
run they trigger (retrain/on-drift per series, then forecast/after-retrain per published
retrain) and checks:

  exactly one on-drift run per series, none Failed or Crashed (no run of the server at all);
  every series' registry consistent: its champion a complete, servable version made from
  the new data, no staging or retired entry left anywhere under the panel's data dir,
  `wavecast models list` and `wavecast.api.models` reading every series without a problem,
  and a final `wavecast forecast` forecasting all N.

Prints the wall time from the events to the last run's end, the runs by state, and each
kind's median run time and wait for its start. A failed check exits non-zero. Everything it
started is stopped (serve.sh stop) and its files removed, unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.panel import write_panel
from benchmarks.support import ROOT, WAVECAST, child_env, free_port, median, run
from tests.servers import environment_without_prefect, pause_schedules

SERVE = ROOT / "flows" / "serve.sh"
FAILED_STATES = {"FAILED", "CRASHED", "CANCELLED"}
SETTLE_S = 15.0  # no new run for this long after all are final: the automation is done


@contextmanager
def served(work: Path) -> Iterator[dict[str, str]]:
    """flows/serve.sh start with its state under `work`, runs confined to <work>/data; yields
    a client's environment (the API's address and secret). serve.sh stop always follows."""
    port = free_port()
    env = environment_without_prefect(
        BIN=str(Path(sys.executable).parent),
        SERVE_DIR=str(work / "serve"),
        SERVE_PORT=str(port),
        SERVE_PREFECT_HOME=str(work / "serve" / "prefect-home"),
        WAVECAST_ALLOWED_ROOTS=str(work / "data"),
    )
    try:
        started = subprocess.run(
            ["bash", str(SERVE), "start"], env=env, capture_output=True, text=True, timeout=600
        )
        if started.returncode != 0:
            raise SystemExit(f"serve.sh start failed:\n{started.stdout}\n{started.stderr}")
        yield {
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_API_AUTH_STRING": (work / "serve" / "auth").read_text().strip(),
        }
    finally:
        subprocess.run(["bash", str(SERVE), "stop"], env=env, capture_output=True, timeout=180)


def deployment_runs(name: str) -> list[Any]:
    """Every flow run of deployment `name` on the current settings' server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        return list(
            client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                limit=200,
            )
        )


def set_concurrency_limit(name: str, limit: int) -> None:
    """Deployment `name` with another concurrency limit (its collision strategy kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        client.update_deployment(deployment.id, DeploymentUpdate(concurrency_limit=limit))


def all_runs() -> list[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(limit=200))


def is_final(run: Any) -> bool:
    return run.state is not None and run.state.is_final()


def wait_until(done: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll `done` every second until it holds for SETTLE_S in a row (late triggers show)."""
    deadline, held_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if done():
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= SETTLE_S:
                return
        else:
            held_since = None
        time.sleep(1)
    raise SystemExit(f"not done within {timeout_s:.0f} s: {what}")


def drift_panel(source: Path, extra: int) -> None:
    """Append `extra` points to every series, shifted 10 of its standard deviations above its
    last value: new data a forecast made before it misses. Written whole, then renamed."""
    table = pq.read_table(source)
    ids, values = [], []
    for key in pc.unique(table["series"]).to_pylist():
        old = table.filter(pc.equal(table["series"], key))["value"].to_numpy()
        ids += [key] * (len(old) + extra)
        values += [old, old[-1] + 10 * np.std(old) + np.zeros(extra)]
    staging = source.with_name(f".{source.name}.new")
    pq.write_table(pa.table({"series": ids, "value": np.concatenate(values)}), staging)
    staging.replace(source)


def drift_events(panel: Path) -> list[dict[str, object]]:
    """The events the monitor flow would send for this panel now, one per drifting series."""
    from wavecast.config import MonitorConfig
    from wavecast.monitoring import SeriesScore, drift_event, score_each, watched_series

    config = MonitorConfig(data_dir=str(panel))
    scores = score_each(watched_series(config), config)
    events = []
    for score in scores:
        if not isinstance(score, SeriesScore):
            raise SystemExit(f"a series could not be scored: {score}")
        if score.health.drift:
            events.append(drift_event(score, config))
    return events


def seconds(runs: list[Any], field: Callable[[Any], float]) -> str:
    values = [field(run) for run in runs if run.start_time is not None]
    return f"{median(values):.1f} s" if values else "-"


def registry_problems(
    panel: Path, keys: list[str], versions_before: dict[str, set[str]]
) -> list[str]:
    """What is wrong with the panel's registries: each series' champion complete, servable and
    new, nothing staged left behind, both readers of the registry reading every series."""
    import wavecast.api
    from wavecast.panel import series_homes
    from wavecast.registry import list_versions, read_champion, servable
    from wavecast.staging import STAGING_TAG
    from wavecast.storage import DataDir

    problems = []
    homes = series_homes(DataDir(str(panel)), keys)
    for key in keys:
        store = homes[key].store
        champion = read_champion(store)
        if champion is None:
            problems.append(f"{key}: no champion")
            continue
        try:
            servable(store, champion.version)
        except Exception as exc:  # any reason is a finding
            problems.append(f"{key}: champion {champion.version} unusable: {exc}")
        if not set(list_versions(store)) - versions_before[key]:
            problems.append(f"{key}: no new version after its drift retrain")
    left = [str(p.relative_to(panel)) for p in panel.rglob("*") if STAGING_TAG in p.name]
    problems += [f"left behind: {name}" for name in left]
    frame = wavecast.api.models(panel)
    if sorted(frame["unique_id"].unique()) != keys:
        problems.append(f"wavecast.api.models read {frame['unique_id'].nunique()} series")
    damaged = frame[frame["problem"].notna()]
    problems += [f"{r.unique_id} {r.version}: {r.problem}" for r in damaged.itertuples()]
    if (frame.groupby("unique_id")["champion"].sum() != 1).any():
        problems.append("wavecast.api.models: a series without exactly one champion")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--points", type=int, default=60, help="per series, before the drift")
    parser.add_argument("--extra", type=int, default=6, help="points each series gains")
    parser.add_argument("--candidates", default="naive,seasonal_naive,ets")
    parser.add_argument(
        "--limit", type=int, help="on-drift's concurrency limit (default: prefect.yaml's)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="s for the runs to end")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wavecast-drift-load-"))
    problems: list[str] = []
    try:
        with served(work) as client:
            os.environ.update(client)  # this process's own Prefect client, and its children's
            env = child_env(client)
            pause_schedules()  # no hourly tick adds runs in the checkout's data/
            if args.limit is not None:
                set_concurrency_limit("retrain/on-drift", args.limit)
            data = work / "data"
            data.mkdir()
            source, panel = (
                write_panel(data / "panel.parquet", args.series, args.points),
                data / "panel",
            )
            setup, _ = run(
                [*WAVECAST, "retrain", "--source", str(source), "--id-column", "series",
                 "--column", "value", "--candidates", args.candidates, "--data-dir", str(panel)],
                env,
            )  # fmt: skip
            wait_until(
                lambda: [is_final(r) for r in deployment_runs("forecast/after-retrain")] == [True],
                "the forecast after the first training",
                args.timeout,
            )
            from wavecast.panel import series_homes
            from wavecast.registry import list_versions
            from wavecast.storage import DataDir

            homes = series_homes(DataDir(str(panel)))
            keys = sorted(k for k in homes if k is not None)
            before = {k: set(list_versions(homes[k].store)) for k in keys}
            drift_panel(source, args.extra)
            events = drift_events(panel)
            if len(events) != args.series:
                raise SystemExit(f"{len(events)} of {args.series} series drift: no load to test")

            from wavecast.tasks.monitor import send_events

            sent_at = datetime.now(UTC)
            began = time.perf_counter()
            send_events(events)  # one POST, as the monitor's announce-drift task sends them
            sent_s = time.perf_counter() - began

            def settled() -> bool:
                drift = deployment_runs("retrain/on-drift")
                after = [
                    r for r in deployment_runs("forecast/after-retrain") if r.created >= sent_at
                ]
                published = sum(r.state_name == "Completed" for r in drift)
                return (
                    len(drift) >= args.series
                    and len(after) >= published
                    and all(map(is_final, drift + after))
                )

            wait_until(settled, "every run the drift events triggered", args.timeout)
            drift = deployment_runs("retrain/on-drift")
            after = [r for r in deployment_runs("forecast/after-retrain") if r.created >= sent_at]
            last_end = max(r.end_time for r in drift + after if r.end_time is not None)
            wall = (last_end - sent_at).total_seconds()

            per_series = Counter(r.parameters["config"]["series"]["series"][0] for r in drift)
            problems += [f"{k}: {per_series[k]} on-drift runs" for k in keys if per_series[k] != 1]
            states = Counter(r.state_name for r in all_runs())
            problems += [
                f"{r.name} ({r.flow_id}): {r.state_name}: {r.state.message}"
                for r in all_runs()
                if r.state is not None and r.state.type.value in FAILED_STATES
            ]
            problems += registry_problems(panel, keys, before)
            _, listed = run([*WAVECAST, "models", "list", "--data-dir", str(panel)], env)
            problems += [f"models list: no {k}" for k in keys if k not in listed.stdout]
            _, forecast = run([*WAVECAST, "forecast", "--data-dir", str(panel), "--json"], env)
            forecasts = json.loads(forecast.stdout.strip().splitlines()[-1])
            if len(forecasts["series"]) != args.series or forecasts["skipped"]:
                problems.append(
                    f"final forecast: {len(forecasts['series'])} series, "
                    f"skipped {forecasts['skipped']}"
                )
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def duration(r: Any) -> float:
        return float(r.total_run_time.total_seconds())

    def wait(r: Any) -> float:
        return float((r.start_time - r.created).total_seconds())

    limit = args.limit or "prefect.yaml's"
    print(
        f"\n{args.series} series x {args.points} points (+{args.extra} drifted), "
        f"--candidates {args.candidates}; setup retrain {setup:.1f} s; on-drift's "
        f"concurrency limit: {limit}"
    )
    print(f"{len(events)} drift events posted in {sent_s:.2f} s")
    print(f"wall time, events to the last run's end: {wall:.1f} s")
    print(f"runs on the server by state: {dict(states)}")
    print(
        f"retrain/on-drift: {len(drift)} runs, median run {seconds(drift, duration)}, "
        f"median wait to start {seconds(drift, wait)}"
    )
    print(
        f"forecast/after-retrain: {len(after)} runs, median run {seconds(after, duration)}, "
        f"median wait to start {seconds(after, wait)}"
    )
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  {p}" for p in problems))
        raise SystemExit(1)
    print(
        "checks passed: one on-drift run per series, no failed run, registries consistent, "
        "models list and api.models read all, the final forecast covers every series"
    )


if __name__ == "__main__":
    main()
