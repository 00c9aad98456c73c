"""A new user's first job, timed against statsforecast's: `python -m benchmarks.first_use`.

Seven monthly series (60-150 months, `unique_id, ds, y`) in a Parquet file. The user's
script calls `wavecast.retrain` then `wavecast.forecast` and prints the forecasts; the
baseline script fits `StatsForecast(models=[AutoETS(season_length=12)], freq="MS")` and
forecasts 12 months. Each runs in a fresh process, as a user would run it; wavecast's is
timed after a first run has trained and started the background Prefect server (what a user
pays on every later run), and once cold (the very first run, which also starts the server).
Needs statsforecast (a wavecast dependency).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.support import Row, child_env, median, print_table, run

WAVECAST_SCRIPT = """
import pandas as pd
import wavecast

frame = pd.read_parquet({source!r})
wavecast.retrain(frame, data_dir={data_dir!r})
print(wavecast.forecast({data_dir!r}).groupby("unique_id").size().to_dict())
"""
STATSFORECAST_SCRIPT = """
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS

frame = pd.read_parquet({source!r})
engine = StatsForecast(models=[AutoETS(season_length=12)], freq="MS")
print(engine.forecast(df=frame, h=12).groupby("unique_id").size().to_dict())
"""


def monthly_panel(n_series: int = 7, seed: int = 0) -> pd.DataFrame:
    """Seasonal monthly series with a trend and noise, 60 to 150 months, ending together."""
    rng = np.random.default_rng(seed)
    frames = []
    for index, length in enumerate(np.linspace(60, 150, n_series).astype(int)):
        t = np.arange(length)
        level = 100 + 20 * index
        season = 0.2 * level * np.sin(2 * np.pi * t / 12 + index)
        values = level + 0.3 * t + season + rng.normal(0, 0.05 * level, length)
        months = pd.date_range(end="2024-12-01", periods=length, freq="MS")
        frames.append(pd.DataFrame({"unique_id": f"s{index}", "ds": months, "y": values}))
    return pd.concat(frames, ignore_index=True)


def timed_script(text: str, work: Path, name: str, repeats: int) -> list[float]:
    """Seconds of each run; a Prefect home of the run's own, so the background server the
    first wavecast run starts (and later runs reuse) is this benchmark's, stopped after."""
    script = work / f"{name}.py"
    script.write_text(text)
    return [run([sys.executable, str(script)], own_home(work), cwd=work)[0] for _ in range(repeats)]


def own_home(work: Path) -> dict[str, str]:
    """The environment of the benchmark's processes: a Prefect home of its own."""
    return child_env({"PREFECT_HOME": str(work / "prefect-home")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wavecast-first-use-") as tmp:
        work = Path(tmp)
        source = work / "monthly.parquet"
        monthly_panel().to_parquet(source, index=False)
        names = {"source": str(source), "data_dir": str(work / "data")}
        baseline = timed_script(STATSFORECAST_SCRIPT.format(**names), work, "sf", args.repeats)
        cold = timed_script(WAVECAST_SCRIPT.format(**names), work, "user_job", 1)
        rerun = timed_script(WAVECAST_SCRIPT.format(**names), work, "user_job", args.repeats)
        stop = [sys.executable, "-m", "wavecast.flows.cli", "server", "stop"]
        run(stop, own_home(work))
    print_table(
        [
            Row(
                "7 monthly series: retrain + forecast, rerun",
                median(rerun),
                "statsforecast AutoETS script",
                median(baseline),
                goal=3.0,
                samples=rerun,
                baseline_samples=baseline,
            ),
            Row(
                "the same, first run (cold: trains)",
                cold[0],
                "statsforecast AutoETS script",
                median(baseline),
            ),
        ]
    )


if __name__ == "__main__":
    main()
