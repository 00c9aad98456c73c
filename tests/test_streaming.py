"""Bounded-memory reading and training: row groups, chunked splits, block shuffles, moments."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import raw_series
from wavecast import metrics
from wavecast.architectures import Moments, scaling_for, streamed_scaling
from wavecast.config import ModelSpec, SeriesSpec, TrainSpec, WindowSpec
from wavecast.home import SeriesHome
from wavecast.memory import release_unused_memory
from wavecast.metrics import persistence_forecast, score_split
from wavecast.model_files import loss_history, untrained_predictions
from wavecast.storage import DataDir
from wavecast.train import train_on_dataset
from wavecast.windows import (
    DatasetRef,
    build_windows,
    head_of_split,
    iter_split,
    read_split,
    rows_per_group,
    shuffled_batches,
    split_row_groups,
)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetRef, str]:
    """393 noisy windows in row groups of 37: 314 train (9 groups), 79 test (3 groups)."""
    data_dir = str(tmp_path_factory.mktemp("streaming") / "data")
    series = raw_series(SeriesSpec(length=400, noise=0.05), DataDir(data_dir))
    dataset = build_windows(series, WindowSpec(horizon=3), SeriesHome(data_dir), group_rows=37)
    return dataset, data_dir


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetRef, str]:
    data_dir = str(tmp_path_factory.mktemp("streaming-small") / "data")
    series = raw_series(SeriesSpec(length=300), DataDir(data_dir))
    return build_windows(series, WindowSpec(), SeriesHome(data_dir)), data_dir


@pytest.mark.unit
def test_row_groups_hold_about_eight_megabytes_of_inputs() -> None:
    assert rows_per_group(5) == (8 << 20) // (8 * 5)
    assert rows_per_group(1) == 1 << 18
    assert rows_per_group(64) == 16384
    assert rows_per_group(1 << 20) == 1024


@pytest.mark.unit
def test_written_row_groups_are_bounded_and_chronological(
    grouped: tuple[DatasetRef, str],
) -> None:
    dataset, data_dir = grouped
    limit = 37
    groups = split_row_groups(dataset, "train", DataDir(data_dir))
    sizes = [g.row_groups[0].num_rows for g in groups]
    assert len(groups) > 1 and max(sizes) <= limit and sum(sizes) == dataset.n_train
    firsts = [g.row_groups[0].statistics["start"]["min"] for g in groups]
    assert firsts == sorted(firsts)
    assert len(split_row_groups(dataset, "test", DataDir(data_dir))) == 3


@pytest.mark.unit
def test_default_row_groups_follow_rows_per_group(small: tuple[DatasetRef, str]) -> None:
    dataset, _ = small
    parts = sorted(Path(dataset.uri).glob("split=*/*.parquet"))
    assert {part.parent.name for part in parts} == {"split=train", "split=test"}
    for part in parts:
        metadata = pq.ParquetFile(part).metadata
        assert metadata.num_row_groups == 1 and metadata.num_rows <= rows_per_group(5)


@pytest.mark.unit
@pytest.mark.parametrize("batch_rows", [1, 10, 37, 1000])
def test_iter_split_chunks_concatenate_to_read_split(
    grouped: tuple[DatasetRef, str], batch_rows: int
) -> None:
    dataset, data_dir = grouped
    whole = read_split(dataset, "test", DataDir(data_dir))
    chunks = list(iter_split(dataset, "test", DataDir(data_dir), batch_rows=batch_rows))
    assert all(len(c[0]) <= batch_rows for c in chunks)
    for column, expected in zip(zip(*chunks, strict=True), whole, strict=True):
        np.testing.assert_array_equal(np.concatenate(column), expected)


@pytest.mark.unit
def test_head_of_split_is_the_first_windows(grouped: tuple[DatasetRef, str]) -> None:
    dataset, data_dir = grouped
    starts, x, y = read_split(dataset, "train", DataDir(data_dir))
    for rows in (1, 40, dataset.n_train + 5):
        head = head_of_split(dataset, "train", DataDir(data_dir), rows)
        for got, full in zip(head, (starts, x, y), strict=True):
            np.testing.assert_array_equal(got, full[:rows])


@pytest.mark.unit
@pytest.mark.parametrize("mix_bytes", [1, 2000, 1 << 20])
@pytest.mark.parametrize("batch_size", [1, 16, 100, 500])
def test_shuffled_batches_visit_every_window_once(
    grouped: tuple[DatasetRef, str], batch_size: int, mix_bytes: int
) -> None:
    """Every train window exactly once per epoch; only the last batch may be short."""
    dataset, data_dir = grouped
    _, x, y = read_split(dataset, "train", DataDir(data_dir))
    rng = np.random.default_rng(0)
    batches = list(
        shuffled_batches(dataset, "train", DataDir(data_dir), batch_size, rng, mix_bytes=mix_bytes)
    )
    sizes = [len(b[1]) for b in batches]
    assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    seen_y = np.concatenate([b[1] for b in batches])
    seen_x = np.concatenate([b[0] for b in batches])
    order = np.lexsort(seen_x.T[::-1])
    expected = np.lexsort(x.T[::-1])
    np.testing.assert_array_equal(seen_x[order], x[expected])
    np.testing.assert_array_equal(seen_y[order], y[expected])


@pytest.mark.unit
def test_shuffled_batches_are_seeded_and_reshuffled(grouped: tuple[DatasetRef, str]) -> None:
    dataset, data_dir = grouped

    def first_targets(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        batch = next(shuffled_batches(dataset, "train", DataDir(data_dir), 64, rng, np.float32))
        assert batch[0].dtype == np.float32
        return batch[1]

    np.testing.assert_array_equal(first_targets(1), first_targets(1))
    assert not np.array_equal(first_targets(1), first_targets(2))


@pytest.mark.unit
def test_moments_merge_chunks_like_numpy() -> None:
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 7))
    moments = Moments()
    for chunk in np.array_split(values, 13):
        moments = moments.add(chunk)
    assert moments.count == values.size
    assert moments.mean == pytest.approx(values.mean(), rel=1e-12)
    assert moments.std == pytest.approx(values.std(), rel=1e-12)
    assert moments.max_abs == np.abs(values).max()


@pytest.mark.unit
@pytest.mark.parametrize("scaling", ["auto", "standard", "none"])
def test_streamed_scaling_matches_in_memory_scaling(scaling: str) -> None:
    values = np.random.default_rng(1).normal(40.0, 5.0, size=(500, 4))
    spec = ModelSpec.model_validate({"scaling": scaling})
    streamed = streamed_scaling(spec, np.array_split(values, 7))
    assert streamed == pytest.approx(scaling_for(spec, values), rel=1e-12)


@pytest.mark.fit
def test_streaming_branch_trains_and_is_deterministic(small: tuple[DatasetRef, str]) -> None:
    """Forced through the streaming branch: loss falls, same seed gives the same losses."""
    dataset, data_dir = small
    spec = TrainSpec(epochs=4, batch_size=32, learning_rate=0.01)
    first = train_on_dataset(
        dataset, ModelSpec(units=8), spec, SeriesHome(data_dir), stream_above=0
    )
    losses = loss_history(first, DataDir(data_dir))
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert untrained_predictions(first, DataDir(data_dir)).shape == (dataset.n_test, 1)
    again = train_on_dataset(
        dataset, ModelSpec(units=8), spec, SeriesHome(data_dir), stream_above=0
    )
    assert loss_history(again, DataDir(data_dir)) == losses


@pytest.mark.fit
def test_in_memory_branch_is_deterministic(small: tuple[DatasetRef, str]) -> None:
    dataset, data_dir = small
    spec = TrainSpec(epochs=2, batch_size=32)
    first = loss_history(
        train_on_dataset(dataset, ModelSpec(units=4), spec, SeriesHome(data_dir)), DataDir(data_dir)
    )
    again = loss_history(
        train_on_dataset(dataset, ModelSpec(units=4), spec, SeriesHome(data_dir)), DataDir(data_dir)
    )
    assert first == again and first[-1] < first[0]


def memory_owner(array: np.ndarray) -> object:
    """What keeps a numpy view's memory alive: for a chunk of a split, its row group's Arrow
    array (iter_split's chunks are zero-copy views); for an array owning its data, itself."""
    owner: object = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return owner


@pytest.mark.unit
def test_kept_forecast_samples_do_not_pin_their_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept forecast samples must not pin the row groups they were sliced from.

    Weak references to the memory of each chunk score_split reads: when it scores one, the
    chunks before the previous one (whose forecast it may still hold in a local) must be
    collectable, however little of them it kept.
    """
    data_dir = str(tmp_path / "data")
    series = raw_series(SeriesSpec(length=4_000), DataDir(data_dir))
    dataset = build_windows(series, WindowSpec(input_len=16), SeriesHome(data_dir), group_rows=100)
    chunks: list[list[weakref.ref[object]]] = []  # the memory of each chunk read so far

    def watched_split(*args: Any, **kwargs: Any) -> Iterator[tuple[np.ndarray, ...]]:
        for chunk in iter_split(*args, **kwargs):
            chunks.append([weakref.ref(memory_owner(column)) for column in chunk])
            yield chunk

    still_pinned: list[int] = []

    def watched(inputs: np.ndarray) -> np.ndarray:
        older = chunks[:-2]
        still_pinned.append(sum(ref() is not None for refs in older for ref in refs))
        return persistence_forecast(inputs)  # a view of `inputs`: pins it unless copied

    monkeypatch.setattr(metrics, "iter_split", watched_split)
    _, sample = score_split(dataset, DataDir(data_dir), {"persistence": watched}, keep=150)
    assert len(still_pinned) == len(split_row_groups(dataset, "test", DataDir(data_dir))) >= 6
    assert still_pinned == [0] * len(still_pinned)
    assert [len(part) for part in sample.values()] == [150] * 3  # start, truth, persistence


@pytest.mark.unit
def test_release_unused_memory_switches_arrow_to_the_system_allocator() -> None:
    """Arrow's default pool becomes the system allocator, whatever it was; twice is once."""
    cached = next(caching_pools(), None)
    if cached is None:
        pytest.skip("this pyarrow has no mimalloc or jemalloc pool: it allocates with malloc")
    previous = pa.default_memory_pool()
    try:
        pa.set_memory_pool(cached)
        held = pa.array(range(1000))  # memory of the old pool, still in use after the switch
        assert cached.bytes_allocated() >= 8000
        release_unused_memory()
        assert pa.default_memory_pool().backend_name == "system"
        release_unused_memory()
        assert pa.default_memory_pool().backend_name == "system"
        assert held.to_pylist() == list(range(1000))
    finally:
        pa.set_memory_pool(previous)


def caching_pools() -> Iterator[pa.MemoryPool]:
    """The allocators pyarrow may default to that are not the system's, those built in."""
    for make in (pa.mimalloc_memory_pool, pa.jemalloc_memory_pool):
        try:
            yield make()
        except NotImplementedError:
            continue
