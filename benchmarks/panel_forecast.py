"""Panel forecast speed: `python -m benchmarks.panel_forecast [--series N] [--points P]`.

  a  `wavecast forecast --data-dir <panel>`, every series, on this tree
  b  the same command on the code of `--baseline` (a git revision; by default the one before
     issue 22's panel forecast, which read the whole source once per series)      (baseline)
  c  one series of the panel (`--series s00000`) on this tree, against the same on b's code:
     the single-series work must not get slower

The panel is benchmarks.panel's (sines of random period, phase and amplitude plus noise),
N series x P points in one Parquet file, trained once with `--candidates naive,linear` (or
`--candidates`) so the setup needs no network; every series then has a champion. A linear
AR champion used to serve as a one-layer Keras model, loaded per series like a network (the
table below); it is now its weights in forecaster.json, and like `--candidates naive`'s
statistical champions it loads no Keras at all. Each command runs in a fresh
process, the two trees alternating (a b a b ...), against one throwaway Prefect server; the
table shows medians of whole-process seconds, the note the per-series cost of a and b.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.panel import write_panel
from benchmarks.support import (
    ROOT,
    WAVECAST,
    Row,
    child_env,
    median,
    prefect_server,
    print_table,
    run,
)

PY = sys.executable
# The commit this branch started from: its panel forecast read the source once per series.
BEFORE = "c96bdb7"


def checkout(revision: str, into: Path) -> Path:
    """The code of `revision`, installed into a directory of its own (git archive, then pip:
    no worktree, nothing in the repository changes). Installed rather than put on the path
    as a tree: this tree's editable install would otherwise supply wavecast.flows and
    wavecast.tasks (pyproject's package-dir maps them to flows/ and tasks/, found only by the
    install), and b would run a's flows and tasks."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    tree, site = into / "tree", into / "site"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    pip = [PY, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "--target", str(site), str(tree)], check=True)
    return site


def train(source: Path, data_dir: Path, candidates: str, env: dict[str, str]) -> float:
    argv = [*WAVECAST, "retrain", "--source", str(source), "--id-column", "series"]
    argv += ["--column", "value", "--candidates", candidates, "--data-dir", str(data_dir)]
    seconds, _ = run(argv, env)
    return seconds


def forecast(tree: Path, data_dir: Path, env: dict[str, str], *series: str) -> float:
    """One `wavecast forecast` of `tree`'s code, whole process."""
    argv = [*WAVECAST, "forecast", "--data-dir", str(data_dir), "--json"]
    for key in series:
        argv += ["--series", key]
    seconds, _ = run(argv, {**env, "PYTHONPATH": str(tree)}, cwd=tree)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", default="naive,linear", help="of the setup's retrain")
    parser.add_argument("--baseline", default=BEFORE, help="git revision of b's code")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wavecast-panel-forecast-bench-"))
    samples: dict[str, list[float]] = {"a": [], "b": [], "a1": [], "b1": []}
    try:
        before = checkout(args.baseline, work / "before")
        source = write_panel(work / "panel.parquet", args.series, args.points)
        data_dir = work / "data"
        (work / "prefect").mkdir()
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            setup = train(source, data_dir, args.candidates, env)
            for _ in range(args.repeats):
                samples["a"].append(forecast(ROOT, data_dir, env))
                samples["b"].append(forecast(before, data_dir, env))
                samples["a1"].append(forecast(ROOT, data_dir, env, "s00000"))
                samples["b1"].append(forecast(before, data_dir, env, "s00000"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_series = {k: median(v) / args.series for k, v in samples.items() if k in "ab"}
    print_table(
        [
            Row(
                f"a  forecast {args.series} series",
                median(samples["a"]),
                f"b  the same, {args.baseline}",
                median(samples["b"]),
                samples=samples["a"],
                baseline_samples=samples["b"],
                note=f"{args.series} series x {args.points} points, --candidates {args.candidates} "
                f"(trained in {setup:.0f} s); "
                f"per series: a {per_series['a'] * 1000:.1f} ms, b {per_series['b'] * 1000:.1f} "
                "ms, whole process (Prefect's start included)",
            ),
            Row(
                "c  forecast one series of the panel",
                median(samples["a1"]),
                f"c  the same, {args.baseline}",
                median(samples["b1"]),
                goal=1.1,
                samples=samples["a1"],
                baseline_samples=samples["b1"],
            ),
        ]
    )


if __name__ == "__main__":
    main()
