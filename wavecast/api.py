"""wavecast from Python: the command line's flows, with DataFrames in and out.

Columns follow the forecasting libraries people already use (statsforecast, neuralforecast):
a long frame of `unique_id`, `ds`, `y` goes in; forecasts come back as `unique_id`, `ds`,
`step`, `forecaster`, `forecast`, `lo-80`, `hi-80`, ... Runs report to the Prefect server
PREFECT_API_URL names, else to wavecast's background server (started by the first caller,
reused by the next; as the CLI does).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from wavecast.commands import (
    check_known_series,
    checked_retrain,
    run_forecast,
    run_monitor,
    run_retrain,
    series_store,
)
from wavecast.config import ForecastConfig, MonitorConfig, RetrainConfig
from wavecast.errors import InvalidInputError
from wavecast.forecasts_store import typed_times
from wavecast.panel import (
    SCORE_COLUMNS,
    RetrainRun,
    coverage_columns,
    panel_table,
    series_homes,
)
from wavecast.settings import RETRAIN_SETTINGS, nested_settings
from wavecast.storage import DataDir

if TYPE_CHECKING:
    import pandas as pd

    from wavecast.panel_forecast import ForecastRun
    from wavecast.sweep import PruneReport

# The column names of Nixtla's libraries, used when a frame has them and no other is named.
ID_COLUMN, TIME_COLUMN, TARGET_COLUMN = "unique_id", "ds", "y"
SOURCES = "sources"  # where a DataFrame given to retrain or forecast is kept, in the data dir
# A config field (or its command-line flag) -> this API's argument, where the two differ.
API_NAMES = {
    "column": "target_col",
    "id_column": "id_col",
    "time_column": "time_col",
    "source": "data",
    "level": "levels",
}
FLAG = re.compile(r"--source (\S+)|--([a-z][a-z0-9-]*)(?: (interpolate|drop|error)\b)?")
KEPT_FRAME = re.compile(rf"\S*/{SOURCES}/frame-[0-9a-f]+\.parquet")
F = TypeVar("F", bound=Callable[..., Any])
Location = str | os.PathLike[str]  # a local path or an fsspec URI
FAN_OUT = ("runner", "dask_address", "workers", "series_per_task")


def api_words(message: str) -> str:
    """A message written for the command line, its flags named as this API's arguments."""

    def named(match: re.Match[str]) -> str:
        if match.group(1) is not None:  # the source: a kept frame is the caller's `data`
            path = match.group(1).rstrip(":,")
            punctuation = match.group(1)[len(path) :]
            shown = "data" if KEPT_FRAME.fullmatch(path) else f"data {path}"
            return shown + punctuation
        name = match.group(2).replace("-", "_")
        name = API_NAMES.get(name, name)
        return f"{name}={match.group(3)!r}" if match.group(3) else name

    return KEPT_FRAME.sub("data", FLAG.sub(named, message))


def first_problem(error: Any) -> str:
    """A pydantic ValidationError's first problem, as one line naming the argument."""
    first = error.errors()[0]
    names = [part for part in first["loc"] if isinstance(part, str)]
    name = API_NAMES.get(names[-1], names[-1]) if names else "settings"
    shown = repr(first["input"])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{name}={shown}: {first['msg']}"


def in_callers_words(function: F) -> F:
    """Bad input, wherever it is found (settings, the data, a run's stage), raised as one
    InvalidInputError whose one line names this API's arguments, not the command's flags."""

    @functools.wraps(function)
    def called(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        try:
            return function(*args, **kwargs)
        except ValidationError as exc:
            raise InvalidInputError(first_problem(exc)) from None
        except InvalidInputError as exc:
            raise InvalidInputError(api_words(str(exc).splitlines()[0])) from None

    return cast(F, called)


def newer_source(data: pd.DataFrame | Location | None, root: DataDir) -> str | None:
    """Where a forecast or monitor reads the series as they are now: `data` (a frame is kept
    in the data dir first), or None for each champion's own source."""
    if data is None:
        return None
    source, _, frame = source_of(data, root)
    keep_frame(frame, root)
    return source


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain published: `series` has one row per series (`unique_id`, `status`,
    `version`, `serves`, the test scores `mase`, `smape` (in %), `coverage_80`,
    `coverage_95`, `mse`, `persistence_mse`, and `reason`), skipped ones included with their
    reason; `summary` is everything the flow returned."""

    series: pd.DataFrame
    summary: RetrainRun

    @property
    def skipped(self) -> dict[str, str]:
        rows = self.series[self.series["status"] == "skipped"]
        return dict(zip(rows[ID_COLUMN], rows["reason"], strict=True))


@in_callers_words
def retrain(
    data: pd.DataFrame | Location = "sine",
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    data_dir: Location = "data",
    series: Iterable[str] = (),
    refresh: bool = False,
    **settings: Any,
) -> RetrainResult:
    """Retrain from `data` (a DataFrame, a CSV/Parquet path or URI, or "sine") into
    `data_dir`, and publish each series' champion through its gate.

    A frame with `unique_id` is a panel (one model or candidate set per id), with `ds` its
    time and `y` its target, unless other columns are named. `settings` are `wavecast
    retrain`'s flags as keywords (`epochs=5`, `candidates=("ets", "theta")`,
    `network="global"`, ...).
    """
    unknown = sorted(set(settings) - set(RETRAIN_SETTINGS))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; see `wavecast retrain -h`")
    root = DataDir(os.fspath(data_dir))
    source, named, frame = source_of(data, root, id_col, time_col, target_col)
    given = {**settings, **named, "source": source, "data_dir": os.fspath(data_dir)}
    nested = nested_settings(given, RETRAIN_SETTINGS)
    if series:
        nested.setdefault("series", {})["series"] = tuple(series)
    config = RetrainConfig.model_validate({**nested, "refresh": refresh})
    from wavecast.generate import unwritten_source

    # A frame is read from memory until it passed: a refused one leaves the data dir as it was
    # (and is named as the caller's `data`: in_callers_words).
    with unwritten_source(source, frame) if frame is not None else contextlib.nullcontext():
        config = checked_retrain(config)
    keep_frame(frame, root)
    return retrain_result(run_retrain(config))


@in_callers_words
def forecast(
    data_dir: Location = "data",
    *,
    series: Iterable[str] = (),
    levels: Iterable[float] = (80, 95),
    data: pd.DataFrame | Location | None = None,
    version: str | None = None,
    **fan_out: Any,
) -> pd.DataFrame:
    """Each champion's forecasts after the last point of its source as it is now (or of
    `data`, a newer frame or file of the same columns), with conformal intervals.

    One row per series and step: `unique_id`, `ds` (timestamps, or integers for a series
    without a time column), `step`, `forecaster`, `forecast`, `lo-<level>`, `hi-<level>` per
    level, `version` and `origin`. `fan_out`: runner, workers, dask_address, series_per_task.
    """
    unknown = sorted(set(fan_out) - set(FAN_OUT))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; expected {', '.join(FAN_OUT)}")
    directory = os.fspath(data_dir)
    root = DataDir(directory)
    check_known_series(root, series)  # before `data` is kept
    source = newer_source(data, root)
    config = ForecastConfig.model_validate(
        {
            "data_dir": directory,
            "series": tuple(series),
            "levels": tuple(float(level) for level in levels),
            "fan_out": {k: v for k, v in fan_out.items() if v is not None},
            **({"source": source} if source else {}),
            **({"version": version} if version else {}),
        }
    )
    return forecast_frame(run_forecast(config))


@in_callers_words
def monitor(
    data_dir: Location = "data",
    *,
    series: Iterable[str] = (),
    data: pd.DataFrame | Location | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Score the stored forecasts against what happened since (in `data`, a newer frame or
    file of the same columns, else each champion's own source), and announce drift (a
    Prefect event per drifting series, whose retrain then reads `data` too). One row per
    series: `unique_id`, `drift`, `realized`, `error_ratio`, `coverage_95`, `version`,
    `reason`. `settings`: threshold, window, min_realized, min_coverage."""
    import pandas as pd

    directory = os.fspath(data_dir)
    root = DataDir(directory)
    check_known_series(root, series)
    source = newer_source(data, root)
    config = MonitorConfig.model_validate(
        {
            **settings,
            "data_dir": directory,
            "series": tuple(series),
            **({"source": source} if source else {}),
        }
    )
    summary = run_monitor(config)
    rows = [{ID_COLUMN: key, **health.model_dump()} for key, health in summary.series.items()]
    columns = [ID_COLUMN, "drift", "realized", "error_ratio", "coverage_95", "version", "reason"]
    return pd.DataFrame(rows, columns=columns)


@in_callers_words
def models(data_dir: Location = "data", *, series: str | None = None) -> pd.DataFrame:
    """Every version in the registry, oldest first: `unique_id` (for a panel's series),
    `version`, `champion`, its test scores on its own test windows (`mase`, `smape`,
    `coverage_80`, `coverage_95`, `mse`, `persistence_mse`), `gated_against` (the champion
    the gate compared it with) and `champion_mase` (that champion's MASE on this version's
    test windows), `dataset`, `problem` (why a damaged version cannot serve). No Prefect run:
    this reads the data dir."""
    import pandas as pd

    from wavecast.registry import version_rows

    store = series_store(data_dir, series)
    stores: dict[str | None, DataDir] = {series: store}
    if series is None:  # the data dir's own series, or each of its panel's
        stores = {key: home.store for key, home in series_homes(store).items()}
    rows = [
        {ID_COLUMN: key, **row.model_dump(exclude={"coverage"}), **coverage_columns(row.coverage)}
        for key, store in stores.items()
        for row in version_rows(store)
    ]
    columns = [ID_COLUMN, "version", "champion", *SCORE_COLUMNS]
    columns += ["gated_against", "champion_mase", "dataset", "problem"]
    return pd.DataFrame(rows, columns=columns)


@in_callers_words
def promote(
    version: str,
    *,
    reason: str,
    data_dir: Location = "data",
    series: str | None = None,
) -> str:
    """Make `version` the champion by hand, overriding the gate (never with a version that
    cannot serve); the promotions log keeps `reason`. Returns the champion's version."""
    from wavecast.registry import promote_manually

    return promote_manually(series_store(data_dir, series), version, reason).version


@in_callers_words
def rollback(
    *, reason: str = "by hand", data_dir: Location = "data", series: str | None = None
) -> str:
    """Return to the champion before the current one, if it can still serve; its version."""
    from wavecast.registry import roll_back

    return roll_back(series_store(data_dir, series), reason).version


@in_callers_words
def prune(data_dir: Location = "data", *, dry_run: bool = False, **policy: Any) -> PruneReport:
    """Apply the retention rules (`policy`: keep_versions, min_age_s; the scheduled retrain's
    defaults otherwise) to a data dir and every series under it; `dry_run` removes nothing."""
    from wavecast.config import RetentionSpec
    from wavecast.retention import prune as prune_data_dir

    policy_spec = RetentionSpec.model_validate(policy)
    return prune_data_dir(DataDir(os.fspath(data_dir)), policy_spec, dry_run)


def source_of(
    data: pd.DataFrame | Location,
    root: DataDir,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
) -> tuple[str, dict[str, str | None], bytes | None]:
    """The source to read, the columns to read it by, and for a frame its Parquet bytes: a
    path or URI as given; a frame is to be kept in the data dir (keep_frame), named by its
    content (so the same frame is the same source and unchanged series train nothing), with
    Nixtla's names as its defaults."""
    named = {"id_column": id_col, "time_column": time_col, "column": target_col}
    if isinstance(data, str | os.PathLike):
        return os.fspath(data), named, None
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = set(map(str, data.columns))
    defaults = {"id_column": ID_COLUMN, "time_column": TIME_COLUMN, "column": TARGET_COLUMN}
    for setting, default in defaults.items():
        if named[setting] is None and default in columns:
            named[setting] = default
    table = pa.Table.from_pandas(data, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    content = buffer.getvalue()
    return root.uri(SOURCES, frame_name(content)), named, content


def frame_name(content: bytes) -> str:
    return f"frame-{hashlib.sha256(content).hexdigest()[:16]}.parquet"


def keep_frame(content: bytes | None, root: DataDir) -> None:
    """A frame's Parquet bytes written into the data dir's sources, once (None: a file)."""
    if content is None:
        return
    name = frame_name(content)
    if not root.exists(SOURCES, name):
        root.write_bytes(content, SOURCES, name)


def retrain_result(run: RetrainRun) -> RetrainResult:
    """The run's table, a row per series."""
    import pandas as pd

    rows = [{ID_COLUMN: row.pop("series"), **row} for row in panel_table(run)]
    columns = [ID_COLUMN, "status", "version", "serves", *SCORE_COLUMNS, "reason"]
    return RetrainResult(pd.DataFrame(rows, columns=columns), run)


def forecast_frame(made: ForecastRun) -> pd.DataFrame:
    """The flow's forecasts as one long frame (intervals `lo-80`, `hi-80`, as Nixtla's)."""
    import pandas as pd

    each = made.series
    frames = []
    for key, one in each.items():
        frame = pd.DataFrame([dict(row) for row in one.forecasts])
        frame.insert(0, ID_COLUMN, key)
        frame.insert(1, "ds", typed_times(frame.pop("target").astype(str).tolist()))
        frame.insert(3, "forecaster", one.forecaster)
        frame["version"] = one.version
        frame["origin"] = typed_times([one.origin] * len(frame))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[ID_COLUMN, "ds", "step", "forecaster", "forecast"])
    return pd.concat(frames, ignore_index=True)
