"""Time columns: text dates parsed, rows in time order, one row per time, and the regular
step of a series (its gaps refused or filled, its season, its next times)."""

from __future__ import annotations

import itertools
import re
import warnings
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa

from wavecast.config import SeriesSpec
from wavecast.confinement import check_within
from wavecast.errors import InvalidInputError
from wavecast.tables import (
    id_problem,
    is_time_like,
    panel_ids,
    shown_id,
    shown_rows,
    time_column_of,
    time_column_text,
)

if TYPE_CHECKING:
    import pandas as pd

# A regular time step (in hours, as a range) -> the season a forecaster should look for.
SEASONS_BY_STEP_HOURS = (
    ((0.49, 0.51), 48),  # half-hourly: a day
    ((0.99, 1.01), 24),  # hourly: a day
    ((23.9, 24.1), 7),  # daily: a week
    ((167.9, 168.1), 52),  # weekly: a year
    ((27 * 24, 32 * 24), 12),  # monthly: a year
    ((88 * 24, 93 * 24), 4),  # quarterly: a year
)


# A typical step (in days, as a range) that is a whole number of calendar months -> that number.
MONTHS_BY_STEP_DAYS = (((27, 32), 1), ((88, 93), 3), ((180, 186), 6), ((364, 367), 12))


STEP_NAMES = {1: "monthly", 3: "quarterly", 6: "half-yearly", 12: "yearly"}


FIXED_STEP_NAMES = {1800: "half-hourly", 3600: "hourly", 86400: "daily", 604800: "weekly"}


DAY = np.timedelta64(1, "D")


# A value of a time column that may be quoted in a message (never a line of an arbitrary file).
SHOWN_TIME = re.compile(r"[\w .:/,+-]{1,40}")


def check_time_order(table: pa.Table, spec: SeriesSpec, rows_at: np.ndarray) -> None:
    """The time column (each time-like one, unless --time-column names it) must be strictly
    increasing: no shuffles, no duplicates. The time column itself is sorted (time_order)
    and refused when repeated (checked_times) before; another one is checked as it comes.
    `rows_at`: where each row is among the file's data rows, for the message."""
    import pyarrow.compute as pc  # ~0.08 s to import: a generated series never needs it

    named = time_column_of(table, spec) if spec.time_column else None
    for field in table.schema:
        if (field.name != named if named else not is_time_like(field)) or len(table) < 2:
            continue
        times = table.column(field.name)
        steps = pc.greater(times.slice(1), times.slice(0, len(table) - 1))
        bad = pc.index(steps, False).as_py()
        if bad >= 0:
            raise InvalidInputError(
                f"--source {spec.source}: {time_column_text(field.name)} is not strictly "
                f"increasing: {shown_rows(rows_at[bad + 1 : bad + 2])} is not after the row "
                "before"
            )


class TimeGrid(NamedTuple):
    """The regular steps of a datetime series: `months` calendar months, on one day of the
    month (the same day, or the last) at one time of day; or, when `months` is 0, `step`."""

    months: int
    step: np.timedelta64
    month_end: bool = False

    def positions(self, times: np.ndarray) -> np.ndarray:
        """Each time's number of steps after the first (times on this grid)."""
        if self.months:
            month = times.astype("datetime64[M]").astype(np.int64)
            return (month - month[0]) // self.months
        elapsed = times - times[0]
        return elapsed.astype(np.int64) // int(self.step.astype(elapsed.dtype).astype(np.int64))

    def at(self, start: np.datetime64, k: np.ndarray) -> np.ndarray:
        """The times `k` steps after `start`, a time on this grid."""
        if not self.months:
            return (start + k * self.step).astype(start.dtype)
        month, day = start.astype("datetime64[M]"), start.astype("datetime64[D]")
        months = month + k * self.months
        if self.month_end:
            days = (months + 1).astype("datetime64[D]") - DAY
        else:
            days = months.astype("datetime64[D]") + (day - month.astype("datetime64[D]"))
        return (days + (start - day)).astype(start.dtype)

    def name(self) -> str:
        if self.months:
            return STEP_NAMES[self.months]
        seconds = int(self.step / np.timedelta64(1, "s"))
        return FIXED_STEP_NAMES.get(seconds, f"{seconds} s")


def time_grid(times: np.ndarray) -> TimeGrid | None:
    """The grid sorted, distinct datetime64 `times` lie on, gaps allowed: calendar months when
    the typical step is a month, a quarter, half a year or a year, else the typical step. None
    for fewer than 3 times, or times off every such grid (an irregular series)."""
    if len(times) < 3 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    steps = np.diff(times)
    step = np.sort(steps)[(len(steps) - 1) // 2]  # the lower median: a step the series takes
    if step <= np.timedelta64(0, "s"):
        return None
    months = next((n for (low, high), n in MONTHS_BY_STEP_DAYS if low <= step / DAY <= high), 0)
    if not months:
        whole = steps.astype(np.int64) % int(step.astype(np.int64)) == 0
        return TimeGrid(0, step) if whole.all() else None
    day, month = times.astype("datetime64[D]"), times.astype("datetime64[M]")
    clock = times - day
    month_end = bool(((day + DAY).astype("datetime64[M]") != month).all())
    of_month = day - month.astype("datetime64[D]")
    same_day = (of_month == of_month[0]).all() and of_month[0] < np.timedelta64(28, "D")
    if (clock != clock[0]).any() or not (month_end or same_day):
        return None
    whole = np.remainder(np.diff(month.astype(np.int64)), months) == 0
    return TimeGrid(months, step, month_end) if whole.all() else None


def wall_times(times: np.ndarray, zone: str) -> np.ndarray:
    """UTC instants as the clocks of `zone` show them (naive datetime64)."""
    import pandas as pd

    local = pd.DatetimeIndex(times).tz_localize("UTC").tz_convert(zone).tz_localize(None)
    return np.asarray(local.to_numpy().astype(times.dtype))


def regular_times(times: np.ndarray, zone: str | None) -> tuple[TimeGrid, np.ndarray] | None:
    """The grid sorted, distinct `times` (UTC instants when zoned) lie on, and the times as
    it counts them: as they are, or in the zone's wall time when only that is regular (a
    daily series across a daylight-saving change). None for an irregular series."""
    grid = time_grid(times)
    if grid is not None or zone is None or not np.issubdtype(times.dtype, np.datetime64):
        return None if grid is None else (grid, times)
    local = wall_times(times, zone)
    grid = time_grid(local)
    return None if grid is None else (grid, local)


def first_missing(times: np.ndarray, zone: str | None) -> tuple[str, str] | None:
    """The first step of a regular series' grid without a time, as text, and the grid's name
    (monthly, daily, ...); None when nothing is missing or the series is irregular."""
    regular = regular_times(times, zone)
    if regular is None:
        return None
    grid, counted = regular  # `counted is times` unless they are the zone's wall times
    jumps = np.flatnonzero(np.diff(grid.positions(counted)) > 1)
    if not len(jumps):
        return None
    missing = grid.at(counted[jumps[0]], np.array([1]))
    return shown_time(missing[0], zone if counted is times else None), grid.name()


def steps_ahead(times: np.ndarray, zone: str | None, offsets: list[int]) -> np.ndarray | None:
    """The times `offsets` steps after the last of a regular series, gaps allowed (--missing
    drop keeps them), as UTC instants when zoned; None for an irregular series."""
    regular = regular_times(times, zone)
    if regular is None:
        return None
    grid, counted = regular
    ahead = grid.at(counted[-1], np.asarray(offsets))
    return ahead if counted is times else instants(ahead, zone)


def instants(local: np.ndarray, zone: str | None) -> np.ndarray:
    """Wall times of `zone` as UTC instants (an hour the clocks skip is shifted forward)."""
    import pandas as pd

    index = pd.DatetimeIndex(local).tz_localize(
        zone, ambiguous=np.zeros(len(local), dtype=bool), nonexistent="shift_forward"
    )
    return np.asarray(index.tz_convert("UTC").tz_localize(None).to_numpy().astype(local.dtype))


def on_grid(
    values: np.ndarray, times: np.ndarray, zone: str | None, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """A regular series with a row at every step of its grid: NaN at each step it has no row
    at (for --missing interpolate to fill). An irregular series is left as it is."""
    regular = regular_times(times, zone)
    if regular is None:
        return values, times
    grid, counted = regular
    positions = grid.positions(counted)
    n_steps = int(positions[-1]) + 1
    if n_steps == len(times):
        return values, times
    check_within(n_steps, "max_points", f"--source {source}: the series with its gaps filled")
    filled = np.full(n_steps, np.nan)
    filled[positions] = values
    steps = grid.at(counted[0], np.arange(n_steps))
    if counted is not times:
        steps = instants(steps, zone)
    steps[positions] = times  # the rows' own instants, however the clocks changed
    return filled, steps


def shown_time(moment: object, zone: str | None = None) -> str:
    """A time as a message shows it: a date alone at midnight, else ISO 8601 (in its zone)."""
    if not isinstance(moment, np.datetime64):
        return str(moment)
    import pandas as pd

    stamp = pd.Timestamp(moment)
    if zone:
        stamp = stamp.tz_localize("UTC").tz_convert(zone)
    if stamp == stamp.normalize() and not zone:
        return str(stamp.date())
    return str(stamp.isoformat())


def typed_times(table: pa.Table, name: str, source: str) -> pa.Table:
    """The table with its time column as timestamps when it holds text (what pandas'
    read_csv gives, or a CSV's dates in another format than ISO 8601); refused when a time
    is missing, or text does not read as one date."""
    import pyarrow.compute as pc

    column = table.column(name)
    missing = pc.index(pc.is_null(column), True).as_py()
    if missing >= 0:
        raise InvalidInputError(
            f"--source {source}: {time_column_text(name)} is empty at data row {missing + 1}"
        )
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return table
    import pandas as pd

    codes, texts = pd.factorize(np.asarray(column.to_numpy(zero_copy_only=False)))
    parsed = parsed_dates(np.asarray(texts, dtype=object), name, source, codes)
    at = table.schema.get_field_index(name)
    return table.set_column(at, name, pa.array(parsed.take(codes)))


def parsed_dates(texts: np.ndarray, name: str, source: str, codes: np.ndarray) -> pd.DatetimeIndex:
    """Distinct texts (in order of first appearance) as dates: ISO 8601, else the format of
    the first, read month first or day first when only one reading fits them all; refused,
    naming the first text that does not read or that the two readings disagree on."""
    from pandas.tseries.api import guess_datetime_format

    iso = dates_in_format(texts, "ISO8601")
    if iso is not None:
        return iso
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when the first text is not day first
        month_first, day_first = (guess_datetime_format(texts[0], dayfirst=d) for d in (0, 1))
    formats = [month_first] if month_first else []
    if day_first and day_first != month_first and not str(month_first).startswith("%Y"):
        formats.append(day_first)
    readings = [r for f in formats if (r := dates_in_format(texts, f)) is not None]
    if len(readings) == 2 and not readings[0].equals(readings[1]):
        differ = int(np.argmax(readings[0] != readings[1]))
        raise InvalidInputError(
            f"--source {source}: {time_column_text(name)}: {shown_text(texts, codes, differ)} "
            "reads as two dates, month first and day first: write times as ISO 8601 (2024-01-31)"
        )
    if readings:
        return readings[0]
    bad = max(first_unread(texts, f) for f in ["ISO8601", *formats])
    raise InvalidInputError(
        f"--source {source}: {time_column_text(name)}: {shown_text(texts, codes, bad)} is not a "
        "date wavecast reads (ISO 8601, e.g. 2024-01-31 or 2024-01-31T09:00, always is)"
    )


def dates_in_format(texts: np.ndarray, form: str) -> pd.DatetimeIndex | None:
    """Every text read in one format (as UTC instants when they hold several offsets), or
    None if one does not read; no fallback to guessing each text on its own."""
    import pandas as pd

    for utc in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pandas' per-text fallbacks and mixed offsets
            try:
                parsed = pd.DatetimeIndex(pd.to_datetime(texts, format=form, utc=utc))
            except (ValueError, TypeError, OverflowError, Warning):
                continue
        return None if parsed.hasnans else parsed
    return None


def first_unread(texts: np.ndarray, form: str) -> int:
    """The index of the first text that does not read in `form` (0 when none does)."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(texts, format=form, errors="coerce", utc=True)
        except (ValueError, TypeError, OverflowError):
            return 0
    return int(np.argmax(np.asarray(parsed.isna()))) if parsed.hasnans else 0


def shown_text(texts: np.ndarray, codes: np.ndarray, at: int) -> str:
    """A time column's text (quoted, when it looks like a time) and its first data row."""
    row = int(np.argmax(codes == at)) + 1
    text = str(texts[at])
    return f"'{text}' (data row {row})" if SHOWN_TIME.fullmatch(text) else f"data row {row}"


def checked_times(table: pa.Table, spec: SeriesSpec) -> pa.Table:
    """The table with its time column typed (typed_times), refused when a series has two
    rows at one time, or, under --missing error, no row at a step of its regular frequency
    (a month of a monthly series). Rows stay in their order: each series is put in time
    order when it is read (series_from_table)."""
    import pyarrow.compute as pc

    name = time_column_of(table, spec)
    if name is None or not len(table):
        return table
    table = typed_times(table, name, spec.source)
    times = table.column(name)
    kind = times.type
    if not (pa.types.is_temporal(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return table  # no order to check (check_time_order says so when it is read)
    if spec.id_column is None:
        ids = None
        order = pc.sort_indices(times)
    else:
        ids = panel_ids(table, spec)
        keys = pa.table({"id": ids, "time": times})
        order = pc.sort_indices(keys, sort_keys=[("id", "ascending"), ("time", "ascending")])
        ids = ids.take(order)
    values = np.asarray(times.take(order).to_numpy(zero_copy_only=False))
    same = (
        np.ones(len(values) - 1, dtype=bool)
        if ids is None
        else ~np.asarray(pc.not_equal(ids[1:], ids[:-1]), dtype=bool)
    )
    check_distinct(values, same, ids, name, spec)
    if spec.missing == "error" and np.issubdtype(values.dtype, np.datetime64):
        check_no_gaps(values, same, ids, name, spec, time_zone(table, spec))
    return table


def check_distinct(
    times: np.ndarray, same: np.ndarray, ids: pa.ChunkedArray | None, name: str, spec: SeriesSpec
) -> None:
    """Refuse a second row at one time of one series, naming the first such series and time."""
    for at in np.flatnonzero(same & (times[1:] == times[:-1])):
        key = None if ids is None else str(ids[int(at)].as_py())
        if key is not None and id_problem(key) is not None:
            continue  # rows without a usable id are skipped, not read (see panel_groups)
        of = "" if key is None else f"series {shown_id(key)}: "
        per = "time" if key is None else "series and time"
        several = "; several series? name their id column with --id-column" if key is None else ""
        raise InvalidInputError(
            f"--source {spec.source}: {of}{time_column_text(name)} has more than one row at "
            f"{shown_time(times[int(at)])}: one row per {per}{several}"
        )


def check_no_gaps(
    times: np.ndarray,
    same: np.ndarray,
    ids: pa.ChunkedArray | None,
    name: str,
    spec: SeriesSpec,
    zone: str | None,
) -> None:
    """Refuse a regular series with no row at one of its steps, naming the first such series
    and time. Most tables take a step of one length, or of one number of months, throughout:
    checked at once; others series by series."""
    steps = np.diff(times)[same]
    if not len(steps) or (steps == steps[0]).all():
        return
    months = np.diff(times.astype("datetime64[M]").astype(np.int64))[same]
    if months[0] in STEP_NAMES and (months == months[0]).all():
        return
    bounds = [0, *(np.flatnonzero(~same) + 1), len(times)]
    for start, end in itertools.pairwise(bounds):
        key = None if ids is None else str(ids[start].as_py())
        if key is not None and id_problem(key) is not None:
            continue
        missing = first_missing(times[start:end], zone)
        if missing is not None:
            of = "" if key is None else f"series {shown_id(key)}: "
            raise InvalidInputError(
                f"--source {spec.source}: {of}{time_column_text(name)} has no row at {missing[0]}, "
                f"a step of its {missing[1]} series: fill gaps with --missing interpolate, keep "
                "them with --missing drop, or fix the source"
            )


def time_order(table: pa.Table, spec: SeriesSpec) -> np.ndarray | None:
    """The order that sorts a series' rows by its time column (stable); None when they are
    in order already, or it has none."""
    import pyarrow.compute as pc

    name = time_column_of(table, spec)
    if name is None or len(table) < 2:
        return None
    times = table.column(name)
    if pc.all(pc.greater_equal(times.slice(1), times.slice(0, len(table) - 1))).as_py():
        return None
    return np.asarray(pc.sort_indices(times))


def time_values(table: pa.Table, spec: SeriesSpec) -> np.ndarray | None:
    """The time column's values (datetime64 or numbers), if the table has one."""
    name = time_column_of(table, spec)
    if name is None:
        return None
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def time_zone(table: pa.Table, spec: SeriesSpec) -> str | None:
    """The zone of a zoned timestamp time column (e.g. "UTC", "Asia/Tokyo", "+09:00")."""
    name = time_column_of(table, spec)
    kind = table.schema.field(name).type if name is not None else None
    return kind.tz if kind is not None and pa.types.is_timestamp(kind) else None


def inferred_season(times: np.ndarray | None) -> int | None:
    """The season of a regular datetime column's typical step (monthly 12, daily 7, ...),
    whatever the order of its rows."""
    if times is None or len(times) < 3 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    seconds = np.sort(times.astype("datetime64[s]").astype(np.int64))
    step_hours = float(np.median(np.diff(seconds))) / 3600
    for (low, high), season in SEASONS_BY_STEP_HOURS:
        if low <= step_hours <= high:
            return season
    return None
