"""The forecasts dataset: one row per step of every forecast, partitioned by series, with
time as time and intervals in Nixtla's columns; what the forecast flow writes and the
monitor reads."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wavecast.cache_keys import stable_hash
from wavecast.records import Forecast
from wavecast.series_dirs import series_slug, slug_key
from wavecast.storage import DataDir

if TYPE_CHECKING:
    import pandas as pd

FORECASTS = "forecasts"
PARTITION = "series="  # hive partitioning: a series' rows under series=<its slug>/
NAME_COLUMN = "series_name"  # the series' whole name, which a hashed partition cannot spell


def level_key(level: float) -> str:
    """A level as its column names it: every digit it has (99.99999 is not "100"), so two
    levels never share a column."""
    return np.format_float_positional(level, trim="-")


def bound_key(side: str, level: float | str) -> str:
    """A level's bound as Nixtla's frames name it (`lo-80`, `hi-95`), in rows, files and JSON."""
    return f"{side}-{level if isinstance(level, str) else level_key(level)}"


def interval_columns(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Each level's (low, high) columns in a forecasts table: `lo-80`/`hi-80`, or
    `lo_80`/`hi_80` in files written before the spelling was Nixtla's, so old datasets read."""
    present = set(columns)
    bounds = {}
    for name in columns:
        for sep in ("-", "_"):
            level = name.removeprefix(f"lo{sep}")
            if level != name and f"hi{sep}{level}" in present:
                bounds[level] = (name, f"hi{sep}{level}")
    return bounds


def time_array(labels: Sequence[str]) -> pa.Array:
    """Labels as the time they name: integers (a series without a time column, or with an
    integer one), else timestamps with their UTC offset (as UTC instants when they have
    several: a daylight-saving change); `+k` (an irregular series' steps) is null."""
    if all(text.lstrip("-").isdigit() for text in labels):
        return pa.array([int(text) for text in labels], pa.int64())
    import pandas as pd

    stamps = [None if text.startswith("+") else pd.Timestamp(text) for text in labels]
    offsets = {stamp.utcoffset() for stamp in stamps if stamp is not None}
    return pa.array(pd.to_datetime(stamps, utc=len(offsets) > 1))


def typed_times(labels: Sequence[str]) -> pd.Series[Any]:
    """time_array as a pandas column, for the Python API's frames."""
    import pandas as pd

    return pd.Series(time_array(labels).to_pandas())


def time_key(value: object) -> int | None:
    """A stored origin or target as the monitor joins it: a position, or a timestamp's
    nanoseconds since the epoch in UTC, however it was written (typed, or text before
    targets were typed); None for no time (`+k`, missing)."""
    import pandas as pd

    if value is None or (isinstance(value, str) and value.startswith("+")):
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return None
    return int((stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).value)


def label(moment: object) -> str:
    """A timestamp in ISO 8601, anything else (an integer time) as it prints."""
    return str(moment.isoformat()) if hasattr(moment, "isoformat") else str(moment)


def forecast_key(forecast: Forecast) -> str:
    return f"{forecast.version}-{stable_hash(forecast.origin, length=12)}"


def forecast_table(forecast: Forecast, run_id: str | None, created: datetime) -> pa.Table:
    """One row per step: where it starts, what it targets, the bounds and where it came from."""
    lineage = {
        "forecaster": forecast.forecaster,
        "model_version": forecast.version,
        "dataset_id": forecast.dataset_id,
    }
    rows = [
        {NAME_COLUMN: forecast.series, **row, **lineage, "flow_run_id": run_id, "created": created}
        for row in forecast.rows
    ]
    table = pa.Table.from_pylist(rows)
    # Time as time: the monitor joins on it, and no formatting of it can miss.
    targets = time_array([str(row["target"]) for row in forecast.rows])
    origins = time_array([forecast.origin]).take([0] * len(forecast.rows))
    table = table.set_column(table.schema.get_field_index("target"), "target", targets)
    table = table.add_column(1, "origin", origins)
    at = table.schema.get_field_index("flow_run_id")  # a string even when there is no run
    return table.set_column(at, "flow_run_id", table.column(at).cast(pa.string()))


def write_forecasts(forecast: Forecast, store: DataDir, run_id: str | None = None) -> str:
    """Write (or replace) this origin's rows for this version; returns the dataset's root."""
    table = forecast_table(forecast, run_id, datetime.now(timezone.utc))
    partition = series_partition(forecast.series)
    write_parquet(store, table, FORECASTS, partition, f"{forecast_key(forecast)}.parquet")
    return store.uri(FORECASTS)


def series_partition(series: str) -> str:
    """The hive partition directory of a series in the forecasts (and monitoring) dataset."""
    return f"{PARTITION}{series_slug(series)}"


def stored_series(store: DataDir) -> dict[str, str]:
    """Each series with stored forecasts -> its partition directory; a hashed partition's
    name is read from its rows, and one with no readable rows is left out."""
    found = {}
    for part in store.list_dir(FORECASTS):
        if not part.startswith(PARTITION):
            continue
        name = slug_key(part.removeprefix(PARTITION))
        if name is None:
            name = name_in_rows(store, part)
        if name is not None and series_partition(name) == part:
            found[name] = part
    return found


def name_in_rows(store: DataDir, part: str) -> str | None:
    """The series name the first readable forecast file of a partition holds."""
    for file in store.list_dir(FORECASTS, part):
        if not file.endswith(".parquet"):
            continue
        try:
            with store.local_file(FORECASTS, part, file) as path:
                names = pq.read_table(path, columns=[NAME_COLUMN]).column(0)
        except (OSError, pa.ArrowException):
            continue  # a damaged file: another may say
        if len(names) and isinstance(names[0].as_py(), str):
            return str(names[0].as_py())
    return None


def write_parquet(store: DataDir, table: pa.Table, *parts: str) -> None:
    """Replace one Parquet file atomically (DataDir.write_bytes)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    store.write_bytes(sink.getvalue(), *parts)
