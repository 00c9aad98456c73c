"""The source series: the tutorial's sine wave, or one numeric column of a CSV/Parquet file."""

from __future__ import annotations

import hashlib

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from wavecast.config import SeriesSpec
from wavecast.errors import InvalidInputError
from wavecast.storage import DataDir, code_fingerprint, stable_hash

TIME_COLUMN_NAMES = frozenset({"time", "timestamp", "date", "datetime", "ds"})


class SeriesRef(BaseModel):
    """Where a stored raw series lives and what it holds; small enough to cache and log."""

    model_config = ConfigDict(frozen=True)

    series_id: str
    uri: str
    source: str
    column: str | None
    n_points: int
    content_hash: str


def sine_series(spec: SeriesSpec) -> np.ndarray:
    """Exactly the tutorial's np.sin(np.linspace(-3π, 3π, 1000)), plus optional seeded noise."""
    values = np.sin(np.linspace(spec.start, spec.stop, spec.length))
    if spec.noise > 0:
        values = values + np.random.default_rng(spec.noise_seed).normal(0, spec.noise, spec.length)
    return values


def source_fingerprint(spec: SeriesSpec) -> str:
    """What identifies the input: the spec, plus the file's bytes for a file source."""
    identity = spec.model_dump_json()
    if spec.is_generated:
        return stable_hash(identity)
    digest = hashlib.sha256()
    try:
        with fsspec.open(spec.source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InvalidInputError(f"--source {spec.source}: no such file") from exc
    return stable_hash(identity, digest.hexdigest())


def read_table(source: str) -> pa.Table:
    """Read a CSV or Parquet file (local path or fsspec URI) into an Arrow table."""
    try:
        with fsspec.open(source, "rb") as handle:
            if source.lower().endswith((".parquet", ".pq")):
                return pq.read_table(handle)
            # A blank line in a one-column CSV is a missing value, not nothing.
            parse = pa_csv.ParseOptions(ignore_empty_lines=False)
            return pa_csv.read_csv(handle, parse_options=parse)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InvalidInputError(f"--source {source}: no such file") from exc
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(f"--source {source}: unreadable: {first_line}") from exc


def pick_column(table: pa.Table, column: str | None, source: str) -> str:
    """The named column, or the only numeric one; anything ambiguous is an error."""
    numeric = [
        f.name
        for f in table.schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)) and not is_time_like(f)
    ]
    if column is not None:
        if column not in table.column_names:
            raise InvalidInputError(
                f"--column {column}: not in {source} (columns: {', '.join(table.column_names)})"
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


def check_time_order(table: pa.Table, source: str) -> None:
    """A time column, if present, must be strictly increasing: no shuffles, no duplicates."""
    import pyarrow.compute as pc  # ~0.08 s to import: a generated series never needs it

    for field in table.schema:
        if not is_time_like(field) or len(table) < 2:
            continue
        times = table.column(field.name)
        steps = pc.greater(times.slice(1), times.slice(0, len(table) - 1))
        bad = pc.index(steps, False).as_py()
        if bad >= 0:
            raise InvalidInputError(
                f"--source {source}: time column '{field.name}' is not strictly increasing "
                f"at row {bad + 1} ({times[bad].as_py()} then {times[bad + 1].as_py()})"
            )


def clean_missing(values: np.ndarray, spec: SeriesSpec) -> np.ndarray:
    """Apply the --missing policy to NaN/inf; the default refuses rather than guess."""
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
        f"{problem}; use --missing drop or --missing interpolate to accept them"
    )


def load_series(spec: SeriesSpec) -> tuple[np.ndarray, str | None]:
    """The validated series as float64 values, and the column it came from."""
    if spec.is_generated:
        return sine_series(spec), None
    table = read_table(spec.source)
    column = pick_column(table, spec.column, spec.source)
    check_time_order(table, spec.source)
    values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    return clean_missing(values, spec), column


def series_location(spec: SeriesSpec, data_dir: str) -> tuple[str, tuple[str, ...]]:
    return data_dir, ("raw", stable_hash(source_fingerprint(spec), code_fingerprint()))


def store_series(spec: SeriesSpec, data_dir: str) -> SeriesRef:
    """Validate the source and keep a Parquet copy of it, so every later stage is reproducible."""
    values, column = load_series(spec)
    _, parts = series_location(spec, data_dir)
    content_hash = stable_hash(values.tobytes(), length=32)
    store = DataDir(data_dir)
    table = pa.table({"value": values}).replace_schema_metadata(
        {"source": spec.source, "content_hash": content_hash}
    )
    with store.staged_dir(*parts) as staging:
        pq.write_table(table, staging / "series.parquet")
    return SeriesRef(
        series_id=parts[-1],
        uri=store.uri(*parts, "series.parquet"),
        source=spec.source,
        column=column,
        n_points=len(values),
        content_hash=content_hash,
    )


def read_series(series: SeriesRef, data_dir: str) -> np.ndarray:
    store = DataDir(data_dir)
    table = pq.read_table(
        store.path("raw", series.series_id, "series.parquet"), filesystem=store.fs
    )
    return table.column("value").to_numpy()
