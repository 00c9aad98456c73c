"""Run every benchmark on this machine and print medians and ratios: `python -m benchmarks.run`.

  a  end-to-end `wavecast retrain` (fresh data dir) vs the tutorial script   goal <= 1.0
  b  unchanged rerun vs the tutorial script                                   (no goal)
     unchanged rerun vs a minimal 4-task Prefect flow, 3 cache hits (floor)   goal <= 1.3
  c  training alone: wavecast's loop vs plain model.fit, same data/config     goal <= 0.25
  d  windowing 10,000,000 points to Parquet: wavecast vs the tutorial's loop
     + pandas.to_parquet (timed on a slice, extrapolated) and vs the raw floor
  e  peak RSS of `wavecast retrain` on a 5,000,000-point file, input-len 64  goal <= 1024 MiB
  f  `wavecast forecast` (24 steps, champion of a fresh retrain) vs the floor  goal <= 2.5

Every flow run goes to one throwaway `prefect server start` (own PREFECT_HOME, free port).
Measurements alternate between the compared commands so load drift hits both alike; each
sample is a fresh process. Nothing here is a test: it prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.support import (
    Row,
    child_env,
    last_json,
    max_rss_mib,
    median,
    only_series,
    prefect_server,
    print_table,
    run,
    run_sampling_memory,
)

PY = sys.executable
WAVECAST = [PY, "-m", "wavecast.flows.cli", "retrain"]
BIG_ARGS = ["--input-len", "64", "--units", "4", "--batch-size", "4096", "--epochs", "1"]


def noisy_sine(path: Path, points: int) -> Path:
    """A seeded one-column Parquet series: a slow sine plus 10 % Gaussian noise."""
    rng = np.random.default_rng(0)
    values = np.sin(np.arange(points) * 0.01) + 0.1 * rng.standard_normal(points)
    pq.write_table(pa.table({"value": values}), path)
    return path


def tutorial_mse(stdout: str) -> float:
    """The tutorial prints its test MSE as a bare number."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return float(line)
        except ValueError:
            continue
    return float("nan")


def alternate(repeats: int, *commands: Callable[[], float]) -> list[list[float]]:
    """Run the commands in turn `repeats` times; the samples of each."""
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for index, command in enumerate(commands):
            samples[index].append(command())
    return samples


def floor_flow(env: dict[str, str]) -> float:
    """Seconds of Prefect's floor: a fresh process running a 4-task flow, 3 of them cached."""
    return run([PY, "-m", "benchmarks.floor_flow"], env)[0]


def end_to_end(env: dict[str, str], work: Path, repeats: int) -> tuple[list[Row], Path]:
    """(a) and (b): fresh retrains vs the tutorial, then unchanged reruns vs both baselines."""
    runs: list[Path] = []
    mses: list[float] = []
    tutorial_mses: list[float] = []

    def retrain() -> float:
        data_dir = work / f"e2e-{len(runs)}"
        runs.append(data_dir)
        seconds, done = run([*WAVECAST, "--data-dir", str(data_dir), "--json"], env)
        mses.append(float(only_series(last_json(done.stdout))["metrics"]["mse"]))
        return seconds

    def tutorial() -> float:
        seconds, done = run([PY, "benchmarks/tutorial.py"], env)
        tutorial_mses.append(tutorial_mse(done.stdout))
        return seconds

    fresh, baseline = alternate(repeats, retrain, tutorial)

    def rerun() -> float:
        seconds, done = run([*WAVECAST, "--data-dir", str(runs[0]), "--json"], env)
        if not only_series(last_json(done.stdout))["unchanged"]:
            raise SystemExit("the rerun retrained: the cache missed")
        return seconds

    floor = functools.partial(floor_flow, env)
    floor()  # fill the floor flow's cache
    reruns, floors = alternate(repeats, rerun, floor)
    mse_note = (
        f"test MSE: wavecast {median(mses):.3g}, tutorial (unseeded) {median(tutorial_mses):.3g}"
    )
    rows = [
        Row(
            "a  wavecast retrain, fresh data dir",
            median(fresh),
            "tutorial script",
            median(baseline),
            1.0,  # seven candidates fit now (the 0.75 line is retired, issue 33)
            samples=fresh,
            baseline_samples=baseline,
            note=mse_note,
        ),
        Row(
            "b  wavecast retrain, unchanged rerun",
            median(reruns),
            "tutorial script",
            median(baseline),
            None,
            samples=reruns,
            baseline_samples=baseline,
        ),
        Row(
            "b  wavecast retrain, unchanged rerun",
            median(reruns),
            "4-task flow, 3 cache hits (floor)",
            median(floors),
            1.3,
            samples=reruns,
            baseline_samples=floors,
        ),
    ]
    return rows, runs[0]


def training(env: dict[str, str], repeats: int) -> list[Row]:
    """(c): seconds inside the fit call, each sample a fresh process."""
    results: dict[str, list[dict[str, Any]]] = {"fit": [], "fit-unrolled": [], "wavecast": []}

    def mode(name: str) -> Callable[[], float]:
        def sample() -> float:
            _, done = run([PY, "-m", "benchmarks.training", name], env)
            results[name].append(last_json(done.stdout))
            return float(results[name][-1]["seconds"])

        return sample

    fit, unrolled, fast = alternate(repeats, mode("fit"), mode("fit-unrolled"), mode("wavecast"))
    mse = {k: median([float(r["test_mse"]) for r in v]) for k, v in results.items()}
    note = "test MSE (199 windows, seed 0): " + ", ".join(f"{k} {v:.4g}" for k, v in mse.items())
    return [
        Row(
            "c  training: wavecast fit_model",
            median(fast),
            "plain model.fit (Keras default)",
            median(fit),
            0.25,
            samples=fast,
            baseline_samples=fit,
            note=note,
        ),
        Row(
            "c  training: plain model.fit, unrolled",
            median(unrolled),
            "plain model.fit (Keras default)",
            median(fit),
            samples=unrolled,
            baseline_samples=fit,
        ),
    ]


def windowing(env: dict[str, str], work: Path, repeats: int) -> list[Row]:
    """(d): 10M points; the tutorial's loop is timed on 1M of them and scaled by 10."""
    source = noisy_sine(work / "ten-million.parquet", 10_000_000)
    extra: list[float] = []

    def mode(name: str) -> Callable[[], float]:
        def sample() -> float:
            _, done = run([PY, "-m", "benchmarks.windowing", name, "--source", str(source)], env)
            result = last_json(done.stdout)
            if name == "tutorial":
                extra.append(float(result["measured_seconds"]))
            return float(result["seconds"])

        return sample

    wavecast, floor = alternate(repeats, mode("wavecast"), mode("floor"))
    (tutorial,) = alternate(min(repeats, 3), mode("tutorial"))
    note = (
        f"tutorial loop timed on the first 1,000,000 points (median {median(extra):.1f} s) and "
        "extrapolated linearly x10 (the full loop holds 10M numpy views: minutes and GBs)"
    )
    return [
        Row(
            "d  windowing 10M points: wavecast",
            median(wavecast),
            "tutorial loop + pandas.to_parquet",
            median(tutorial),
            samples=wavecast,
            baseline_samples=tutorial,
            note=note,
        ),
        Row(
            "d  windowing 10M points: wavecast",
            median(wavecast),
            "raw floor (sliding_window_view+pq)",
            median(floor),
            samples=wavecast,
            baseline_samples=floor,
        ),
    ]


def forecasting(env: dict[str, str], work: Path, repeats: int) -> list[Row]:
    """(f) A forecast from a trained champion, against the same Prefect floor as (b)."""
    data_dir = work / "forecast"
    steps = ["--horizon", "1", "--steps", "24", "--epochs", "20", "--data-dir", str(data_dir)]
    run([*WAVECAST, *steps], env)

    def forecast() -> float:
        seconds, done = run(
            [PY, "-m", "wavecast.flows.cli", "forecast", "--data-dir", str(data_dir), "--json"], env
        )
        if len(only_series(last_json(done.stdout))["forecasts"]) != 24:
            raise SystemExit("the forecast did not give 24 steps")
        return seconds

    floor = functools.partial(floor_flow, env)
    floor()  # fill the floor flow's cache
    forecasts, floors = alternate(repeats, forecast, floor)
    return [
        Row(
            "f  wavecast forecast, 24 steps",
            median(forecasts),
            "4-task flow, 3 cache hits (floor)",
            median(floors),
            2.5,
            samples=forecasts,
            baseline_samples=floors,
        )
    ]


def peak_rss(env: dict[str, str], work: Path) -> list[Row]:
    """(e): one run under /usr/bin/time -v, its whole process tree sampled, vs the 1 GiB budget.

    `time -v` reports the largest single process; wavecast runs TensorFlow in a second
    process, so the row is the sampled peak of both together, and the note adds the sum of
    each process's own peak (an upper bound).
    """
    source = noisy_sine(work / "five-million.parquet", 5_000_000)
    argv = ["/usr/bin/time", "-v", *WAVECAST, "--source", str(source), *BIG_ARGS]
    seconds, memory, stderr = run_sampling_memory([*argv, "--data-dir", str(work / "big")], env)
    command = " ".join(["wavecast retrain --source big.parquet", *BIG_ARGS])
    note = (
        f"`{command}`: {seconds:.0f} s wall; /usr/bin/time -v {max_rss_mib(stderr):.0f} MiB "
        f"(largest process); sum of per-process peaks {memory.hwm_sum_mib:.0f} MiB "
        f"over {len(memory.hwm_kib)} processes"
    )
    rss = memory.peak_sum_mib
    return [
        Row(
            "e  peak RSS, 5M points, input-len 64",
            rss,
            "budget",
            1024.0,
            1.0,
            "MiB",
            [rss],
            note=note,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="samples per command (median)")
    parser.add_argument("--only", default="abcdef", help="which benchmarks, e.g. 'ac'")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wavecast-bench-"))
    rows: list[Row] = []
    try:
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            if {"a", "b"} & set(args.only):
                rows += end_to_end(env, work, args.repeats)[0]
            if "c" in args.only:
                rows += training(env, args.repeats)
            if "d" in args.only:
                rows += windowing(env, work, args.repeats)
            if "e" in args.only:
                rows += peak_rss(env, work)
            if "f" in args.only:
                rows += forecasting(env, work, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2, default=str))


if __name__ == "__main__":
    main()
