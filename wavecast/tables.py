"""A source table's columns and series: which column is the value and which the time, the
ids of a long (panel) table, and each series' rows."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from wavecast.config import SeriesSpec
from wavecast.errors import InvalidInputError

# Unicode categories an id must not hold: control characters, line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def is_number(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type)


def described_columns(table: pa.Table) -> str:
    """How many columns a table has and where its numeric ones are, never their names: a CSV
    without a header has its first line taken for one, which may be anything (a secret)."""
    numeric = [str(at) for at, field in enumerate(table.schema, 1) if is_number(field)]
    where = f"numeric: column {', '.join(numeric)}" if numeric else "none numeric"
    return f"{len(table.column_names)} column(s), {where}"


def pick_column(table: pa.Table, spec: SeriesSpec) -> str:
    """The named column, or the only numeric one (the time column aside); anything ambiguous
    is an error."""
    column, source, time = spec.column, spec.source, time_column_of(table, spec)
    numeric = [
        f.name for f in table.schema if is_number(f) and f.name != time and not is_time_like(f)
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
    at = [str(table.column_names.index(name) + 1) for name in numeric]
    raise InvalidInputError(
        f"--source {source}: several numeric columns (column {', '.join(at)}); pick one by its "
        "name with --column"
    )


class SeriesRows(NamedTuple):
    """One series' rows of a table, in file order, and where each is among the file's data
    rows (0-based): a message names the file's row, not the series'."""

    rows: pa.Table
    rows_at: np.ndarray


def id_groups(table: pa.Table, specs: list[SeriesSpec]) -> dict[str | None, SeriesRows]:
    """The rows of the series `specs` name, by id, sorted once: a part of a panel costs its
    own rows, not the whole table's sort. A table without an id column is one series, of id
    None (as statsforecast's GroupedArray, a panel of one); an id that names no series
    (id_problem) has no rows."""
    import pyarrow.compute as pc

    if specs[0].id_column is None:
        return {None: SeriesRows(table, np.arange(table.num_rows))}
    keys = {key for spec in specs for key in spec.series if id_problem(key) is None}
    mask = pc.is_in(panel_ids(table, specs[0]), value_set=pa.array(sorted(keys), pa.string()))
    return dict(panel_groups(table.filter(mask), specs[0], np.flatnonzero(mask)))


def panel_groups(
    table: pa.Table, spec: SeriesSpec, rows_at: np.ndarray | None = None
) -> Iterator[tuple[str, SeriesRows]]:
    """Every id and its rows, the empty id (rows with none) included: see id_problem.
    `rows_at`: where the table's rows are in the file, when it is a part of it."""
    import pyarrow.compute as pc

    assert spec.id_column is not None
    ids = panel_ids(table, spec)
    order = pc.sort_indices(ids).to_numpy()  # stable: rows of one series keep their order
    at = order if rows_at is None else rows_at[order]
    keys = ids.take(order).to_numpy(zero_copy_only=False)
    rows = table.drop_columns([spec.id_column]).take(order)
    if not len(keys):
        return
    bounds = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1), len(keys)]
    for start, end in itertools.pairwise(bounds):
        yield str(keys[start]), SeriesRows(rows.slice(start, end - start), at[start:end])


def series_count(table: pa.Table, spec: SeriesSpec) -> int:
    """How many series a table holds: its distinct ids (the empty one included), or one for
    a table without an id column. An id column it lacks is an error."""
    import pyarrow.compute as pc

    if spec.id_column is None:
        return 1
    if spec.id_column not in table.column_names:
        raise InvalidInputError(
            f"--id-column {spec.id_column}: not in {spec.source} ({described_columns(table)})"
        )
    return int(pc.count_distinct(panel_ids(table, spec), mode="all").as_py())


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


def shown_rows(rows_at: np.ndarray, limit: int = 5) -> str:
    """Rows by their place among the file's data rows (0-based `rows_at`), as one line names
    them: "data rows 3, 9 (lines 4, 10 of a CSV)", the first `limit` in file order."""
    first = np.sort(rows_at)[:limit] + 1
    more = ", ..." if len(rows_at) > limit else ""
    rows, lines = (", ".join(str(n) for n in numbers) + more for numbers in (first, first + 1))
    if len(rows_at) == 1:
        return f"data row {rows} (line {lines} of a CSV)"
    return f"data rows {rows} (lines {lines} of a CSV)"


def shown_id(key: str) -> str:
    """Text from data (an id) as one line shows it: quoted, its control and format characters
    escaped, when it is empty or holds any (a newline, a terminal's escape codes, a
    right-to-left override), so it can neither break a table nor steer the terminal."""
    return key if key and key.isprintable() else repr(key)


TIME_COLUMN_NAMES = frozenset({"time", "timestamp", "date", "datetime", "ds"})


def time_column_text(name: str) -> str:
    """The time column as a message names it: by name only when it is a word wavecast looks
    for, since one found by its dates is named by a header-less CSV's first line."""
    return f"time column '{name}'" if name.lower() in TIME_COLUMN_NAMES else "the time column"


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
