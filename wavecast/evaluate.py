"""Honest evaluation: every candidate forecaster backtested on the same targets, the champion
chosen on validation windows at the end of the train split, every score reported on the test
split (the network reloaded from its file, as a user would)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from wavecast.candidates import (
    CLASSICAL,
    CLASSICAL_MAX_POINTS,
    CLEAR_MARGIN,
    MIN_SHARE,
    STATISTICAL,
    ForecasterSpec,
    best_candidate,
    combination_weights,
    linear_forecast,
    mse_of,
    statistical_forecasts,
    targets_at,
    validation_size,
    weighted_mean,
    window_origins,
)
from wavecast.config import SelectionSpec
from wavecast.generate import read_series
from wavecast.intervals import conformal_half_widths
from wavecast.memory import release_unused_memory
from wavecast.plots import plot_forecasts, plot_loss
from wavecast.storage import DataDir, cache_version, stable_hash
from wavecast.train import (
    VALIDATION_MODEL_FILE,
    TrainedRef,
    loss_history,
    model_forecast,
    shared_forecaster,
    trained_forecaster,
    untrained_predictions,
    validation_predictions,
)
from wavecast.windows import Chunk, DatasetRef, iter_split, make_windows

PLOTS = ("loss.png", "predictions.png", "untrained.png")
BATCH_ROWS = 1 << 16  # windows per batch when streaming a split
SAMPLE_WINDOWS = 2000  # test windows kept for plots and the publish round-trip check
Forecaster = Callable[[np.ndarray], np.ndarray]
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.npy"
# The published forecaster's held-out |error| per window and step: validation windows, then test.
ERRORS_FILE = "test_abs_errors.npy"
SPEC_FILE = "forecaster.json"  # a statistical forecaster's ForecasterSpec (never a pickle)
COVERAGE_LEVELS = (80.0, 95.0)
# The linear AR competes with at least this many fitting windows per weight: on fewer it
# overfits (on M3's monthly series with 24 inputs it lost to ETS, Theta and their mean).
LINEAR_WINDOWS_PER_WEIGHT = 4
# Ties go to the forecaster listed first: the simpler and cheaper one.
PREFERENCE = (
    "naive",
    "seasonal_naive",
    "linear",
    "ets",
    "theta",
    "arima",
    "combination",
    "network",
)


class StepMetrics(BaseModel):
    """Errors of one forecaster at one step ahead; non-finite values stay JSON strings."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    mse: float
    rmse: float
    mae: float


class Metrics(StepMetrics):
    """Errors over every step, and at each step (first the target `horizon` steps ahead)."""

    per_step: tuple[StepMetrics, ...] = ()


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


@dataclass
class ErrorTotals:
    """Running sums of errors per step, so metrics over any number of batches need O(1) memory."""

    squared: np.ndarray = field(default_factory=lambda: np.zeros(0))
    absolute: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rows: int = 0

    def add(self, truth: np.ndarray, forecast: np.ndarray) -> None:
        """Add (windows, steps) forecasts and truth; 1-D arrays are one step."""
        truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
        errors = np.asarray(forecast, dtype=np.float64).reshape(truth.shape) - truth
        if self.rows == 0:
            self.squared, self.absolute = np.zeros(truth.shape[1]), np.zeros(truth.shape[1])
        self.squared = self.squared + np.einsum("ij,ij->j", errors, errors)
        self.absolute = self.absolute + np.abs(errors).sum(axis=0)
        self.rows += len(errors)

    def metrics(self) -> Metrics:
        steps = [
            scores(float(sq), float(ab), self.rows)
            for sq, ab in zip(self.squared, self.absolute, strict=True)
        ]
        overall = scores(
            float(self.squared.sum()), float(self.absolute.sum()), self.rows * len(steps)
        )
        return Metrics(**overall.model_dump(), per_step=tuple(steps))


def scores(squared: float, absolute: float, count: int) -> StepMetrics:
    mse = squared / count
    return StepMetrics(mse=mse, rmse=math.sqrt(mse), mae=absolute / count)


def regression_metrics(truth: np.ndarray, forecast: np.ndarray) -> Metrics:
    totals = ErrorTotals()
    totals.add(truth, forecast)
    return totals.metrics()


class LeastSquares:
    """Streaming least squares by incremental QR: as stable as lstsq, memory of one batch."""

    def __init__(self) -> None:
        self.r: np.ndarray | None = None
        self.n_targets = 1

    def add(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Rows of inputs and their targets: one column per target (step), fitted jointly."""
        targets = np.reshape(targets, (len(inputs), -1))
        self.n_targets = targets.shape[1]
        block = np.column_stack([inputs, np.ones(len(inputs)), targets])
        stacked = block if self.r is None else np.vstack([self.r, block])
        self.r = np.asarray(np.linalg.qr(stacked, mode="r"))  # R only: no Q to build

    def weights(self) -> np.ndarray:
        """(inputs + 1, targets): each column the inputs' weights then the intercept.

        R of [X 1 Y] holds every target's least-squares problem: R11 w = R12 column by
        column, one fit per step, from one pass over the data.
        """
        assert self.r is not None, "no rows were added"
        n_weights = self.r.shape[1] - self.n_targets
        weights, *_ = np.linalg.lstsq(self.r[:, :n_weights], self.r[:, n_weights:], rcond=None)
        return np.asarray(weights)


def persistence_forecast(inputs: np.ndarray, steps: int = 1) -> np.ndarray:
    """Tomorrow looks like today: each window's last value, at every step."""
    return np.repeat(np.asarray(inputs[:, -1:]), steps, axis=1)


def fit_linear_ar(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares weights (last one the intercept) of a linear autoregression."""
    solver = LeastSquares()
    solver.add(inputs, targets)
    return solver.weights()


def score_split(
    dataset: DatasetRef,
    data_dir: str,
    forecasters: Mapping[str, Forecaster],
    keep: int = SAMPLE_WINDOWS,
    errors_of: Sequence[str] = (),
) -> tuple[dict[str, Metrics], dict[str, np.ndarray]]:
    """Metrics of each forecaster over the whole test split, plus the first `keep` forecasts
    and, under "<name> errors", every absolute error of the forecasters `errors_of`."""
    totals = {name: ErrorTotals() for name in forecasters}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("start", "truth", *forecasters)}
    kept.update({f"{name} errors": [] for name in errors_of})
    seen = 0
    for starts, inputs, targets in iter_split(dataset, "test", data_dir, BATCH_ROWS):
        room = max(keep - seen, 0)
        # Copies: even an empty slice of a chunk pins its whole row group (~8 MB) in memory.
        kept["start"].append(starts[:room].copy())
        kept["truth"].append(targets[:room].copy())
        for name, forecaster in forecasters.items():
            forecast = np.asarray(forecaster(inputs)).reshape(targets.shape)
            totals[name].add(targets, forecast)
            kept[name].append(forecast[:room].copy())
            if name in errors_of:
                kept[f"{name} errors"].append(np.abs(forecast - targets).astype(np.float32))
        seen += len(starts)
    sample = {name: np.concatenate(parts) for name, parts in kept.items() if parts}
    return {name: t.metrics() for name, t in totals.items()}, sample


def keras_forecaster(model: Any) -> Forecaster:
    return functools.partial(model_forecast, model)


@dataclass
class Backtest:
    """Every candidate's forecasts of the same targets: the validation windows (the train
    split's last ones) and, for the statistical candidates, the test windows."""

    validation_truth: np.ndarray
    test_truth: np.ndarray
    validation: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # the combination's
    member_weights: tuple[float, ...] = ()
    linear_weights: np.ndarray | None = None  # the linear AR fitted on every train window

    def validation_mse(self) -> dict[str, float]:
        return {name: mse_of(f, self.validation_truth) for name, f in self.validation.items()}


def block_origins(dataset: DatasetRef, n_validation: int) -> dict[str, np.ndarray]:
    """The origins (last observed points) of the validation windows and of the test windows."""
    input_len, n_train = dataset.spec.input_len, dataset.n_train
    return {
        "validation": window_origins(n_train - n_validation, n_validation, input_len),
        "test": window_origins(n_train, dataset.n_test, input_len),
    }


def linear_weights(values: np.ndarray, dataset: DatasetRef, fit_end: int) -> np.ndarray:
    """The linear AR fitted on the first `fit_end` windows, read as views of the series."""
    _, inputs, targets = series_windows(values, dataset)
    solver = LeastSquares()
    for start in range(0, fit_end, BATCH_ROWS):
        stop = min(start + BATCH_ROWS, fit_end)
        solver.add(inputs[start:stop], targets[start:stop])
    return solver.weights()


def series_windows(values: np.ndarray, dataset: DatasetRef) -> Chunk:
    """The dataset's windows as views of the series it was built from: no copy, no read."""
    spec = dataset.spec
    return make_windows(values, spec.input_len, spec.horizon, spec.steps)


def test_forecasts(forecaster: Forecaster, values: np.ndarray, dataset: DatasetRef) -> np.ndarray:
    """A forecaster's forecasts of every test window, a batch of views at a time (a matmul
    of a strided view copies it whole: 512 MB for a million 64-point windows)."""
    _, inputs, _ = series_windows(values, dataset)
    test, steps = inputs[dataset.n_train :], dataset.spec.steps
    return np.concatenate(
        [
            np.reshape(forecaster(np.asarray(test[start : start + BATCH_ROWS])), (-1, steps))
            for start in range(0, len(test), BATCH_ROWS)
        ]
    )


def linear_validation(values: np.ndarray, dataset: DatasetRef, n_validation: int) -> np.ndarray:
    """The linear AR fitted on the train windows before the validation block, forecasting it."""
    fit_end = dataset.n_train - n_validation
    _, inputs, _ = series_windows(values, dataset)
    weights = linear_weights(values, dataset, fit_end)
    return linear_forecast(weights, np.asarray(inputs[fit_end : dataset.n_train]))


def network_validation(
    trained: TrainedRef, values: np.ndarray, dataset: DatasetRef, n_validation: int, data_dir: str
) -> np.ndarray:
    """The network's forecasts of the validation windows, by a twin that never saw them: the
    series' own twin stored them; a panel's global twin forecasts them here."""
    if not trained.shared:
        return validation_predictions(trained, data_dir)
    _, inputs, _ = series_windows(values, dataset)
    twin = shared_forecaster(trained.uri, VALIDATION_MODEL_FILE)
    return twin(np.asarray(inputs[dataset.n_train - n_validation : dataset.n_train]))


def statistical_backtest(
    backtest: Backtest,
    values: np.ndarray,
    dataset: DatasetRef,
    blocks: Mapping[str, np.ndarray],
    wanted: Sequence[str],
    season: int,
) -> None:
    """Each wanted statistical candidate at every validation and test origin (`blocks`); one
    that cannot be fitted on this series does not compete, and its note says why."""
    spec = dataset.spec
    for name in (n for n in STATISTICAL if n in wanted):
        if name == "seasonal_naive" and season == 1:
            backtest.notes[name] = "no season (1): the same forecast as naive"
            continue
        if name in CLASSICAL and len(values) > CLASSICAL_MAX_POINTS:
            backtest.notes[name] = f"not fitted: over {CLASSICAL_MAX_POINTS} points"
            continue
        try:
            for block, origins in blocks.items():
                forecasts, form = statistical_forecasts(
                    name, values, origins, spec.horizon, spec.steps, season
                )
                getattr(backtest, block)[name] = forecasts
                backtest.forms[name] = form or backtest.forms.get(name, "")
        except Exception as exc:  # a model that cannot fit this series does not compete
            backtest.validation.pop(name, None)
            backtest.notes[name] = f"could not be fitted: {str(exc).splitlines()[0][:200]}"


def combine(backtest: Backtest, test_makers: Mapping[str, Callable[[], np.ndarray]]) -> None:
    """Every scored candidate of the pool, weighed by inverse validation MSE, when two or
    more weigh enough (candidates.combination_weights). The forecasters that read windows
    (the network, the linear AR) forecast the test windows only here (`test_makers`), and
    only when the combination holds them."""
    members, weights = combination_weights(backtest.validation_mse())
    if not members:
        backtest.notes["combination"] = (
            f"fewer than two candidates to combine weigh {MIN_SHARE:.0%} or more of it"
        )
        return
    for name in (m for m in members if m not in backtest.test):
        backtest.test[name] = test_makers[name]()
    for block in (backtest.validation, backtest.test):
        block["combination"] = weighted_mean([block[name] for name in members], weights)
    shares = ", ".join(f"{name} {w:.2f}" for name, w in zip(members, weights, strict=True))
    backtest.forms["combination"] = f"weighted mean of {shares}"
    backtest.members, backtest.member_weights = members, tuple(float(w) for w in weights)


def network_absence(dataset: DatasetRef, selection: SelectionSpec) -> str:
    """Why a series has no network to score."""
    if dataset.shortened:
        return f"not trained: {dataset.shortened}"
    if not selection.trains_network(dataset.n_train):
        return (
            f"not trained: {dataset.n_train} train windows, fewer than --network-min-windows "
            f"{selection.network_min_windows}"
        )
    return "not trained here: the panel's global network is scored when its panel retrains"


def run_backtest(
    values: np.ndarray,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    selection: SelectionSpec,
    season: int,
    data_dir: str,
    network: Forecaster | None = None,
) -> Backtest:
    """Every wanted candidate at the validation origins (and the statistical ones at the
    test origins); `network`, the trained network's forecaster, for its test forecasts
    when the combination holds it."""
    n_validation = validation_size(dataset.n_train)
    blocks = block_origins(dataset, n_validation)
    horizon, steps = dataset.spec.horizon, dataset.spec.steps
    backtest = Backtest(
        validation_truth=targets_at(values, blocks["validation"], horizon, steps),
        test_truth=targets_at(values, blocks["test"], horizon, steps),
    )
    if trained is not None:
        backtest.validation["network"] = network_validation(
            trained, values, dataset, n_validation, data_dir
        )
    elif "network" in selection.candidates:
        backtest.notes["network"] = network_absence(dataset, selection)
    fit_windows, needed = (
        dataset.n_train - n_validation,
        LINEAR_WINDOWS_PER_WEIGHT * (dataset.spec.input_len + 1),
    )
    if "linear" in selection.candidates and fit_windows < needed:
        backtest.notes["linear"] = f"not fitted: {fit_windows} windows, fewer than the {needed} "
        backtest.notes["linear"] += f"its {dataset.spec.input_len + 1} weights need"
    elif "linear" in selection.candidates:
        backtest.validation["linear"] = linear_validation(values, dataset, n_validation)
        backtest.linear_weights = linear_weights(values, dataset, dataset.n_train)
    statistical_backtest(backtest, values, dataset, blocks, selection.candidates, season)
    if "combination" in selection.candidates:
        readers: dict[str, Forecaster] = {"network": network} if network else {}
        if backtest.linear_weights is not None:
            readers["linear"] = functools.partial(linear_forecast, backtest.linear_weights)
        makers = {
            name: functools.partial(test_forecasts, reader, values, dataset)
            for name, reader in readers.items()
        }
        combine(backtest, makers)
    if not any(mse == mse for mse in backtest.validation_mse().values()):
        statistical_backtest(backtest, values, dataset, blocks, ("naive",), season)
        backtest.notes["naive"] = "stands in: none of the candidates asked for could be scored"
    return backtest


def choose(backtest: Backtest) -> tuple[str, str]:
    """(forecaster, why): the lowest validation MSE; naive (which run_backtest then always
    backtests) when nothing could be validated."""
    scores = backtest.validation_mse()
    if not any(mse == mse for mse in scores.values()):
        return "naive", "no validation windows to choose on: the last value serves"
    chosen = best_candidate(scores, PREFERENCE)
    ranked = sorted((mse, name) for name, mse in scores.items() if mse == mse)
    if chosen == "combination" and ranked[0][1] != chosen:
        best_mse, best = ranked[0]
        return chosen, (
            f"validation MSE {scores[chosen]:.3g}; no single candidate is clearly better "
            f"(the best, {best} {best_mse:.3g}, is not {CLEAR_MARGIN:.0%} below it)"
        )
    runner_up = next((f"; next {n} {m:.3g}" for m, n in ranked if n != chosen), "")
    why = f"lowest validation MSE {scores[chosen]:.3g} of {len(ranked)} candidates{runner_up}"
    if chosen == "naive":
        why += ": no candidate forecast the held-out windows better than the last value"
    return chosen, why


WINDOW_KEYS = {"network": "model", "linear": "linear"}  # score_split names of the served


def evaluate_trained(
    dataset: DatasetRef,
    trained: TrainedRef | None,
    selection: SelectionSpec,
    data_dir: str,
    reuse: bool = False,
) -> Evaluation:
    """Backtest every candidate, choose on the validation windows, report on the test split
    (the network reloaded as a user would), and draw the plots.

    With `reuse`, a complete evaluation already at this content-addressed place is returned.
    """
    store = DataDir(data_dir)
    _, parts = evaluation_location(dataset, trained, selection, data_dir)
    existing = store.completed_record(Evaluation, *parts, METRICS_FILE) if reuse else None
    if existing is not None:
        return existing
    release_unused_memory()
    values = read_series(dataset.series, data_dir)
    season = selection.season or dataset.series.season or 1
    network = trained_forecaster(trained, data_dir) if trained is not None else None
    backtest = run_backtest(values, dataset, trained, selection, season, data_dir, network)
    chosen, why = choose(backtest)
    weights = backtest.linear_weights
    if weights is None:
        weights = linear_weights(values, dataset, dataset.n_train)
    forecasters: dict[str, Forecaster] = {
        "persistence": functools.partial(persistence_forecast, steps=dataset.spec.steps),
        "linear": functools.partial(linear_forecast, weights),
    }
    if network is not None:
        forecasters["model"] = network
    served_key = WINDOW_KEYS.get(chosen)
    errors_of = (served_key,) if served_key else ()
    window_scores, sample = score_split(dataset, data_dir, forecasters, errors_of=errors_of)
    candidates = candidate_scores(backtest, window_scores, selection)
    chosen_test = next(c.test for c in candidates if c.forecaster == chosen)
    assert chosen_test is not None, f"{chosen} was chosen without test scores"
    if served_key:
        predictions, test_errors = sample[served_key], sample[f"{served_key} errors"]
    else:
        predictions = backtest.test[chosen][: len(sample["start"])]
        test_errors = np.abs(backtest.test[chosen] - backtest.test_truth).astype(np.float32)
    validation_errors = np.abs(backtest.validation[chosen] - backtest.validation_truth)
    published = Published(
        forecaster=chosen,
        mse=chosen_test.mse,
        reason=why,
        validation_mse=backtest.validation_mse().get(chosen, math.nan),
        season=season,
        members=backtest.members if chosen == "combination" else (chosen,),
        member_weights=backtest.member_weights if chosen == "combination" else (),
        coverage=test_coverage(validation_errors, test_errors),
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
        if chosen != "network":
            spec = ForecasterSpec(
                forecaster=chosen,
                season=season,
                members=published.members,
                forms=backtest.forms,
                weights=tuple(map(tuple, weights.tolist()))
                if "linear" in published.members
                else (),
                member_weights=published.member_weights,
            )
            (staging / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
        np.save(staging / PREDICTIONS_FILE, predictions, allow_pickle=False)
        np.save(staging / ERRORS_FILE, errors, allow_pickle=False)
        if plots:
            draw_plots(staging, sample, chosen, predictions, trained, data_dir)
    return evaluation


def candidate_scores(
    backtest: Backtest, window_scores: Mapping[str, Metrics], selection: SelectionSpec
) -> tuple[CandidateScore, ...]:
    """One row per wanted candidate, in the order asked for: validation and test scores."""
    validation = backtest.validation_mse()
    tests = {name: regression_metrics(backtest.test_truth, f) for name, f in backtest.test.items()}
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


def test_coverage(validation_errors: np.ndarray, test_errors: np.ndarray) -> dict[str, float]:
    """Share of test errors inside intervals calibrated on the validation errors alone."""
    if not len(test_errors) or not len(validation_errors):
        return {}
    return {
        f"{level:g}": float(
            np.mean(test_errors <= conformal_half_widths(validation_errors, level / 100))
        )
        for level in COVERAGE_LEVELS
    }


def draw_plots(
    staging: Path,
    sample: Mapping[str, np.ndarray],
    chosen: str,
    predictions: np.ndarray,
    trained: TrainedRef | None,
    data_dir: str,
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
    untrained = untrained_predictions(trained, data_dir)[: len(starts)]
    plot_loss(loss_history(trained, data_dir), staging / PLOTS[0])
    plot_forecasts(
        starts[: len(untrained)],
        truth[: len(untrained), 0],
        {"untrained model": untrained.reshape(len(untrained), -1)[:, 0]},
        "Before training",
        staging / PLOTS[2],
    )


def stored_predictions(evaluation: Evaluation, data_dir: str) -> np.ndarray:
    """The published forecaster's test forecasts, as scored."""
    store = DataDir(data_dir)
    with store.local_file("evaluations", evaluation.evaluation_id, PREDICTIONS_FILE) as path:
        return np.load(path, allow_pickle=False)


def evaluation_location(
    dataset: DatasetRef, trained: TrainedRef | None, selection: SelectionSpec, data_dir: str
) -> tuple[str, tuple[str, ...]]:
    trained_id = trained.train_id if trained else "untrained"
    version = cache_version("evaluate")
    identity = stable_hash(dataset.dataset_id, trained_id, selection.model_dump_json(), version)
    return data_dir, ("evaluations", identity)


def metrics_table(evaluation: Evaluation) -> list[dict[str, float | str]]:
    """Every candidate's validation and test scores, the shape Prefect's table artifact and the
    CLI both show; the published one is marked."""
    rows: list[dict[str, float | str]] = []
    for candidate in evaluation.candidates:
        test = candidate.test.model_dump(exclude={"per_step"}) if candidate.test else {}
        rows.append(
            {
                "forecaster": candidate.forecaster,
                "published": "yes"
                if candidate.forecaster == evaluation.published.forecaster
                else "",
                "validation_mse": candidate.validation_mse,
                **{f"test_{k}": test.get(k, math.nan) for k in ("mse", "rmse", "mae")},
                "form": candidate.form or candidate.note,
            }
        )
    return rows
