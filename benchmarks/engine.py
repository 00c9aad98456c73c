"""Training many series in one process: `python -m benchmarks.engine [--series N]`.

  a  a notebook loop: per series, a new Keras model and plain model.fit      (baseline)
  b  wavecast's training stage per series on a model of its own (no engine)
  c  the same stage with one TrainingEngine for all series        goal: >= 5x a's rate
  d  the engine's fit alone (reset, fit, forecast: a's work, no twin or save)

b and c are train_on_dataset as the panel calls it: the validation twin, the published fit,
the untrained guess and the saved model. Each mode runs in a fresh process with one
TensorFlow thread (as a panel worker does) on the panel of benchmarks.panel (sines of random
period, phase and amplitude plus noise; SimpleRNN(16), 20 epochs, batch 32, the tutorial's
5-step windows, horizon 2); data preparation is outside the timing. Besides seconds per
series, each mode reports its resident memory growth per series after the first WARMUP
series, which a process that trains thousands of series must keep near zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.panel import BATCH, EPOCHS, HORIZON, INPUT_LEN, UNITS, write_panel
from benchmarks.support import Row, child_env, last_json, print_table, run
from wavecast.home import SeriesHome
from wavecast.storage import DataDir

PY = sys.executable
MODES = ("a", "b", "c", "d")
WARMUP = 10  # series before the memory baseline: first traces, allocator pools
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def resident_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def prepare(work: Path, n_series: int, points: int) -> Path:
    """The panel, split and windowed by wavecast into `work`/data; its dataset refs listed."""
    from wavecast.config import SeriesSpec, WindowSpec
    from wavecast.panel import split_source
    from wavecast.windows import build_windows

    source = write_panel(work / "panel.parquet", n_series, points)
    data_dir = str(work / "data")
    spec = SeriesSpec(source=str(source), id_column="series", column="value")
    windows = WindowSpec(input_len=INPUT_LEN, horizon=HORIZON)
    refs = split_source(spec, windows, DataDir(data_dir)).series
    listing = work / "datasets.jsonl"
    with listing.open("w") as out:
        for ref in refs:
            home = SeriesHome(data_dir, ref.key or "")
            dataset = build_windows(ref, windows, home)
            out.write(
                json.dumps({"data_dir": home.uri(), "dataset": dataset.model_dump(mode="json")})
            )
            out.write("\n")
    return listing


def timed(per_series: Callable[[int], None], n_series: int) -> dict[str, float]:
    """Seconds per series over all of them and for the first alone (a trainer's build and
    traces), and RSS growth per series after WARMUP."""
    began = time.perf_counter()
    warm = resident_mb()
    first = 0.0
    for index in range(n_series):
        per_series(index)
        if index == 0:
            first = time.perf_counter() - began
        if index + 1 == WARMUP:
            warm = resident_mb()
    seconds = time.perf_counter() - began
    grown = (resident_mb() - warm) / max(1, n_series - WARMUP)
    return {
        "s_per_series": seconds / n_series,
        "first_s": first,
        "mb_per_series": grown,
        "rss_mb": resident_mb(),
    }


def notebook(listing: Path) -> Callable[[int], None]:
    """What a notebook user writes: a new model and model.fit per series, then evaluate."""
    import keras

    from wavecast.windows import DatasetRef, read_split

    datasets = [json.loads(line) for line in listing.read_text().splitlines()]

    def one(index: int) -> None:
        entry = datasets[index]
        dataset = DatasetRef.model_validate(entry["dataset"])
        _, x, y = read_split(dataset, "train", DataDir(entry["data_dir"]))
        _, test_x, test_y = read_split(dataset, "test", DataDir(entry["data_dir"]))
        model = keras.Sequential(
            [keras.Input((INPUT_LEN, 1)), keras.layers.SimpleRNN(UNITS), keras.layers.Dense(1)]
        )
        model.compile(optimizer="adam", loss="mse")
        model.fit(x[:, :, None], y, batch_size=BATCH, epochs=EPOCHS, verbose=0)
        model.evaluate(test_x[:, :, None], test_y, verbose=0)

    return one


def stage(listing: Path, shared: bool) -> Callable[[int], None]:
    """wavecast's training stage, on one engine for all series or a new one each."""
    from wavecast.config import ModelSpec, TrainSpec
    from wavecast.engine import TrainingEngine
    from wavecast.train import train_on_dataset
    from wavecast.windows import DatasetRef

    datasets = [json.loads(line) for line in listing.read_text().splitlines()]
    model, train = ModelSpec(units=UNITS), TrainSpec(epochs=EPOCHS, batch_size=BATCH)
    engine = TrainingEngine() if shared else None

    def one(index: int) -> None:
        entry = datasets[index]
        dataset = DatasetRef.model_validate(entry["dataset"])
        train_on_dataset(dataset, model, train, SeriesHome(entry["data_dir"]), engine=engine)

    return one


def engine_fit(listing: Path) -> Callable[[int], None]:
    """The engine doing a's work only: reset, fit on the train split, forecast the test one."""
    from wavecast.architectures import scaling_for
    from wavecast.config import ModelSpec, TrainSpec
    from wavecast.engine import TrainingEngine
    from wavecast.windows import DatasetRef, read_split

    datasets = [json.loads(line) for line in listing.read_text().splitlines()]
    model, train = ModelSpec(units=UNITS), TrainSpec(epochs=EPOCHS, batch_size=BATCH)
    engine = TrainingEngine()

    def one(index: int) -> None:
        entry = datasets[index]
        dataset = DatasetRef.model_validate(entry["dataset"])
        _, x, y = read_split(dataset, "train", DataDir(entry["data_dir"]))
        _, test_x, _ = read_split(dataset, "test", DataDir(entry["data_dir"]))
        trainer = engine.trainer(model, train, INPUT_LEN, 1, scaling_for(model, x))
        trainer.fit(x, y, train.epochs)
        trainer.forecast(test_x)

    return one


def child(mode: str, listing: Path, n_series: int) -> None:
    loops: dict[str, Callable[[], Callable[[int], None]]] = {
        "a": lambda: notebook(listing),
        "b": lambda: stage(listing, shared=False),
        "c": lambda: stage(listing, shared=True),
        "d": lambda: engine_fit(listing),
    }
    print(json.dumps(timed(loops[mode](), n_series)))


def measured(listing: Path, modes: Iterator[str], n_series: int) -> dict[str, dict[str, float]]:
    env = child_env(ONE_THREAD)
    results = {}
    for mode in modes:
        argv = [PY, "-m", "benchmarks.engine", "--child", mode, "--listing", str(listing)]
        _, done = run([*argv, "--series", str(n_series)], env, timeout=6 * 3600)
        results[mode] = last_json(done.stdout)
        print(mode, results[mode], flush=True)
    return results


def report(results: dict[str, dict[str, float]], n_series: int, points: int) -> None:
    base = results["a"]["s_per_series"]
    rows = [
        Row(
            "c  training stage, one engine",
            results["c"]["s_per_series"],
            "a  a notebook loop of model.fit",
            base,
            1 / 5,
            unit="s/series",
            note=f"{n_series} series x {points} points, one process each, one TF thread",
        ),
        Row("b  training stage, no engine", results["b"]["s_per_series"], "a", base, None),
        Row("d  engine fit only (a's work)", results["d"]["s_per_series"], "a", base, None),
        Row(
            "c  one engine",
            results["c"]["s_per_series"],
            "b  no engine",
            results["b"]["s_per_series"],
            None,
            unit="s/series",
        ),
    ]
    for row in rows:
        row.unit = "s/series"
    print_table(rows)
    print("\nresident memory growth per series after the first", WARMUP, "(MB/series):")
    for mode in MODES:
        growth, total = results[mode]["mb_per_series"], results[mode]["rss_mb"]
        first = results[mode]["first_s"]
        print(f"  {mode}  {growth:+.3f} MB/series   (RSS at the end {total:.0f} MB; ", end="")
        print(f"first series {first:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--modes", default="".join(MODES), help="which of a, b, c, d to run")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--listing", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.listing, args.series)
        return
    work = Path(tempfile.mkdtemp(prefix="wavecast-engine-bench-"))
    try:
        listing = prepare(work, args.series, args.points)
        results = measured(listing, iter(args.modes), args.series)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if set(results) == set(MODES):
        report(results, args.series, args.points)


if __name__ == "__main__":
    main()
