"""Control results and the decision: each control's verdict, a candidate's controls, acceptance.

**The statistic.** The effect-size gates compare one number: the minimum over
``statistic`` keys of the checks' scores (default: ``loss_recovered`` and ``iia``, i.e.
causal scrubbing and the weakest interchange intervention). Behaviour is not part of it:
a masked random network that mimics the target reproduces its behaviour by design, so
behaviour alone cannot tell a mechanism from a mimic.

**Acceptance** (:func:`decide`): adjusted p < ``alpha`` and every named threshold holds
(the checks' own thresholds, then every control's gate). A rejected hypothesis names
the controls and thresholds that rejected it. Everything is serialisable
(``to_json``) for the run store, the report and ``--json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.control.statistics import (
    MonteCarloTest,
    holm,
)

from mechsynth.synth.accept import ControlError, Thresholds
from mechsynth.synth.control.numbers import is_number, json_float, jsonable, number

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ControlResult:
    """One control's verdict on one hypothesis, with the numbers behind it.

    ``passed`` is None when the control did not apply (it is then reported, and it
    does not block acceptance unless the reason says the hypothesis claims nothing).
    """

    name: str
    passed: bool | None
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "numbers": jsonable(dict(self.numbers)),
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class CandidateControls:
    """Everything the control stage found about one candidate."""

    hypothesis: Hypothesis
    target: str
    statistic: float  # real-network statistic, as recomputed by the controls' score function
    real_scores: Mapping[str, Any]
    results: tuple[ControlResult, ...]
    significance: MonteCarloTest | None
    n_tested: int  # hypotheses scored in the run when the p-value's draws were planned
    n_required: int  # p-value draws needed for acceptance to be possible at that n_tested
    null_families: Mapping[str, int] = field(default_factory=dict)  # p-value draws: made, checked, redrawn

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.results if r.passed is False)

    def result(self, name: str) -> ControlResult | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def underpowered(self) -> bool:
        sig = self.significance
        if sig is None:
            return True
        return math.isfinite(sig.real) and not sig.stopped_early and sig.n_draws < self.n_required

    def to_json(self) -> dict[str, Any]:
        return {
            "hypothesis": self.hypothesis.to_json(),
            "target": self.target,
            "statistic": json_float(self.statistic),
            "real_scores": jsonable({k: v for k, v in self.real_scores.items() if is_number(v)}),
            "controls": [r.to_json() for r in self.results],
            "significance": self.significance.to_json() if self.significance else None,
            "n_tested": self.n_tested,
            "n_required": self.n_required,
            "underpowered": self.underpowered,
            "null_families": dict(self.null_families),
            "failed": list(self.failed),
        }


@dataclass(frozen=True)
class Decision:
    """The acceptance decision for one candidate."""

    hypothesis: Hypothesis
    accepted: bool
    p_value: float
    p_adjusted: float
    rejected_by: tuple[str, ...]  # control names, "threshold:<score>", "significance", "underpowered"
    controls: CandidateControls

    def to_json(self) -> dict[str, Any]:
        return {
            "hypothesis": self.hypothesis.to_json(),
            "accepted": self.accepted,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "rejected_by": list(self.rejected_by),
            "controls": self.controls.to_json(),
        }


@dataclass(frozen=True)
class Acceptance:
    """The run-level decision: Holm over every hypothesis scored, then every threshold."""

    decisions: tuple[Decision, ...]
    n_tested: int
    thresholds: Thresholds

    @property
    def accepted(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.accepted)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_tested": self.n_tested,
            "n_controlled": len(self.decisions),
            "n_accepted": len(self.accepted),
            "alpha": self.thresholds.alpha,
            "correction": "holm",
            "thresholds": self.thresholds.to_json(),
            "decisions": [d.to_json() for d in self.decisions],
        }


def blocked(cc: CandidateControls, thresholds: Thresholds) -> bool:
    """Whether anything other than significance already rejects the candidate."""
    return bool(cc.failed) or bool(_threshold_failures(cc, thresholds))


def _threshold_failures(cc: CandidateControls, thresholds: Thresholds) -> list[str]:
    out = []
    for key, minimum in thresholds.checks.items():
        value = number(cc.real_scores.get(key))
        if not value >= minimum:
            out.append(f"threshold:{key}")
    return out


def decide(candidates: Sequence[CandidateControls], n_tested: int, thresholds: Thresholds) -> Acceptance:
    """Holm over ``n_tested`` hypotheses (uncontrolled ones count with p = 1), then every threshold.

    ``n_tested`` must count every hypothesis the run scored, not only the candidates.
    """
    if n_tested < len(candidates):
        raise ControlError(f"n_tested={n_tested} is smaller than the {len(candidates)} candidates controlled")
    raw = {i: (cc.significance.p_value if cc.significance else 1.0) for i, cc in enumerate(candidates)}
    adjusted = holm(raw, max(1, n_tested)) if candidates else {}
    decisions = []
    for i, cc in enumerate(candidates):
        reasons = _threshold_failures(cc, thresholds) + list(cc.failed)
        sig = cc.significance
        if cc.underpowered:
            reasons.append("underpowered")
        if sig is not None and sig.stopped_early:
            reasons.append("significance")
        elif not adjusted[i] < thresholds.alpha:
            reasons.append("significance")
        decisions.append(
            Decision(cc.hypothesis, not reasons, raw[i], adjusted[i], tuple(dict.fromkeys(reasons)), cc)
        )
    return Acceptance(tuple(decisions), n_tested, thresholds)


def verdict_reason(decision: Decision) -> str:
    """One line: accepted with its p-values, or the controls and thresholds that rejected it."""
    cc = decision.controls
    p = f"p={decision.p_value:.3g}, Holm-adjusted {decision.p_adjusted:.3g} over {cc.n_tested} scored"
    if decision.accepted:
        idle = [r.name for r in cc.results if r.passed is None]
        if idle:  # a control that tested nothing is not a pass
            return f"every applicable control passed (not applicable: {', '.join(idle)}); {p}"
        return f"every control passed; {p}"
    parts = []
    for name in decision.rejected_by:
        res = cc.result(name)
        if res is not None:
            parts.append(f"{name}: {res.reason}")
        elif name == "underpowered":
            got = cc.significance.n_draws if cc.significance else 0
            parts.append(f"underpowered: {got} null draws of the {cc.n_required} needed")
        else:
            parts.append(name)
    return "rejected by " + "; ".join(parts) + f" ({p})"


def flat_numbers(decision: Decision) -> dict[str, float | None]:
    """Every scalar number of a decision, flattened to ``control.number`` keys (for the run store)."""
    cc = decision.controls
    out: dict[str, float | None] = {
        "accepted": float(decision.accepted),
        "p_value": decision.p_value,
        "p_adjusted": decision.p_adjusted,
        "n_tested": float(cc.n_tested),
        "n_required": float(cc.n_required),
        "statistic": finite_or_none(cc.statistic),
    }
    if cc.significance is not None:
        out["null_draws"] = float(cc.significance.n_draws)
        out["null_exceed"] = float(cc.significance.n_exceed)
        out["significance_statistic"] = finite_or_none(cc.significance.real)
    for res in cc.results:
        out[f"{res.name}.passed"] = None if res.passed is None else float(res.passed)
        for key, value in res.numbers.items():
            if is_number(value):
                out[f"{res.name}.{key}"] = finite_or_none(float(value))
    return out


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
