"""Forecasts meet what happened: each stored forecast's steps joined to the actuals that
arrived since (by typed time), kept in the monitoring dataset beside the forecasts."""

from __future__ import annotations

import logging
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from wavecast.forecasts_store import (
    FORECASTS,
    NAME_COLUMN,
    interval_columns,
    time_key,
    write_parquet,
)
from wavecast.generate import LoadedSeries
from wavecast.home import SeriesHome
from wavecast.registry import one_line
from wavecast.staging import is_hidden
from wavecast.storage import DataDir

LOG = logging.getLogger(__name__)
MONITORING = "monitoring"
# What realized_rows reads of a stored forecast file, besides its interval bounds.
FORECAST_COLUMNS = ("origin", "step", "target", "forecast", "model_version", "created")


class Watched(BaseModel):
    """A series with stored forecasts: its name there, and the home of its champion."""

    model_config = ConfigDict(frozen=True)

    name: str
    partition: str
    home: SeriesHome


def actual_positions(loaded: LoadedSeries) -> dict[int, int]:
    """Each observed point's time, keyed as the monitor joins forecasts' targets (time_key):
    the same instant matches however either side wrote it (zone, offset, precision)."""
    if loaded.times is None:
        return {i: i for i in range(len(loaded.values))}
    keys = [time_key(moment) for moment in loaded.times.tolist()]
    return {key: i for i, key in enumerate(keys) if key is not None}


def realized_rows(
    forecasts: pa.Table, name: str, loaded: LoadedSeries, positions: dict[int, int]
) -> pa.Table:
    """The forecast rows whose target has been observed, joined with what was observed."""
    levels = interval_columns(forecasts.column_names)
    rows = []
    for row in forecasts.to_pylist():
        key = time_key(row["target"])
        at = positions.get(key) if key is not None else None
        if at is None:
            continue
        actual = float(loaded.values[at])
        realized = {
            "series": name,
            NAME_COLUMN: name,  # whole, where a hashed partition shadows `series`
            "origin": row["origin"],
            "step": row["step"],
            "target": row["target"],
            "target_index": at,
            "forecast": row["forecast"],
            "actual": actual,
            "error": actual - row["forecast"],
        }
        for level, (low, high) in levels.items():
            realized[f"inside_{level}"] = row[low] <= actual <= row[high]
        realized["model_version"] = row["model_version"]
        realized["forecast_created"] = row["created"]
        rows.append(realized)
    return pa.Table.from_pylist(rows)


class Joined(NamedTuple):
    """The realized rows of each stored forecast file, and how many files the actuals reach
    in time (past their first target) without matching any of their targets' times."""

    realized: list[pa.Table]
    missed: int


def join_stored_forecasts(store: DataDir, watched: Watched, loaded: LoadedSeries) -> Joined:
    """Join every stored forecast file of the series with the actuals; write what realized."""
    positions = actual_positions(loaded)
    latest = max(positions, default=None)
    realized, missed = [], 0
    for name in store.list_dir(FORECASTS, watched.partition):
        if is_hidden(name) or not name.endswith(".parquet"):
            continue  # a writer's staging file, or what dataset readers skip too
        forecasts = read_forecast_file(store, watched.partition, name)
        if forecasts is None:
            continue
        table = realized_rows(forecasts, watched.name, loaded, positions)
        if table.num_rows:
            write_parquet(store, table, MONITORING, watched.partition, name)
            realized.append(table)
        elif latest is not None and reached(forecasts, latest):
            missed += 1
    return Joined(realized, missed)


def reached(forecasts: pa.Table, latest: int) -> bool:
    """Whether actuals up to the time `latest` (time_key's) reach a forecast's first target."""
    keys = [
        key for value in forecasts["target"].to_pylist() if (key := time_key(value)) is not None
    ]
    return bool(keys) and min(keys) <= latest


def unmatched_note(missed: int) -> str:
    """What the monitor says of forecasts the actuals reach in time but match nowhere."""
    if not missed:
        return ""
    return (
        f"the actuals reach {missed} stored forecast(s) but match none of their target "
        "times: are the source's dates read as they were written (day-first, another zone)?"
    )


def read_forecast_file(store: DataDir, partition: str, name: str) -> pa.Table | None:
    """A stored forecast file, or None with a warning when it is damaged (truncated, not
    Parquet, not a forecast): one bad file must not stop the others or the other series."""
    where = store.uri(FORECASTS, partition, name)
    with store.local_file(FORECASTS, partition, name) as path:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            LOG.warning("skipping %s: not a readable Parquet file (%s)", where, one_line(exc))
            return None
    missing = [column for column in FORECAST_COLUMNS if column not in table.column_names]
    if missing:
        LOG.warning("skipping %s: not a forecast file, it has no %s column", where, missing[0])
        return None
    return table


def champion_rows(realized: list[pa.Table], version: str) -> pa.Table:
    """The champion's realized targets, oldest target first; of one target's forecasts, the
    one from the oldest origin (the largest step) first."""
    if not realized:
        return pa.table({"target_index": pa.array([], pa.int64())})
    table = pa.concat_tables(realized, promote_options="default")
    table = table.filter(pc.equal(table["model_version"], version))
    return table.sort_by([("target_index", "ascending"), ("step", "descending")])
