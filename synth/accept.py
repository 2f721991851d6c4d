"""Accept: the one acceptance rule — its thresholds, its statistic, a candidate's status.

A candidate is accepted only when every named threshold holds: the checks' own bars
(behaviour against the network, causal scrubbing's loss recovered, the weakest
interchange intervention) and then every frivolous-circuit control's gate with a
Holm-adjusted p-value below ``alpha``. Every bar lives in :class:`Thresholds`, with its
default, and nowhere else: the loop's checks, the control stage, the false-positive
suite's re-verification and the README's table all read it.

Two numbers summarise a candidate:

* :func:`statistic` — the minimum of named scores, NaN when any is missing or undefined.
  The controls' effect-size gates compare ``statistic(scores, Thresholds.statistic)``
  (loss recovered and IIA: behaviour alone cannot tell a mechanism from a mimic); the
  p-value compares ``min(behaviour, that)``.
* :func:`strength` — the same minimum over behaviour, loss recovered and IIA with an
  undefined score counted as -1: the order in which runs, reports and notebooks rank
  candidates.

This module sits below the loop and the control stage (both import it; it imports
neither), so the verdict type a control stage returns, :class:`ControlVerdict`, lives here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The check scores every accepted hypothesis must clear, in the order reports list them.
CHECK_SCORES = ("behaviour", "loss_recovered", "iia")
# Fields of Thresholds that decide the checks' verdict (a stored verdict is reused under the same ones).
_CHECK_FIELDS = ("behaviour", "loss_recovered", "iia", "prefilter_behaviour", "prefilter_ablation")


class ControlError(ValueError):
    """A control or a threshold that cannot be used on this hypothesis or target (one-line message)."""


class CandidateStatus(enum.StrEnum):
    """What happened to a candidate; stored as its string value."""

    REJECTED = "rejected"  # never scored: malformed, ill-typed, no correspondence
    FILTERED = "filtered"  # failed the cheap prefilter
    PASSED = "passed"  # met every check threshold; the controls decide next (never stored)
    FAILED = "failed"  # scored, below a threshold or a control
    ACCEPTED = "accepted"  # every threshold and control held
    ERROR = "error"  # a check raised


# Statuses that count as a hypothesis scored (the multiple-testing correction counts them all).
SCORED = (CandidateStatus.FILTERED, CandidateStatus.FAILED, CandidateStatus.ACCEPTED)


@dataclass(frozen=True)
class Thresholds:
    """Every named threshold of the acceptance rule, with its default (shown in every report).

    The checks (on fresh inputs, against the network's outputs, not the labels):
    ``behaviour`` is the fraction of read positions where the program's output equals the
    network's; ``loss_recovered`` is causal scrubbing's; ``iia`` the weakest interchange
    intervention's accuracy. Before them, a cheap prefilter: ``prefilter_behaviour`` on the
    observed inputs, and ``prefilter_ablation``, the loss recovered when only the claimed
    locations are kept (below it causal scrubbing cannot succeed either). The controls'
    gates follow (see :mod:`synth.control`).
    """

    behaviour: float = 0.98
    loss_recovered: float = 0.8
    iia: float = 0.8
    prefilter_behaviour: float = 0.9
    prefilter_ablation: float = 0.5
    alpha: float = 0.01  # familywise error rate, after Holm over every hypothesis scored
    statistic: tuple[str, ...] = ("loss_recovered", "iia")  # the gates' statistic = min of these scores
    min_gap_random_networks: float = 0.3  # real statistic - best random/shuffled copy
    null_quantile: float = 0.95  # the null quantile the real statistic must clear ...
    min_gap_null: float = 0.1  # ... by this much (null correspondences, null programs), or by
    null_gap_share: float = 0.5  # ... this share of what the quantile leaves short of 1, if smaller
    min_necessity: float = 0.5  # share of full-resampling damage caused by ablating the claims
    min_node_cost: float = 0.02  # cost of dropping one located node (see Minimality)
    min_behaviour_broader: float = 0.95  # behaviour on the broader distribution
    min_network_accuracy: float = 0.9  # a broader-distribution part counts if the network handles it
    min_gap_edge_popup: float = 0.3  # real statistic - masked random network

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ControlError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.statistic:
            raise ControlError("the statistic needs at least one score name")
        if not 0 < self.null_quantile <= 1:
            raise ControlError(f"null_quantile must be in (0, 1], got {self.null_quantile}")
        if not 0 <= self.null_gap_share <= 1:
            raise ControlError(f"null_gap_share must be in [0, 1], got {self.null_gap_share}")
        object.__setattr__(self, "statistic", tuple(self.statistic))

    @property
    def checks(self) -> dict[str, float]:
        """The minimum of each check score on the real network."""
        return {name: getattr(self, name) for name in CHECK_SCORES}

    def failures(self, scores: Mapping[str, Any]) -> list[str]:
        """One line per check score below its minimum (undefined scores fail, except a loss
        recovered the checks declared undefined with a reason: see `undefined_scores`)."""
        out = []
        skip = undefined_scores(scores)
        for name, minimum in self.checks.items():
            if name in skip:
                continue
            value = number(scores.get(name))
            if not value >= minimum:
                out.append(f"{name} {_fmt(value)} < {minimum}")
        return out

    def check_json(self) -> dict[str, float]:
        """The thresholds that decide the checks' verdict (what a run's options record)."""
        return {k: getattr(self, k) for k in _CHECK_FIELDS}

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return data | {"statistic": list(self.statistic)}


@dataclass(frozen=True)
class ControlVerdict:
    """A control stage's verdict on one candidate, with the numbers behind it."""

    passed: bool
    reason: str
    numbers: Mapping[str, float] = field(default_factory=dict)


# A score the checks declare undefined carries its reason in words under this key (see
# synth.check.scoring.MIN_RESAMPLED_LOSS): loss recovered is 0/0 when resampling the whole input,
# even across lengths, changes nothing. Acceptance then decides on behaviour and interchange.
UNDEFINED = {"loss_recovered": "loss_recovered_undefined"}


def undefined_scores(scores: Mapping[str, Any] | None) -> dict[str, str]:
    """{score name: reason} for each score the checks declared undefined (with a reason)."""
    if not scores:
        return {}
    return {name: str(scores[key]) for name, key in UNDEFINED.items() if scores.get(key)}


def undefined_note(scores: Mapping[str, Any] | None) -> str | None:
    """The sentence reports print for an undefined loss recovered, or None."""
    reason = undefined_scores(scores).get("loss_recovered")
    if reason is None:
        return None
    return f"loss recovered undefined: {reason}; accepted on behaviour and interchange"


def number(value: Any) -> float:
    """``value`` as a float; NaN for anything that is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def statistic(scores: Mapping[str, Any] | None, keys: Sequence[str] = CHECK_SCORES) -> float:
    """The minimum of the named scores; NaN if any is missing or undefined.

    A hypothesis that could not be scored (``{"error": ...}``) has statistic NaN, which
    the p-value counts against the real hypothesis (conservative).
    """
    if scores is None:
        return math.nan
    skip = undefined_scores(scores)
    keys = [k for k in keys if k not in skip] or list(keys)
    values = [number(scores.get(k)) for k in keys]
    if any(not math.isfinite(v) for v in values):
        return math.nan
    return min(values)


def strength(scores: Mapping[str, Any]) -> float:
    """How good a scored candidate is, for ranking: the weakest check score, undefined as -1."""
    skip = undefined_scores(scores)
    values = [number(scores.get(k)) for k in CHECK_SCORES if k not in skip]
    return min(v if not math.isnan(v) else -1.0 for v in values)


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3f}"
