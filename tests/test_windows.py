"""Windowing against the tutorial's own Python loop, on disk and in memory."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import raw_series
from wavecast.config import SeriesSpec, WindowSpec
from wavecast.errors import InvalidInputError
from wavecast.generate import SeriesRef
from wavecast.home import SeriesHome
from wavecast.storage import DataDir
from wavecast.windows import (
    build_windows,
    check_length,
    fitted_spec,
    make_windows,
    min_series_length,
    read_split,
    window_batches,
    window_schema,
)

pytestmark = pytest.mark.unit

SINE = np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 1000))
Windows = tuple[np.ndarray, np.ndarray, np.ndarray]


def tutorial_windows(y: np.ndarray, input_len: int, horizon: int) -> tuple[Windows, Windows]:
    """The tutorial's loop with its target y[i+input_len+1] generalised to any horizon."""
    starts, xs, ys = [], [], []
    for i in range(len(y)):
        if i + input_len - 1 + horizon >= len(y):
            break
        starts.append(i)
        xs.append(y[i : i + input_len])
        ys.append(y[i + input_len - 1 + horizon])
    split = int(len(xs) * 0.8)
    s, x, t = np.array(starts), np.array(xs), np.array(ys)
    return (s[:split], x[:split], t[:split]), (s[split:], x[split:], t[split:])


def fake_series_ref() -> SeriesRef:
    return SeriesRef(
        series_id="s", uri="u", source="sine", column=None, n_points=0, content_hash="h" * 32
    )


def as_column(y: np.ndarray) -> np.ndarray:
    """One target per window, as make_windows and read_split hold targets: (windows, 1)."""
    return y.reshape(-1, 1)


def assert_same_windows(got: Windows, expected: Windows) -> None:
    """Starts and inputs equal; the targets equal as one column."""
    (starts, x, y), (want_starts, want_x, want_y) = got, expected
    assert np.array_equal(starts, want_starts) and np.array_equal(x, want_x)
    assert np.array_equal(y, as_column(want_y))


def test_horizon_two_reference_is_the_tutorial_loop_verbatim() -> None:
    """The generalised reference at horizon 2 is exactly the tutorial's y[i+input_len+1]."""
    y = np.arange(20.0)
    (_, train_x, train_y), (_, test_x, test_y) = tutorial_windows(y, 5, 2)
    xs, ys = [], []
    for i in range(len(y)):
        if i + 5 + 1 >= len(y):
            break
        xs.append(y[i : i + 5])
        ys.append(y[i + 5 + 1])
    assert np.array_equal(np.concatenate([train_x, test_x]), np.array(xs))
    assert np.array_equal(np.concatenate([train_y, test_y]), np.array(ys))


def test_default_sine_gives_994_windows_795_train_199_test() -> None:
    """The tutorial's geometry: 1000 points, y[i:i+5] -> y[i+6]."""
    (train_s, _, _), (test_s, _, _) = tutorial_windows(SINE, 5, 2)
    starts, inputs, targets = make_windows(SINE, 5, 2)
    assert (len(starts), len(inputs), len(targets)) == (994, 994, 994)
    assert (len(train_s), len(test_s)) == (795, 199)


@pytest.mark.parametrize(("input_len", "horizon"), [(5, 2), (5, 1), (1, 1), (3, 7), (20, 4)])
def test_make_windows_equals_the_loop(input_len: int, horizon: int) -> None:
    """Vectorised windows are the loop's windows, value for value."""
    (trs, trx, try_), (tes, tex, tey) = tutorial_windows(SINE, input_len, horizon)
    starts, inputs, targets = make_windows(SINE, input_len, horizon)
    assert np.array_equal(starts, np.concatenate([trs, tes]))
    assert np.array_equal(inputs, np.concatenate([trx, tex]))
    assert np.array_equal(targets, as_column(np.concatenate([try_, tey])))


@pytest.fixture(scope="module")
def sine_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SeriesRef]:
    data_dir = str(tmp_path_factory.mktemp("windows") / "data")
    return data_dir, raw_series(SeriesSpec(), DataDir(data_dir))


@pytest.mark.parametrize(("input_len", "horizon"), [(5, 2), (4, 1), (2, 9)])
def test_written_dataset_reads_back_as_the_loop(
    sine_store: tuple[str, SeriesRef], input_len: int, horizon: int
) -> None:
    """build_windows -> read_split returns the reference splits exactly, starts included."""
    data_dir, series = sine_store
    dataset = build_windows(
        series, WindowSpec(input_len=input_len, horizon=horizon), SeriesHome(data_dir)
    )
    train, test = tutorial_windows(SINE, input_len, horizon)
    assert (dataset.n_windows, dataset.n_train, dataset.n_test) == (
        len(train[0]) + len(test[0]),
        len(train[0]),
        len(test[0]),
    )
    for split, expected in (("train", train), ("test", test)):
        assert_same_windows(read_split(dataset, split, DataDir(data_dir)), expected)


def test_dataset_layout_and_schema_metadata(sine_store: tuple[str, SeriesRef]) -> None:
    """Hive dirs split=train/split=test, a completion marker, and lineage in the schema."""
    data_dir, series = sine_store
    dataset = build_windows(series, WindowSpec(), SeriesHome(data_dir))
    root = Path(dataset.uri)
    assert (root / "split=train").is_dir() and (root / "split=test").is_dir()
    assert (root / "_COMPLETE").is_file()
    parts = sorted(root.glob("split=*/*.parquet"))
    assert {p.parent.name for p in parts} == {"split=train", "split=test"}
    for part in parts:
        meta = pq.read_schema(part).metadata
        assert meta[b"input_len"] == b"5" and meta[b"horizon"] == b"2"
        assert meta[b"train_fraction"] == b"0.8"
        assert meta[b"source_content_hash"] == series.content_hash.encode()


def test_dataset_on_an_object_store_reads_back_as_the_loop() -> None:
    """The same dataset built on memory:// (no local rename) reads back exactly."""
    data_dir = f"memory://wavecast-windows-{uuid.uuid4().hex}"
    dataset = build_windows(
        raw_series(SeriesSpec(), DataDir(data_dir)), WindowSpec(), SeriesHome(data_dir)
    )
    store = DataDir(data_dir)
    assert store.is_complete("windows", dataset.dataset_id)
    _, test = tutorial_windows(SINE, 5, 2)
    assert_same_windows(read_split(dataset, "test", DataDir(data_dir)), test)


def test_small_chunks_yield_the_same_rows_as_one_chunk() -> None:
    """Chunking changes batch sizes only: each batch <= chunk_rows and inside one split."""
    spec = WindowSpec(input_len=4, horizon=3, train_fraction=0.7)
    schema = window_schema(spec, fake_series_ref())
    values = SINE[:100]
    small = list(window_batches(values, spec, schema, chunk_rows=7))
    whole = pa.Table.from_batches(list(window_batches(values, spec, schema)), schema)
    assert all(len(b) <= 7 and len(set(b.column("split").to_pylist())) == 1 for b in small)
    assert pa.Table.from_batches(small, schema).equals(whole)


@pytest.mark.parametrize("train_fraction", [0.5, 0.8, 0.01, 0.99, 0.3, 0.7])
@pytest.mark.parametrize(("input_len", "horizon"), [(5, 2), (1, 1), (3, 10)])
def test_min_series_length_is_exactly_minimal(
    train_fraction: float, input_len: int, horizon: int
) -> None:
    """At min length both splits are non-empty; one point shorter is refused."""
    spec = WindowSpec(input_len=input_len, horizon=horizon, train_fraction=train_fraction)
    n = min_series_length(spec)
    n_windows = n - input_len - horizon + 1
    n_train = int(n_windows * train_fraction)
    assert 1 <= n_train < n_windows
    shorter = n_windows - 1
    assert not 1 <= int(shorter * train_fraction) < shorter
    check_length(n, spec)
    assert fitted_spec(spec, n) == spec
    if input_len == 1:
        with pytest.raises(InvalidInputError, match=f"at least {n} are needed"):
            check_length(n - 1, spec)
    else:  # one point short: windows of one point, which the series still fills
        assert fitted_spec(spec, n - 1) == spec.model_copy(update={"input_len": 1})
        check_length(n - 1, spec)


def stored_values(tmp_path: Path, name: str, values: np.ndarray) -> SeriesRef:
    source = tmp_path / f"{name}.csv"
    source.write_text("value\n" + "".join(f"{v!r}\n" for v in values.tolist()))
    return raw_series(SeriesSpec(source=str(source)), DataDir(str(tmp_path)))


def test_a_series_too_short_for_its_windows_is_windowed_by_one_point(tmp_path: Path) -> None:
    """30 points cannot fill 24 inputs + 18 steps (43 needed); windows of one point give 12:
    origins 0..11, the last target value 29, the first 80 % (9) train, 3 test."""
    spec = WindowSpec(input_len=24, horizon=1, steps=18)
    values = np.arange(30.0)
    dataset = build_windows(stored_values(tmp_path, "s", values), spec, SeriesHome(str(tmp_path)))
    assert dataset.spec == spec.model_copy(update={"input_len": 1})
    assert (dataset.n_windows, dataset.n_train, dataset.n_test) == (12, 9, 3)
    assert dataset.shortened == (
        "30 points are fewer than the 43 that windows of 24 inputs need for 18 step(s)"
    )
    _, inputs, targets = read_split(dataset, "test", DataDir(str(tmp_path)))
    assert inputs[:, 0].tolist() == [9.0, 10.0, 11.0] and targets[-1, -1] == 29.0
    long_enough = build_windows(
        stored_values(tmp_path, "l", np.arange(43.0)), spec, SeriesHome(str(tmp_path))
    )
    assert long_enough.spec == spec and long_enough.shortened == ""


@pytest.mark.parametrize("n", [0, 1, 4])
def test_series_shorter_than_one_window_gives_no_windows(n: int) -> None:
    """Fewer points than input_len means zero windows (as count_windows says), not a crash."""
    starts, inputs, targets = make_windows(np.arange(float(n)), 5, 2)
    assert (len(starts), len(inputs), len(targets)) == (0, 0, 0)


@settings(max_examples=60, deadline=None)
@given(
    extra=st.integers(0, 70),
    input_len=st.integers(1, 10),
    horizon=st.integers(1, 10),
    train_fraction=st.floats(0.05, 0.95),
)
def test_window_invariants(extra: int, input_len: int, horizon: int, train_fraction: float) -> None:
    """x[k] == values[start+k], y == values[start+input_len-1+horizon], splits chronological."""
    n = input_len + extra
    values = np.random.default_rng(n).normal(size=n)
    spec = WindowSpec(input_len=input_len, horizon=horizon, train_fraction=train_fraction)
    schema = window_schema(spec, fake_series_ref())
    table = pa.Table.from_batches(list(window_batches(values, spec, schema, 5)), schema)
    rows = table.to_pylist()
    assert len(rows) == max(n - input_len - horizon + 1, 0)
    for row in rows:
        s = row["start"]
        assert row["x"] == [values[s + k] for k in range(input_len)]
        assert row["y"] == values[s + input_len - 1 + horizon]
    train = [r["start"] for r in rows if r["split"] == "train"]
    test = [r["start"] for r in rows if r["split"] == "test"]
    assert train + test == list(range(len(rows)))
    assert len(train) == int(len(rows) * train_fraction)
