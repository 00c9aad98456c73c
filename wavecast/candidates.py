"""Statistical forecasters scored at rolling origins: naive, seasonal naive, statsforecast's
AutoETS / AutoTheta / AutoARIMA, and their combination.

An origin is the index of the last observed point; a forecast from it covers the targets
values[origin + horizon + k] for k < steps, the same targets as the window that ends there.
Classical models are refitted at a few origins of each block and carried forward (their
states filtered through the newer data, statsforecast's `forward`) to the origins between,
so a backtest of hundreds of origins costs a handful of fits. statsforecast is imported only
when a classical model runs: it costs ~2 s of imports.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

CLASSICAL = ("ets", "theta", "arima")
STATISTICAL = ("naive", "seasonal_naive", *CLASSICAL)
REFITS_PER_BLOCK = 4  # classical fits per block of origins; states are carried in between
MAX_HISTORY = 5000  # points a classical model is fitted on: the most recent ones
CLASSICAL_MAX_POINTS = 100_000  # longer series skip the classical models (cost per origin)
# The candidates a combination holds whenever they were scored: not chosen among by their
# validation scores, which on a few origins pick the test's best of three no more often than
# chance does (helper study on M1, M3 and Tourism: benchmarks/README). Naive stays out: in the
# pool it cost accuracy on every competition panel measured. The linear AR competes only on
# series long enough to fit it (LINEAR_WINDOWS_PER_WEIGHT), where it is often the best.
COMBINATION_POOL = ("seasonal_naive", "linear", "ets", "theta", "arima", "network")
# Candidates a combination can hold: a JSON spec remakes all but the network, whose forecasts
# come from the version's model.keras.
COMBINABLE = (*STATISTICAL, "linear", "network")
# A single candidate serves only when its validation MSE is this share below the
# combination's: a choice on a closer margin is a choice on noise (a 1.4 % margin lost 28 %
# on test; margins of 5-30 % all lost to always combining on M1 and M3), and combinations win
# the field's competitions. An exact fit (the sine's linear AR) still clears it.
CLEAR_MARGIN = 0.5
# A member weighing less than this share of a combination is left out of it (the weights of
# the rest renormalized): one far better than the others is then served alone, not as a
# combination that is itself in all but name.
MIN_SHARE = 0.05
MAX_VALIDATION_WINDOWS = 200


# The forms model_form records, read back by classical_model: statsforecast's arima_string
# ("ARIMA(0,1,1)(0,1,1)[12] with drift") and AutoETS' method ("ETS(A,Ad,N)").
ARIMA_FORM = re.compile(
    r"ARIMA\((\d+),(\d+),(\d+)\)(?:\((\d+),(\d+),(\d+)\)\[(\d+)\])?"
    r"\s*(with drift|with non-zero mean|with zero mean)?"
)
ETS_FORM = re.compile(r"ETS\(([AM]),(N|Ad?|Md?),([ANM])\)")


class ForecasterSpec(BaseModel):
    """What a champion other than the network is stored as: names, a season, the forms its
    retrain chose and, for the linear AR, its weights; never a pickle. A statistical one is
    refitted on the series as of now whenever it forecasts, in its recorded form
    (classical_model); the linear AR applies the weights it was scored with, with NumPy:
    serving it imports no TensorFlow (~5 s of a forecast command)."""

    model_config = ConfigDict(frozen=True)

    forecaster: str
    season: int
    members: tuple[str, ...]
    forms: dict[str, str] = {}
    # The linear AR's least-squares weights: input_len + 1 rows (the intercept last), a column
    # per step. JSON floats round-trip float64 exactly.
    weights: tuple[tuple[float, ...], ...] = ()
    # A combination's weight per member (inverse validation MSE, summing to 1); empty for an
    # equal-weighted mean (specs written before weights).
    member_weights: tuple[float, ...] = ()

    @property
    def refitted(self) -> bool:
        """Fitted again on the series whenever it forecasts: all but the linear AR."""
        return self.forecaster != "linear"


def validation_size(n_train: int) -> int:
    """Windows at the end of the train split held out for choosing: a quarter, at most 200,
    and at least one whenever one window is left to fit on."""
    if n_train < 2:
        return 0
    return min(max(n_train // 4, 1), MAX_VALIDATION_WINDOWS)


def window_origins(first_window: int, count: int, input_len: int) -> np.ndarray:
    return np.arange(first_window, first_window + count, dtype=np.int64) + input_len - 1


def targets_at(values: np.ndarray, origins: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """(origins, steps) true values each origin's forecast is scored on."""
    return np.asarray(values)[origins[:, None] + horizon + np.arange(steps)]


def seasonal_naive(
    values: np.ndarray, origins: np.ndarray, horizon: int, steps: int, season: int
) -> np.ndarray:
    """Each target's value one (or more) seasons earlier, the latest one observed by then;
    the last value where the history is shorter than a season."""
    leads = horizon + np.arange(steps)
    back = season * np.ceil(leads / season).astype(np.int64)
    index = origins[:, None] + leads - back
    index = np.where(index < 0, origins[:, None], index)
    return np.asarray(values)[index]


def classical_model(name: str, season: int, form: str = "") -> Any:
    """statsforecast's automatic model, or, given the form a retrain chose (model_form), that
    form alone: a champion refitted as it forecasts re-estimates its coefficients on the
    series as of now without searching again (AutoARIMA's search is ~2 s of a 150-month
    series; the fixed order's fit a tenth of it)."""
    from statsforecast.models import ARIMA, AutoARIMA, AutoETS, AutoTheta

    arima = ARIMA_FORM.fullmatch(form.strip()) if name == "arima" else None
    if arima is not None:
        p, d, q, seasonal_p, seasonal_d, seasonal_q, period, extra = arima.groups()
        return ARIMA(
            order=(int(p), int(d), int(q)),
            season_length=int(period or 1),
            seasonal_order=(int(seasonal_p or 0), int(seasonal_d or 0), int(seasonal_q or 0)),
            include_mean=extra != "with zero mean",
            include_drift=extra == "with drift",
        )
    ets = ETS_FORM.fullmatch(form.strip()) if name == "ets" else None
    if ets is not None:
        error, trend, seasonal = ets.groups()
        model = f"{error}{trend[0]}{seasonal}"
        return AutoETS(season_length=season, model=model, damped=trend.endswith("d"))
    kinds = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA}
    return kinds[name](season_length=season)


def model_form(name: str, fitted: Any) -> str:
    """The form the automatic search chose, for the report: ETS(A,A,N), ARIMA(1,1,0), ..."""
    if name == "arima":
        from statsforecast.arima import arima_string

        return str(arima_string(fitted.model_)).strip()
    if name == "ets":
        return str(fitted.model_.get("method", "ETS"))
    return f"Theta ({fitted.model_.get('modeltype', '')})"


def classical_forecasts(
    name: str,
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    steps: int,
    season: int,
    refits: int = REFITS_PER_BLOCK,
    chosen: str = "",
) -> tuple[np.ndarray, str]:
    """(forecasts, the last fitted form): refitted at `refits` evenly spaced origins, in the
    form a retrain `chosen` when one is given (classical_model)."""
    lead = horizon + steps - 1
    forecasts = np.empty((len(origins), steps))
    form = ""
    if not len(origins):  # no validation windows: nothing to fit, nothing to fail
        return forecasts, form
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in np.array_split(np.arange(len(origins)), min(refits, len(origins))):
            first = int(origins[block[0]])
            model = classical_model(name, season, chosen).fit(history(values, first))
            form = model_form(name, model)
            for row in block:
                ahead = model.forward(y=history(values, int(origins[row])), h=lead)["mean"]
                forecasts[row] = np.asarray(ahead)[horizon - 1 :]
    return forecasts, form


def history(values: np.ndarray, origin: int) -> np.ndarray:
    """What a classical model sees at an origin: the last MAX_HISTORY points up to it."""
    return np.asarray(values[max(0, origin + 1 - MAX_HISTORY) : origin + 1], dtype=np.float64)


def statistical_forecasts(
    name: str,
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    steps: int,
    season: int,
    form: str = "",
) -> tuple[np.ndarray, str]:
    """(origins, steps) forecasts of one statistical candidate (in `form`, when a retrain
    chose it already), and its fitted form."""
    if name == "naive":
        return np.repeat(np.asarray(values)[origins][:, None], steps, axis=1), "last value"
    if name == "seasonal_naive":
        return seasonal_naive(values, origins, horizon, steps, season), f"season {season}"
    return classical_forecasts(name, values, origins, horizon, steps, season, chosen=form)


def mse_of(forecasts: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error; NaN when there is nothing to score or any forecast is not finite."""
    if forecasts.size == 0 or not np.isfinite(forecasts).all():
        return math.nan
    return float(np.mean(np.square(forecasts - truth)))


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


def best_candidate(validation_mse: Mapping[str, float], order: Sequence[str]) -> str:
    """The combination, unless a single candidate's validation MSE is clearly lower
    (CLEAR_MARGIN below it); else the lowest validation MSE, a tie going to the candidate
    listed first (the simpler one)."""
    finite = [(mse, order.index(name), name) for name, mse in validation_mse.items() if mse == mse]
    if not finite:
        raise ValueError("no candidate has a finite validation score")
    best_mse, _, best = min(finite)
    combined = validation_mse.get("combination", math.nan)
    if combined == combined and best_mse > (1 - CLEAR_MARGIN) * combined:
        return "combination"
    return best


def linear_forecast(weights: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """(windows, steps) forecasts of a linear AR's weights (the intercept last)."""
    weights = np.reshape(weights, (inputs.shape[1] + 1, -1))
    return np.asarray(inputs @ weights[:-1] + weights[-1])


def windows_ending_at(values: np.ndarray, origins: np.ndarray, input_len: int) -> np.ndarray:
    """(origins, input_len) windows whose last point is each origin, as views of `values`."""
    views = np.lib.stride_tricks.sliding_window_view(np.asarray(values, np.float64), input_len)
    return views[np.asarray(origins) - (input_len - 1)]


def spec_forecasts(
    spec: ForecasterSpec,
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    steps: int,
    network: np.ndarray | None = None,
    in_chosen_forms: bool = False,
) -> np.ndarray:
    """(origins, steps) forecasts of a stored forecaster: the linear AR's weights applied to
    the window ending at each origin, or its members' (weighted) mean, the statistical ones
    refitted on `values` as they were scored (searching again), or `in_chosen_forms` the
    retrain recorded; `network` holds the network's forecasts at the same origins, for a
    combination it is a member of."""
    if not spec.refitted:
        return stored_linear_forecasts(spec, values, origins)
    members = [
        member_forecasts(spec, name, values, origins, horizon, steps, network, in_chosen_forms)
        for name in spec.members
    ]
    return weighted_mean(members, spec.member_weights)


def member_forecasts(
    spec: ForecasterSpec,
    name: str,
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    steps: int,
    network: np.ndarray | None,
    in_chosen_forms: bool = False,
) -> np.ndarray:
    if name == "linear":
        return stored_linear_forecasts(spec, values, origins)
    if name == "network":
        if network is None:
            raise ValueError("a combination holding the network needs the network's forecasts")
        return np.reshape(np.asarray(network, np.float64), (len(origins), steps))
    form = spec.forms.get(name, "") if in_chosen_forms else ""
    return statistical_forecasts(name, values, origins, horizon, steps, spec.season, form)[0]


def stored_linear_forecasts(
    spec: ForecasterSpec, values: np.ndarray, origins: np.ndarray
) -> np.ndarray:
    weights = np.asarray(spec.weights, np.float64)
    return linear_forecast(weights, windows_ending_at(values, origins, len(weights) - 1))


def spec_forecast(
    spec: ForecasterSpec,
    values: np.ndarray,
    horizon: int,
    steps: int,
    network: np.ndarray | None = None,
) -> np.ndarray:
    """A stored champion's forecast after the last point: a statistical one refitted on
    `values` in the form its retrain chose (no new search: classical_model); `network`, the
    network's forecast from there, when it is a member. Re-scoring it on held-out windows
    (spec_forecasts) searches as its evaluation did, so it reproduces the scores."""
    origin = np.array([len(values) - 1])
    return spec_forecasts(spec, values, origin, horizon, steps, network, in_chosen_forms=True)[0]
