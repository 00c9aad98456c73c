"""Forecast quality on real and synthetic series: `python -m benchmarks.quality`.

Per series, the test MSE (one step ahead, the last 20 % of windows) of what wavecast
publishes, of both baselines and of statsforecast's AutoARIMA and AutoETS fitted on the same
train span and forecasting the same targets one step ahead without refitting (seasonal for
the 24-step synthetic seasons; the weekly series is fitted without a season: a 52-week
seasonal AutoARIMA takes hours on 2 cores). Needs
`pip install '.[bench]'` (statsmodels' bundled data sets, statsforecast).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavecast.home import SeriesHome
from wavecast.storage import DataDir

# name -> (values, input_len, the weekly dates a user's file would carry or None)
Series = dict[str, tuple[np.ndarray, int, np.ndarray | None]]


def real_series() -> Series:
    """Data sets statsmodels ships (no download): weekly CO2, yearly sunspots, Nile flow."""
    from statsmodels.datasets import co2, nile, sunspots

    weekly = co2.load_pandas().data["co2"]
    return {
        "co2 (weekly, trend + season)": (weekly.to_numpy(), 52, weekly.index.to_numpy()),
        "sunspots (yearly cycle)": (
            sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(),
            11,
            None,
        ),
        "nile (yearly flow)": (nile.load_pandas().data["volume"].to_numpy(), 5, None),
    }


def synthetic_series() -> Series:
    rng = np.random.default_rng(0)
    t = np.arange(600, dtype=np.float64)
    season = np.sin(2 * np.pi * t / 24)
    shift = np.where(t > 450, 5.0, 0.0)
    return {
        "trend + season + noise": (0.05 * t + season + 0.2 * rng.standard_normal(600), 24, None),
        "level shift + season": (shift + season + 0.1 * rng.standard_normal(600), 24, None),
        "random walk": (np.cumsum(rng.standard_normal(600)), 10, None),
        "tutorial sine": (np.sin(np.linspace(-3 * np.pi, 3 * np.pi, 1000)), 5, None),
    }


def wavecast_scores(
    values: np.ndarray, input_len: int, times: np.ndarray | None, work: Path
) -> dict[str, Any]:
    """Retrain as `wavecast retrain --horizon 1 --missing interpolate` would, in process: a
    dated series with its dates (wavecast infers its season from them, 52 for weekly CO2),
    the others with a season only where the input length is one."""
    from wavecast.config import RetrainConfig
    from wavecast.evaluate import evaluate_trained
    from wavecast.series import prepare_series, train_when_needed
    from wavecast.windows import build_windows

    source = work / f"series-{len(list(work.iterdir()))}.csv"
    frame = pd.DataFrame({"value": values})
    if times is not None:
        frame.insert(0, "date", times)
    frame.to_csv(source, index=False)
    config = RetrainConfig.model_validate(
        {
            "series": {"source": str(source), "missing": "interpolate"},
            "windows": {"input_len": input_len, "horizon": 1},
            "selection": {
                "season": input_len if times is None and input_len in (4, 12, 24) else None
            },
        }
    )
    data_dir = str(work / "data")
    series = prepare_series(config.series, config.windows, DataDir(data_dir))
    dataset = build_windows(series, config.windows, SeriesHome(data_dir))
    trained = train_when_needed(
        dataset, config.model, config.train, config.selection, SeriesHome(data_dir), reuse=False
    )
    evaluation = evaluate_trained(dataset, trained, config.selection, SeriesHome(data_dir))
    tests = {c.forecaster: c.test.mse for c in evaluation.candidates if c.test is not None}
    return {
        "wavecast": evaluation.published.mse,
        "network": tests.get("network", float("nan")),
        "persistence": evaluation.baselines["persistence"].mse,
        "linear AR": evaluation.baselines["linear"].mse,
        "n_test": float(evaluation.n_test),
        "serves": evaluation.published.forecaster,
    }


def reference_scores(values: np.ndarray, n_test: int, season: int) -> dict[str, float]:
    """AutoARIMA and AutoETS one step ahead over the same targets, fitted once on the rest."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS

    filled = pd.Series(values).interpolate(limit_direction="both").to_numpy()
    frame = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(filled)), "y": filled})
    models = [AutoARIMA(season_length=season), AutoETS(season_length=season)]
    engine = StatsForecast(models=models, freq=1)
    folds = engine.cross_validation(df=frame, h=1, step_size=1, n_windows=n_test, refit=False)
    return {
        name: float(np.mean((folds[name] - folds["y"]) ** 2)) for name in ("AutoARIMA", "AutoETS")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="run the series whose name contains this")
    args = parser.parse_args()
    series = {**real_series(), **synthetic_series()}
    columns = ("wavecast", "network", "persistence", "linear AR", "AutoARIMA", "AutoETS")
    print(f"{'series':<30}" + "".join(f"{c:>13}" for c in columns) + "  serves")
    wins = 0
    with tempfile.TemporaryDirectory(prefix="wavecast-quality-") as tmp:
        for name, (values, input_len, times) in series.items():
            if args.only not in name:
                continue
            work = Path(tmp) / str(abs(hash(name)))
            work.mkdir()
            scores = wavecast_scores(values, input_len, times, work)
            # Seasonal AutoARIMA on 52-week seasons takes hours here: weekly gets season 1.
            season = input_len if input_len in (12, 24) else 1
            scores |= reference_scores(values, int(scores["n_test"]), season)
            best_other = min(scores[c] for c in columns[2:])
            wins += scores["wavecast"] <= best_other
            serves = scores["serves"]
            cells = "".join(f"{scores[c]:>13.4g}" for c in columns)
            print(f"{name:<30}{cells}  {serves}", flush=True)
    print(f"\nwavecast's published forecaster is best or tied on {wins} of the series above.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
