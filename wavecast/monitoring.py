"""Score published forecasts against what has happened since, and judge each champion's drift.

<data-dir>/monitoring/series=<name>/<forecast file>   the realized rows of one stored forecast
                                                      file (same name), rewritten whole on each
                                                      run: a rerun replaces, never duplicates
<data-dir>/monitor-reports/<run key>/index.html       realized error over time, per series

The judgement: over the champion's `window` most recent realized targets, the error ratio is
their root-mean-square error over the RMSE the same champion had on its held-out test windows
at the same steps. Drift is a ratio above `threshold`, or fewer than `min_coverage` of those
targets inside their 95 % interval, once at least `min_realized` targets are realized, and
only when a forecaster as good as on its test windows would show it less than 1 % of the
time (on one or two targets, that is stricter than the settings).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from wavecast.cache_keys import stable_hash
from wavecast.config import MonitorConfig, SeriesSpec
from wavecast.errors import InvalidInputError, environment_problem, is_transient, or_bad_input
from wavecast.forecasting import check_same_column, held_out_errors, resolve_version
from wavecast.forecasts_store import FORECASTS, stored_series
from wavecast.generate import LoadedSeries, load_each, series_key
from wavecast.home import SeriesHome
from wavecast.panel import series_homes
from wavecast.realized import (
    MONITORING,
    Watched,
    champion_rows,
    join_stored_forecasts,
    unmatched_note,
)
from wavecast.records import Manifest, Record
from wavecast.registry import one_line, read_champion
from wavecast.storage import DataDir
from wavecast.tables import shown_id

LOG = logging.getLogger(__name__)

REPORTS = "monitor-reports"
DRIFT_EVENT = "wavecast.forecast.drift"
# A held-out RMSE below this share of the series' spread (a noiseless sine fit by the linear
# AR: ~1e-8) is taken as this, or float rounding in new data would read as drift.
ERROR_FLOOR = 1e-3
COVERAGE_LEVEL = "95"
# Drift must be a surprise at this level for a forecaster as good as on its test windows: one
# or two realized targets need a larger ratio, or a lower coverage, than the settings say.
SIGNIFICANCE = 0.01
Z_99 = 2.3263478740408408  # the standard normal's 99th percentile
MAX_PLOTS = 50  # drifting series first: a 20,000-series panel still gets a readable page


class SeriesHealth(Record):
    """One series' verdict, as `wavecast monitor --json` prints it."""

    realized: int  # realized targets of the champion's forecasts
    error_ratio: float | None
    coverage_95: float | None
    drift: bool
    version: str
    reason: str


class SeriesScore(BaseModel):
    """A verdict, the points behind its plot, and what a retrain of the series needs."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    name: str
    data_dir: str
    health: SeriesHealth
    target_index: tuple[int, ...]  # the champion's realized targets, oldest first
    relative_error: tuple[float, ...]  # |error| / held-out RMSE at that step
    source: str  # absolute when local
    retrain: dict[str, object]  # the champion's config, with that source and its data dir


class MonitorSummary(Record):
    """What `wavecast monitor --json` prints last, and the monitor flow returns."""

    series: dict[str, SeriesHealth]
    events: int
    path: str
    report: str | None = None
    note: str | None = None


def watched_series(config: MonitorConfig) -> list[Watched]:
    """Every series with stored forecasts (or the requested ones), and where its champion is:
    the data dir itself, or for a panel the series' own data dir."""
    store = DataDir(config.data_dir)
    names = stored_series(store)
    missing = [name for name in config.series if name not in names]
    if missing:
        raise InvalidInputError(f"--series {missing[0]}: no forecasts in {store.uri(FORECASTS)}")
    own = read_champion(store) is not None  # the data dir is one series' own, not a panel's
    homes = {} if own else series_homes(store, names)
    return [
        Watched(name=name, partition=part, home=homes.get(name) or SeriesHome(store.uri()))
        for name, part in sorted(names.items())
        if not config.series or name in config.series
    ]


def held_out_rmse(store: DataDir, version: str, spread: float) -> np.ndarray:
    """The champion's RMSE on its held-out windows, per step, floored on the data's scale."""
    errors = held_out_errors(store, version)
    errors = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    rmse = np.sqrt(np.mean(errors**2, axis=0))
    return np.maximum(rmse, ERROR_FLOOR * spread)


def judge(
    rows: pa.Table, rmse: np.ndarray, config: MonitorConfig, version: str
) -> tuple[SeriesHealth, np.ndarray]:
    """The verdict on the recent window, and every realized target's relative error."""
    n = rows.num_rows
    relative = np.zeros(0)
    if n:
        errors = rows["error"].to_numpy()
        relative = np.abs(errors) / rmse[rows["step"].to_numpy() - 1]
    recent = rows.slice(max(0, n - config.window))
    level, coverage = recent_coverage(recent)
    coverage_95 = coverage if level == COVERAGE_LEVEL else None
    if n < config.min_realized:
        reason = f"too few realized targets to judge: {n} of {config.min_realized}"
        health = SeriesHealth(
            realized=n,
            error_ratio=None,
            coverage_95=coverage_95,
            drift=False,
            version=version,
            reason=reason,
        )
        return health, relative
    ratio = float(rolling_ratio(relative, config.window)[-1])
    judged = recent.num_rows
    needed = max(config.threshold, chance_ratio(judged))
    reasons, on_track = [], f"on track: error {ratio:.2f}x the held-out RMSE"
    if ratio > needed:
        reasons.append(f"error {ratio:.2f}x the held-out RMSE > {needed:.3g}x")
    elif ratio > config.threshold:
        on_track += f", which {judged} target(s) can reach by chance (drift needs {needed:.2f}x)"
    # min_coverage is of 95 % intervals; the same share of a narrower level's nominal one.
    least = config.min_coverage * float(level) / float(COVERAGE_LEVEL)
    if coverage is not None and coverage < least:
        inside = round(coverage * judged)
        if misses_by_chance(inside, judged, float(level) / 100) < SIGNIFICANCE:
            reasons.append(f"{level} % coverage {coverage:.0%} < {least:.0%}")
    verdict = "; ".join(reasons) or on_track
    health = SeriesHealth(
        realized=n,
        error_ratio=ratio,
        coverage_95=coverage_95,
        drift=bool(reasons),
        version=version,
        reason=f"{verdict} (last {judged} realized)",
    )
    return health, relative


def recent_coverage(recent: pa.Table) -> tuple[str, float | None]:
    """(level, share of the recent targets inside that level's interval): the 95 % one, else
    the widest level every recent target has (a forecast at --level 50 alone still tests
    coverage); (COVERAGE_LEVEL, None) when no level covers them all."""
    levels = [
        column.removeprefix("inside_")
        for column in recent.column_names
        if column.startswith("inside_") and recent[column].null_count == 0
    ]
    if not recent.num_rows or not levels:
        return COVERAGE_LEVEL, None
    level = COVERAGE_LEVEL if COVERAGE_LEVEL in levels else max(levels, key=float)
    inside = recent[f"inside_{level}"].to_numpy(zero_copy_only=False)
    return level, float(np.mean(inside))


def chance_ratio(n: int) -> float:
    """The error ratio a forecaster as good as on its test windows passes by chance with
    probability SIGNIFICANCE over n targets (Gaussian errors): sqrt(chi2_n quantile / n), by
    Wilson-Hilferty. 2.57 for one target, 2.15 for two, under 2 from three on."""
    c = 2 / (9 * n)
    return math.sqrt((1 - c + Z_99 * math.sqrt(c)) ** 3)


def misses_by_chance(inside: int, n: int, level: float = 0.95) -> float:
    """The chance that at most `inside` of n targets fall inside intervals that cover `level`."""
    return sum(math.comb(n, k) * level**k * (1 - level) ** (n - k) for k in range(inside + 1))


def absolute_source(spec: SeriesSpec) -> SeriesSpec:
    """A local relative source as an absolute path: a retrain may run in another directory."""
    if spec.is_generated or "://" in spec.source:
        return spec
    return spec.model_copy(update={"source": str(Path(spec.source).resolve())})


def retrain_config(manifest: Manifest, series: SeriesSpec, own: DataDir) -> dict[str, object]:
    """What a retrain of this series needs, wherever it runs: the champion's own config, on
    its panel's data dir for a panel's series (the run splits the panel's source, keeps this
    one series and retrains it in its own data dir, as the panel's runs do)."""
    kept = manifest.config.without_run_options()  # a manifest written before they were left out
    root = SeriesHome.of_dir(own, series_key(series)).root
    config = kept.model_copy(update={"series": series, "data_dir": root})
    return config.model_dump(mode="json")


class Scoring(NamedTuple):
    """What scoring a series needs besides its actuals: its champion and the source it reads."""

    watched: Watched
    version: str
    manifest: Manifest
    series: SeriesSpec  # the champion's, its local source made absolute


def scoring_of(watched: Watched, source: str | None = None) -> Scoring:
    """The series' champion and where its actuals are: `source` when given (a newer file or
    frame of the same columns), else the one the champion was trained on."""
    version, manifest = resolve_version(watched.home.store, None)
    series = manifest.config.series
    if source is not None:
        series = series.model_copy(update={"source": source})
    return Scoring(watched, version, manifest, absolute_source(series))


def score_each(
    watched: list[Watched], config: MonitorConfig
) -> list[SeriesScore | InvalidInputError]:
    """Each series scored against its current champion, or the bad input that stopped it;
    the sources they name read once each (as of now, their schema checked), not per series."""
    scorings = [or_bad_input(scoring_of, one, config.source) for one in watched]
    usable = [one for one in scorings if isinstance(one, Scoring)]
    actuals = iter(load_each([one.series for one in usable]))
    scores: list[SeriesScore | InvalidInputError] = []
    for scoring in scorings:
        loaded = scoring if isinstance(scoring, InvalidInputError) else next(actuals)
        if isinstance(loaded, InvalidInputError):
            scores.append(loaded)
        else:
            assert isinstance(scoring, Scoring)
            scores.append(scored_or_reason(scoring, loaded, config))
    return scores


def scored_or_reason(
    scoring: Scoring, loaded: LoadedSeries, config: MonitorConfig
) -> SeriesScore | InvalidInputError:
    """score_series, or the series' reason in a sentence: any failure but a fault that may
    heal is the series' own, and the others are still scored (a retried run scores them all
    again)."""
    try:
        return score_series(scoring, loaded, config)
    except InvalidInputError as exc:
        return exc
    except Exception as exc:
        if is_transient(exc):
            raise
        return InvalidInputError(
            environment_problem(exc) or f"could not be scored: {one_line(exc)}"
        )


def score_series(scoring: Scoring, loaded: LoadedSeries, config: MonitorConfig) -> SeriesScore:
    """Join, write and judge one series against its current champion."""
    watched, version = scoring.watched, scoring.version
    check_same_column(scoring.manifest, scoring.series, loaded, version)
    own = watched.home.store
    joined = join_stored_forecasts(watched.home.root_store, watched, loaded)
    rows = champion_rows(joined.realized, version)
    spread = float(np.std(loaded.values)) if len(loaded.values) else 0.0
    rmse = held_out_rmse(own, version, spread)
    health, relative = judge(rows, rmse, config, version)
    if joined.missed:
        note = unmatched_note(joined.missed)
        LOG.warning("Series %s: %s", shown_id(watched.name), note)
        health = health.model_copy(update={"reason": f"{health.reason}; {note}"})
    return SeriesScore(
        name=watched.name,
        data_dir=own.uri(),
        health=health,
        target_index=tuple(rows["target_index"].to_pylist()),
        relative_error=tuple(float(v) for v in relative),
        source=scoring.series.source,
        retrain=retrain_config(scoring.manifest, scoring.series, own),
    )


def drift_event(score: SeriesScore, config: MonitorConfig) -> dict[str, object]:
    """`emit_event`'s arguments for a drifting series: its resource is the series (and its
    data dir, so two data dirs' same-named series debounce apart); the payload carries the
    figures and the config a retrain of exactly this series needs."""
    health = score.health
    return {
        "event": DRIFT_EVENT,
        "resource": {
            "prefect.resource.id": f"wavecast.series.{quote(score.name, safe='')}",
            "prefect.resource.name": score.name,
            "wavecast.data-dir": score.data_dir,
        },
        "related": [
            {
                "prefect.resource.id": f"wavecast.data-dir.{stable_hash(score.data_dir)}",
                "prefect.resource.role": "data-dir",
            }
        ],
        "payload": {
            "series": score.name,
            "data_dir": score.data_dir,
            "source": score.source,
            "version": health.version,
            "realized": health.realized,
            "error_ratio": health.error_ratio,
            "coverage_95": health.coverage_95,
            "threshold": config.threshold,
            "reason": health.reason,
            "config": score.retrain,
        },
    }


def monitor_table(scores: list[SeriesScore]) -> list[dict[str, str | float | int | bool | None]]:
    """One row per series for the wavecast-monitor table artifact."""
    return [
        {
            "series": score.name,
            "drift": score.health.drift,
            "realized": score.health.realized,
            "error_ratio": score.health.error_ratio,
            "coverage_95": score.health.coverage_95,
            "version": score.health.version,
            "reason": score.health.reason,
        }
        for score in scores
    ]


def summarize(
    scores: list[SeriesScore], events: int, config: MonitorConfig, report: str | None
) -> MonitorSummary:
    note = None if scores else f"nothing to monitor: no forecasts in {config.data_dir}"
    return MonitorSummary(
        series={score.name: score.health for score in scores},
        events=events,
        path=DataDir(config.data_dir).uri(MONITORING),
        report=report,
        note=note,
    )


def write_monitor_report(scores: list[SeriesScore], config: MonitorConfig, run_key: str) -> str:
    """Per series, realized error over time against the threshold, on one HTML page."""
    from wavecast.plots import plot_realized_error
    from wavecast.report import monitor_html

    store = DataDir(config.data_dir)
    parts = (REPORTS, run_key)
    images: dict[str, bytes] = {}
    with store.staged_dir(*parts) as staging:
        for number, score in enumerate(sorted(scores, key=lambda s: not s.health.drift)):
            if number == MAX_PLOTS:
                break
            relative = np.asarray(score.relative_error)
            png = plot_realized_error(
                np.asarray(score.target_index),
                relative,
                rolling_ratio(relative, config.window),
                config.window,
                config.threshold,
                f"{score.name}: {'DRIFT' if score.health.drift else 'on track'} "
                f"({score.health.version})",
                staging / f"series-{number}.png",
            )
            images[score.name] = png.read_bytes()
        (staging / "index.html").write_text(monitor_html(monitor_table(scores), images))
    return store.url(*parts, "index.html")


def rolling_ratio(relative: np.ndarray, window: int) -> np.ndarray:
    """At each realized target, the error ratio over the `window` targets up to it."""
    squares = np.concatenate([[0.0], np.cumsum(relative**2)])
    ends = np.arange(1, len(relative) + 1)
    starts = np.maximum(0, ends - window)
    return np.sqrt((squares[ends] - squares[starts]) / (ends - starts)) if len(relative) else ends
