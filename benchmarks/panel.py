"""Series per minute on a synthetic panel: `python -m benchmarks.panel [--series N]`.

  a  a notebook loop: plain model.fit per series, one process, no Prefect   (baseline)
  b  `wavecast retrain --id-column` with --runner local (2 processes)    goal: >= 5x a's rate
  c  the same with --runner dask on a LocalCluster of 1 worker, and of 2   goal: 2 >= 1.6x 1

The table shows seconds per series (lower is better), so the goals read as ratios <= 0.2 and
<= 0.625; the note under it gives series per minute.

The panel (issue 15): N series x P points, sines of random period, phase and amplitude plus
10 % noise; SimpleRNN(16), 20 epochs, batch 32, the tutorial's 5-step windows, horizon 2.
Each command runs once per repeat, in a fresh process and data dir, against one throwaway
Prefect server; rates are series per minute of wall time, process start included.

`--memory` instead measures the peak RSS of one retrain's whole process tree (the command and
its worker processes; the server is separate), e.g. `--memory --series 20000 --points 200`.

`--global` instead runs the scale goal (issues 22 and 33): the panel's global network as the
only candidate (24-point windows, 12 steps, horizon 1, 5 epochs) and every other setting at
its default, plots included (a panel of thousands draws none unless asked), then `wavecast
forecast` of every series, each command timed with its process tree's peak RSS sampled;
goals: retrain + forecast <= 15 min, peak <= 2 GiB, forecast <= 2 min. E.g.
`--global --series 20000 --points 200`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.support import (
    WAVECAST,
    Row,
    child_env,
    median,
    prefect_server,
    print_table,
    run,
    run_sampling_memory,
)

PY = sys.executable
UNITS, EPOCHS, BATCH, INPUT_LEN, HORIZON = 16, 20, 32, 5, 2


def write_panel(path: Path, n_series: int, points: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(points)
    ids, values = [], []
    for i in range(n_series):
        period, phase, amplitude = (
            rng.uniform(10, 100),
            rng.uniform(0, 2 * np.pi),
            rng.uniform(1, 5),
        )
        wave = amplitude * np.sin(2 * np.pi * t / period + phase)
        values.append(wave + 0.1 * amplitude * rng.standard_normal(points))
        ids.append(np.full(points, f"s{i:05d}"))
    table = pa.table({"series": np.concatenate(ids), "value": np.concatenate(values)})
    pq.write_table(table, path)
    return path


def notebook_loop(source: Path) -> None:
    """What a notebook user writes: per series, window with numpy and call model.fit."""
    import keras

    table = pq.read_table(source).to_pandas()
    began = time.perf_counter()
    for _, group in table.groupby("series", sort=True):
        y = group["value"].to_numpy()
        n = len(y) - INPUT_LEN - HORIZON + 1
        x = np.lib.stride_tricks.sliding_window_view(y, INPUT_LEN)[:n, :, None]
        target = y[INPUT_LEN - 1 + HORIZON :][:n]
        split = int(0.8 * n)
        model = keras.Sequential(
            [keras.Input((INPUT_LEN, 1)), keras.layers.SimpleRNN(UNITS), keras.layers.Dense(1)]
        )
        model.compile(optimizer="adam", loss="mse")
        model.fit(x[:split], target[:split], batch_size=BATCH, epochs=EPOCHS, verbose=0)
        model.evaluate(x[split:], target[split:], verbose=0)
    print(f"{time.perf_counter() - began:.3f}")


def wavecast(
    source: Path, data_dir: Path, runner: str, workers: int, env: dict[str, str], candidates: str
) -> float:
    shutil.rmtree(data_dir, ignore_errors=True)
    argv = [*WAVECAST, "retrain", "--source", str(source), "--id-column", "series"]
    argv += ["--column", "value", "--units", str(UNITS), "--epochs", str(EPOCHS)]
    argv += ["--runner", runner, "--workers", str(workers), "--data-dir", str(data_dir)]
    argv += ["--candidates", candidates] if candidates else []
    seconds, _ = run(argv, env)
    return seconds


def peak_memory(n_series: int, points: int) -> None:
    """Issue 15's memory goal: the command and every worker it starts, summed, <= 2 GiB."""
    work = Path(tempfile.mkdtemp(prefix="wavecast-panel-memory-"))
    try:
        source = write_panel(work / "panel.parquet", n_series, points)
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            argv = [*WAVECAST, "retrain", "--source", str(source)]
            argv += ["--id-column", "series", "--column", "value", "--epochs", "1"]
            argv += ["--units", "4", "--data-dir", str(work / "data")]
            seconds, memory, _ = run_sampling_memory(argv, child_env(server_env), every_s=0.2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{n_series} series x {points} points in {seconds:.0f} s: peak RSS of the process tree "
        f"{memory.peak_sum_mib:.0f} MiB (sampled sum), {memory.hwm_sum_mib:.0f} MiB (sum of "
        f"each process's own peak, an upper bound), {len(memory.hwm_kib)} processes"
    )


def global_scale(n_series: int, points: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="wavecast-global-bench-"))
    data = str(work / "data")
    try:
        source = write_panel(work / "panel.parquet", n_series, points)
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            argv = [*WAVECAST, "retrain", "--source", str(source), "--id-column"]
            argv += ["series", "--column", "value", "--network", "global", "--candidates"]
            argv += ["network", "--input-len", "24", "--horizon", "1", "--steps", "12"]
            argv += ["--epochs", "5"]
            retrain_s, retrain_memory, _ = run_sampling_memory([*argv, "--data-dir", data], env)
            forecast = [*WAVECAST, "forecast", "--data-dir", data]
            forecast_s, forecast_memory, _ = run_sampling_memory(forecast, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = max(retrain_memory.peak_sum_mib, forecast_memory.peak_sum_mib)
    print_table(
        [
            Row("retrain + forecast", retrain_s + forecast_s, "the goal, 15 min", 900, 1.0),
            Row("forecast of every series", forecast_s, "the goal, 2 min", 120, 1.0),
            Row("peak RSS of the process tree", peak, "the goal, 2 GiB", 2048, 1.0, unit="MiB"),
        ]
    )
    print(f"{n_series} series x {points} points; retrain {retrain_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="instead: peak RSS of the whole process tree of one retrain (--epochs 1, --units 4)",
    )
    parser.add_argument("--global", dest="global_", action="store_true", help="the scale goal")
    parser.add_argument(
        "--candidates", default="", help="b and c's --candidates (default: wavecast's default)"
    )
    parser.add_argument("--loop", type=Path, help=argparse.SUPPRESS)  # a's child process
    args = parser.parse_args()
    if args.loop:
        notebook_loop(args.loop)
        return
    if args.memory:
        peak_memory(args.series, args.points)
        return
    if args.global_:
        global_scale(args.series, args.points)
        return
    work = Path(tempfile.mkdtemp(prefix="wavecast-panel-bench-"))
    samples: dict[str, list[float]] = {"a": [], "b": [], "c1": [], "c2": []}
    try:
        source = write_panel(work / "panel.parquet", args.series, args.points)
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            for _ in range(args.repeats):
                _, done = run([PY, "-m", "benchmarks.panel", "--loop", str(source)], env)
                samples["a"].append(float(done.stdout.strip().splitlines()[-1]))
                for name, runner, workers in (
                    ("b", "local", 2),
                    ("c1", "dask", 1),
                    ("c2", "dask", 2),
                ):
                    seconds = wavecast(source, work / "data", runner, workers, env, args.candidates)
                    samples[name].append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_series = {name: [s / args.series for s in values] for name, values in samples.items()}
    rates = ", ".join(f"{k} {60 / median(v):.1f}" for k, v in per_series.items())
    shape = (
        f"{args.series} series x {args.points} points, candidates {args.candidates or 'default'}"
    )
    print_table(
        [
            Row(
                "b  --runner local (2 processes)",
                median(per_series["b"]),
                "a  a notebook loop of model.fit",
                median(per_series["a"]),
                1 / 5,
                unit="s/series",
                note=f"{shape}; series per minute: {rates}",
            ),
            Row(
                "c  --runner dask, LocalCluster of 2",
                median(per_series["c2"]),
                "c  of 1 worker",
                median(per_series["c1"]),
                1 / 1.6,
                unit="s/series",
            ),
        ]
    )


if __name__ == "__main__":
    main()
