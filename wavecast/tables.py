"""A source table's columns and series: which column is the value and which the time, the
ids of a long (panel) table, and each series' rows."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from wavecast.config import SeriesSpec
from wavecast.errors import InvalidInputError

# What a column name looks like; anything else (a 'key = secret', a long line) is not shown.
COLUMN_NAME = re.compile(r"[\w .()%/-]{1,64}")


# Unicode categories an id must not hold: control characters, line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def described_columns(table: pa.Table) -> str:
    """The columns a table has, by name only when the header looks like one: a file that is
    not a CSV parses as a one-column table named after its first line, which stays unsaid."""
    names = table.column_names
    if len(names) >= 2 and all(COLUMN_NAME.fullmatch(name) for name in names):
        return f"columns: {', '.join(names)}"
    return f"{len(names)} column(s) in its header"


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


def id_groups(table: pa.Table, specs: list[SeriesSpec]) -> dict[str, pa.Table] | None:
    """The rows of the series `specs` name, by id, sorted once: a part of a panel costs its
    own rows, not the whole table's sort. None for a table that is one series."""
    import pyarrow.compute as pc

    if not specs[0].is_panel:
        return None
    wanted = pa.array(sorted({key for spec in specs for key in spec.series}), pa.string())
    rows = table.filter(pc.is_in(panel_ids(table, specs[0]), value_set=wanted))
    return {group.key: group.rows for group in panel_groups(rows, specs[0])}


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
    if not len(keys):
        return
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


TIME_COLUMN_NAMES = frozenset({"time", "timestamp", "date", "datetime", "ds"})


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
