"""Disk used by nightly retrains under the retention default: `python -m benchmarks.retention`.

A panel of --series daily series (`series`, `ds`, `value`: sines of random period, phase and
amplitude plus 10 % noise), --points days long at the first run, one day longer at each of
--runs retrains, so every series' content changes every night and every night publishes a
version per series. Each retrain is `wavecast retrain --id-column series` in a fresh process
(as a deployment's scheduled run is) with every setting at its default, retention included,
except the candidates: the statistical ones and the linear AR, not the network (so the
30 runs take minutes, not hours; a network per series would add its training/<id> copies
and model.keras to what is kept, the same way).

Between two runs, every file and directory of the data dir is made 24 hours older: what the
next night's retrain finds on disk (retention never sweeps what is younger than its
min_age_s, since a retrain running beside it may be using it). Disk is measured after each
run as `du` does (allocated blocks) and as bytes of content. Goal (issue 35): after the 30th
run, at most 3x the disk after the 1st.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.support import WAVECAST, child_env, prefect_server, run

CANDIDATES = "linear,naive,seasonal_naive,ets,theta,combination"
NIGHT_S = 24 * 3600.0
GOAL = 3.0


def write_panel(path: Path, n_series: int, points: int) -> None:
    """The panel as of a night: the same series every night, `points` days of each."""
    rng = np.random.default_rng(0)
    days = np.datetime64("2024-01-01") + np.arange(points)
    ids, times, values = [], [], []
    for i in range(n_series):
        period, phase, amplitude = rng.uniform(7, 60), rng.uniform(0, 2 * np.pi), rng.uniform(1, 5)
        noise = np.random.default_rng(i).standard_normal(points)
        t = np.arange(points)
        values.append(amplitude * np.sin(2 * np.pi * t / period + phase) + 0.1 * amplitude * noise)
        ids.append(np.full(points, f"s{i:03d}"))
        times.append(days)
    table = pa.table(
        {
            "series": np.concatenate(ids),
            "ds": np.concatenate(times),
            "value": np.concatenate(values),
        }
    )
    pq.write_table(table, path)


def disk_used(root: Path) -> tuple[int, int]:
    """(allocated bytes, as `du` counts them, content bytes) of everything under `root`."""
    allocated, content = 0, 0
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            info = (Path(folder) / name).lstat()
            allocated += info.st_blocks * 512
            if name in files:
                content += info.st_size
    return allocated, content


def age_by_a_night(root: Path) -> None:
    """Every entry's times one night earlier: the data dir as the next night finds it."""
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            info = path.lstat()
            earlier = (info.st_atime - NIGHT_S, info.st_mtime - NIGHT_S)
            os.utime(path, earlier, follow_symlinks=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--points", type=int, default=120, help="days of each series at run 1")
    parser.add_argument("--candidates", default=CANDIDATES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wavecast-retention-") as tmp:
        work = Path(tmp)
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            disks, seconds = nightly_runs(args, work, env)
    report(disks, seconds, args)


def nightly_runs(
    args: argparse.Namespace, work: Path, env: dict[str, str]
) -> tuple[list[tuple[int, int]], list[float]]:
    """Each night: the panel one day longer, a retrain, the disk measured, a night passes."""
    source, data_dir = work / "panel.parquet", work / "data"
    disks, seconds = [], []
    for night in range(args.runs):
        write_panel(source, args.series, args.points + night)
        argv = [*WAVECAST, "retrain", "--source", str(source), "--id-column", "series"]
        argv += ["--candidates", args.candidates, "--data-dir", str(data_dir)]
        took, _ = run(argv, env)
        disks.append(disk_used(data_dir))
        seconds.append(took)
        print(
            f"run {night + 1:>2}: {disks[-1][0] / 2**20:8.2f} MiB on disk, "
            f"{disks[-1][1] / 2**20:8.2f} MiB of content, {took:5.1f} s",
            flush=True,
        )
        age_by_a_night(data_dir)
    return disks, seconds


def report(disks: list[tuple[int, int]], seconds: list[float], args: argparse.Namespace) -> None:
    (first, first_content), (last, last_content) = disks[0], disks[-1]
    ratio = last / first
    print(
        f"\n{args.series} series, {args.points} days growing one a run, {args.runs} retrains "
        f"(candidates {args.candidates}); median run {float(np.median(seconds)):.1f} s"
    )
    print(f"disk after run 1:  {first / 2**20:8.2f} MiB ({first_content / 2**20:.2f} MiB content)")
    print(
        f"disk after run {len(disks)}: {last / 2**20:8.2f} MiB ({last_content / 2**20:.2f} MiB "
        "content)"
    )
    print(
        f"ratio {ratio:.2f} (content {last_content / first_content:.2f}); goal <= {GOAL:g}: "
        f"{'met' if ratio <= GOAL else 'NOT met'}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    began = time.perf_counter()
    main()
    print(f"({time.perf_counter() - began:.0f} s in all)")
