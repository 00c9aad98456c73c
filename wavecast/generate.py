"""The source series: the tutorial's sine wave, or one numeric column of a CSV/Parquet file."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import types
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict

from wavecast.cache_keys import cache_version, stable_hash
from wavecast.config import SeriesSpec
from wavecast.confinement import check_within
from wavecast.errors import InvalidInputError, or_bad_input
from wavecast.storage import DataDir, open_filesystem
from wavecast.tables import (
    SeriesRows,
    id_groups,
    id_problem,
    pick_column,
    series_count,
    shown_id,
    shown_rows,
)
from wavecast.times import (
    check_time_order,
    checked_times,
    inferred_season,
    on_grid,
    time_order,
    time_values,
    time_zone,
)

# Training computes squared errors in float32 (largest ~3.4e38): larger values overflow.
MAX_MAGNITUDE = 1e18
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

    @property
    def label(self) -> str:
        return series_label(self.key, self.column, self.source)


def series_label(key: str | None, column: str | None, source: str) -> str:
    """What results and forecasts call a series: a panel's id, else its column or source."""
    return key if key is not None else column or source


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


def text_options(columns: tuple[str, ...]) -> pa_csv.ConvertOptions:
    """CSV columns read as the text they are (ids: `007` is not `7`), never as numbers."""
    return pa_csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))


def clean_missing(
    values: np.ndarray, spec: SeriesSpec, rows_at: np.ndarray | None = None
) -> np.ndarray:
    """Apply the --missing policy to NaN/inf; the default refuses rather than guess.

    The advice fits every command that reads a source: retrain takes --missing, while
    forecast and monitor read with the policy the champion was trained with. `rows_at`: where
    each value's row is among the file's data rows (unknown once interpolation regridded).
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if spec.missing == "drop":
        return values[~bad]
    where = np.flatnonzero(bad)
    at = "" if rows_at is None else f" at {shown_rows(rows_at[where])}"
    problem = f"--source {spec.source}: {len(where)} NaN/infinite value(s){at}"
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
    return series_in(id_groups(read_table(spec), [spec]), spec)


def series_in(groups: dict[str | None, SeriesRows], spec: SeriesSpec) -> LoadedSeries:
    """The series a spec names among its source table's (tables.id_groups): a panel's id, or
    None, the one series of a table without an id column."""
    key = series_key(spec)
    group = groups.get(key)
    if group is not None:
        return series_from_table(group.rows, spec, group.rows_at)
    if key is None:  # a spec naming none of a table's several series
        raise InvalidInputError(
            f"--source {spec.source} holds several series: the retrain flow "
            "(wavecast retrain --id-column) trains each"
        )
    problem = id_problem(key) or f"not in {spec.source}"
    raise InvalidInputError(f"--series {shown_id(key)}: {problem}")


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
        groups = id_groups(read_table(specs[0]), specs)
    except InvalidInputError as exc:
        return [exc] * len(specs)
    return [or_bad_input(series_in, groups, spec) for spec in specs]


def read_table(spec: SeriesSpec) -> pa.Table:
    """The source parsed as a table."""
    data = read_source(spec.source)
    table = parse_table(data, spec.source, (spec.id_column,) if spec.id_column else ())
    check_within(
        series_count(table, spec), "max_series", f"--source {spec.source}: the number of series"
    )
    return checked_times(table, spec)


def series_from_table(table: pa.Table, spec: SeriesSpec, rows_at: np.ndarray) -> LoadedSeries:
    """One series' rows of a table (a group of id_groups or panel_groups), put in time
    order, with the --missing policy applied: under interpolate, a regular series gets a row
    at every step first. `rows_at`: where the table's rows are among the file's data rows."""
    check_within(len(table), "max_points", f"--source {spec.source}: the series' length")
    column = pick_column(table, spec)
    order = time_order(table, spec)
    if order is not None:
        table, rows_at = table.take(order), rows_at[order]
    check_time_order(table, spec, rows_at)
    raw = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    times = time_values(table, spec)
    rows: np.ndarray | None = rows_at
    if spec.missing == "interpolate" and times is not None:
        raw, times = on_grid(raw, times, time_zone(table, spec), spec.source)
        rows = None  # rows were added at missing steps: a value's row is no file row
    values = check_magnitude(clean_missing(raw, spec, rows), spec.source)
    if times is not None and len(times) != len(values):  # --missing drop removed rows
        times = times[np.isfinite(raw)]
    return LoadedSeries(values, column, times, time_zone(table, spec))


def series_key(spec: SeriesSpec) -> str | None:
    """The id of the one series a spec names in a panel source; None for a single series
    (id_groups' id of a table without an id column)."""
    return spec.series[0] if len(spec.series) == 1 else None  # --series: a panel (SeriesSpec)


def store_loaded(
    series: LoadedSeries, source: str, store: DataDir, key: str | None = None
) -> SeriesRef:
    """Keep a loaded series' values as Parquet, written only when new.

    Its place is named by the series' identity and this stage's version, so an unchanged series
    maps to the copy already there and nothing downstream reruns.
    """
    parts = ("raw", stable_hash(series_identity(series, key), cache_version("raw")))
    content_hash = stable_hash(series.values.tobytes(), length=32)
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


def read_series(series: SeriesRef, store: DataDir) -> np.ndarray:
    table = pq.read_table(
        store.path("raw", series.series_id, "series.parquet"), filesystem=store.fs
    )
    return table.column("value").to_numpy()
