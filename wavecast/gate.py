"""The champion gate: a pure decision on whether a candidate model may replace the champion."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from wavecast.config import GatePolicy


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    promote: bool
    reasons: tuple[str, ...]
    skill: float


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
) -> Decision:
    """Champion MSE must be measured on the candidate's own test split for a fair comparison.

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
    if not candidate_mse <= limit:
        promote = False
        reasons.append(
            f"MSE {candidate_mse:.3g} worse than champion {champion_mse:.3g} "
            f"beyond tolerance {policy.tolerance:.0%}"
        )
    else:
        reasons.append(
            f"MSE {candidate_mse:.3g} within {policy.tolerance:.0%} of champion "
            f"{champion_mse:.3g} on the same test windows"
        )
    return Decision(promote=promote, reasons=tuple(reasons), skill=skill)
