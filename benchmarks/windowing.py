"""Windowing a series to Parquet, one way per process: `python -m benchmarks.windowing MODE`.

All modes window the same stored series with the tutorial's geometry (5 inputs, target two
steps after the window's last point, first 80 % train) and write Parquet:
  wavecast   wavecast.windows.build_windows: vectorised, bounded chunks, hive split dataset
  tutorial   the tutorial's Python loop, then pandas.DataFrame.to_parquet (split partitions);
             run on the first --slice points and extrapolated linearly to the whole series
  floor      sliding_window_view + one pyarrow.parquet.write_table with wavecast's encoding
             (no dictionary): no split, no chunks, no checks
Reading the source and storing it as wavecast's raw series are setup, not timed. Prints one
JSON line with the timed seconds (extrapolated for `tutorial`) and the windows written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view

from wavecast.home import SeriesHome
from wavecast.storage import DataDir

INPUT_LEN = 5
HORIZON = 2
MODES = ("wavecast", "tutorial", "floor")


def read_values(source: Path) -> np.ndarray:
    return np.asarray(pq.read_table(source).column(0).to_numpy())


def time_wavecast(source: Path, out: Path) -> tuple[float, int]:
    from wavecast.config import SeriesSpec, WindowSpec
    from wavecast.series import prepare_series
    from wavecast.windows import build_windows

    windows = WindowSpec(input_len=INPUT_LEN, horizon=HORIZON)
    series = prepare_series(SeriesSpec(source=str(source)), windows, DataDir(str(out)))
    began = time.perf_counter()
    dataset = build_windows(series, windows, SeriesHome(str(out)))
    return time.perf_counter() - began, dataset.n_windows


def tutorial_loop(y: np.ndarray, out: Path) -> int:
    """The tutorial's loop verbatim (its x only sets the length), then pandas to Parquet."""
    input_len = INPUT_LEN
    X, Y = [], []  # noqa: N806 - the tutorial's names
    for i, _ in enumerate(y):
        if i + input_len + 1 >= len(y):
            break
        X.append(y[i : i + input_len])
        Y.append(y[i + input_len + 1])
    split_index = int(len(X) * 0.8)
    frame = pd.DataFrame(
        {
            "start": np.arange(len(X)),
            "x": X,
            "y": Y,
            "split": ["train"] * split_index + ["test"] * (len(X) - split_index),
        }
    )
    frame.to_parquet(out / "windows", partition_cols=["split"])
    return len(X)


def time_tutorial(source: Path, out: Path, slice_points: int) -> tuple[float, int, float]:
    values = read_values(source)
    part = values[:slice_points]
    began = time.perf_counter()
    done = tutorial_loop(part, out)
    seconds = time.perf_counter() - began
    full = len(values) - INPUT_LEN - HORIZON + 1
    return seconds * full / done, full, seconds


def time_floor(source: Path, out: Path) -> tuple[float, int]:
    values = read_values(source)
    began = time.perf_counter()
    n_windows = len(values) - INPUT_LEN - HORIZON + 1
    inputs = np.ascontiguousarray(sliding_window_view(values, INPUT_LEN)[:n_windows])
    table = pa.table(
        {
            "start": np.arange(n_windows),
            "x": pa.FixedSizeListArray.from_arrays(pa.array(inputs.ravel()), INPUT_LEN),
            "y": values[INPUT_LEN - 1 + HORIZON :][:n_windows],
        }
    )
    pq.write_table(table, out / "windows.parquet", use_dictionary=False)
    return time.perf_counter() - began, n_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--source", type=Path, required=True, help="one-column Parquet series")
    parser.add_argument("--slice", type=int, default=1_000_000, help="tutorial: points timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wavecast-bench-") as tmp:
        out = Path(tmp)
        result: dict[str, object] = {"mode": args.mode}
        if args.mode == "wavecast":
            result["seconds"], result["windows"] = time_wavecast(args.source, out)
        elif args.mode == "floor":
            result["seconds"], result["windows"] = time_floor(args.source, out)
        else:
            seconds, windows, measured = time_tutorial(args.source, out, args.slice)
            result.update(seconds=seconds, windows=windows, measured_seconds=measured)
            result["slice_points"] = args.slice
    print(json.dumps(result))


if __name__ == "__main__":
    main()
