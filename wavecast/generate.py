"""The source series: the tutorial's sine wave, or one numeric column of a CSV/Parquet file."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import re
import types
import unicodedata
import warnings
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict

from wavecast.config import SeriesSpec
from wavecast.confinement import check_within
from wavecast.errors import InvalidInputError, or_bad_input
from wavecast.storage import DataDir, cache_version, open_filesystem, stable_hash

if TYPE_CHECKING:
    import pandas as pd

TIME_COLUMN_NAMES = frozenset({"time", "timestamp", "date", "datetime", "ds"})
# Training computes squared errors in float32 (largest ~3.4e38): larger values overflow.
MAX_MAGNITUDE = 1e18
# What a column name looks like; anything else (a 'key = secret', a long line) is not shown.
COLUMN_NAME = re.compile(r"[\w .()%/-]{1,64}")
# Unicode categories an id must not hold: control characters, line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
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
# Sources not written yet, by URI: a DataFrame given to wavecast.retrain is validated from
# memory, and kept in the data dir only once it passed (wavecast.api).
UNWRITTEN: ContextVar[Mapping[str, bytes]] = ContextVar(
    "unwritten_sources", default=types.MappingProxyType({})
)


class SeriesRef(BaseModel):
    """Where a stored raw series lives and what it holds; small enough to cache and log."""

    model_config = ConfigDict(frozen=True)

    series_id: str
    uri: str
    source: str
    column: str | None
    n_points: int
    content_hash: str
    key: str | None = None  # the series' id in a panel source
    season: int | None = None  # inferred from the time column's step, when it has one


def sine_series(spec: SeriesSpec) -> np.ndarray:
    """Exactly the tutorial's np.sin(np.linspace(-3π, 3π, 1000)), plus optional seeded noise."""
    values = np.sin(np.linspace(spec.start, spec.stop, spec.length))
    if spec.noise > 0:
        values = values + np.random.default_rng(spec.noise_seed).normal(0, spec.noise, spec.length)
    return values


class LoadedSeries(NamedTuple):
    """A validated series, the column it came from, and the time of each value when the
    source has a time column."""

    values: np.ndarray
    column: str | None
    times: np.ndarray | None = None  # datetime64 (UTC instants when zoned) or numbers
    timezone: str | None = None  # the time column's zone, as Arrow names it, if it has one


def series_identity(series: LoadedSeries, key: str | None) -> str:
    """What names a series' stored copy, in every flow: its id and its own rows (values, column,
    times), never the file they came from. A panel series retrained alone (a drift event) maps
    to the copy the panel stored, and a change to one series of a panel, or to bytes that hold
    no row of it, leaves the others' copies, and so all their stages, as they were.
    """
    times = b"" if series.times is None else np.ascontiguousarray(series.times).tobytes()
    return stable_hash(key or "", series.column or "", series.values.tobytes(), times)


@contextlib.contextmanager
def unwritten_source(uri: str, content: bytes) -> Iterator[None]:
    """Within the block, `uri` reads as `content` without being written (see UNWRITTEN)."""
    token = UNWRITTEN.set(types.MappingProxyType({**UNWRITTEN.get(), uri: content}))
    try:
        yield
    finally:
        UNWRITTEN.reset(token)


def read_source(source: str) -> bytes:
    """A file's bytes (decompressed by extension: .gz, .bz2, .xz, .zst), read once and
    parsed from memory."""
    unwritten = UNWRITTEN.get().get(source)
    if unwritten is not None:
        return unwritten
    filesystem, path = open_filesystem(source, "--source")
    local = Path(path) if isinstance(filesystem, LocalFileSystem) else None
    if local is not None and local.exists() and not local.is_file():  # /dev/zero never ends
        raise InvalidInputError(f"--source {source}: not a regular file")
    try:
        with filesystem.open(path, "rb", compression="infer") as handle:
            data = bytes(handle.read())
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InvalidInputError(f"--source {source}: no such file") from exc
    return data


def parse_table(data: bytes, source: str, text_columns: tuple[str, ...] = ()) -> pa.Table:
    """Parse CSV or Parquet bytes (Parquet by extension or by its magic number)."""
    try:
        if data[:4] == b"PAR1" or source.lower().endswith((".parquet", ".pq")):
            return pq.read_table(pa.BufferReader(data))
        # A blank line in a one-column CSV is a missing value, not nothing.
        parse = pa_csv.ParseOptions(ignore_empty_lines=False)
        return pa_csv.read_csv(
            pa.BufferReader(data), parse_options=parse, convert_options=text_options(text_columns)
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"--source {source}: not a table wavecast reads: {parse_problem(exc, data)}"
        ) from None


def parse_problem(error: Exception, data: bytes) -> str:
    """What was wrong and where, in the file's own line numbers, without quoting it: the
    parser's message ends with the offending line, which may be anything (a password file)."""
    if data[:4] == b"PAR1":
        return "a damaged or truncated Parquet file"
    if isinstance(error, UnicodeDecodeError) or "UTF8" in str(error):
        return "not UTF-8 text (expected CSV or Parquet)"
    counts = re.search(r"Expected (\d+) columns, got (\d+)", str(error))
    if counts is None:
        return "expected CSV (a header line, then comma-separated rows) or Parquet"
    expected, got = int(counts[1]), int(counts[2])
    line = first_line_with_fields(data, expected)
    where = f"line {line}" if line else "a line"
    return f"{where} has {got} field(s) where the header has {expected} (expected CSV or Parquet)"


def first_line_with_fields(data: bytes, expected: int) -> int | None:
    """The 1-based number of the first CSV line whose field count is not `expected`."""
    rows = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    with contextlib.suppress(csv.Error):
        for row in rows:
            if row and len(row) != expected:
                return rows.line_num
    return None


def described_columns(table: pa.Table) -> str:
    """The columns a table has, by name only when the header looks like one: a file that is
    not a CSV parses as a one-column table named after its first line, which stays unsaid."""
    names = table.column_names
    if len(names) >= 2 and all(COLUMN_NAME.fullmatch(name) for name in names):
        return f"columns: {', '.join(names)}"
    return f"{len(names)} column(s) in its header"


def text_options(columns: tuple[str, ...]) -> pa_csv.ConvertOptions:
    """CSV columns read as the text they are (ids: `007` is not `7`), never as numbers."""
    return pa_csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))


def pick_column(table: pa.Table, spec: SeriesSpec) -> str:
    """The named column, or the only numeric one (the time column aside); anything ambiguous
    is an error."""
    column, source, time = spec.column, spec.source, time_column_of(table, spec)
    numeric = [
        f.name
        for f in table.schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        and f.name != time
        and not is_time_like(f)
    ]
    if column is not None:
        if column not in table.column_names:
            raise InvalidInputError(
                f"--column {column}: not in {source} ({described_columns(table)})"
            )
        if column not in numeric:
            raise InvalidInputError(f"--column {column}: not numeric in {source}")
        return column
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise InvalidInputError(f"--source {source}: no numeric column to forecast")
    raise InvalidInputError(
        f"--source {source}: several numeric columns ({', '.join(numeric)}); pick one with --column"
    )


def is_time_like(field: pa.Field) -> bool:
    return pa.types.is_temporal(field.type) or field.name.lower() in TIME_COLUMN_NAMES


def time_column_of(table: pa.Table, spec: SeriesSpec) -> str | None:
    """--time-column, which must be there, else the first time-like column, if any."""
    if spec.time_column is not None:
        if spec.time_column not in table.column_names:
            raise InvalidInputError(
                f"--time-column {spec.time_column}: not in {spec.source} "
                f"({described_columns(table)})"
            )
        return spec.time_column
    return next((field.name for field in table.schema if is_time_like(field)), None)


def check_time_order(table: pa.Table, spec: SeriesSpec) -> None:
    """The time column (each time-like one, unless --time-column names it) must be strictly
    increasing: no shuffles, no duplicates. The time column itself is sorted (in_time_order)
    and refused when repeated (checked_times) before; another one is checked as it comes."""
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
                f"--source {spec.source}: time column '{field.name}' is not strictly "
                f"increasing: data row {bad + 2} (line {bad + 3} of a CSV) is not after the row "
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
            f"--source {source}: time column '{name}' is empty at data row {missing + 1}"
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
            f"--source {source}: time column '{name}': {shown_text(texts, codes, differ)} reads "
            "as two dates, month first and day first: write times as ISO 8601 (2024-01-31)"
        )
    if readings:
        return readings[0]
    bad = max(first_unread(texts, f) for f in ["ISO8601", *formats])
    raise InvalidInputError(
        f"--source {source}: time column '{name}': {shown_text(texts, codes, bad)} is not a "
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
        of = "" if key is None else f"series {key}: "
        per = "time" if key is None else "series and time"
        raise InvalidInputError(
            f"--source {spec.source}: {of}time column '{name}' has more than one row at "
            f"{shown_time(times[int(at)])}: one row per {per}"
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
            of = "" if key is None else f"series {key}: "
            raise InvalidInputError(
                f"--source {spec.source}: {of}time column '{name}' has no row at {missing[0]}, "
                f"a step of its {missing[1]} series: fill gaps with --missing interpolate, keep "
                "them with --missing drop, or fix the source"
            )


def in_time_order(table: pa.Table, spec: SeriesSpec) -> pa.Table:
    """A series' rows sorted by its time column (stable), when it has one."""
    import pyarrow.compute as pc

    name = time_column_of(table, spec)
    if name is None or len(table) < 2:
        return table
    times = table.column(name)
    if pc.all(pc.greater_equal(times.slice(1), times.slice(0, len(table) - 1))).as_py():
        return table
    return table.take(pc.sort_indices(times))


def clean_missing(values: np.ndarray, spec: SeriesSpec) -> np.ndarray:
    """Apply the --missing policy to NaN/inf; the default refuses rather than guess.

    The advice fits every command that reads a source: retrain takes --missing, while
    forecast and monitor read with the policy the champion was trained with.
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if spec.missing == "drop":
        return values[~bad]
    where = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in where[:5]) + (", ..." if len(where) > 5 else "")
    problem = f"--source {spec.source}: {len(where)} NaN/infinite value(s) at row(s) {shown}"
    if spec.missing == "interpolate":
        if (~bad).sum() < 2:
            raise InvalidInputError(f"{problem}; fewer than 2 finite values to interpolate from")
        index = np.arange(len(values))
        return np.interp(index, index[~bad], values[~bad])
    raise InvalidInputError(
        f"{problem}, which --missing {spec.missing} refuses: fix the source, or retrain with "
        "--missing drop or --missing interpolate"
    )


def check_magnitude(values: np.ndarray, source: str) -> np.ndarray:
    biggest = float(np.max(np.abs(values), initial=0.0))
    if biggest > MAX_MAGNITUDE:
        raise InvalidInputError(
            f"--source {source}: values reach {biggest:.3g}; beyond {MAX_MAGNITUDE:.0e} their "
            "squared errors overflow float32, TensorFlow's arithmetic: rescale the series"
        )
    return values


def load_series(spec: SeriesSpec) -> LoadedSeries:
    """The validated series as float64 values; a file source is read exactly once.

    A panel source gives the one series its spec names (see wavecast.panel for all of them).
    """
    if spec.is_generated:
        return LoadedSeries(check_magnitude(sine_series(spec), spec.source), None)
    return series_in(read_table(spec), spec)


def series_in(
    table: pa.Table, spec: SeriesSpec, groups: dict[str, pa.Table] | None = None
) -> LoadedSeries:
    """The series a spec names in its source's table (a panel's: its id's rows, from `groups`
    when the panel was split already)."""
    if spec.is_panel:
        if len(spec.series) != 1:
            raise InvalidInputError(
                f"--source {spec.source} holds several series: the retrain-panel flow "
                "(wavecast retrain --id-column) trains each"
            )
        key = spec.series[0]
        if groups is None or id_problem(key) is not None:
            table = rows_of(table, spec, key)
        else:
            table = groups.get(key, table.slice(0, 0))
        if not len(table):
            raise InvalidInputError(f"--series {key}: not in {spec.source}")
    return series_from_table(table, spec)


def load_each(specs: list[SeriesSpec]) -> list[LoadedSeries | InvalidInputError]:
    """What load_series gives (or raises) for each spec, each file source read once however
    many specs name it: forecasting or monitoring a panel's N series is one read, not N."""
    sources: dict[tuple[str, str | None], list[int]] = {}
    for at, spec in enumerate(specs):
        sources.setdefault((spec.source, spec.id_column), []).append(at)
    loaded: dict[int, LoadedSeries | InvalidInputError] = {}
    for members in sources.values():
        of_source = load_from_source([specs[at] for at in members])
        loaded.update(zip(members, of_source, strict=True))
    return [loaded[at] for at in range(len(specs))]


def load_from_source(specs: list[SeriesSpec]) -> list[LoadedSeries | InvalidInputError]:
    """Series of one source (the same file and id column), which is read once; each spec
    keeps its own column and --missing policy."""
    if specs[0].is_generated:
        return [or_bad_input(load_series, spec) for spec in specs]
    try:
        table = read_table(specs[0])
    except InvalidInputError as exc:
        return [exc] * len(specs)
    groups = id_groups(table, specs) if len(specs) > 1 else None
    return [or_bad_input(series_in, table, spec, groups) for spec in specs]


def id_groups(table: pa.Table, specs: list[SeriesSpec]) -> dict[str, pa.Table] | None:
    """The rows of the series `specs` name, by id, sorted once: a part of a panel costs its
    own rows, not the whole table's sort. None for a table that is one series."""
    import pyarrow.compute as pc

    if not specs[0].is_panel:
        return None
    wanted = pa.array(sorted({key for spec in specs for key in spec.series}), pa.string())
    rows = table.filter(pc.is_in(panel_ids(table, specs[0]), value_set=wanted))
    return {group.key: group.rows for group in panel_groups(rows, specs[0])}


def read_table(spec: SeriesSpec) -> pa.Table:
    """The source parsed as a table."""
    data = read_source(spec.source)
    table = parse_table(data, spec.source, (spec.id_column,) if spec.id_column else ())
    if spec.id_column is not None and spec.id_column not in table.column_names:
        raise InvalidInputError(
            f"--id-column {spec.id_column}: not in {spec.source} ({described_columns(table)})"
        )
    if spec.id_column is not None:
        import pyarrow.compute as pc

        series = pc.count_distinct(panel_ids(table, spec), mode="all").as_py()
        check_within(series, "max_series", f"--source {spec.source}: the number of series")
    return checked_times(table, spec)


class PanelGroup(NamedTuple):
    """One id's rows of a long table, in file order, and where its first row is (for messages)."""

    key: str
    rows: pa.Table
    first_row: int


def panel_groups(table: pa.Table, spec: SeriesSpec) -> Iterator[PanelGroup]:
    """Every id's rows, the empty id (rows with none) included: see id_problem."""
    import pyarrow.compute as pc

    assert spec.id_column is not None
    ids = panel_ids(table, spec)
    order = pc.sort_indices(ids)  # stable: rows of one series keep their order
    keys = ids.take(order).to_numpy(zero_copy_only=False)
    rows = table.drop_columns([spec.id_column]).take(order)
    bounds = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1), len(keys)]
    for start, end in itertools.pairwise(bounds):
        yield PanelGroup(str(keys[start]), rows.slice(start, end - start), int(order[start]))


def panel_ids(table: pa.Table, spec: SeriesSpec) -> pa.ChunkedArray:
    """The id column as text (a CSV's is read as text already); a missing id is empty."""
    import pyarrow.compute as pc

    assert spec.id_column is not None
    column = table.column(spec.id_column)
    try:
        ids = pc.cast(column, pa.string())
    except pa.ArrowException as exc:
        raise InvalidInputError(
            f"--id-column {spec.id_column}: {column.type} in {spec.source}, expected text or "
            "numbers"
        ) from exc
    return pc.fill_null(ids, "")


def id_problem(key: str) -> str | None:
    """Why an id names no series: none at all, or a control character, which would break
    one-line messages and the terminal showing them."""
    if not key:
        return "an empty or missing id"
    if any(unicodedata.category(char) in CONTROL_CATEGORIES for char in key):
        return "a control character in the id"
    return None


def shown_id(key: str) -> str:
    """An id as one line of text shows it: quoted when it is empty or holds control characters."""
    return key if id_problem(key) is None else repr(key)


def rows_of(table: pa.Table, spec: SeriesSpec, key: str) -> pa.Table:
    """One series' rows in file order (a filter: no need to sort the whole panel for one)."""
    import pyarrow.compute as pc

    assert spec.id_column is not None
    problem = id_problem(key)
    if problem is not None:
        raise InvalidInputError(f"--series {shown_id(key)}: {problem}")
    mask = pc.equal(panel_ids(table, spec), key)
    return table.drop_columns([spec.id_column]).filter(mask)


def series_from_table(table: pa.Table, spec: SeriesSpec) -> LoadedSeries:
    """One series' column of a table (read_table's), put in time order, with the --missing
    policy applied: under interpolate, a regular series gets a row at every step first."""
    check_within(len(table), "max_points", f"--source {spec.source}: the series' length")
    column = pick_column(table, spec)
    table = in_time_order(table, spec)
    check_time_order(table, spec)
    raw = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    times = time_values(table, spec)
    if spec.missing == "interpolate" and times is not None:
        raw, times = on_grid(raw, times, time_zone(table, spec), spec.source)
    values = check_magnitude(clean_missing(raw, spec), spec.source)
    if times is not None and len(times) != len(values):  # --missing drop removed rows
        times = times[np.isfinite(raw)]
    return LoadedSeries(values, column, times, time_zone(table, spec))


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
    """The season of a regular datetime column's typical step (monthly 12, daily 7, ...)."""
    if times is None or len(times) < 3 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    step_hours = float(np.median(np.diff(times.astype("datetime64[s]").astype(np.int64)))) / 3600
    for (low, high), season in SEASONS_BY_STEP_HOURS:
        if low <= step_hours <= high:
            return season
    return None


def store_series(spec: SeriesSpec, data_dir: str) -> SeriesRef:
    """Validate the source and keep a Parquet copy of it, written only when new."""
    return store_loaded(load_series(spec), spec.source, data_dir, key=series_key(spec))


def series_key(spec: SeriesSpec) -> str | None:
    """The id of the one series a spec names in a panel source; None for a single series."""
    return spec.series[0] if spec.is_panel and len(spec.series) == 1 else None


def store_loaded(
    series: LoadedSeries, source: str, data_dir: str, key: str | None = None
) -> SeriesRef:
    """Keep a loaded series' values as Parquet, written only when new.

    Its place is named by the series' identity and this stage's version, so an unchanged series
    maps to the copy already there and nothing downstream reruns.
    """
    parts = ("raw", stable_hash(series_identity(series, key), cache_version("raw")))
    content_hash = stable_hash(series.values.tobytes(), length=32)
    store = DataDir(data_dir)
    if not store.is_complete(*parts):
        table = pa.table({"value": series.values}).replace_schema_metadata(
            {"source": source, "content_hash": content_hash}
        )
        with store.staged_dir(*parts) as staging:
            pq.write_table(table, staging / "series.parquet")
    return SeriesRef(
        series_id=parts[-1],
        uri=store.uri(*parts, "series.parquet"),
        source=source,
        column=series.column,
        n_points=len(series.values),
        content_hash=content_hash,
        key=key,
        season=inferred_season(series.times),
    )


def read_series(series: SeriesRef, data_dir: str) -> np.ndarray:
    store = DataDir(data_dir)
    table = pq.read_table(
        store.path("raw", series.series_id, "series.parquet"), filesystem=store.fs
    )
    return table.column("value").to_numpy()
