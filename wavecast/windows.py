"""Sliding windows of a series, written as a hive-partitioned Parquet dataset.

Window i holds values[i : i + input_len]; its `steps` targets start `horizon` steps after the
window's last point: values[i + input_len - 1 + horizon + k] for k < steps. The tutorial's
y[i:i+5] -> y[i+6] is input_len=5, horizon=2, steps=1. The first `train_fraction` of windows
(chronologically) train. In memory, targets are always (windows, steps); on disk, `y` is a
float64 for one step (the tutorial's schema) and a fixed-size list for several.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import DTypeLike
from pydantic import BaseModel, ConfigDict

from wavecast.cache_keys import cache_version, stable_hash
from wavecast.config import WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.generate import SeriesRef, read_series
from wavecast.home import SeriesHome
from wavecast.memory import release_unused_memory
from wavecast.storage import DataDir

if TYPE_CHECKING:  # imported where used: it costs 0.5 s, and a cached rerun never reads
    import pyarrow.dataset as ds

SPLITS = ("train", "test")
DEFAULT_CHUNK_ROWS = 1 << 18
GROUP_BYTES = 8 << 20  # float64 inputs per Parquet row group: what a streaming reader holds
SHUFFLE_BYTES = 16 << 20  # inputs pooled and permuted at once by shuffled_batches
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]


class DatasetInfo(BaseModel):
    """A complete windowed dataset: where it is and its shape (a manifest's lineage entry)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    dataset_id: str
    uri: str
    spec: WindowSpec
    n_windows: int
    n_train: int
    n_test: int
    # Why the windows are shorter than the run asked (fitted_spec), empty when they are not:
    # then only the forecasters that read no window compete.
    shortened: str = ""


class DatasetRef(DatasetInfo):
    """A dataset and the series it was built from: what the stages hand each other."""

    series: SeriesRef


def count_windows(n_points: int, input_len: int, horizon: int, steps: int = 1) -> int:
    return max(n_points - input_len - horizon - steps + 2, 0)


def split_index(n_windows: int, train_fraction: float) -> int:
    """Windows before this index train; the tutorial's int(len(X) * 0.8)."""
    return int(n_windows * train_fraction)


def min_series_length(spec: WindowSpec) -> int:
    """The shortest series that yields at least one train and one test window."""
    n_windows = max(2, math.ceil(1 / spec.train_fraction) - 1)
    while not 1 <= split_index(n_windows, spec.train_fraction) < n_windows:
        n_windows += 1
    return n_windows + spec.input_len + spec.horizon + spec.steps - 2


def fitted_spec(spec: WindowSpec, n_points: int) -> WindowSpec:
    """The geometry a series of `n_points` is windowed with: the one asked for, or, for a
    series too short for it, windows of one point. The forecasters that read no window
    (naive, ETS, Theta, ARIMA, their combination) then still compete, scored at every origin
    the series allows: a short series gets the best forecast its length allows, not a skip."""
    if spec.input_len == 1 or n_points >= min_series_length(spec):
        return spec
    return spec.model_copy(update={"input_len": 1})


def shortened_note(asked: WindowSpec, used: WindowSpec, n_points: int) -> str:
    """Why a series' windows are shorter than asked; empty when they are not."""
    if used.input_len == asked.input_len:
        return ""
    return (
        f"{n_points} points are fewer than the {min_series_length(asked)} that windows of "
        f"{asked.input_len} inputs need for {asked.steps} step(s)"
    )


def check_length(n_points: int, spec: WindowSpec) -> None:
    """Refuse only a series too short to score any forecast of `spec.steps` steps, even from
    windows of one point (fitted_spec)."""
    used = fitted_spec(spec, n_points)
    needed = min_series_length(used)
    if n_points < needed:
        raise InvalidInputError(
            f"series has {n_points} points: too few to score a forecast of {spec.steps} step(s) "
            f"at horizon {spec.horizon} on held-out data (with train_fraction="
            f"{spec.train_fraction}, at least {needed} are needed)"
        )


def make_windows(
    values: np.ndarray, input_len: int, horizon: int, steps: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, inputs, targets) as views of `values`: no Python loop, no copy."""
    n_windows = count_windows(len(values), input_len, horizon, steps)
    if n_windows == 0:
        return np.arange(0, dtype=np.int64), np.empty((0, input_len)), np.empty((0, steps))
    inputs = sliding_window_view(values, input_len)[:n_windows]
    targets = sliding_window_view(values[input_len - 1 + horizon :], steps)[:n_windows]
    return np.arange(n_windows, dtype=np.int64), inputs, targets


def window_schema(spec: WindowSpec, series: SeriesRef) -> pa.Schema:
    metadata = {
        "input_len": str(spec.input_len),
        "horizon": str(spec.horizon),
        "steps": str(spec.steps),
        "train_fraction": str(spec.train_fraction),
        "test_fraction": str(round(1 - spec.train_fraction, 12)),
        "source": series.source,
        "source_content_hash": series.content_hash,
    }
    return pa.schema(
        [
            ("start", pa.int64()),
            ("x", pa.list_(pa.float64(), spec.input_len)),
            ("y", pa.float64() if spec.steps == 1 else pa.list_(pa.float64(), spec.steps)),
            ("split", pa.string()),
        ],
        metadata=metadata,
    )


def rows_per_group(input_len: int) -> int:
    """Windows per written chunk and Parquet row group: ~8 MB of inputs, within [1024, 2**18]."""
    return max(1024, min(DEFAULT_CHUNK_ROWS, GROUP_BYTES // (8 * input_len)))


def as_arrow(rows: np.ndarray) -> pa.Array:
    """Rows of a (n, width) array: a float64 column for width 1, fixed-size lists otherwise."""
    if rows.shape[1] == 1:
        return pa.array(np.ascontiguousarray(rows[:, 0]))
    return pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(rows).ravel()), rows.shape[1]
    )


def window_batches(
    values: np.ndarray, spec: WindowSpec, schema: pa.Schema, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `chunk_rows` windows, each inside one split."""
    starts, inputs, targets = make_windows(values, spec.input_len, spec.horizon, spec.steps)
    boundary = split_index(len(starts), spec.train_fraction)
    for split, lo, hi in (("train", 0, boundary), ("test", boundary, len(starts))):
        for begin in range(lo, hi, chunk_rows):
            end = min(begin + chunk_rows, hi)
            flat = pa.array(np.ascontiguousarray(inputs[begin:end]).ravel())
            yield pa.record_batch(
                [
                    pa.array(starts[begin:end]),
                    pa.FixedSizeListArray.from_arrays(flat, spec.input_len),
                    as_arrow(targets[begin:end]),
                    pa.repeat(pa.scalar(split, pa.string()), end - begin),
                ],
                schema=schema,
            )


def write_partitions(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, root: Path, group_rows: int
) -> None:
    """Hive layout split=<name>/part-0.parquet, written batch by batch as they are made.

    Each batch is encoded and written before the next is built: unlike ds.write_dataset,
    which queues up to 64 Mi rows before it pushes back (3.7 GB for 5M windows of 64 here;
    apache/arrow#45467). No dictionary encoding: overlapping windows repeat their bytes, so
    Snappy already shrinks them as much, and writing and reading are about 2x faster.
    """
    file_schema = schema.remove(schema.get_field_index("split"))
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            split = str(batch.column("split")[0].as_py())
            if split not in writers:
                (root / f"split={split}").mkdir()
                path = root / f"split={split}" / "part-0.parquet"
                writers[split] = pq.ParquetWriter(path, file_schema, use_dictionary=False)
            writers[split].write_batch(batch.select(file_schema.names), row_group_size=group_rows)
    finally:
        for writer in writers.values():
            writer.close()


def dataset_location(
    series: SeriesRef, spec: WindowSpec, home: SeriesHome
) -> tuple[str, tuple[str, ...]]:
    version = cache_version("windows")
    return home.uri(), ("windows", stable_hash(series.series_id, spec.model_dump_json(), version))


def build_windows(
    series: SeriesRef,
    spec: WindowSpec,
    home: SeriesHome,
    group_rows: int | None = None,
    reuse: bool = False,
) -> DatasetRef:
    """Window the stored series into a Parquet dataset that appears only when complete.

    Chunks and row groups hold ~8 MB of inputs each, so neither writing nor a streaming
    reader holds more than a couple of them, whatever the series length. With `reuse`, a
    complete dataset already at this content-addressed place is kept as it is.
    """
    check_length(series.n_points, spec)
    asked, spec = spec, fitted_spec(spec, series.n_points)
    _, parts = dataset_location(series, spec, home)
    store = home.store
    if not (reuse and store.is_complete(*parts)):
        release_unused_memory()
        values = read_series(series, store)
        schema = window_schema(spec, series)
        group_rows = group_rows or rows_per_group(spec.input_len)
        with store.staged_dir(*parts) as staging:
            batches = window_batches(values, spec, schema, chunk_rows=group_rows)
            write_partitions(batches, schema, staging, group_rows)
        del values
        release_unused_memory()
    n_windows = count_windows(series.n_points, spec.input_len, spec.horizon, spec.steps)
    n_train = split_index(n_windows, spec.train_fraction)
    return DatasetRef(
        dataset_id=parts[-1],
        uri=store.uri(*parts),
        series=series,
        spec=spec,
        n_windows=n_windows,
        n_train=n_train,
        n_test=n_windows - n_train,
        shortened=shortened_note(asked, spec, series.n_points),
    )


def open_dataset(dataset: DatasetRef, store: DataDir) -> ds.Dataset:
    import pyarrow.dataset as ds

    opened = ds.dataset(
        store.path("windows", dataset.dataset_id),
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
    )
    store.check_listed(opened.files)
    return opened


def split_row_groups(dataset: DatasetRef, split: str, store: DataDir) -> list[ds.Fragment]:
    """One fragment per Parquet row group of a split, in chronological order."""
    import pyarrow.dataset as ds

    fragments = open_dataset(dataset, store).get_fragments(filter=ds.field("split") == split)
    groups = [group for fragment in fragments for group in fragment.split_by_row_group()]
    return sorted(groups, key=lambda g: g.row_groups[0].statistics["start"]["min"])


def as_rows(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """A float64 or fixed-size-list column as a (rows, width) array."""
    if pa.types.is_fixed_size_list(column.type):
        return column.combine_chunks().flatten().to_numpy().reshape(-1, width)
    return column.to_numpy().reshape(-1, width)


def read_group(group: ds.Fragment, spec: WindowSpec, with_starts: bool = True) -> Chunk:
    """(starts, inputs, targets) of one row group by start; starts are empty if not asked for."""
    table = group.to_table(columns=["start", "x", "y"] if with_starts else ["x", "y"])
    x = as_rows(table.column("x"), spec.input_len)
    y = as_rows(table.column("y"), spec.steps)
    if not with_starts:
        return np.empty(0, np.int64), x, y
    starts = table.column("start").to_numpy()
    if not bool(np.all(starts[1:] > starts[:-1])):  # written in order; sort only if not
        order = np.argsort(starts, kind="stable")
        starts, x, y = starts[order], x[order], y[order]
    return starts, x, y


def iter_split(
    dataset: DatasetRef, split: str, store: DataDir, batch_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[Chunk]:
    """(starts, inputs, targets) of one split in chronological chunks of at most `batch_rows`.

    Memory stays at one row group (~8 MB of inputs) plus the chunk the caller holds, so a
    split of any size can be scored, summarised or copied in one pass. Chunks are read-only
    views of that row group: copy what you keep, or a kept slice pins the whole group.
    """
    for group in split_row_groups(dataset, split, store):
        starts, x, y = read_group(group, dataset.spec)
        for begin in range(0, len(starts), batch_rows):
            end = begin + batch_rows
            yield starts[begin:end], x[begin:end], y[begin:end]


def head_of_split(dataset: DatasetRef, split: str, store: DataDir, rows: int) -> Chunk:
    """The first `rows` windows of a split (all of them if it is shorter), reading no further."""
    chunks: list[Chunk] = []
    for chunk in iter_split(dataset, split, store, batch_rows=max(rows, 1)):
        chunks.append(chunk)
        if sum(len(c[0]) for c in chunks) >= rows:
            break
    if not chunks:
        spec = dataset.spec
        return np.empty(0, np.int64), np.empty((0, spec.input_len)), np.empty((0, spec.steps))
    starts, x, y = (np.concatenate(column)[:rows] for column in zip(*chunks, strict=True))
    return starts, x, y


def read_split(
    dataset: DatasetRef, split: str, store: DataDir
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, inputs, targets) of one split, in chronological order.

    Filled row group by row group into arrays sized from the Parquet metadata, so the peak is
    the result plus one row group, not the result twice over as a table and its sorted copy.
    """
    groups = split_row_groups(dataset, split, store)
    n_rows = sum(g.row_groups[0].num_rows for g in groups)
    starts = np.empty(n_rows, np.int64)
    x = np.empty((n_rows, dataset.spec.input_len))
    y = np.empty((n_rows, dataset.spec.steps))
    at = 0
    for group in groups:
        s, gx, gy = read_group(group, dataset.spec)
        starts[at : at + len(s)], x[at : at + len(s)], y[at : at + len(s)] = s, gx, gy
        at += len(s)
    if not bool(np.all(starts[1:] > starts[:-1])):  # groups overlap: not from build_windows
        order = np.argsort(starts, kind="stable")
        return starts[order], x[order], y[order]
    return starts, x, y


def shuffled_batches(
    dataset: DatasetRef,
    split: str,
    store: DataDir,
    batch_size: int,
    rng: np.random.Generator,
    dtype: DTypeLike = np.float64,
    mix_bytes: int = SHUFFLE_BYTES,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (inputs, targets) batches: every window once, in a block-shuffled order.

    Row groups are visited in a random order; a few at a time (~`mix_bytes` of inputs as
    `dtype`) are pooled with the previous block's leftovers and permuted, then cut into
    `batch_size` batches. Only the epoch's last batch may be short, as with model.fit.
    """
    groups = split_row_groups(dataset, split, store)
    spec, itemsize = dataset.spec, np.dtype(dtype).itemsize
    input_len, steps = spec.input_len, spec.steps
    largest = max((g.row_groups[0].num_rows for g in groups), default=1)
    per_block = max(1, mix_bytes // (itemsize * input_len * largest))
    order = rng.permutation(len(groups))
    left_x, left_y = np.empty((0, input_len), dtype), np.empty((0, steps), dtype)
    for begin in range(0, len(order), per_block):
        chosen = [groups[i] for i in order[begin : begin + per_block]]
        size = len(left_y) + sum(g.row_groups[0].num_rows for g in chosen)
        block_x, block_y = np.empty((size, input_len), dtype), np.empty((size, steps), dtype)
        block_x[: len(left_y)], block_y[: len(left_y)], at = left_x, left_y, len(left_y)
        for group in chosen:
            _, x, y = read_group(group, spec, with_starts=False)
            block_x[at : at + len(y)], block_y[at : at + len(y)] = x, y
            at += len(y)
        del x, y
        release_unused_memory()
        mixed = rng.permutation(size)
        n_full = size // batch_size * batch_size
        for at in range(0, n_full, batch_size):
            picked = mixed[at : at + batch_size]
            yield block_x[picked], block_y[picked]
        left_x, left_y = block_x[mixed[n_full:]], block_y[mixed[n_full:]]
        del block_x, block_y  # before the next block is allocated, not after
    if len(left_y):
        yield left_x, left_y
