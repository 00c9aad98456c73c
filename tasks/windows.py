"""Sliding windows of a series, written as a hive-partitioned Parquet dataset.

Window i holds values[i : i + input_len]; its target sits `horizon` steps after the window's
last point, values[i + input_len - 1 + horizon]. The tutorial's y[i:i+5] -> y[i+6] is
input_len=5, horizon=2. The first `train_fraction` of windows (chronologically) train.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from numpy.lib.stride_tricks import sliding_window_view
from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict

from tasks.config import WindowSpec
from tasks.errors import InvalidInputError
from tasks.generate import SeriesRef, read_series
from tasks.prefect_support import IO_RETRIES, content_cache
from tasks.storage import DataDir, stable_hash

SPLITS = ("train", "test")
DEFAULT_CHUNK_ROWS = 1 << 18


class DatasetRef(BaseModel):
    """A complete windowed dataset: where it is, its shape, and what it was built from."""

    model_config = ConfigDict(frozen=True)

    dataset_id: str
    uri: str
    series: SeriesRef
    spec: WindowSpec
    n_windows: int
    n_train: int
    n_test: int


def count_windows(n_points: int, input_len: int, horizon: int) -> int:
    return max(n_points - input_len - horizon + 1, 0)


def split_index(n_windows: int, train_fraction: float) -> int:
    """Windows before this index train; the tutorial's int(len(X) * 0.8)."""
    return int(n_windows * train_fraction)


def min_series_length(spec: WindowSpec) -> int:
    """The shortest series that yields at least one train and one test window."""
    n_windows = max(2, math.ceil(1 / spec.train_fraction) - 1)
    while not 1 <= split_index(n_windows, spec.train_fraction) < n_windows:
        n_windows += 1
    return n_windows + spec.input_len + spec.horizon - 1


def check_length(n_points: int, spec: WindowSpec) -> None:
    needed = min_series_length(spec)
    if n_points < needed:
        raise InvalidInputError(
            f"series has {n_points} points; input_len={spec.input_len}, horizon={spec.horizon} "
            f"and train_fraction={spec.train_fraction} need at least {needed}"
        )


def make_windows(
    values: np.ndarray, input_len: int, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, inputs, targets) as views of `values`: no Python loop, no copy."""
    n_windows = count_windows(len(values), input_len, horizon)
    if n_windows == 0:
        return np.arange(0, dtype=np.int64), np.empty((0, input_len)), np.empty(0)
    inputs = sliding_window_view(values, input_len)[:n_windows]
    targets = values[input_len - 1 + horizon :][:n_windows]
    return np.arange(n_windows, dtype=np.int64), inputs, targets


def window_schema(spec: WindowSpec, series: SeriesRef) -> pa.Schema:
    metadata = {
        "input_len": str(spec.input_len),
        "horizon": str(spec.horizon),
        "train_fraction": str(spec.train_fraction),
        "test_fraction": str(round(1 - spec.train_fraction, 12)),
        "source": series.source,
        "source_content_hash": series.content_hash,
    }
    return pa.schema(
        [
            ("start", pa.int64()),
            ("x", pa.list_(pa.float64(), spec.input_len)),
            ("y", pa.float64()),
            ("split", pa.string()),
        ],
        metadata=metadata,
    )


def window_batches(
    values: np.ndarray, spec: WindowSpec, schema: pa.Schema, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `chunk_rows` windows, each inside one split."""
    starts, inputs, targets = make_windows(values, spec.input_len, spec.horizon)
    boundary = split_index(len(starts), spec.train_fraction)
    for split, lo, hi in (("train", 0, boundary), ("test", boundary, len(starts))):
        for begin in range(lo, hi, chunk_rows):
            end = min(begin + chunk_rows, hi)
            flat = pa.array(np.ascontiguousarray(inputs[begin:end]).ravel())
            yield pa.record_batch(
                [
                    pa.array(starts[begin:end]),
                    pa.FixedSizeListArray.from_arrays(flat, spec.input_len),
                    pa.array(targets[begin:end]),
                    pa.array([split] * (end - begin), pa.string()),
                ],
                schema=schema,
            )


def dataset_location(
    series: SeriesRef, spec: WindowSpec, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    return data_dir, ("windows", stable_hash(series.series_id, spec.model_dump_json()))


def build_windows(series: SeriesRef, spec: WindowSpec, data_dir: str) -> DatasetRef:
    """Window the stored series into a Parquet dataset that appears only when complete."""
    values = read_series(series, data_dir)
    check_length(len(values), spec)
    _, parts = dataset_location(series, spec, data_dir)
    schema = window_schema(spec, series)
    store = DataDir(data_dir)
    with store.staged_dir(*parts) as staging:
        ds.write_dataset(
            window_batches(values, spec, schema),
            base_dir=str(staging),
            schema=schema,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("split", pa.string())]), flavor="hive"),
            basename_template="part-{i}.parquet",
            existing_data_behavior="delete_matching",
            preserve_order=True,
        )
    n_windows = count_windows(len(values), spec.input_len, spec.horizon)
    n_train = split_index(n_windows, spec.train_fraction)
    return DatasetRef(
        dataset_id=parts[-1],
        uri=store.uri(*parts),
        series=series,
        spec=spec,
        n_windows=n_windows,
        n_train=n_train,
        n_test=n_windows - n_train,
    )


def open_dataset(dataset: DatasetRef, data_dir: str) -> ds.Dataset:
    store = DataDir(data_dir)
    return ds.dataset(
        store.path("windows", dataset.dataset_id),
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
    )


def read_split(
    dataset: DatasetRef, split: str, data_dir: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, inputs, targets) of one split, in chronological order."""
    table = open_dataset(dataset, data_dir).to_table(filter=ds.field("split") == split)
    table = table.sort_by("start")
    inputs = table.column("x").combine_chunks()
    x = inputs.flatten().to_numpy().reshape(-1, dataset.spec.input_len)
    return table.column("start").to_numpy(), x, table.column("y").to_numpy()


@task(name="write-windows", **content_cache(dataset_location), **IO_RETRIES)
def write_windows(series: SeriesRef, spec: WindowSpec, data_dir: str) -> DatasetRef:
    dataset = build_windows(series, spec, data_dir)
    get_run_logger().info(
        "Dataset %s: %d windows (%d train / %d test) at %s",
        dataset.dataset_id,
        dataset.n_windows,
        dataset.n_train,
        dataset.n_test,
        dataset.uri,
    )
    return dataset
