"""The one place that knows every kind of forecaster by name: which class a candidate or a
stored spec names (KINDS), the order candidates are backtested in, what a published
forecaster's version holds and how it is saved, and loading the forecaster a version
directory serves. Everything else asks a Forecaster, never which kind it is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from wavecast.errors import InvalidInputError, unusable
from wavecast.forecasters.combination import CombinationForecaster
from wavecast.forecasters.forecaster import (
    SPEC_FILE,
    Backtest,
    Forecaster,
    ForecasterSpec,
    Plan,
    Sources,
    Trial,
)
from wavecast.forecasters.linear import LinearForecaster, weights_fit
from wavecast.forecasters.network import NetworkForecaster, load_network
from wavecast.forecasters.statistical import STATISTICAL, StatisticalForecaster
from wavecast.model_files import MODEL_FILE
from wavecast.storage import DataDir

if TYPE_CHECKING:
    from wavecast.config import WindowSpec
    from wavecast.records import Manifest

NETWORK, LINEAR, COMBINATION = "network", "linear", "combination"
# Every candidate by name, in the order they are backtested: the combination weighs the
# others' validation forecasts, so it comes last.
KINDS: dict[str, type[Forecaster]] = {
    NETWORK: NetworkForecaster,
    LINEAR: LinearForecaster,
    **dict.fromkeys(STATISTICAL, StatisticalForecaster),
    COMBINATION: CombinationForecaster,
}
COMBINABLE = tuple(name for name in KINDS if name != COMBINATION)  # a combination's members
FALLBACK = "naive"  # scored when none of the candidates asked for could be
# How far a combination's stored member weights may sum from 1 (they are written summing to
# 1 in float64, then through JSON, which round-trips float64 exactly).
SHARES_TOLERANCE = 1e-9
# The candidates whose test scores are measured on the dataset's stored windows, under these
# metrics.score_split keys (the network as "model", as the plots call it).
WINDOW_KEYS = {NETWORK: "model", LINEAR: "linear"}


def kind_of(name: str) -> type[Forecaster]:
    """The class of candidate `name`; bad input, in one line, for a name no kind has."""
    if name not in KINDS:
        raise InvalidInputError(f"unknown forecaster {name!r}: one of {', '.join(KINDS)}")
    return KINDS[name]


def backtest_candidates(trial: Trial, scores: Backtest) -> None:
    """Each candidate the selection asks for, in KINDS' order; the fallback when none of
    them could be scored."""
    for name in (name for name in KINDS if name in trial.selection.candidates):
        kind_of(name).backtest(name, trial, scores)
    if not any(mse == mse for mse in scores.validation_mse().values()):
        kind_of(FALLBACK).backtest(FALLBACK, trial, scores)
        scores.notes[FALLBACK] = "stands in: none of the candidates asked for could be scored"


def nothing_competes(plans: Sequence[Plan]) -> str:
    """Why none of the candidates asked for can compete on any series `plans` describe (their
    selection's; the shortest and the longest series will do, each absence being monotonic
    in length), or "" when one can. A combination competes with two of its pool."""
    asked = plans[0].selection.candidates
    absent = {
        name: [kind_of(name).absence(name, plan) for plan in plans]
        for name in KINDS
        if name in asked and name != COMBINATION
    }
    if any(not all(whys) for whys in absent.values()):
        return ""
    reasons = [f"{name}: {whys[-1]}" for name, whys in absent.items()]
    if COMBINATION in asked:
        reasons.append("combination: none of its pool to weigh")
    return "; ".join(reasons)


def published_members(
    chosen: str, combined: tuple[str, ...], weights: tuple[float, ...]
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(members, their weights) of the chosen forecaster: the combination's, or itself."""
    return (combined, weights) if chosen == COMBINATION else ((chosen,), ())


def spec_of(
    chosen: str,
    season: int,
    members: tuple[str, ...],
    member_weights: tuple[float, ...],
    forms: dict[str, str],
    linear_weights: np.ndarray,
) -> ForecasterSpec | None:
    """What an evaluation stores of its chosen forecaster (SPEC_FILE); None for the network
    alone, which serves from its training's file."""
    if kind_of(chosen).served_file != SPEC_FILE:
        return None
    return ForecasterSpec(
        forecaster=chosen,
        season=season,
        members=members,
        forms=forms,
        weights=tuple(map(tuple, linear_weights.tolist())) if LINEAR in members else (),
        member_weights=member_weights,
    )


def served_file(chosen: str) -> str:
    """The file in a version directory that says what it serves: the network's model.keras,
    any other forecaster's JSON spec (the linear AR's with its weights, a combination's
    members and their weights)."""
    return kind_of(chosen).served_file


def save_published(staging: Path, chosen: str, members: Sequence[str], sources: Sources) -> None:
    """Copy what a version of the `chosen` forecaster serves into its staging dir, with the
    files its members need (a combination's network), each checked."""
    kind_of(chosen).save(staging, sources)
    for name in (name for name in members if name != chosen):
        kind_of(name).save_as_member(staging, sources)


def load_served(store: DataDir, version_dir: tuple[str, ...], manifest: Manifest) -> Forecaster:
    """The forecaster a version directory serves, loaded and tried the way it serves, or
    UnusableVersionError saying why (naming the file and what was expected, never what the
    file holds)."""
    version = version_dir[-1]
    if not store.exists(*version_dir, SPEC_FILE):
        if not store.exists(*version_dir, MODEL_FILE):
            raise unusable(version, f"it has neither {MODEL_FILE} nor {SPEC_FILE}")
        return load_network(store, version_dir, manifest)
    spec = stored_spec(store, version_dir, manifest.dataset.spec)
    check_recorded(spec, manifest, version)
    network = None
    if NETWORK in spec.members:
        if not store.exists(*version_dir, MODEL_FILE):
            why = f"its combination holds the network but it has no {MODEL_FILE}"
            raise unusable(version, why)
        network = load_network(store, version_dir, manifest)
    return from_spec(spec, network)


def check_recorded(spec: ForecasterSpec, manifest: Manifest, version: str) -> None:
    """A spec serves what its manifest records (the label every table and forecast shows, and
    the season, where recorded): an edited one would serve under another's name."""
    published = manifest.published
    if published is None:
        return
    season = "season" in published.model_fields_set and spec.season != published.season
    if spec.forecaster != published.forecaster or season:
        why = f"{SPEC_FILE} is not the forecaster or season its manifest.json records"
        raise unusable(version, why)


def from_spec(spec: ForecasterSpec, network: NetworkForecaster | None = None) -> Forecaster:
    """The forecaster a (checked) spec describes: its one member, or the combination of its
    members; `network`, the version's network, when the spec holds it."""
    members = [member_of(name, spec, network) for name in spec.members]
    if spec.members == (spec.forecaster,):
        return members[0]
    return CombinationForecaster(members, spec.member_weights, network)


def stored_spec(
    store: DataDir, version_dir: tuple[str, ...], windows: WindowSpec
) -> ForecasterSpec:
    """The version's spec, if it names known forecasters, or is a linear AR whose weights are
    finite and fit the version's windows (input_len + 1 by steps)."""
    version = version_dir[-1]
    try:
        spec = ForecasterSpec.model_validate_json(store.read_bytes(*version_dir, SPEC_FILE))
    except (ValidationError, UnicodeDecodeError):
        raise unusable(version, f"{SPEC_FILE} is not a forecaster spec") from None
    known = spec.forecaster in KINDS and set(spec.members) <= set(COMBINABLE)
    if not spec.members or not known or spec.season < 1:
        raise unusable(version, f"{SPEC_FILE} names no known statistical forecaster")
    if LINEAR in spec.members:
        shape = (windows.input_len + 1, windows.steps)
        if not weights_fit(spec.weights, shape):
            why = f"{SPEC_FILE} holds no finite linear AR weights of shape {shape}"
            why += " (or weights whose forecasts overflow)"
            raise unusable(version, why)
    shares = np.asarray(spec.member_weights, np.float64)
    if len(shares) and not (
        len(shares) == len(spec.members)
        and np.isfinite(shares).all()
        and ((shares >= 0) & (shares <= 1)).all()
        and abs(float(shares.sum()) - 1) <= SHARES_TOLERANCE  # shares of a weighted mean
    ):
        why = f"{SPEC_FILE} holds no finite weight per combined member (summing to 1)"
        raise unusable(version, why)
    return spec


MemberMaker = Callable[[str, ForecasterSpec, "NetworkForecaster | None"], Forecaster]


def network_member(
    name: str, spec: ForecasterSpec, network: NetworkForecaster | None
) -> Forecaster:
    assert network is not None, "a spec holding the network was loaded without it"
    return network


# How a stored spec's member is made, by name.
MEMBERS: dict[str, MemberMaker] = {
    NETWORK: network_member,
    LINEAR: lambda name, spec, network: LinearForecaster(spec.weights),
    **dict.fromkeys(
        STATISTICAL,
        lambda name, spec, network: StatisticalForecaster(
            name, spec.season, spec.forms.get(name, "")
        ),
    ),
}


def member_of(name: str, spec: ForecasterSpec, network: NetworkForecaster | None) -> Forecaster:
    """Member `name` of a stored spec (its own forecaster, when it has one member)."""
    return MEMBERS[name](name, spec, network)
