"""The champion gate: a pure decision on whether a candidate model may replace the champion."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from wavecast.config import GatePolicy
from wavecast.metrics import Metrics

SAME_WINDOWS = "on the same test windows"


class Decision(BaseModel):
    """The gate's verdict; stored as the version's decision.json with what it was compared
    with: the champion's version and, when it could be re-scored, its scores on this
    version's test windows (both None for a first model, and in older records)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    promote: bool
    reasons: tuple[str, ...]
    skill: float
    compared_with: str | None = None
    champion_rescored: Metrics | None = None


def skill_score(candidate_mse: float, reference_mse: float) -> float:
    """1 - MSE ratio: > 0 beats the reference, 1 is perfect; 0 when the reference is perfect."""
    if reference_mse == 0.0:
        return 0.0 if candidate_mse == 0.0 else float("-inf")
    return 1.0 - candidate_mse / reference_mse


def decide_promotion(
    candidate_mse: float,
    persistence_mse: float,
    champion_mse: float | None,
    policy: GatePolicy,
    windows: str = SAME_WINDOWS,
    mase: tuple[float | None, float | None] = (None, None),
) -> Decision:
    """Champion MSE must be measured on the candidate's own test split for a fair comparison;
    `windows` says where it was measured, and `mase` (candidate, champion) adds their MASE on
    those windows to the reason.

    A first model must pass the same skill test as any other: serving nothing beats serving
    a forecaster worse than repeating the last value. A score that is not a finite number
    (a diverged fit) never promotes, whatever the policy.
    """
    skill = skill_score(candidate_mse, persistence_mse)
    if not math.isfinite(candidate_mse):
        return Decision(
            promote=False,
            reasons=(f"test MSE is {candidate_mse}: not a finite score",),
            skill=skill,
        )
    reasons: list[str] = [] if champion_mse is not None else ["no champion yet"]
    promote = True
    if policy.require_skill and not skill > 0:
        promote = False
        reasons.append(f"no skill over persistence ({skill:.3f} <= 0)")
    else:
        reasons.append(f"skill over persistence {skill:.3f}")
    if champion_mse is None:
        return Decision(promote=promote, reasons=tuple(reasons), skill=skill)
    limit = champion_mse * (1 + policy.tolerance)
    scaled = mase_words(*mase)
    if not candidate_mse <= limit:
        promote = False
        reasons.append(
            f"MSE {candidate_mse:.3g} worse than champion {champion_mse:.3g} "
            f"beyond tolerance {policy.tolerance:.0%} {windows}{scaled}"
        )
    else:
        reasons.append(
            f"MSE {candidate_mse:.3g} within {policy.tolerance:.0%} of champion "
            f"{champion_mse:.3g} {windows}{scaled}"
        )
    return Decision(promote=promote, reasons=tuple(reasons), skill=skill)


def mase_words(candidate: float | None, champion: float | None) -> str:
    """The reason's MASE pair (": MASE 0.81 vs champion 0.93"); empty when either is unknown."""
    if candidate is None or champion is None:
        return ""
    return f": MASE {candidate:.3g} vs champion {champion:.3g}"
