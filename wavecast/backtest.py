"""Every candidate's forecasts of the same held-out targets, and the choice among them: the
validation windows (the train split's last ones) score and weigh the candidates, the test
windows only report how the choice did."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from wavecast.candidates import (
    CLASSICAL,
    CLASSICAL_MAX_POINTS,
    CLEAR_MARGIN,
    MIN_SHARE,
    STATISTICAL,
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
from wavecast.metrics import (
    BATCH_ROWS,
    Forecaster,
    LeastSquares,
)
from wavecast.model_files import (
    VALIDATION_MODEL_FILE,
    TrainedRef,
    shared_forecaster,
    validation_predictions,
)
from wavecast.windows import Chunk, DatasetRef, make_windows

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
