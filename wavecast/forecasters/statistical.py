"""Statistical forecasters scored at rolling origins: naive, seasonal naive, and
statsforecast's AutoETS / AutoTheta / AutoARIMA.

An origin is the index of the last observed point; a forecast from it covers the targets
values[origin + horizon + k] for k < steps, the same targets as the window that ends there.
Classical models are refitted at a few origins of each block and carried forward (their
states filtered through the newer data, statsforecast's `forward`) to the origins between,
so a backtest of hundreds of origins costs a handful of fits. statsforecast is imported only
when a classical model runs: it costs ~2 s of imports.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wavecast.forecasters.forecaster import Backtest, Forecaster, Plan, Sources, Trial, copy_spec

CLASSICAL = ("ets", "theta", "arima")
STATISTICAL = ("naive", "seasonal_naive", *CLASSICAL)
REFITS_PER_BLOCK = 4  # classical fits per block of origins; states are carried in between
MAX_HISTORY = 5000  # points a classical model is fitted on: the most recent ones
CLASSICAL_MAX_POINTS = 100_000  # longer series skip the classical models (cost per origin)

# The forms model_form records, read back by classical_model: statsforecast's arima_string
# ("ARIMA(0,1,1)(0,1,1)[12] with drift") and AutoETS' method ("ETS(A,Ad,N)").
ARIMA_FORM = re.compile(
    r"ARIMA\((\d+),(\d+),(\d+)\)(?:\((\d+),(\d+),(\d+)\)\[(\d+)\])?"
    r"\s*(with drift|with non-zero mean|with zero mean)?"
)
ETS_FORM = re.compile(r"ETS\(([AM]),(N|Ad?|Md?),([ANM])\)")


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


def arima_in_form(form: str, season: int) -> Any | None:
    """statsforecast's ARIMA of the order `form` names (model_form's), or None."""
    from statsforecast.models import ARIMA

    arima = ARIMA_FORM.fullmatch(form)
    if arima is None:
        return None
    p, d, q, seasonal_p, seasonal_d, seasonal_q, period, extra = arima.groups()
    return ARIMA(
        order=(int(p), int(d), int(q)),
        season_length=int(period or 1),
        seasonal_order=(int(seasonal_p or 0), int(seasonal_d or 0), int(seasonal_q or 0)),
        include_mean=extra != "with zero mean",
        include_drift=extra == "with drift",
    )


def ets_in_form(form: str, season: int) -> Any | None:
    """statsforecast's AutoETS restricted to the form `form` names (model_form's), or None."""
    from statsforecast.models import AutoETS

    ets = ETS_FORM.fullmatch(form)
    if ets is None:
        return None
    error, trend, seasonal = ets.groups()
    model = f"{error}{trend[0]}{seasonal}"
    return AutoETS(season_length=season, model=model, damped=trend.endswith("d"))


# The classical models that can be fitted in a recorded form, by name (Theta searches again).
IN_FORM: dict[str, Callable[[str, int], Any | None]] = {"arima": arima_in_form, "ets": ets_in_form}


def classical_model(name: str, season: int, form: str = "") -> Any:
    """statsforecast's automatic model, or, given the form a retrain chose (model_form), that
    form alone: a champion refitted as it forecasts re-estimates its coefficients on the
    series as of now without searching again (AutoARIMA's search is ~2 s of a 150-month
    series; the fixed order's fit a tenth of it)."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    in_form = IN_FORM.get(name)
    model = in_form(form.strip(), season) if in_form else None
    if model is not None:
        return model
    automatic = {"ets": AutoETS, "theta": AutoTheta, "arima": AutoARIMA}
    return automatic[name](season_length=season)


def arima_form(fitted: Any) -> str:
    from statsforecast.arima import arima_string

    return str(arima_string(fitted.model_)).strip()


FORM_OF: dict[str, Callable[[Any], str]] = {
    "arima": arima_form,
    "ets": lambda fitted: str(fitted.model_.get("method", "ETS")),
    "theta": lambda fitted: f"Theta ({fitted.model_.get('modeltype', '')})",
}


def model_form(name: str, fitted: Any) -> str:
    """The form the automatic search chose, for the report: ETS(A,A,N), ARIMA(1,1,0), ..."""
    return FORM_OF[name](fitted)


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


def naive_forecasts(
    values: np.ndarray, origins: np.ndarray, horizon: int, steps: int, season: int
) -> tuple[np.ndarray, str]:
    return np.repeat(np.asarray(values)[origins][:, None], steps, axis=1), "last value"


def seasonal_forecasts(
    values: np.ndarray, origins: np.ndarray, horizon: int, steps: int, season: int
) -> tuple[np.ndarray, str]:
    return seasonal_naive(values, origins, horizon, steps, season), f"season {season}"


# The statistical forecasters that fit nothing, by name; the others are CLASSICAL.
UNFITTED = {"naive": naive_forecasts, "seasonal_naive": seasonal_forecasts}


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
    unfitted = UNFITTED.get(name)
    if unfitted is not None:
        return unfitted(values, origins, horizon, steps, season)
    return classical_forecasts(name, values, origins, horizon, steps, season, chosen=form)


def classical_skip(n_points: int, season: int) -> str:
    return (
        f"not fitted: over {CLASSICAL_MAX_POINTS} points" if n_points > CLASSICAL_MAX_POINTS else ""
    )


def seasonal_skip(n_points: int, season: int) -> str:
    return "no season (1): the same forecast as naive" if season == 1 else ""


# Why a statistical candidate does not compete on a series (empty when it does), by name.
SKIPS: dict[str, Callable[[int, int], str]] = {
    "seasonal_naive": seasonal_skip,
    **dict.fromkeys(CLASSICAL, classical_skip),
}


class StatisticalForecaster(Forecaster):
    """One of STATISTICAL, refitted on the series whenever it forecasts."""

    refits: ClassVar[bool] = True

    def __init__(self, name: str, season: int, form: str = "") -> None:
        self.name, self.season, self.form = name, season, form

    def forecasts(
        self,
        values: np.ndarray,
        origins: np.ndarray,
        horizon: int,
        steps: int,
        chosen_forms: bool = False,
        network_point: np.ndarray | None = None,
    ) -> np.ndarray:
        form = self.form if chosen_forms else ""
        return statistical_forecasts(self.name, values, origins, horizon, steps, self.season, form)[
            0
        ]

    @classmethod
    def absence(cls, name: str, plan: Plan) -> str:
        return SKIPS[name](plan.n_points, plan.season) if name in SKIPS else ""

    @classmethod
    def backtest(cls, name: str, trial: Trial, scores: Backtest) -> None:
        """At every validation and test origin; one that cannot be fitted on this series
        does not compete, and its note says why."""
        skip = SKIPS[name](len(trial.values), trial.season) if name in SKIPS else ""
        if skip:
            scores.notes[name] = skip
            return
        spec = trial.dataset.spec
        try:
            for block, origins in trial.blocks.items():
                forecasts, form = statistical_forecasts(
                    name, trial.values, origins, spec.horizon, spec.steps, trial.season
                )
                getattr(scores, block)[name] = forecasts
                scores.forms[name] = form or scores.forms.get(name, "")
        except Exception as exc:  # a model that cannot fit this series does not compete
            scores.validation.pop(name, None)
            scores.notes[name] = f"could not be fitted: {str(exc).splitlines()[0][:200]}"

    @classmethod
    def save(cls, staging: Path, sources: Sources) -> None:
        copy_spec(staging, sources)
