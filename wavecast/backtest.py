"""Every candidate's forecasts of the same held-out targets, and the choice among them: the
validation windows (the train split's last ones) score and weigh the candidates, the test
windows only report how the choice did."""

from __future__ import annotations

import numpy as np

from wavecast.candidates import (
    CLEAR_MARGIN,
    best_candidate,
    targets_at,
    validation_size,
    window_origins,
)
from wavecast.config import SelectionSpec
from wavecast.forecasters.forecaster import Backtest, Trial
from wavecast.forecasters.kinds import backtest_candidates
from wavecast.metrics import WindowForecaster
from wavecast.model_files import TrainedRef
from wavecast.storage import DataDir
from wavecast.windows import DatasetRef

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


def block_origins(dataset: DatasetRef, n_validation: int) -> dict[str, np.ndarray]:
    """The origins (last observed points) of the validation windows and of the test windows."""
    input_len, n_train = dataset.spec.input_len, dataset.n_train
    return {
        "validation": window_origins(n_train - n_validation, n_validation, input_len),
        "test": window_origins(n_train, dataset.n_test, input_len),
    }


def run_backtest(
    values: np.ndarray,
    dataset: DatasetRef,
    trained: TrainedRef | None,
    selection: SelectionSpec,
    season: int,
    store: DataDir,
    network: WindowForecaster | None = None,
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
    trial = Trial(values, dataset, blocks, n_validation, selection, season, store, trained, network)
    backtest_candidates(trial, backtest)
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
