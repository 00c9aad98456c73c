"""Forecast the future from a published model: the targets after the last observed point of
the source as it is now, with split-conformal intervals, written where dashboards read them.

<data-dir>/forecasts/series=<name>/<version>-<origin>.parquet   one row per step; forecasting
                                                                the same origin with the
                                                                same version replaces it
                                                                (<name>: series_slug's, the
                                                                whole name in series_name)
<data-dir>/forecast-reports/<version>-<origin>/                 fan chart and HTML page
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

from wavecast.config import ForecastConfig, SeriesSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.evaluate import ERRORS_FILE
from wavecast.forecasters.forecaster import Forecaster
from wavecast.forecasters.statistical import MAX_HISTORY
from wavecast.forecasts_store import bound_key, label, level_key
from wavecast.generate import LoadedSeries, load_series, series_key, series_label
from wavecast.home import SeriesHome
from wavecast.intervals import conformal_half_widths, held_out_coverage, resolution_floor
from wavecast.records import Forecast, ForecastSummary, LatestWindow, Manifest, Row
from wavecast.registry import (
    MODELS,
    Servable,
    UnusableVersionError,
    checked_version,
    read_champion,
    read_manifest,
    servable,
)
from wavecast.storage import DataDir
from wavecast.times import steps_ahead

REPORTS = "forecast-reports"
HISTORY_POINTS = 300  # observations kept for the fan chart
# A forecast farther than this many ranges of its history from the last value is refused
# (check_plausible).
ABSURD_RANGES = 1000


def serving_version(store: DataDir, requested: str | None) -> tuple[str, Servable]:
    """resolve_version, and bad input unless that version can serve: a damaged champion is
    no usable champion (as for a retrain's gate), never silently replaced by an older one."""
    version, manifest = resolve_version(store, requested)
    return version, serving(store, version, requested, manifest)


def serving(
    store: DataDir, version: str, requested: str | None, manifest: Manifest | None = None
) -> Servable:
    """servable, and when the version is the champion (none was `requested`), the advice."""
    try:
        return servable(store, version, manifest)
    except UnusableVersionError as exc:
        if requested is None:
            raise UnusableVersionError(
                f"no usable champion in {store.uri()}: {exc}; promote a version that can "
                "(wavecast models list) or retrain"
            ) from None
        raise


def resolve_version(store: DataDir, version: str | None) -> tuple[str, Manifest]:
    """The requested version, or the champion; bad input when there is none to forecast with."""
    if version is None:
        champion = read_champion(store)
        if champion is None:
            raise InvalidInputError(f"no champion in {store.uri()}: run wavecast retrain first")
        version = champion.version
    version = checked_version(store, version)
    manifest = read_manifest(store, version)
    if manifest is None:
        raise InvalidInputError(f"version {version} has no readable manifest.json: retrain")
    return version, manifest


def target_labels(
    times: np.ndarray | None, n_points: int, spec: WindowSpec, zone: str | None = None
) -> tuple[str, tuple[str, ...], str | None]:
    """(origin, targets, note): timestamps when the series has a regular time column (its
    frequency inferred from the data; in its zone, if it has one), else indices; an
    irregular one says why."""
    offsets = [spec.horizon + k for k in range(spec.steps)]
    if times is None:
        last = n_points - 1
        return str(last), tuple(str(last + o) for o in offsets), None
    import pandas as pd

    index = zoned(times[-200:], zone)
    origin = label(index[-1])
    steps = np.diff(index.to_numpy())
    if len(steps) and (steps == steps[0]).all():
        return origin, tuple(label(index[-1] + steps[0] * o) for o in offsets), None
    frequency = (
        pd.infer_freq(index) if isinstance(index, pd.DatetimeIndex) and len(index) > 2 else None
    )
    if frequency is not None:
        ahead = pd.date_range(index[-1], periods=max(offsets) + 1, freq=frequency)
        return origin, tuple(ahead[o].isoformat() for o in offsets), None
    regular = steps_ahead(np.asarray(times[-200:]), zone, offsets)  # gaps kept (--missing drop)
    if regular is not None:
        stamps = pd.DatetimeIndex(regular)
        stamps = stamps.tz_localize("UTC").tz_convert(zone) if zone else stamps
        return origin, tuple(label(stamp) for stamp in stamps), None
    note = "irregular time steps: targets are step numbers after the origin"
    return origin, tuple(f"+{o}" for o in offsets), note


def zoned(times: np.ndarray, zone: str | None) -> pd.Index:
    """Stored times (UTC instants when zoned) as the series' own: in its zone, if it has one."""
    import pandas as pd

    index = pd.Index(times)
    if zone and isinstance(index, pd.DatetimeIndex):
        index = index.tz_localize("UTC").tz_convert(zone)
    return index


def recent_labels(times: np.ndarray | None, count: int, zone: str | None) -> tuple[str, ...]:
    """The last `count` observations' times as labels, for the fan chart's axis; none for a
    series without a time column."""
    if times is None or count == 0:
        return ()
    return tuple(label(moment) for moment in zoned(times[-count:], zone))


def latest_window(config: ForecastConfig) -> LatestWindow:
    """Read the source as of now (by default the champion's) and keep its last window."""
    store = DataDir(config.data_dir)
    version, served = serving_version(store, config.version)
    series_spec = source_spec(served.manifest, config)
    return window_of(store, version, served, series_spec, load_series(series_spec))


def source_spec(manifest: Manifest, config: ForecastConfig) -> SeriesSpec:
    """The series the version was trained on, as --source and --column (if given) read it."""
    overrides = {key: getattr(config, key) for key in ("source", "column") if getattr(config, key)}
    return manifest.config.series.model_copy(update=overrides)


def window_of(
    store: DataDir, version: str, served: Servable, series_spec: SeriesSpec, loaded: LoadedSeries
) -> LatestWindow:
    """What a forecast needs of a loaded series: its last window, or the recent history a
    statistical forecaster is refitted on, and the labels of the steps ahead."""
    manifest = served.manifest
    spec = manifest.dataset.spec
    check_same_column(manifest, series_spec, loaded, version)
    if len(loaded.values) < spec.input_len:
        raise InvalidInputError(
            f"--source {series_spec.source}: {len(loaded.values)} points, fewer than the "
            f"{spec.input_len} the model reads"
        )
    origin, targets, note = target_labels(loaded.times, len(loaded.values), spec, loaded.timezone)
    forecaster = manifest.published.forecaster if manifest.published else "network"
    # A statistical forecaster is refitted on the recent history; the others read one window.
    keep = MAX_HISTORY if served.forecaster.refits else HISTORY_POINTS
    history = loaded.values[-max(keep, spec.input_len) :]
    shown = min(HISTORY_POINTS, len(history))
    return LatestWindow(
        version=version,
        dataset_id=manifest.dataset.dataset_id,
        series=series_label(series_key(series_spec), loaded.column, series_spec.source),
        source=series_spec.source,
        forecaster=forecaster,
        spec=spec,
        n_points=len(loaded.values),
        history=tuple(float(v) for v in history),
        history_times=recent_labels(loaded.times, shown, loaded.timezone),
        origin=origin,
        targets=targets,
        note=note,
        home=forecasts_home(store, series_spec),
    )


def check_same_column(
    manifest: Manifest, series_spec: SeriesSpec, loaded: LoadedSeries, version: str
) -> None:
    """Bad input for a source whose value column is not the one the version was trained on
    (its config said "the only numeric one" and the column was renamed, or another took its
    place): it would be forecast, or scored, from another quantity. --column names one on
    purpose. The column is not quoted: its name is the data's."""
    trained = manifest.series.column
    if series_spec.column is None and trained is not None and loaded.column != trained:
        raise InvalidInputError(
            f"--source {series_spec.source}: its value column is not the one version "
            f"{version} was trained on (renamed or replaced): retrain, or name it with --column"
        )


def forecasts_home(store: DataDir, spec: SeriesSpec) -> str:
    """Where a series' forecasts go: its data dir, unless that is a panel series' own
    (`<panel>/series/<id>/`, which a retrain of that one series, the drift loop's, publishes
    to): then its panel's dataset, beside its siblings' forecasts, where the panel's readers
    and monitor look."""
    return SeriesHome.of_dir(store, series_key(spec)).root


def held_out_errors(store: DataDir, version: str, steps: int | None = None) -> np.ndarray:
    """The version's (windows, steps) held-out errors; bad input when missing or damaged
    (truncated, not .npy, or not `steps` per window)."""
    if not store.exists(MODELS, version, ERRORS_FILE):
        raise InvalidInputError(
            f"version {version} has no held-out errors to calibrate intervals: retrain it"
        )
    with store.local_file(MODELS, version, ERRORS_FILE) as path:
        try:
            errors = np.load(path, allow_pickle=False)
            return np.asarray(errors, dtype=np.float64).reshape(len(errors), steps or -1)
        except (ValueError, TypeError, EOFError):
            raise InvalidInputError(
                f"version {version}: {ERRORS_FILE} does not hold one row of held-out errors "
                "per window: retrain it"
            ) from None


def forecast_window(window: LatestWindow, store: DataDir, levels: tuple[float, ...]) -> Forecast:
    """The champion's K forecasts after the origin, each with its interval per level."""
    served = servable(store, window.version)
    return forecast_with(window, store, levels, point_forecast(served.forecaster, window))


def forecast_with(
    window: LatestWindow, store: DataDir, levels: tuple[float, ...], point: np.ndarray
) -> Forecast:
    """forecast_window with the version's point forecast made already (by the caller, who
    may have batched it with other series')."""
    check_plausible(window, point)
    errors = held_out_errors(store, window.version, window.spec.steps)
    floor = resolution_floor(np.asarray(window.history))
    widths = {level: conformal_half_widths(errors, level / 100, floor) for level in levels}
    check_finite_bounds(window, point, widths)
    rows: list[Row] = []
    for step, (target, value) in enumerate(zip(window.targets, point, strict=True)):
        row: Row = {"step": step + 1, "target": target, "forecast": float(value)}
        for level in levels:
            row[bound_key("lo", level)] = float(value - widths[level][step])
            row[bound_key("hi", level)] = float(value + widths[level][step])
        rows.append(row)
    coverage = {level_key(lv): held_out_coverage(errors, lv / 100, floor) for lv in levels}
    return Forecast(
        version=window.version,
        dataset_id=window.dataset_id,
        series=window.series,
        forecaster=window.forecaster,
        origin=window.origin,
        levels=levels,
        rows=tuple(rows),
        coverage=coverage,
        note=window.note,
    )


def check_plausible(window: LatestWindow, point: np.ndarray) -> None:
    """Bad input for a forecast no model of this series could mean: not finite, or farther
    from the last value than ABSURD_RANGES times the range of the history it was made from
    (its magnitude, for a flat one). A trend extrapolated over any horizon a retrain accepts
    (one no longer than the series) moves a few ranges; a thousand is overflowing weights."""
    why = ""
    history = np.asarray(window.history, dtype=np.float64)
    span = float(np.ptp(history)) or float(np.abs(history[-1])) or 1.0
    if not np.isfinite(point).all():
        why = "a value that is not finite"
    elif (farthest := float(np.max(np.abs(point - history[-1])))) > ABSURD_RANGES * span:
        why = f"a value {farthest / span:.3g} times the range of its history from its last value"
    if why:
        raise InvalidInputError(
            f"version {window.version} ({window.forecaster}) forecast {why}: its stored "
            "weights are damaged or diverge on this history; retrain it"
        )


def check_finite_bounds(
    window: LatestWindow, point: np.ndarray, widths: dict[float, np.ndarray]
) -> None:
    """Bad input for an interval without finite bounds (no held-out error to calibrate it)."""
    for level, width in widths.items():
        with np.errstate(over="ignore"):
            bounds = np.concatenate([point - width, point + width])
        if not np.isfinite(bounds).all():
            raise InvalidInputError(
                f"version {window.version}: its {level_key(level)} % interval has no finite "
                "bound (no held-out errors to calibrate it on); retrain it"
            )


def point_forecast(
    forecaster: Forecaster, window: LatestWindow, network_point: np.ndarray | None = None
) -> np.ndarray:
    """The forecaster's forecast after the window's last point (Forecaster.forecast); a
    network's forecast made already (`network_point`, batched with other series')."""
    values = np.asarray(window.history, dtype=np.float64)
    spec = window.spec
    return forecaster.forecast(values, spec.horizon, spec.steps, network_point)


def fan_bands(
    forecast: Forecast,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each level's (low, high) bounds by step, widest level first."""
    bands = {}
    for level in sorted(forecast.levels, reverse=True):
        key = level_key(level)
        low = np.array([float(row[bound_key("lo", key)]) for row in forecast.rows])
        high = np.array([float(row[bound_key("hi", key)]) for row in forecast.rows])
        bands[f"{key} % interval"] = (low, high)
    return bands


def draw_fan(forecast: Forecast, window: LatestWindow, path: Path) -> Path:
    """The recent history, then the forecast and its intervals, as a PNG at `path`."""
    from wavecast.plots import save_figure

    return save_figure(fan_chart(forecast, window), path)


def fan_chart(forecast: Forecast, window: LatestWindow) -> Figure:
    """draw_fan's figure: on the series' times (fan_axis)."""
    from wavecast.plots import fan_figure

    history = np.asarray(window.history[-HISTORY_POINTS:])
    observed_at, target_at, x_label = fan_axis(window, len(history))
    return fan_figure(
        observed_at,
        history,
        target_at,
        np.array([float(row["forecast"]) for row in forecast.rows]),
        fan_bands(forecast),
        f"{forecast.series}: {window.spec.steps} step(s) from {forecast.origin}",
        x_label,
    )


def fan_axis(window: LatestWindow, shown: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Where the last `shown` observations and the targets sit on a chart: the series' times
    (dates as their wall-clock time, or an integer time column's values) when it has them
    and its targets are times, else its indices."""
    labels = (*window.history_times[-shown:], *window.targets) if window.history_times else ()
    if len(labels) == shown + len(window.targets) and not any(t.startswith("+") for t in labels):
        at = chart_times(labels)
        return at[:shown], at[shown:], "time"
    offsets = window.spec.horizon + np.arange(window.spec.steps)
    observed = np.arange(window.n_points - shown, window.n_points)
    return observed, window.n_points - 1 + offsets, "point (index in the series)"


def chart_times(labels: Sequence[str]) -> np.ndarray:
    """Time labels as a chart's positions: integers, or datetime64 of the time each names on
    its own clock (a zoned series is drawn in its zone, across offset changes)."""
    if all(text.lstrip("-").isdigit() for text in labels):
        return np.array([int(text) for text in labels])
    import pandas as pd

    wall = [pd.Timestamp(text).replace(tzinfo=None) for text in labels]
    return np.array(wall, dtype="datetime64[ns]")


def summarize_forecast(forecast: Forecast, path: str, report: str) -> ForecastSummary:
    return ForecastSummary(
        version=forecast.version,
        series=forecast.series,
        forecaster=forecast.forecaster,
        origin=forecast.origin,
        forecasts=forecast.rows,
        coverage=forecast.coverage,
        path=path,
        report=report,
        note=forecast.note,
    )
