"""The combination: the candidates of a pool weighed by their inverse validation MSE, and
served as their weighted mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from wavecast.forecasters.forecaster import Backtest, Forecaster, Sources, Trial, copy_spec
from wavecast.forecasters.network import NetworkForecaster

# The candidates a combination holds whenever they were scored: not chosen among by their
# validation scores, which on a few origins pick the test's best of three no more often than
# chance does (helper study on M1, M3 and Tourism: benchmarks/README). Naive stays out: in the
# pool it cost accuracy on every competition panel measured. The linear AR competes only on
# series long enough to fit it (backtest.LINEAR_WINDOWS_PER_WEIGHT), where it is often the best.
COMBINATION_POOL = ("seasonal_naive", "linear", "ets", "theta", "arima", "network")
# A member weighing less than this share of a combination is left out of it (the weights of
# the rest renormalized): one far better than the others is then served alone, not as a
# combination that is itself in all but name.
MIN_SHARE = 0.05


def combination_members(validation_mse: Mapping[str, float]) -> tuple[str, ...]:
    """The candidates of COMBINATION_POOL with a finite validation MSE, in the pool's order."""
    scored = {name for name, mse in validation_mse.items() if mse == mse}
    return tuple(name for name in COMBINATION_POOL if name in scored)


def inverse_error_weights(errors: Sequence[float]) -> np.ndarray:
    """Weights proportional to 1 / error, summing to 1; a member with no error (an exact fit)
    takes all the weight, shared with any other exact one."""
    values = np.asarray(errors, np.float64)
    exact = values <= 0
    inverse = exact.astype(np.float64) if bool(np.any(exact)) else 1.0 / values
    return np.asarray(inverse / inverse.sum())


def combination_weights(
    validation_mse: Mapping[str, float],
) -> tuple[tuple[str, ...], np.ndarray]:
    """(members, weights): combination_members weighed by inverse validation MSE, less any
    member under MIN_SHARE (the rest renormalized); fewer than two members: nothing."""
    members = combination_members(validation_mse)
    if len(members) < 2:
        return (), np.zeros(0)
    weights = inverse_error_weights([validation_mse[name] for name in members])
    kept = weights >= MIN_SHARE
    if kept.sum() < 2:
        return (), np.zeros(0)
    return tuple(np.asarray(members)[kept].tolist()), weights[kept] / weights[kept].sum()


def weighted_mean(
    forecasts: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray
) -> np.ndarray:
    """The members' forecasts weighed; equal weights when none are given."""
    if not len(weights):
        return np.asarray(np.mean(forecasts, axis=0))
    return np.asarray(np.tensordot(np.asarray(weights, np.float64), np.stack(forecasts), axes=1))


class CombinationForecaster(Forecaster):
    """Its members' weighted mean; `network`, the member that is the network, if one is: its
    forecasts are made once and handed to it (or made already, batched with other series')."""

    refits: ClassVar[bool] = True

    def __init__(
        self,
        members: Sequence[Forecaster],
        weights: Sequence[float],
        network: NetworkForecaster | None = None,
    ) -> None:
        self.members, self.weights, self.network = tuple(members), tuple(weights), network

    def forecasts(
        self,
        values: np.ndarray,
        origins: np.ndarray,
        horizon: int,
        steps: int,
        chosen_forms: bool = False,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        if network_point is None and self.network is not None:
            network_point = self.network.forecasts(values, origins, horizon, steps)
        return weighted_mean(
            [
                member.forecasts(values, origins, horizon, steps, chosen_forms, network_point)
                for member in self.members
            ],
            self.weights,
        )

    def forecast(
        self,
        history: np.ndarray,
        horizon: int,
        steps: int,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        if network_point is None and self.network is not None:
            network_point = self.network.forecast(history, horizon, steps)
        return super().forecast(history, horizon, steps, network_point)

    def batched_network(self) -> object | None:
        return self.network.batched_network() if self.network is not None else None

    @classmethod
    def backtest(cls, name: str, trial: Trial, scores: Backtest) -> None:
        """Every scored candidate of the pool, weighed by inverse validation MSE, when two or
        more weigh enough (combination_weights). The forecasters that read windows (the
        network, the linear AR) forecast the test windows only here, and only when the
        combination holds them."""
        from wavecast.forecasters.kinds import kind_of  # the registry imports this module

        members, weights = combination_weights(scores.validation_mse())
        if not members:
            scores.notes[name] = (
                f"fewer than two candidates to combine weigh {MIN_SHARE:.0%} or more of it"
            )
            return
        for member in (m for m in members if m not in scores.test):
            scores.test[member] = kind_of(member).test_forecasts(trial, scores)
        for block in (scores.validation, scores.test):
            block[name] = weighted_mean([block[member] for member in members], weights)
        shares = ", ".join(f"{member} {w:.2f}" for member, w in zip(members, weights, strict=True))
        scores.forms[name] = f"weighted mean of {shares}"
        scores.members, scores.member_weights = members, tuple(float(w) for w in weights)

    @classmethod
    def save(cls, staging: Path, sources: Sources) -> None:
        copy_spec(staging, sources)
