"""Honest evaluation: every candidate forecaster backtested on the same targets, the champion
chosen on validation windows at the end of the train split, every score reported on the test
split (the network reloaded from its file, as a user would)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.backtest import choose, run_backtest
from wavecast.cache_keys import cache_version, stable_hash
from wavecast.config import SelectionSpec
from wavecast.forecasters.forecaster import SPEC_FILE, Backtest
from wavecast.forecasters.kinds import WINDOW_KEYS, published_members, spec_of
from wavecast.forecasters.linear import linear_forecast, linear_weights
from wavecast.generate import read_series
from wavecast.home import SeriesHome
from wavecast.intervals import conformal_half_widths, resolution_floor
from wavecast.memory import release_unused_memory
from wavecast.metrics import (
    Metrics,
    WindowForecaster,
    mase_scale,
    persistence_forecast,
    regression_metrics,
    score_split,
)
from wavecast.model_files import (
    TrainedRef,
    loss_history,
    trained_forecaster,
    untrained_predictions,
)
from wavecast.plots import plot_forecasts, plot_loss
from wavecast.storage import DataDir
from wavecast.windows import DatasetRef

PLOTS = ("loss.png", "predictions.png", "untrained.png")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.npy"
# The published forecaster's held-out |error| per window and step: validation windows, then test.
ERRORS_FILE = "test_abs_errors.npy"
COVERAGE_LEVELS = (80.0, 95.0)


class CandidateScore(BaseModel):
    """One competing forecaster: its validation score (which chooses) and test scores (which
    are reported); NaN validation means it could not be scored, and `note` says why."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    forecaster: str
    validation_mse: float
    test: Metrics | None = None
    form: str = ""
    note: str = ""


class Published(BaseModel):
    """The forecaster a version serves, and why: the candidate with the lowest validation MSE.
    The network serves from model.keras; the others from a JSON spec: the linear AR's
    weights, or statistical ones refitted on the series whenever they forecast."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    forecaster: str = "network"
    mse: float
    reason: str = ""
    validation_mse: float = math.nan
    season: int = 1
    members: tuple[str, ...] = ()
    member_weights: tuple[float, ...] = ()  # a combination's, in the order of its members
    coverage: dict[str, float] = {}  # level -> test coverage of intervals calibrated on validation
    # MASE's denominator (metrics.mase_scale) over the train part, with `season`; every MASE
    # of this evaluation (candidates, baselines, a re-scored champion) divides by it. None:
    # written before MASE was scored.
    mase_scale: float | None = None


class Evaluation(BaseModel):
    """Validation and test scores of every candidate, the baselines, the forecaster to
    publish (`metrics` are its test scores), and where the plots are."""

    model_config = ConfigDict(frozen=True)

    uri: str
    evaluation_id: str
    train_id: str | None
    n_test: int
    n_validation: int = 0
    metrics: Metrics
    baselines: dict[str, Metrics]
    published: Published
    candidates: tuple[CandidateScore, ...] = ()
    plots: tuple[str, ...] = PLOTS


def evaluate_trained(
    dataset: DatasetRef,
    trained: TrainedRef | None,
    selection: SelectionSpec,
    home: SeriesHome,
    reuse: bool = False,
) -> Evaluation:
    """Backtest every candidate, choose on the validation windows, report on the test split
    (the network reloaded as a user would), and draw the plots.

    With `reuse`, a complete evaluation already at this content-addressed place is returned.
    """
    store = home.store
    _, parts = evaluation_location(dataset, trained, selection, home)
    existing = store.completed_record(Evaluation, *parts, METRICS_FILE) if reuse else None
    if existing is not None:
        return existing
    release_unused_memory()
    values = read_series(dataset.series, store)
    season = selection.season or dataset.series.season or 1
    scale = train_scale(values, dataset, season)
    network = trained_forecaster(trained, store) if trained is not None else None
    backtest = run_backtest(values, dataset, trained, selection, season, store, network)
    chosen, why = choose(backtest)
    weights = backtest.linear_weights
    if weights is None:
        weights = linear_weights(values, dataset, dataset.n_train)
    forecasters: dict[str, WindowForecaster] = {
        "persistence": functools.partial(persistence_forecast, steps=dataset.spec.steps),
        "linear": functools.partial(linear_forecast, weights),
    }
    if network is not None:
        forecasters["model"] = network
    served_key = WINDOW_KEYS.get(chosen)
    errors_of = (served_key,) if served_key else ()
    window_scores, sample = score_split(
        dataset, store, forecasters, errors_of=errors_of, scale=scale
    )
    candidates = candidate_scores(backtest, window_scores, selection, scale)
    chosen_test = next(c.test for c in candidates if c.forecaster == chosen)
    assert chosen_test is not None, f"{chosen} was chosen without test scores"
    if served_key:
        predictions, test_errors = sample[served_key], sample[f"{served_key} errors"]
    else:
        predictions = backtest.test[chosen][: len(sample["start"])]
        test_errors = np.abs(backtest.test[chosen] - backtest.test_truth).astype(np.float32)
    validation_errors = np.abs(backtest.validation[chosen] - backtest.validation_truth)
    members, member_weights = published_members(chosen, backtest.members, backtest.member_weights)
    published = Published(
        forecaster=chosen,
        mse=chosen_test.mse,
        reason=why,
        validation_mse=backtest.validation_mse().get(chosen, math.nan),
        season=season,
        members=members,
        member_weights=member_weights,
        coverage=test_coverage(validation_errors, test_errors, resolution_floor(values)),
        mase_scale=scale,
    )
    plots: tuple[str, ...] = ()
    if selection.plots:
        plots = PLOTS if trained is not None and not trained.shared else (PLOTS[1],)
    evaluation = Evaluation(
        uri=store.uri(*parts),
        evaluation_id=parts[-1],
        train_id=trained.train_id if trained else None,
        n_test=dataset.n_test,
        n_validation=len(backtest.validation_truth),
        metrics=chosen_test,
        baselines={name: window_scores[name] for name in ("persistence", "linear")},
        published=published,
        candidates=candidates,
        plots=plots,
    )
    errors = np.concatenate([validation_errors.astype(np.float32), test_errors])
    with store.staged_dir(*parts) as staging:
        (staging / METRICS_FILE).write_text(evaluation.model_dump_json(indent=2))
        spec = spec_of(chosen, season, members, member_weights, backtest.forms, weights)
        if spec is not None:
            (staging / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
        np.save(staging / PREDICTIONS_FILE, predictions, allow_pickle=False)
        np.save(staging / ERRORS_FILE, errors, allow_pickle=False)
        if plots:
            draw_plots(staging, sample, chosen, predictions, trained, store)
    return evaluation


def train_scale(values: np.ndarray, dataset: DatasetRef, season: int) -> float:
    """MASE's scale (metrics.mase_scale) on the train part of the series: every point up to
    the first test origin, the history of the first test forecast, which holds no test
    target."""
    first_test_origin = dataset.n_train + dataset.spec.input_len - 1
    return mase_scale(values[: first_test_origin + 1], season)


def candidate_scores(
    backtest: Backtest,
    window_scores: Mapping[str, Metrics],
    selection: SelectionSpec,
    scale: float | None = None,
) -> tuple[CandidateScore, ...]:
    """One row per wanted candidate, in the order asked for: validation and test scores."""
    validation = backtest.validation_mse()
    tests = {
        name: regression_metrics(backtest.test_truth, f, scale) for name, f in backtest.test.items()
    }
    tests |= {name: window_scores[key] for name, key in WINDOW_KEYS.items() if name in validation}
    return tuple(
        CandidateScore(
            forecaster=name,
            validation_mse=validation.get(name, math.nan),
            test=tests.get(name),
            form=backtest.forms.get(name, ""),
            note=backtest.notes.get(name, ""),
        )
        for name in dict.fromkeys((*selection.candidates, *backtest.validation))
    )


def test_coverage(
    validation_errors: np.ndarray, test_errors: np.ndarray, floor: float = 0.0
) -> dict[str, float]:
    """Share of test errors inside intervals calibrated on the validation errors alone (never
    narrower than `floor`, as served)."""
    if not len(test_errors) or not len(validation_errors):
        return {}
    return {
        f"{level:g}": float(
            np.mean(test_errors <= conformal_half_widths(validation_errors, level / 100, floor))
        )
        for level in COVERAGE_LEVELS
    }


def draw_plots(
    staging: Path,
    sample: Mapping[str, np.ndarray],
    chosen: str,
    predictions: np.ndarray,
    trained: TrainedRef | None,
    store: DataDir,
) -> None:
    """Test forecasts (first step) of the published forecaster and the baselines; with a
    network, its loss curve and its guess before training."""
    starts, truth = sample["start"], sample["truth"]
    first = {
        name: sample[name][:, 0] for name in ("model", "persistence", "linear") if name in sample
    }
    first[f"{chosen} (published)"] = np.reshape(predictions, (len(predictions), -1))[:, 0]
    plot_forecasts(starts, truth[:, 0], first, "Test forecasts", staging / PLOTS[1])
    if trained is None or trained.shared:  # a panel's network: its curve is the panel's
        return
    untrained = untrained_predictions(trained, store)[: len(starts)]
    plot_loss(loss_history(trained, store), staging / PLOTS[0])
    plot_forecasts(
        starts[: len(untrained)],
        truth[: len(untrained), 0],
        {"untrained model": untrained.reshape(len(untrained), -1)[:, 0]},
        "Before training",
        staging / PLOTS[2],
    )


def stored_predictions(evaluation: Evaluation, store: DataDir) -> np.ndarray:
    """The published forecaster's test forecasts, as scored."""
    with store.local_file("evaluations", evaluation.evaluation_id, PREDICTIONS_FILE) as path:
        return np.load(path, allow_pickle=False)


def evaluation_location(
    dataset: DatasetRef, trained: TrainedRef | None, selection: SelectionSpec, home: SeriesHome
) -> tuple[str, tuple[str, ...]]:
    trained_id = trained.train_id if trained else "untrained"
    version = cache_version("evaluate")
    identity = stable_hash(dataset.dataset_id, trained_id, selection.model_dump_json(), version)
    return home.uri(), ("evaluations", identity)


def metrics_table(
    candidates: Sequence[CandidateScore], published: Published
) -> list[dict[str, float | str]]:
    """Every candidate's validation and test scores (an evaluation's, or a version's from its
    manifest), the shape Prefect's table artifact shows; the published one is marked."""
    rows: list[dict[str, float | str]] = []
    for candidate in candidates:
        test = candidate.test.model_dump(exclude={"per_step"}) if candidate.test else {}
        rows.append(
            {
                "forecaster": candidate.forecaster,
                "published": "yes" if candidate.forecaster == published.forecaster else "",
                "validation_mse": candidate.validation_mse,
                **{
                    f"test_{k}": math.nan if test.get(k) is None else test[k]
                    for k in ("mse", "rmse", "mae", "mase", "smape")
                },
                "form": candidate.form or candidate.note,
            }
        )
    return rows


def coverage_text(coverage: Mapping[str, float]) -> str:
    """Test coverage of the published intervals in a few words: "80 %: 79%, 95 %: 96%"."""
    return ", ".join(f"{level} %: {share:.0%}" for level, share in coverage.items())


def candidates_line(candidates: Sequence[CandidateScore]) -> str:
    """The candidates by validation MSE, best first, in one short line (the full table is the
    version's artifact): "linear 5.2e-31, network 3.3e-06; not scored: arima"."""
    scored = sorted((c.validation_mse, c.forecaster) for c in candidates if c.validation_mse >= 0)
    line = ", ".join(f"{name} {mse:.2g}" for mse, name in scored)
    unscored = [c.forecaster for c in candidates if not c.validation_mse >= 0]
    return line + (f"; not scored: {', '.join(unscored)}" if unscored else "")
