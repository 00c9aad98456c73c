"""The champion gate as a pure decision table."""

from __future__ import annotations

import math

import pytest

from wavecast.gate import GatePolicy, decide_promotion, skill_score

pytestmark = pytest.mark.unit

STRICT = GatePolicy(require_skill=True)
NO_SKILL_NEEDED = GatePolicy()  # the default: the best candidate serves, naive included
HALF = GatePolicy(tolerance=0.5)


@pytest.mark.parametrize(
    ("candidate", "persistence", "champion", "policy", "promote", "reason_words"),
    [
        pytest.param(0.5, 1.0, None, STRICT, True, ["no champion"], id="first-with-skill"),
        pytest.param(5.0, 1.0, None, STRICT, False, ["no skill"], id="first-without-skill"),
        pytest.param(5.0, 1.0, None, NO_SKILL_NEEDED, True, ["no champion"], id="first-no-check"),
        pytest.param(1.0, 1.0, 10.0, STRICT, False, ["no skill"], id="ties-persistence"),
        pytest.param(2.0, 1.0, 10.0, STRICT, False, ["no skill"], id="worse-than-persistence"),
        pytest.param(2.0, 1.0, 10.0, NO_SKILL_NEEDED, True, ["within"], id="skill-not-required"),
        pytest.param(0.12, 1.0, 0.1, STRICT, False, ["worse than champion"], id="regresses"),
        pytest.param(0.105, 1.0, 0.1, STRICT, True, ["within"], id="inside-tolerance"),
        pytest.param(0.05, 1.0, 0.1, STRICT, True, ["within"], id="improves"),
        pytest.param(3.0, 4.0, 2.0, HALF, True, ["within"], id="exactly-at-tolerance"),
        pytest.param(3.5, 4.0, 2.0, HALF, False, ["worse than champion"], id="past-tolerance"),
        pytest.param(2.0, 1.0, 1.0, STRICT, False, ["no skill", "worse"], id="both-fail"),
    ],
)
def test_decision_table(
    candidate: float,
    persistence: float,
    champion: float | None,
    policy: GatePolicy,
    promote: bool,
    reason_words: list[str],
) -> None:
    """Promote iff skill (if required) and (no champion or MSE <= champion * (1 + tol))."""
    decision = decide_promotion(candidate, persistence, champion, policy)
    assert decision.promote is promote
    text = " | ".join(decision.reasons).lower()
    for word in reason_words:
        assert word in text
    assert decision.skill == pytest.approx(1 - candidate / persistence)


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [(0.25, 1.0, 0.75), (1.0, 1.0, 0.0), (2.0, 1.0, -1.0), (0.0, 4.0, 1.0), (0.0, 0.0, 0.0)],
)
def test_skill_score_by_hand(candidate: float, reference: float, expected: float) -> None:
    """Skill is 1 - candidate/reference; a perfect reference with a perfect candidate is 0."""
    assert skill_score(candidate, reference) == pytest.approx(expected)


def test_skill_against_a_perfect_reference_is_minus_infinity() -> None:
    """Any error against an error-free reference is infinitely worse, never promoted."""
    assert skill_score(1e-9, 0.0) == -math.inf
    assert not decide_promotion(1e-9, 0.0, 1.0, STRICT).promote


def test_negative_tolerance_is_refused() -> None:
    """A policy that would demand improvement by construction is a config error."""
    with pytest.raises(ValueError, match="tolerance"):
        GatePolicy(tolerance=-0.1)


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("champion", [None, 1.0])
@pytest.mark.parametrize("policy", [STRICT, NO_SKILL_NEEDED, GatePolicy(tolerance=1e308)])
def test_a_score_that_is_not_a_finite_number_never_promotes(
    score: float, champion: float | None, policy: GatePolicy
) -> None:
    """A diverged fit (NaN or infinite MSE) is refused under every policy, first model or not."""
    decision = decide_promotion(score, 1.0, champion, policy)
    assert not decision.promote
    assert "not a finite score" in decision.reasons[0]


def test_a_nan_persistence_or_champion_promotes_nothing() -> None:
    """Comparisons with NaN are False: a NaN reference must not read as 'no objection'."""
    assert not decide_promotion(0.5, math.nan, None, STRICT).promote
    assert not decide_promotion(0.5, 1.0, math.nan, STRICT).promote
