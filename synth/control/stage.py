"""Control: frivolous-circuit controls and the statistical acceptance rule.

A hypothesis that passes the checks (behaviour, causal scrubbing, interchange) has
shown that it is *consistent* with the network. That is not yet evidence that it is
*what the network does*: a search that tries many programs and placements will find
some that fit by chance, a subnetwork of a random network can mimic a task
(Ramanujan et al. 2020), and a circuit that looks complete in isolation may not be
the one the full network uses. Every candidate that passes the checks therefore goes
through the controls below; each returns its numbers and a verdict, and the final
decision needs all of them plus a multiple-testing-corrected p-value.

Controls (each a pluggable :class:`Control` with a ``name``):

``random_networks``
    The same localisation and checks on re-initialised and weight-shuffled copies of
    the target (``models.reinitialized`` / ``models.shuffled``, several seeds). On
    each copy the hypothesis is scored as claimed *and* after re-localising its
    program there; the better of the two is the copy's score. Passes when the real
    network's statistic beats the best copy by ``min_gap_random_networks``.
``null_correspondences``
    An effect-size gate (not the p-value): the same program with each testable
    variable moved to a random location of the same kind that exists in the model
    (heads for head variables, MLP outputs for MLP variables, a random residual subspace
    of the same size when the claim names dims), in layer order when possible. Primitive
    inputs (``tokens``/``indices`` at the embeddings) stay where they are: they are given,
    not claimed. Draws identical to the claimed correspondence are left out (they are
    not another placement); the real statistic must beat the ``null_quantile`` quantile
    of the others by :func:`required_gap` (``min_gap_null``, or less where the quantile is
    within ``min_gap_null / null_gap_share`` of a perfect score). When no other placement
    exists the gate passes vacuously and says so.
``null_programs``
    An effect-size gate on the first ``program_draws`` draws of the p-value's program
    null (below): the real p-value statistic must beat their ``null_quantile`` quantile
    by :func:`required_gap`.
``necessity``
    Resample-ablate the claimed internal locations inside the *full* network (every
    other component left clean) and measure the share of the damage that resampling
    the whole input does (``necessity_loss_fraction`` from the checks' node-level
    resample ablation). A claimed mechanism the network does not need fails.
``minimality``
    Drop each located variable in turn: resample its location unconditionally inside
    the network, and remove it from the correspondence and rescore. A node for which
    neither costs ``min_node_cost`` is superfluous, and so is a program variable the
    output does not depend on; either fails the control (see :class:`Minimality`).
``broader_distribution``
    Behaviour (program output vs the network's output, mistakes included) on every
    input length and the task's broader distribution, restricted to the parts of that
    distribution the network itself still handles (accuracy >= ``min_network_accuracy``).
``edge_popup`` (opt-in: ``--edge-popup``)
    A top-k weight mask is learned on a randomly initialised network of the same
    architecture so that it mimics the target (:mod:`synth.control.edge_popup`); the
    hypothesis must explain the real network better than it "explains" that masked
    random network, by ``min_gap_edge_popup``.

**The statistic.** The effect-size gates compare one number: the minimum over
``statistic`` keys of the checks' scores (default: ``loss_recovered`` and ``iia``, i.e.
causal scrubbing and the weakest interchange intervention). Behaviour is not part of it:
a masked random network that mimics the target reproduces its behaviour by design, so
behaviour alone cannot tell a mechanism from a mimic.

**Significance: random programs, not random placements.** Each candidate gets an exact
Monte Carlo p-value ``(1 + #exceedances) / (1 + N)`` whose null draws are random
programs of the same size and node types (:func:`random_program_like`), each localised
by the same localiser (placed at the real claims when the stage has no localiser). The
statistic is ``S(h) = min(behaviour(h), loss_recovered(h), iia(h))``, where behaviour is
the program's output against the *network's* output on cached inputs
(:class:`BehaviourOracle`). Why not random placements of the same program: a small tracr
model has 5-20 distinct placements, so a placement p-value can never go below about
``1/|space|``, far above ``alpha / n_tested`` — exactly right hypotheses were rejected.
Why behaviour is in ``S``: without it the localiser places a random program wherever it
fits best and the causal checks cannot separate it; with it, random programs essentially
never match the network's output, and the test has power.

*Cheap bound.* ``S`` is a minimum that includes behaviour, and behaviour depends on the
program alone, so it costs one interpreter run and no forward pass. For each draw the
bound comes first; only when it reaches the real ``S`` is the draw localised and checked.
A bound below the real value cannot be an exceedance, so skipping is exact and
``floor(n_tested / alpha)`` draws are affordable.

*The null, exactly.* Draws are i.i.d. from the program generator conditioned on computing
something else than the real program: a draw whose every variable takes the real
program's values on the cached inputs (the identical text, or e.g. a query the predicate
ignores) is the real hypothesis written differently, not a rival, and is redrawn
(reported as ``program_redrawn_as_real``). A *different* program that matches the
output still counts, and ties count against the hypothesis. The p-value is exact under
"the real hypothesis' statistic is exchangeable with that of a random other program of
its shape". Holm–Bonferroni then runs over *every* hypothesis the run scored
(``n_tested``, counted by the run store): see :mod:`synth.control.statistics` for why ``N`` is
sized as ``floor(n_tested / alpha)`` (capped by ``max_null_draws``; a capped test is
reported underpowered and not accepted) and why draws stop early (Besag–Clifford) once
acceptance has become impossible. ``ControlStage.finalize`` tops up the draws of
surviving candidates when the run has scored more hypotheses than it had when their
controls ran. Random networks, placements and edge-popup give tens of draws at most and
cannot certify p-values near ``alpha / n_tested``; they are effect-size gates, each with
a named threshold.

What the p-value does not say: that the claimed *locations* do the work. A weight-shuffled
network whose output happens to be a simple function of its input is matched by a small
program far better than by random programs of its shape (measured: p = 1/(1 + N) on
shuffled copies of tracr:frac_prevs); such hypotheses fail ``necessity``. The p-value
singles out the program; the gates tie it to the network, and acceptance needs both.

**Acceptance** (:func:`decide`): adjusted p < ``alpha`` and every named threshold holds
(the checks' own thresholds, then every control's gate). A rejected hypothesis names
the controls and thresholds that rejected it. Everything is serialisable
(``to_json``) for the run store, the report and ``--json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES
from dsl.hypothesis import Hypothesis
from dsl.location import Location
from synth.control.statistics import (
    MonteCarloTest,
    empirical_p_value,
    holm,
    required_null_draws,
    sequential_p_value,
    stopping_exceedances,
)

if TYPE_CHECKING:
    from dsl import Program
    from models import Target
    from synth.control.edge_popup import EdgePopupConfig


ScoreFn = Callable[["Target", Hypothesis], Mapping[str, Any]]
LocalizeFn = Callable[["Target", "Program"], "Hypothesis | None"]
NetworkFactory = Callable[["Target", int], "Target"]
NecessityFn = Callable[["Target", Hypothesis, str], Mapping[str, Any]]  # (target, hypothesis, ablation)


class ControlError(ValueError):
    """A control cannot run on this hypothesis or target (one-line message)."""


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Every named threshold of the acceptance rule, with its default."""

    alpha: float = 0.01  # familywise error rate, after Holm over every hypothesis scored
    statistic: tuple[str, ...] = ("loss_recovered", "iia")  # compared statistic = min of these scores
    checks: Mapping[str, float] = field(
        default_factory=lambda: {"behaviour": 0.95, "loss_recovered": 0.8, "iia": 0.8}
    )  # minimum value of each named check score on the real network
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
        object.__setattr__(self, "checks", MappingProxyType(dict(self.checks)))

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return data | {"checks": dict(self.checks), "statistic": list(self.statistic)}


@dataclass(frozen=True)
class ControlConfig:
    """Which controls run and how many draws they take."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    network_seeds: tuple[int, ...] = (0, 1, 2)
    network_kinds: tuple[str, ...] = ("reinitialized", "shuffled")
    correspondence_draws: int = 50  # draws for the placement effect-size gate (null_correspondences)
    program_draws: int = 20  # first draws of the p-value's program null, for the null_programs gate
    min_null_draws: int = 99  # never fewer p-value draws than this, however few hypotheses
    max_null_draws: int = 20_000  # cap on p-value draws; above it a test is reported underpowered
    n_broader: int = 64  # inputs per length (and from the broader distribution)
    n_behaviour: int = 32  # inputs per length on which the p-value's behaviour is computed (cached)
    edge_popup: bool = False
    edge_popup_config: EdgePopupConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_null_draws < self.min_null_draws:
            raise ControlError("max_null_draws must be >= min_null_draws")
        if self.n_behaviour < 1:
            raise ControlError(f"n_behaviour must be >= 1, got {self.n_behaviour}")

    def to_json(self) -> dict[str, Any]:
        skip = ("thresholds", "edge_popup_config")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        data["network_seeds"], data["network_kinds"] = list(self.network_seeds), list(self.network_kinds)
        data["thresholds"] = self.thresholds.to_json()
        data["edge_popup_config"] = self.edge_popup_config.to_json() if self.edge_popup_config else None
        return data


# --- results ------------------------------------------------------------------------------------


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
            "numbers": _jsonable(dict(self.numbers)),
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
            "statistic": _json_float(self.statistic),
            "real_scores": _jsonable({k: v for k, v in self.real_scores.items() if _is_number(v)}),
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


# --- the context a control runs in --------------------------------------------------------------


class ControlContext:
    """What a control may use: the target, the hypothesis, memoised scoring and the nulls.

    Scores are memoised per (network, hypothesis), so the effect-size gates and the
    p-value's draws share work, and a finite null space is never scored twice.
    """

    def __init__(self, stage: ControlStage, target: Target, hypothesis: Hypothesis) -> None:
        self.stage = stage
        self.config = stage.config
        self.thresholds = stage.config.thresholds
        self.target = target
        self.hypothesis = hypothesis
        self._key = zlib.crc32(str(hypothesis).encode())
        self._draws: dict[tuple[str, int], Hypothesis | None] = {}
        self._programs: dict[tuple[str, int], Program | None] = {}
        self.max_redraws = 100
        self.n_redrawn = 0  # program draws rejected as the real program written differently
        self.checked: set[int] = set()  # program draws that needed the full checks
        self._testable: tuple[str, ...] | None = None
        self.space = LocationSpace.of(target)
        self.real_scores = self.score(target, hypothesis)
        self.real = self.statistic(self.real_scores)

    # scoring
    def score(self, target: Target, hypothesis: Hypothesis) -> Mapping[str, Any]:
        return self.stage._score(target, hypothesis)

    def statistic(self, scores: Mapping[str, Any] | None) -> float:
        return statistic_value(scores, self.thresholds.statistic)

    def statistic_of(self, target: Target, hypothesis: Hypothesis | None) -> float:
        """The statistic of a hypothesis; -inf when there is none or the checks refuse it.

        A hypothesis the checks reject outright (a CheckError: e.g. a variable read before
        the layer that writes it) is what the loop would store as an error, not as an
        explanation, so it never beats the real one. Undefined numbers stay NaN and count
        against the real hypothesis.
        """
        if hypothesis is None:
            return -math.inf
        scores = self.score(target, hypothesis)
        if "error" in scores:
            return -math.inf
        return self.statistic(scores)

    @property
    def behaviour(self) -> BehaviourOracle:
        return self.stage._oracle(self.target)

    def significance_real(self) -> float:
        """The p-value's statistic of the real hypothesis: min(behaviour, checks statistic)."""
        bound = self.behaviour.bound(self.hypothesis.program, self.hypothesis.program)
        if math.isnan(bound):
            return math.nan
        return min(bound, self.statistic_of(self.target, self.hypothesis))

    def significance_of_draw(
        self, index: int, real: float, cutoff: float | None = None
    ) -> tuple[float, bool]:
        """The p-value's statistic of program draw ``index``, and whether the full checks ran.

        The cheap bound (behaviour on the cached inputs) comes first: the statistic is a
        minimum that includes it, so a bound below ``cutoff`` (default ``real``: then it cannot
        be an exceedance) is returned as is (localisation and checks skipped). Otherwise the
        program is localised (or, without a localiser, placed at the real hypothesis'
        locations) and the full statistic is returned.
        """
        cutoff = real if cutoff is None else cutoff
        draw = self.null_program_draw(index)
        if draw is None:
            return math.nan, False  # no program other than the real one: counts against it
        bound = self.behaviour.bound(draw, self.hypothesis.program)
        if math.isnan(bound):
            return math.nan, False
        if bound < cutoff:
            return bound, False
        self.checked.add(index)
        return min(bound, self.statistic_of(self.target, self.place(draw))), True

    def place(self, program: Program) -> Hypothesis | None:
        """A null program's placement: the localiser's, or the real claims' when there is no localiser."""
        if self.stage.localize_fn is not None:
            return self.localize(self.target, program)
        corr = {v: loc for v, loc in self.hypothesis.correspondence.items() if v in program.variables}
        return Hypothesis(program, corr)

    def localize(self, target: Target, program: Program) -> Hypothesis | None:
        if self.stage.localize_fn is None:
            return None
        return self.stage._localize(target, program)

    def network(self, kind: str, seed: int) -> Target:
        return self.stage._network(self.target, kind, seed)

    # null draws (deterministic in the stage seed, the hypothesis, the family and the index)
    def rng(self, family: str, index: int) -> np.random.Generator:
        fam = zlib.crc32(family.encode())
        return np.random.default_rng([self.config.seed, self._key, fam, index])

    def null_correspondence(self, index: int, testable_only: bool = False) -> Hypothesis | None:
        """The program at a random placement (of every claim, or only of the testable ones)."""
        key = ("correspondence-testable" if testable_only else "correspondence", index)
        if key not in self._draws:
            movable = self.testable if testable_only else self.located
            self._draws[key] = random_correspondence(self.hypothesis, self.space, self.rng(*key), movable)
        return self._draws[key]

    def null_program_draw(self, index: int) -> Program | None:
        """Random same-shape program ``index`` that computes something else than the real one.

        Drawn from :func:`random_program_like` by rejection: a draw whose every variable
        takes the real program's values on the cached inputs is the real hypothesis written
        differently (identical text, or e.g. a query the predicate ignores) and is redrawn.
        None when ``max_redraws`` draws in a row were all the real program.
        """
        key = ("program", index)
        if key not in self._programs:
            rng = self.rng(*key)
            found = None
            for _ in range(self.max_redraws):
                try:
                    program = random_program_like(self.hypothesis.program, rng)
                except ControlError:
                    break
                if not self.behaviour.same_as(program, self.hypothesis.program):
                    found = program
                    break
                self.n_redrawn += 1
            self._programs[key] = found
        return self._programs[key]

    def null_program(self, index: int) -> Hypothesis | None:
        """Program draw ``index``, placed like the real one (None if it cannot be)."""
        program = self.null_program_draw(index)
        return None if program is None else self.place(program)

    @property
    def located(self) -> tuple[str, ...]:
        """Located variables that are claims (not primitive inputs)."""
        return tuple(v for v in self.hypothesis.correspondence if v not in PRIMITIVES)

    @property
    def testable(self) -> tuple[str, ...]:
        """Located variables that resampling can change.

        The checks resample between inputs of the same length (the networks take no
        padding), so a variable that is a function of length and position only (tracr's
        ``length``, ``opp_index``, ...) has the same value in the source and the base
        input: resampling it is a no-op and the causal checks cannot test its claim.
        """
        if self._testable is None:
            oracle = self.behaviour
            values = oracle.values(self.hypothesis.program)
            lengths = [len(x) for x in oracle.inputs]
            self._testable = tuple(v for v in self.located if _varies_within_length(values.get(v), lengths))
        return self._testable

    def ablation_for(self, variables: Sequence[str]) -> str:
        """Resample ablation, unless none of ``variables`` can be changed by resampling (then zero)."""
        return "resample" if any(v in self.testable for v in variables) else "zero"


class Control(Protocol):
    """A control stage: ``run`` returns a verdict with its numbers."""

    name: str

    def run(self, ctx: ControlContext) -> ControlResult: ...


# --- the controls -------------------------------------------------------------------------------


class RandomNetworks:
    """Same localisation and checks on re-initialised and weight-shuffled copies."""

    name = "random_networks"

    def run(self, ctx: ControlContext) -> ControlResult:
        per_copy: dict[str, Any] = {}
        stats = []
        for kind in ctx.config.network_kinds:
            for seed in ctx.config.network_seeds:
                copy = ctx.network(kind, seed)
                claimed = ctx.statistic_of(copy, ctx.hypothesis)
                relocalised = ctx.statistic_of(copy, ctx.localize(copy, ctx.hypothesis.program))
                best = _nanmax([claimed, relocalised])
                per_copy[f"{kind}[{seed}]"] = {
                    "as_claimed": claimed,
                    "relocalised": relocalised,
                    "best": best,
                }
                stats.append(best)
        defined = [s for s in stats if math.isfinite(s)]
        numbers: dict[str, Any] = {
            "real": ctx.real,
            "copies": per_copy,
            "n_undefined": len(stats) - len(defined),
        }
        if not stats:
            return ControlResult(self.name, None, "no network kinds or seeds configured", numbers)
        if not defined:
            # No copy gives the statistic a value: the checks find nothing to explain there.
            numbers.update(best_control=None, gap=None)
            return ControlResult(self.name, True, "no copy has a defined score (nothing to explain)", numbers)
        best = max(defined)
        gap = ctx.real - best
        numbers.update(best_control=best, gap=gap)
        ok = gap >= ctx.thresholds.min_gap_random_networks
        return ControlResult(
            self.name,
            ok,
            f"real {ctx.real:.3f} vs best copy {best:.3f} (gap {gap:.3f}, need "
            f">= {ctx.thresholds.min_gap_random_networks})",
            numbers,
        )


class NullCorrespondences:
    """Effect-size gate: the real placement must beat other placements of the same program.

    Draws place the testable claims at random layer-ordered locations of the same kind.
    A draw identical to the real correspondence is not another placement and is left
    out (counted in ``n_same_as_real``); with no distinct placement left the gate passes
    vacuously and says so. This is not the p-value: on a small model there are only a
    handful of placements, too few for a p-value near ``alpha / n_tested``.
    """

    name = "null_correspondences"

    def run(self, ctx: ControlContext) -> ControlResult:
        if not ctx.located:
            why = "the hypothesis locates no internal variable"
            return ControlResult(self.name, None, why, {"real": ctx.real})
        if not ctx.testable:
            why = "no located variable can be changed by resampling (the checks cannot see its placement)"
            return ControlResult(self.name, None, why, {"real": ctx.real})
        n = ctx.config.correspondence_draws
        draws = [ctx.null_correspondence(i, testable_only=True) for i in range(n)]
        placed = [d for d in draws if d is not None]  # None: no layer-ordered placement turned up
        others = distinct_placements(ctx.hypothesis, placed)
        stats = [ctx.statistic_of(ctx.target, h) for h in others]
        numbers = {
            "real": ctx.real,
            "n_draws": len(placed),
            "n_same_as_real": len(placed) - len(others),
            "n_distinct": len(set(others)),
            "n_none": len(draws) - len(placed),
            "n_undefined": sum(math.isnan(s) for s in stats),
            "draws": stats,
        }
        return _gate(self.name, ctx, ctx.real, stats, numbers, "other placements",
                     "no placement other than the claimed one exists: the gate passes vacuously")


class NullPrograms:
    """Effect-size gate on the first ``program_draws`` draws of the p-value's program null.

    Each draw's value is the p-value's statistic where the full checks ran, and the cheap
    behaviour bound (never below the statistic) where they were skipped. They are skipped
    only where the bound is already below the gate's cutoff (real - ``min_gap_null``): a draw
    that agrees with the network's output often enough to matter is checked in full. A mostly
    constant output (tracr's detect_pattern: random programs agree on ~90% of positions) would
    otherwise put the quantile at the agreement, not at what those programs explain. The
    quantile can only be overestimated, so the gate can only err towards rejecting.
    """

    name = "null_programs"

    def run(self, ctx: ControlContext) -> ControlResult:
        real = ctx.significance_real()
        cutoff = real - ctx.thresholds.min_gap_null
        values, checked = [], 0
        for i in range(ctx.config.program_draws):
            value, full = ctx.significance_of_draw(i, real, cutoff)
            values.append(value)
            checked += full
        numbers = {
            "real": real,
            "n_draws": len(values),
            "n_checked": checked,
            "n_redrawn_as_real": ctx.n_redrawn,
            "n_undefined": sum(math.isnan(s) for s in values),
            "draws": values,
        }
        return _gate(self.name, ctx, real, values, numbers, "random programs",
                     "no program draws configured")


def distinct_placements(real: Hypothesis, draws: Sequence[Hypothesis]) -> list[Hypothesis]:
    """The draws whose correspondence differs from the real one (duplicates among them kept)."""
    return [d for d in draws if d.correspondence != real.correspondence]


def _gate(
    name: str,
    ctx: ControlContext,
    real: float,
    stats: Sequence[float],
    numbers: dict[str, Any],
    what: str,
    vacuous: str,
) -> ControlResult:
    """Real statistic vs the ``null_quantile`` quantile of ``stats``; passes vacuously on no draws."""
    th = ctx.thresholds
    # Effect sizes are compared among draws with a defined statistic (undefined ones are
    # counted in the numbers; the p-value, by contrast, counts them against the hypothesis).
    defined = [x for x in stats if not math.isnan(x)]
    q = _quantile(defined, th.null_quantile)
    gap = real - q if defined else math.nan
    numbers.update(
        mean=_mean(stats), max=_nanmax(stats) if stats else None, quantile=q, gap=gap,
        p_value=empirical_p_value(real, stats),
    )
    if not stats:
        return ControlResult(name, True, vacuous, numbers)
    if not defined:
        return ControlResult(name, False, f"no draw of the {what} has a defined score", numbers)
    need = required_gap(q, th)
    numbers.update(required_gap=need)
    ok = gap > 0 and gap >= need
    return ControlResult(
        name,
        ok,
        f"real {real:.3f} vs {th.null_quantile:.0%} quantile of {len(defined)} {what} {q:.3f} "
        f"(gap {gap:.3f}, need > 0 and >= {need:.3g})",
        numbers,
    )


def required_gap(quantile: float, th: Thresholds) -> float:
    """The effect size a null gate asks for: ``min_gap_null``, or ``null_gap_share`` of what
    the null quantile leaves short of a perfect score, whichever is smaller.

    Where the network's output is mostly one value, random programs of the hypothesis' shape
    agree with it most of the time and score close to 1 (tracr's detect_pattern: 0.91): no
    hypothesis, however exact, could then clear an absolute gap of 0.1, and the gate would
    measure the ceiling, not the hypothesis. The share keeps the demand proportional (explain
    at least half of what the null leaves unexplained). The p-value is unaffected, and a tie
    with the quantile never passes.
    """
    return min(th.min_gap_null, th.null_gap_share * max(0.0, 1.0 - quantile))


class Necessity:
    """Resample-ablating the claimed internal locations in the full network must break it."""

    name = "necessity"

    def run(self, ctx: ControlContext) -> ControlResult:
        if not ctx.located:
            return ControlResult(self.name, False, "the hypothesis claims no internal location", {})
        # Primitive inputs are excluded: ablating the embeddings breaks any network and says
        # nothing about the claimed mechanism.
        internal = ctx.hypothesis.with_correspondence(
            {v: ctx.hypothesis.correspondence[v] for v in ctx.located}
        )
        ablation = ctx.ablation_for(ctx.located)
        scores = ctx.stage._necessity(ctx.target, internal, ablation)
        fraction = _number(scores.get("necessity_loss_fraction"))
        numbers = {
            "necessity_loss_fraction": fraction,
            "ablation": ablation,
            "ablated": [str(ctx.hypothesis.correspondence[v]) for v in ctx.located],
        }
        if "error" in scores:
            numbers["error"] = scores["error"]
        if not math.isfinite(fraction):
            why = scores.get("error") or "resampling the input changes nothing"
            return ControlResult(self.name, False, f"necessity undefined ({why})", numbers)
        ok = fraction >= ctx.thresholds.min_necessity
        return ControlResult(
            self.name,
            ok,
            f"{ablation}-ablating the claimed locations does {fraction:.0%} of the damage of "
            f"{ablation}-ablating the input (need >= {ctx.thresholds.min_necessity:.0%})",
            numbers,
        )


class Minimality:
    """Every located node must matter; dead program variables are superfluous by construction.

    A node's cost is measured two ways, both reported: ``ablation_cost``, the share of
    the full-resampling damage done by resampling its location alone, unconditionally,
    inside the otherwise clean network (does the network need what sits there?) — zero
    ablation for a variable resampling cannot change (see ``ControlContext.testable``); and
    ``unclaimed_cost``, the drop of the statistic when the variable is removed from the
    correspondence (does claiming it explain anything the rest does not?). The second
    alone would flag every link of a chain: the checks treat an unclaimed location on a
    claimed path as part of that path. A node is superfluous when *both* costs are below
    ``min_node_cost``.
    """

    name = "minimality"

    def run(self, ctx: ControlContext) -> ControlResult:
        import networkx as nx

        program = ctx.hypothesis.program
        live = nx.ancestors(program.graph(), program.output) | {program.output}
        dead = [v for v in program.variables if v not in live and v not in PRIMITIVES]
        corr = ctx.hypothesis.correspondence
        ablation: dict[str, float] = {}
        unclaimed: dict[str, float] = {}
        kinds: dict[str, str] = {}
        for v in ctx.located:
            kinds[v] = ctx.ablation_for([v])
            alone = ctx.stage._necessity(
                ctx.target, ctx.hypothesis.with_correspondence({v: corr[v]}), kinds[v]
            )
            ablation[v] = _number(alone.get("necessity_loss_fraction"))
            reduced = ctx.hypothesis.with_correspondence({k: loc for k, loc in corr.items() if k != v})
            unclaimed[v] = ctx.real - ctx.statistic_of(ctx.target, reduced)
        floor = ctx.thresholds.min_node_cost
        superfluous = [v for v in ctx.located if not (ablation[v] >= floor or unclaimed[v] >= floor)]
        numbers = {
            "real": ctx.real,
            "ablation_cost": ablation,
            "ablation": kinds,
            "unclaimed_cost": unclaimed,
            "superfluous": superfluous,
            "dead_variables": dead,
        }
        if not ctx.located and not dead:
            return ControlResult(self.name, None, "no located node to drop", numbers)
        bad = superfluous + dead
        if bad:
            return ControlResult(
                self.name,
                False,
                f"superfluous: {', '.join(bad)} (resampling it costs < {floor} of the damage and of the "
                "statistic, or the output does not depend on it)",
                numbers,
            )
        return ControlResult(self.name, True, f"every located node costs >= {floor} when dropped", numbers)


class BroaderDistribution:
    """Behaviour on every length and the task's broader distribution the network still handles."""

    name = "broader_distribution"

    def run(self, ctx: ControlContext) -> ControlResult:
        from synth.check.behaviour import behaviour

        target, task, n = ctx.target, ctx.target.task, ctx.config.n_broader
        seed = ctx.config.seed + 4242
        parts: dict[str, list[list]] = {
            f"length={length}": task.sample(n, seed + length, length=length)
            for length in range(task.min_len, task.max_len + 1)
        }
        if task.broader_generator is not None:
            parts["broader"] = task.broader_sample(n, seed)
        numbers: dict[str, Any] = {"parts": {}}
        handled: list[list] = []
        for name, inputs in parts.items():
            acc = target.accuracy(inputs)
            handles = not (acc < ctx.thresholds.min_network_accuracy)  # NaN (no labels): use it
            numbers["parts"][name] = {"network_accuracy": acc, "used": handles}
            if handles:
                handled += inputs
        if not handled:
            return ControlResult(
                self.name, None, "the network handles no part of the broader distribution", numbers
            )
        beh = behaviour(target, ctx.hypothesis.program, handled)
        numbers.update(behaviour=beh.positions, behaviour_exact=beh.exact, n_inputs=beh.n)
        ok = beh.positions >= ctx.thresholds.min_behaviour_broader
        used = [k for k, v in numbers["parts"].items() if v["used"]]
        return ControlResult(
            self.name,
            ok,
            f"behaviour {beh.positions:.3f} on {beh.n} inputs ({', '.join(used)}; need "
            f">= {ctx.thresholds.min_behaviour_broader})",
            numbers,
        )


class EdgePopup:
    """The hypothesis must not explain a masked random network (edge-popup) as well as the target."""

    name = "edge_popup"

    def run(self, ctx: ControlContext) -> ControlResult:
        from synth.control.edge_popup import EdgePopupConfig, fit_edge_popup

        cfg = ctx.config.edge_popup_config or EdgePopupConfig(seed=ctx.config.seed)
        fitted = ctx.stage._edge_popup(ctx.target, cfg, fit_edge_popup)
        masked = fitted.target
        claimed = ctx.statistic_of(masked, ctx.hypothesis)
        relocalised = ctx.statistic_of(masked, ctx.localize(masked, ctx.hypothesis.program))
        best = _nanmax([claimed, relocalised])
        numbers = {**fitted.to_json(), "real": ctx.real, "as_claimed": claimed, "relocalised": relocalised}
        if not math.isfinite(best):
            numbers["gap"] = None
            return ControlResult(self.name, True, "the masked network gives the statistic no value", numbers)
        gap = ctx.real - best
        numbers["gap"] = gap
        ok = gap >= ctx.thresholds.min_gap_edge_popup
        return ControlResult(
            self.name,
            ok,
            f"masked random network mimics the target on {fitted.agreement:.0%} of outputs; "
            f"real {ctx.real:.3f} vs masked {best:.3f} "
            f"(gap {gap:.3f}, need >= {ctx.thresholds.min_gap_edge_popup})",
            numbers,
        )


def default_controls(config: ControlConfig) -> tuple[Control, ...]:
    """The controls every candidate goes through (edge-popup only when enabled)."""
    controls: list[Control] = [
        Necessity(),
        Minimality(),
        BroaderDistribution(),
        NullCorrespondences(),
        NullPrograms(),
        RandomNetworks(),
    ]
    if config.edge_popup:
        controls.append(EdgePopup())
    return tuple(controls)


# --- the stage ----------------------------------------------------------------------------------


class ControlStage:
    """Runs every control on every candidate that passed the checks, then decides.

    The loop builds one stage per run and calls::

        cc = stage.run(target, hypothesis, n_tested=store.n_scored())   # per candidate
        acceptance = stage.finalize(candidates, n_tested=store.n_scored())  # at the end

    ``score_fn(target, hypothesis)`` must return the checks' scores (default:
    ``synth.check.scoring.score`` with ``n_inputs`` inputs and a seed independent of the
    search's, so the controls score on fresh inputs); ``localize_fn(target, program)``
    the loop's localiser (None disables re-localisation and null programs);
    ``networks`` maps a network kind to ``factory(target, seed)`` (default
    ``models.reinitialized`` / ``models.shuffled``).
    """

    def __init__(
        self,
        config: ControlConfig | None = None,
        *,
        score_fn: ScoreFn | None = None,
        localize_fn: LocalizeFn | None = None,
        necessity_fn: NecessityFn | None = None,
        networks: Mapping[str, NetworkFactory] | None = None,
        controls: Sequence[Control] | None = None,
        n_inputs: int = 256,
    ) -> None:
        self.config = config or ControlConfig()
        seed = 7_000_003 + self.config.seed  # fresh inputs: not the search's seed
        self.score_fn = score_fn or _default_score_fn(n_inputs, seed)
        self.necessity_fn = necessity_fn or _default_necessity_fn(n_inputs, seed)
        self.localize_fn = localize_fn
        self.networks = dict(networks) if networks is not None else _default_networks()
        self.controls = tuple(controls) if controls is not None else default_controls(self.config)
        self._scores: dict[tuple[int, Hypothesis], Mapping[str, Any]] = {}
        self._localised: dict[tuple[int, str], Hypothesis | None] = {}
        self._copies: dict[tuple[int, str, int], Target] = {}
        self._popups: dict[tuple[int, Any], Any] = {}
        self._keep: list[Any] = []  # targets whose id() keys the caches stay alive
        self._contexts: dict[tuple[str, Hypothesis], ControlContext] = {}
        self._oracles: dict[int, BehaviourOracle] = {}

    # memoised services for ControlContext
    def _score(self, target: Target, hypothesis: Hypothesis) -> Mapping[str, Any]:
        key = (id(target), hypothesis)
        if key not in self._scores:
            self._keep.append(target)
            try:
                self._scores[key] = self.score_fn(target, hypothesis)
            except ValueError as e:  # CheckError and friends: this hypothesis cannot be scored here
                self._scores[key] = {"error": f"{type(e).__name__}: {e}"}
        return self._scores[key]

    def _necessity(self, target: Target, hypothesis: Hypothesis, ablation: str) -> Mapping[str, Any]:
        try:
            return self.necessity_fn(target, hypothesis, ablation)
        except ValueError as e:
            return {"error": f"{type(e).__name__}: {e}"}

    def _localize(self, target: Target, program: Program) -> Hypothesis | None:
        key = (id(target), str(program))
        if key not in self._localised:
            self._keep.append(target)
            try:
                self._localised[key] = self.localize_fn(target, program) if self.localize_fn else None
            except ValueError:
                self._localised[key] = None  # the procedure finds no placement: nothing to score
        return self._localised[key]

    def _network(self, target: Target, kind: str, seed: int) -> Target:
        key = (id(target), kind, seed)
        if key not in self._copies:
            if kind not in self.networks:
                raise ControlError(f"unknown network control {kind!r} (known: {', '.join(self.networks)})")
            self._keep.append(target)
            self._copies[key] = self.networks[kind](target, seed)
        return self._copies[key]

    def _oracle(self, target: Target) -> BehaviourOracle:
        if id(target) not in self._oracles:
            self._keep.append(target)
            oracle = BehaviourOracle(target, self.config.n_behaviour, self.config.seed + 31337)
            self._oracles[id(target)] = oracle
        return self._oracles[id(target)]

    def _edge_popup(self, target: Target, cfg: Any, fit: Callable[..., Any]) -> Any:
        key = (id(target), cfg)
        if key not in self._popups:
            random_target = self._network(target, "reinitialized", 10_000 + cfg.seed)
            self._popups[key] = fit(target, random_target, cfg)
        return self._popups[key]

    # the stage
    def run(
        self,
        target: Target,
        hypothesis: Hypothesis,
        *,
        n_tested: int = 1,
        real_scores: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> CandidateControls:
        """Every control on one candidate, then its pooled significance test (draws sized from n_tested).

        ``real_scores`` are the loop's check scores (used for the named check thresholds;
        default: the controls' own rescoring). ``deadline`` is a ``time.monotonic()``
        value after which the pooled draws stop (the test is then underpowered).
        """
        ctx = ControlContext(self, target, hypothesis)
        self._contexts[(target.name, hypothesis)] = ctx
        self._keep.append(target)
        results = []
        for control in self.controls:
            start = time.perf_counter()
            try:
                res = control.run(ctx)
            except ControlError as e:
                res = ControlResult(control.name, False, f"could not run: {e}")
            results.append(dataclasses.replace(res, seconds=time.perf_counter() - start))
        n_required = self.required_draws(n_tested)
        sig, families = self._significance(ctx, n_required, None, deadline)
        return CandidateControls(
            hypothesis=hypothesis,
            target=target.name,
            statistic=ctx.real,
            real_scores=dict(real_scores if real_scores is not None else ctx.real_scores),
            results=tuple(results),
            significance=sig,
            n_tested=n_tested,
            n_required=n_required,
            null_families=families,
        )

    def required_draws(self, n_tested: int) -> int:
        """Pooled null draws for a run that has scored ``n_tested`` hypotheses (clipped to the config)."""
        need = required_null_draws(max(1, n_tested), self.config.thresholds.alpha)
        return max(self.config.min_null_draws, need)

    def _significance(
        self, ctx: ControlContext, n_required: int, start: MonteCarloTest | None, deadline: float | None
    ) -> tuple[MonteCarloTest, dict[str, int]]:
        alpha = self.config.thresholds.alpha
        n_planned = min(n_required, self.config.max_null_draws)
        real = ctx.significance_real()

        def draw(j: int) -> float:
            return ctx.significance_of_draw(j, real)[0]

        def out_of_time() -> bool:
            return deadline is not None and time.monotonic() > deadline

        stop_after = stopping_exceedances(n_planned, alpha)
        test = sequential_p_value(
            real, draw, n_planned, stop_after=stop_after, start=start, interrupt=out_of_time
        )
        families = {
            "program": test.n_draws,
            "program_checked": len(ctx.checked),  # draws checked in full (bound reached a cutoff)
            "program_redrawn_as_real": ctx.n_redrawn,
        }
        return test, families

    def finalize(
        self, candidates: Sequence[CandidateControls], n_tested: int, *, deadline: float | None = None
    ) -> Acceptance:
        """Top up the pooled draws of candidates that can still be accepted, then :func:`decide`."""
        need = self.required_draws(n_tested)
        topped = []
        for cc in candidates:
            ctx = self._contexts.get((cc.target, cc.hypothesis))
            sig = cc.significance
            if (
                ctx is not None
                and sig is not None
                and not sig.stopped_early
                and sig.n_draws < need
                and not _blocked(cc, self.config.thresholds)
            ):
                sig, fams = self._significance(ctx, need, sig, deadline)
                cc = dataclasses.replace(
                    cc, significance=sig, n_tested=n_tested, n_required=need, null_families=fams
                )
            elif cc.n_tested != n_tested:
                cc = dataclasses.replace(cc, n_tested=n_tested, n_required=need)
            topped.append(cc)
        return decide(topped, n_tested, self.config.thresholds)


def _blocked(cc: CandidateControls, thresholds: Thresholds) -> bool:
    """Whether anything other than significance already rejects the candidate."""
    return bool(cc.failed) or bool(_threshold_failures(cc, thresholds))


def _threshold_failures(cc: CandidateControls, thresholds: Thresholds) -> list[str]:
    out = []
    for key, minimum in thresholds.checks.items():
        value = _number(cc.real_scores.get(key))
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


# --- the behaviour oracle (the p-value's cheap bound) ---------------------------------------------


class BehaviourOracle:
    """The p-value's cheap part: program output vs the network's output on cached inputs.

    ``n_per_length`` inputs of every length and the network's decoded predictions on
    them are computed once per target; after that a program's behaviour costs one run of
    the DSL interpreter and no forward pass. ``bound(program)`` is the fraction of
    readout positions where the program's output equals the network's; a position where
    the program outputs None counts as a disagreement (a program cannot score by saying
    nothing), and a program that does not evaluate gets -inf (the checks would refuse
    it). It depends on the program only, never on a placement, and it is one of the terms
    of the minimum that is the p-value's statistic, so it is an upper bound of it.
    """

    def __init__(self, target: Target, n_per_length: int, seed: int) -> None:
        task = target.task
        self.target = target
        self.inputs: list[list] = []
        for length in range(task.min_len, task.max_len + 1):
            self.inputs += [list(x) for x in task.sample(n_per_length, seed + length, length=length)]
        self.network = target.predict(self.inputs)
        self.readout = [target.readout_positions(len(x)) for x in self.inputs]
        self._values: dict[str, dict[str, list] | None] = {}
        self._outputs: dict[str, list | None] = {}
        self._batches: dict[tuple[str, ...], Any] = {}  # encoded inputs per set of program literals
        self._bounds: dict[tuple[str, str], float] = {}

    def values(self, program: Program) -> dict[str, list]:
        """Every non-selector variable's values, flattened over inputs and positions ({} if it fails)."""
        every = self._every(program)
        if every is None:
            return {}
        return {
            v: [x for row in rows for x in row]
            for v, rows in every.items()
            if program.kind(v) != "selector"
        }

    def _every(self, program: Program) -> dict[str, list] | None:
        """Every variable's values (selectors included); None when the program does not evaluate."""
        import dsl

        return self._memo(self._values, program, lambda: dsl.evaluate_all(program, self.inputs))

    def _output(self, program: Program) -> list | None:
        """The output's values only (decoding every selector costs most of an evaluation).

        Same result as ``dsl.evaluate``, with the encoded inputs reused across programs
        that mention the same literals (encoding is most of what remains).
        """
        from dsl.interpret import decode, dtypes, encode, run

        def compute() -> list:
            symbols = tuple(sorted(set(map(repr, program.literals()))))
            if symbols not in self._batches:
                if len(self._batches) > 256:
                    self._batches.clear()
                self._batches[symbols] = encode(self.inputs, symbols=program.literals())
            batch = self._batches[symbols]
            values = run(program, batch)
            return decode(values[program.output], dtypes(program)[program.output], batch)

        return self._memo(self._outputs, program, compute)

    @staticmethod
    def _memo(cache: dict[str, Any], program: Program, compute: Callable[[], Any]) -> Any:
        from dsl.errors import DSLError

        key = str(program)
        if key not in cache:
            try:
                cache[key] = compute()
            except (DSLError, ValueError, TypeError, ZeroDivisionError):
                cache[key] = None
            if len(cache) > 4096:  # draws are rarely revisited: keep memory bounded
                cache.pop(next(iter(cache)))
        return cache[key]

    def same_as(self, program: Program, real: Program) -> bool:
        """Whether ``program`` is ``real`` written differently: every variable equal on the inputs."""
        if program == real:
            return True
        if set(program.variables) != set(real.variables):
            return False
        out, real_out = self._output(program), self._output(real)
        if out is None or real_out is None or out != real_out:
            return False  # a different output already makes it a different hypothesis
        a, b = self._every(program), self._every(real)
        return a is not None and b is not None and all(a[v] == b[v] for v in real.variables)

    def bound(self, program: Program, real: Program | None = None) -> float:
        """Agreement with the network at the read positions where ``real``'s output is defined.

        The positions are fixed by the hypothesis under test (as the checks compare only
        where its program is defined, e.g. tracr's detect_pattern before a full pattern),
        so the real hypothesis and every null draw are measured on the same positions;
        there a draw's None still counts as a disagreement.
        """
        from models.target import outputs_equal

        key = (str(program), str(real) if real is not None else "")
        if key not in self._bounds:
            out = self._output(program)
            mask_out = self._output(real) if real is not None else None
            if out is None:
                self._bounds[key] = -math.inf
            else:
                kind = self.target.task.output_kind
                agree = total = 0
                for j, (net, prog, read) in enumerate(zip(self.network, out, self.readout)):
                    if mask_out is not None:
                        read = [i for i in read if mask_out[j][i] is not None]
                    total += len(read)
                    agree += sum(prog[i] is not None and outputs_equal(net[i], prog[i], kind) for i in read)
                self._bounds[key] = agree / total if total else math.nan
            if len(self._bounds) > 100_000:
                self._bounds.pop(next(iter(self._bounds)))
        return self._bounds[key]


def _varies_within_length(values: Sequence[Any] | None, lengths: Sequence[int]) -> bool:
    """Whether a variable takes two values at the same position of two inputs of the same length."""
    if values is None:
        return True  # unknown: assume the checks can test it
    seen: dict[tuple[int, int], Any] = {}
    i = 0
    for length in lengths:
        for pos in range(length):
            v = values[i]
            i += 1
            key = (length, pos)
            if key in seen and seen[key] != v:
                return True
            seen.setdefault(key, v)
    return False


# --- null generators ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationSpace:
    """The locations a model offers, by kind: heads per layer, MLP outputs, residual width."""

    n_layers: int
    n_heads: int
    d_model: int
    has_mlp: bool = True

    @classmethod
    def of(cls, target: Target) -> LocationSpace:
        cfg = target.model.cfg
        return cls(
            int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model), not getattr(cfg, "attn_only", False)
        )

    def random_like(self, loc: Location, rng: np.random.Generator) -> Location:
        """A random location of the same kind (same hook type, random layer/head/dims of equal size)."""
        comp = loc.component
        hook = loc.hook
        if comp in ("attn", "mlp") and loc.layer is not None:
            hook = re.sub(r"^blocks\.\d+\.", f"blocks.{int(rng.integers(self.n_layers))}.", hook)
        head = int(rng.integers(self.n_heads)) if loc.head is not None else None
        dims = None
        if loc.dims is not None:
            dims = tuple(sorted(int(d) for d in rng.choice(self.d_model, size=len(loc.dims), replace=False)))
        return Location(hook, head, dims)


def _located_parents(program: Program, located: Sequence[str]) -> dict[str, set[str]]:
    """For each located variable, the nearest located variables it is computed from."""
    return {v: set(program.nearest_ancestors(v, located)) for v in located}


def random_correspondence(
    hypothesis: Hypothesis,
    space: LocationSpace,
    rng: np.random.Generator,
    movable: Sequence[str] | None = None,
    tries: int = 2000,
) -> Hypothesis | None:
    """The program with each ``movable`` variable (default: every located non-primitive one)
    at a random location of its kind, in an order the network can compute.

    Rejection sampling, so the draw is uniform over the layer-ordered placements; None
    when there is nothing to move or no layer-ordered placement turned up in ``tries``.
    """
    corr = dict(hypothesis.correspondence)
    movable = [v for v in (movable if movable is not None else corr) if v in corr and v not in PRIMITIVES]
    if not movable:
        return None
    parents = _located_parents(hypothesis.program, list(corr))
    for _ in range(tries):
        candidate = dict(corr)
        for v in movable:
            candidate[v] = space.random_like(corr[v], rng)
        if _respects_order(candidate, parents):
            return hypothesis.with_correspondence(candidate)
    return None


def _respects_order(corr: Mapping[str, Location], parents: Mapping[str, set[str]]) -> bool:
    for v, ps in parents.items():
        ov = corr[v].order
        for p in ps:
            op = corr[p].order
            if ov is not None and op is not None and not op < ov:
                return False
    return True


def random_program_like(program: Program, rng: np.random.Generator, tries: int = 200) -> Program:
    """A random program with the same number of nodes and the same primitive at each node.

    Each node keeps its primitive and encoding; its variable arguments are redrawn from
    the variables defined before it (sequences for sequence slots, preferring the
    original argument's encoding; selectors for selector slots), its functions from the
    registry (parameter-free families, one-parameter families with a parameter drawn
    from small integers and the program's own literals, and the program's own
    functions), its comparisons from the comparison names. Literal values are kept.
    Draws that do not type-check are redrawn.
    """
    from dsl import registry
    from dsl.errors import DSLError
    from dsl.program import COMPARISONS, Fn, Node, Program

    literals = {0, 1, 2, 3}
    own_fns: dict[int, list[Any]] = {1: [], 2: []}
    for _, node in program.assignments:
        for arg in node.args:
            if isinstance(arg, Fn):
                own_fns.setdefault(arg.arity, []).append(arg)
                literals.update(
                    p for p in arg.params if isinstance(p, (int, str)) and not isinstance(p, bool)
                )
    pools: dict[int, list[Any]] = {}
    for arity in (1, 2):
        pool: list[Any] = list(own_fns.get(arity, []))
        for fam in registry.functions(arity):
            if fam.name in ("table", "expr"):
                continue  # open-ended families: parameters cannot be drawn meaningfully
            if not fam.params:
                pool.append(Fn(fam.name, arity, ()))
            elif len(fam.params) == 1:
                pool.extend(Fn(fam.name, arity, (c,)) for c in sorted(literals, key=str))
        pools[arity] = pool

    def pick(items: Sequence[Any]) -> Any:
        return items[int(rng.integers(len(items)))]

    last: Exception | None = None
    for _ in range(tries):
        kinds: dict[str, str] = {p: "categorical" for p in PRIMITIVES}
        assignments = []
        try:
            for name, node in program.assignments:
                args = []
                for arg, param in zip(node.args, node.primitive.signature):
                    if param.kind == "sop":
                        want = program.kind(arg) if arg in program.variables else "categorical"
                        seqs = [v for v, k in kinds.items() if k != "selector"]
                        same = [v for v in seqs if kinds[v] == want]
                        args.append(pick(same or seqs))
                    elif param.kind == "selector":
                        sels = [v for v, k in kinds.items() if k == "selector"]
                        args.append(pick(sels) if sels else arg)
                    elif param.kind in ("fn1", "fn2"):
                        args.append(pick(pools[1 if param.kind == "fn1" else 2]))
                    elif param.kind == "pred" and isinstance(arg, str):
                        args.append(pick(COMPARISONS))
                    else:
                        args.append(arg)
                new = Node(node.op, tuple(args), node.encoding)
                assignments.append((name, new))
                kinds[name] = "selector" if new.is_selector else (node.encoding or "categorical")
            return Program(tuple(assignments))
        except (DSLError, ValueError, TypeError) as e:
            last = e
    raise ControlError(f"could not draw a random program shaped like this one in {tries} tries: {last}")


# --- the loop's controls stage ------------------------------------------------------------------


class LoopControls:
    """The synthesis loop's controls stage (``synth.loop.Controls``), backed by :class:`ControlStage`.

    ``check`` runs every control on a candidate that passed the checks and decides with
    Holm over every hypothesis the run has scored so far (``n_tested``) and over every
    candidate controlled so far. ``finalize(n_tested)`` re-decides all of them at the end
    of the run (topping up null draws) when the loop goes on after an acceptance.
    ``results()`` / ``to_json()`` give every control's numbers for the report.
    """

    def __init__(
        self,
        config: ControlConfig | None = None,
        *,
        localize_fn: LocalizeFn | None | str = "default",
        min_seconds: float = 120.0,
        **stage_options: Any,
    ) -> None:
        config = config or ControlConfig()
        # The pooled draws of one candidate may run this long even past the search budget:
        # a test cut short can only reject, so a spent budget would otherwise mean "accept nothing".
        self.min_seconds = min_seconds
        if localize_fn == "default":
            from synth.localize import Localizer

            localize_fn = Localizer(per_length=64, seed=config.seed)
        self.stage = ControlStage(config, localize_fn=localize_fn, **stage_options)  # type: ignore[arg-type]
        self.candidates: list[CandidateControls] = []
        th = config.thresholds
        self.name = (
            f"frivolous-circuit controls ({', '.join(c.name for c in self.stage.controls)}; "
            f"Holm over every hypothesis scored, alpha={th.alpha})"
        )

    def check(
        self,
        target: Target,
        hypothesis: Hypothesis,
        scores: Mapping[str, Any],
        *,
        n_tested: int,
        deadline: float | None,
    ) -> Any:
        from synth.loop import ControlVerdict

        floor = time.monotonic() + self.min_seconds
        deadline = None if deadline is None else max(deadline, floor)
        cc = self.stage.run(target, hypothesis, n_tested=n_tested, real_scores=scores, deadline=deadline)
        self.candidates.append(cc)
        n = max(n_tested, len(self.candidates))
        decision = decide(self.candidates, n, self.stage.config.thresholds).decisions[-1]
        return ControlVerdict(decision.accepted, verdict_reason(decision), flat_numbers(decision))

    def finalize(self, n_tested: int, *, deadline: float | None = None) -> Acceptance:
        return self.stage.finalize(self.candidates, max(n_tested, len(self.candidates)), deadline=deadline)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.stage.config.to_json(), "candidates": [c.to_json() for c in self.candidates]}


def verdict_reason(decision: Decision) -> str:
    """One line: accepted with its p-values, or the controls and thresholds that rejected it."""
    cc = decision.controls
    p = f"p={decision.p_value:.3g}, Holm-adjusted {decision.p_adjusted:.3g} over {cc.n_tested} scored"
    if decision.accepted:
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
        "statistic": _finite_or_none(cc.statistic),
    }
    if cc.significance is not None:
        out["null_draws"] = float(cc.significance.n_draws)
        out["null_exceed"] = float(cc.significance.n_exceed)
        out["significance_statistic"] = _finite_or_none(cc.significance.real)
    for res in cc.results:
        out[f"{res.name}.passed"] = None if res.passed is None else float(res.passed)
        for key, value in res.numbers.items():
            if _is_number(value):
                out[f"{res.name}.{key}"] = _finite_or_none(float(value))
    return out


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --- the false-positive suite -------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What the suite needs from one run: how many hypotheses were accepted, the best statistic."""

    network: str
    accepted: int
    best_statistic: float
    n_scored: int
    seconds: float
    best_hypothesis: str | None = None
    best_behaviour: float = math.nan  # best agreement with the network's output, any candidate
    accepted_hypotheses: tuple[str, ...] = ()  # each as text (``Hypothesis.parse`` reads it back)
    # Candidates that met every check threshold and so went on to the controls: what a run
    # without controls would have accepted (it stops at the first of them).
    passed_checks: int = 0
    # Per accepted hypothesis on a copy: is it true of that copy? (:func:`verify_on_fresh_inputs`)
    verification: tuple[Mapping[str, Any], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "accepted": self.accepted,
            "best_statistic": _json_float(self.best_statistic),
            "n_scored": self.n_scored,
            "seconds": round(self.seconds, 2),
            "best_hypothesis": self.best_hypothesis,
            "best_behaviour": _json_float(self.best_behaviour),
            "accepted_hypotheses": list(self.accepted_hypotheses),
            "passed_checks": self.passed_checks,
            "verification": None if self.verification is None else [dict(v) for v in self.verification],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOutcome:
        def number(x: Any, missing: float) -> float:
            return missing if x is None else float(x)  # float("-inf") reads _json_float's "-inf"

        return cls(
            network=str(data["network"]),
            accepted=int(data["accepted"]),
            best_statistic=number(data["best_statistic"], -math.inf),
            n_scored=int(data["n_scored"]),
            seconds=float(data["seconds"]),
            best_hypothesis=data.get("best_hypothesis"),
            best_behaviour=number(data.get("best_behaviour"), math.nan),
            accepted_hypotheses=tuple(data.get("accepted_hypotheses") or ()),
            passed_checks=int(data.get("passed_checks") or 0),
            verification=None if data.get("verification") is None else tuple(data["verification"]),
        )


@dataclass(frozen=True)
class FalsePositiveReport:
    """Per target: the real run and the runs on its random copies; the gap between their best scores."""

    rows: tuple[Mapping[str, Any], ...]
    runs: tuple[RunOutcome, ...]

    @property
    def accepted_on_copies(self) -> int:
        return sum(r["accepted"] for r in self.rows if r["network"] != "real")

    @property
    def false_positives(self) -> int:
        """Hypotheses accepted on a copy that are not true of that copy (unverified ones count)."""
        return sum(r["accepted"] - r["accepted_true_of_network"] for r in self.rows if r["network"] != "real")

    def to_json(self) -> dict[str, Any]:
        reals = [r for r in self.rows if r["network"] == "real"]
        return {
            "rows": [dict(r) for r in self.rows],
            "accepted_on_copies": self.accepted_on_copies,
            "false_positives": self.false_positives,
            "control_runs": sum(1 for r in self.rows if r["network"] != "real"),
            "real_targets_accepting": sum(1 for r in reals if r["accepted"] > 0),
            "real_targets_passing_checks": sum(1 for r in reals if r["passed_checks"] > 0),
            "real_targets": len(reals),
            "runs": [r.to_json() for r in self.runs],
        }


RunFn = Callable[["Target", int, float, str | None], RunOutcome]
SuiteProgress = Callable[[str], None]


@dataclass(frozen=True)
class SuiteJob:
    """One run of the suite: the real network (``kind`` None) or one seeded random copy."""

    target: str | Target
    kind: str | None
    seed: int

    @property
    def network(self) -> str:
        return "real" if self.kind is None else f"{self.kind}[{self.seed}]"

    @property
    def target_name(self) -> str:
        return self.target if isinstance(self.target, str) else self.target.name

    def directory(self, out: str | None) -> str | None:
        if out is None:
            return None
        from pathlib import Path

        sub = "real" if self.kind is None else f"{self.kind}-{self.seed}"
        return str(Path(out) / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.target_name) / sub)


def false_positive_suite(
    targets: Sequence[str | Target],
    seeds: Sequence[int] = (0, 1, 2),
    budget_seconds: float = 60.0,
    *,
    out: str | None = None,
    kinds: Sequence[str] = ("reinitialized", "shuffled"),
    run_fn: RunFn | None = None,
    networks: Mapping[str, NetworkFactory] | None = None,
    jobs: int = 1,
    progress: SuiteProgress | None = None,
    verify_fn: VerifyFn | None = None,
) -> FalsePositiveReport:
    """Run the engine on each target and on its re-initialised and shuffled copies (every seed).

    A sound engine accepts nothing on a copy that the copy does not compute, while the real
    targets still accept. Each row reports the accepted count and the best statistic of one run, and, per
    target, ``gap`` = real best - best over all copies. ``run_fn(target, seed,
    budget_seconds, out_dir)`` defaults to the synthesis loop (``synth.run``).

    With ``out``, each finished run's outcome is saved next to its run directory and a
    rerun with the same budget reuses it, so an interrupted suite loses at most the runs in
    flight. ``jobs`` > 1 runs that many runs at once in worker processes (string target
    specs and the default ``run_fn``/``networks`` only: they must be importable there).

    A copy is a network too, and can compute something simple (a shuffled 3-token network
    that outputs a fixed map of the current token, say) that a hypothesis describes exactly.
    So every hypothesis accepted on a copy is then checked independently of the run that
    accepted it (``verify_fn``, default :func:`verify_on_fresh_inputs`): ``accepted_on_copies``
    counts them all, ``false_positives`` those that are not true of their copy.
    """
    if jobs < 1:
        raise ControlError(f"jobs must be >= 1, got {jobs}")
    say = progress or (lambda _msg: None)
    plan = [
        job
        for spec in targets
        for job in (
            SuiteJob(spec, None, 0),
            *(SuiteJob(spec, kind, seed) for kind in kinds for seed in seeds),
        )
    ]
    per_target = 1 + len(kinds) * len(seeds)  # the plan holds each target's runs together
    outcomes: dict[int, RunOutcome] = {}
    todo = []
    for i, job in enumerate(plan):
        saved = _saved_outcome(job.directory(out), budget_seconds)
        if saved is not None:
            outcomes[i] = saved
        else:
            todo.append(i)
    loaded: dict[int, Target] = {}  # in this process, each target is built once for all its runs

    def target_of(i: int) -> Target:
        first = i - i % per_target
        if first not in loaded:
            loaded[first] = _load(plan[first].target)
        return loaded[first]

    if todo and jobs > 1:
        if run_fn is not None or networks is not None or not all(isinstance(job.target, str) for job in plan):
            raise ControlError("jobs > 1 needs target specs (strings) and the default run_fn and networks")
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: torch does not survive fork
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {
                pool.submit(_suite_job, plan[i], budget_seconds, plan[i].directory(out)): i for i in todo
            }
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                outcomes[i] = future.result()
                _finish_job(plan[i], outcomes[i], out, budget_seconds, say, len(outcomes), len(plan))
    else:
        for i in todo:
            job = plan[i]
            outcomes[i] = _suite_job(job, budget_seconds, job.directory(out), run_fn, networks, target_of(i))
            _finish_job(job, outcomes[i], out, budget_seconds, say, len(outcomes), len(plan))
    for i, job in enumerate(plan):
        outcome = outcomes[i]
        if job.kind is None or not outcome.accepted_hypotheses or outcome.verification is not None:
            continue
        factories = networks if networks is not None else _default_networks()
        copy = factories[job.kind](target_of(i), job.seed)
        checks = tuple(
            (verify_fn or verify_on_fresh_inputs)(copy, text, job.seed + VERIFY_SEED_OFFSET)
            for text in outcome.accepted_hypotheses
        )
        outcomes[i] = dataclasses.replace(outcome, verification=checks)
        holds = sum(bool(c.get("holds")) for c in checks)
        _finish_job(job, outcomes[i], out, budget_seconds, say, len(outcomes), len(plan),
                    f"verified on fresh inputs: {holds}/{len(checks)} true of {job.network}")
    rows: list[dict[str, Any]] = []
    runs = [outcomes[i] for i in range(len(plan))]
    for start in range(0, len(plan), per_target):
        rows += _suite_rows(plan[start].target_name, runs[start], runs[start + 1 : start + per_target])
    return FalsePositiveReport(tuple(rows), tuple(runs))


def _suite_job(
    job: SuiteJob,
    budget_seconds: float,
    out: str | None,
    run_fn: RunFn | None = None,
    networks: Mapping[str, NetworkFactory] | None = None,
    target: Target | None = None,
) -> RunOutcome:
    """One run of the suite; ``target`` is the job's target already built (else it is loaded)."""
    target = target if target is not None else _load(job.target)
    if job.kind is not None:
        factories = networks if networks is not None else _default_networks()
        target = factories[job.kind](target, job.seed)
    outcome = (run_fn or _default_run_fn)(target, job.seed, budget_seconds, out)
    return dataclasses.replace(outcome, network=job.network)


def _outcome_file(run_dir: str) -> str:
    return run_dir.rstrip("/") + ".outcome.json"


def _saved_outcome(run_dir: str | None, budget_seconds: float) -> RunOutcome | None:
    """The outcome a previous suite saved for this run, if it ran with the same budget.

    Where the run left a run store, the summary is read again from it (:func:`run_outcome`),
    so a reused run is summarised exactly as a new one; only its wall time comes from the file.
    """
    import json
    import os

    if run_dir is None or not os.path.exists(_outcome_file(run_dir)):
        return None
    try:
        with open(_outcome_file(run_dir)) as f:
            data = json.load(f)
        if data.get("budget_seconds") != budget_seconds:
            return None
        saved = RunOutcome.from_json(data["outcome"])
        if os.path.exists(os.path.join(run_dir, "run.sqlite")):
            from synth.loop import load_run

            again = run_outcome(load_run(run_dir), saved.seconds)
            return dataclasses.replace(again, network=saved.network, verification=saved.verification)
        return saved
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: run it again


def _finish_job(
    job: SuiteJob,
    outcome: RunOutcome,
    out: str | None,
    budget_seconds: float,
    say: SuiteProgress,
    done: int,
    total: int,
    what: str | None = None,
) -> None:
    import json
    import os

    run_dir = job.directory(out)
    if run_dir is not None:
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        tmp = _outcome_file(run_dir) + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"budget_seconds": budget_seconds, "outcome": outcome.to_json()}, f)
        os.replace(tmp, _outcome_file(run_dir))  # atomic: a half-written outcome is never reused
    what = what or (
        f"{outcome.accepted} accepted, best statistic {outcome.best_statistic:.3f} ({outcome.seconds:.0f} s)"
    )
    say(f"[{done}/{total}] {job.target_name} {job.network}: {what}")


def _suite_rows(name: str, real: RunOutcome, control_runs: Sequence[RunOutcome]) -> list[dict[str, Any]]:
    """One target's rows: the real run (with the gaps) and each copy's run."""
    # Statistic: only runs where some candidate reached the full checks have one (-inf
    # otherwise: nothing on that copy even matched its outputs well enough to be checked).
    finite = [r.best_statistic for r in control_runs if math.isfinite(r.best_statistic)]
    best_control = max(finite) if finite else None
    real_stat = real.best_statistic if math.isfinite(real.best_statistic) else None
    behaviours = [r.best_behaviour for r in control_runs if not math.isnan(r.best_behaviour)]
    best_control_b = max(behaviours) if behaviours else None
    real_b = None if math.isnan(real.best_behaviour) else real.best_behaviour
    rows = []
    for r in (real, *control_runs):
        is_real = r is real
        rows.append(
            {
                "target": name,
                "network": r.network,
                "accepted": r.accepted,
                "passed_checks": r.passed_checks,
                "accepted_true_of_network": (
                    r.accepted if is_real else sum(bool(v.get("holds")) for v in r.verification or ())
                ),
                "accepted_hypotheses": [
                    {"hypothesis": text, **(dict(r.verification[k]) if r.verification else {})}
                    for k, text in enumerate(r.accepted_hypotheses)
                ],
                "n_scored": r.n_scored,
                "best_statistic": _json_float(r.best_statistic),
                "best_behaviour": _json_float(r.best_behaviour),
                "best_control_statistic": best_control if is_real else None,
                "gap_statistic": (
                    round(real_stat - best_control, 9) + 0.0  # no -1e-16 for equal scores
                    if is_real and real_stat is not None and best_control is not None
                    else None
                ),
                "controls_reaching_checks": len(finite) if is_real else None,
                "best_control_behaviour": best_control_b if is_real else None,
                "gap_behaviour": (
                    round(real_b - best_control_b, 9) + 0.0
                    if is_real and real_b is not None and best_control_b is not None
                    else None
                ),
                "seconds": round(r.seconds, 1),
            }
        )
    return rows


def _load(spec: str | Target) -> Target:
    if isinstance(spec, str):
        from models import load_target

        return load_target(spec)
    return spec


def _default_run_fn(target: Target, seed: int, budget_seconds: float, out: str | None) -> RunOutcome:
    """One fresh run of the shipped engine (default proposers and controls, no LLM) on ``target``."""
    import shutil
    import tempfile

    from synth.loop import run

    if out is not None:
        shutil.rmtree(out, ignore_errors=True)  # fresh, never resumed
    start = time.perf_counter()
    out = out or tempfile.mkdtemp(prefix="mechsynth-fp-")
    # The loop's default controls stage is these controls, seeded with the run's seed.
    result = run(target, out=out, seed=seed, budget_seconds=budget_seconds, no_llm=True)
    return run_outcome(result, time.perf_counter() - start)


def run_outcome(result: Any, seconds: float) -> RunOutcome:
    """What the suite compares, read from a stored run (:class:`synth.loop.Run`).

    The best statistic is over candidates that reached the full checks and claim at least
    one internal component: a program located only at the embeddings (a constant, say)
    patches nothing, so its loss recovered and IIA are 1 by default, whatever the network.
    Such candidates count in ``best_behaviour`` (agreement with the network's own output)
    and are rejected by necessity; they are not evidence of a mechanism on either side of the gap.
    """
    keys = Thresholds().statistic
    best, best_h, best_b = -math.inf, None, math.nan
    candidates = result.candidates()
    for cand in candidates:
        flat = cand.flat_scores()
        b = _nanmax([_number(flat.get("behaviour")), _number(flat.get("prefilter.behaviour_observed"))])
        best_b = _nanmax([best_b, b])
        if cand.status not in ("failed", "accepted"):
            continue  # filtered and rejected candidates never reached the full checks
        if all(v in PRIMITIVES for v in cand.correspondence):
            continue
        value = statistic_value(flat, keys)
        if value > best:
            best, best_h = value, f"{cand.program} @ {dict(cand.correspondence)}"
    accepted = tuple(str(a.hypothesis) for a in result.accepted)
    passed = sum(1 for cand in candidates if "controls" in cand.scores)
    return RunOutcome(
        result.target, len(accepted), best, int(result.n_scored), seconds, best_h, best_b, accepted, passed
    )


VERIFY_SEED_OFFSET = 7919  # fresh inputs: another seed than the run's sampling and scoring
VerifyFn = Callable[["Target", str, int], Mapping[str, Any]]


def verify_on_fresh_inputs(
    target: Target, hypothesis_text: str, seed: int, n_per_length: int = 500, n_score: int = 512
) -> dict[str, Any]:
    """Whether a hypothesis is true of ``target``, judged apart from the run that accepted it.

    Its program against the network's own output on ``n_per_length`` fresh inputs of every
    length (``behaviour_exact``: the share of inputs where every position agrees), and the
    full checks again on other inputs (another seed). ``holds`` when every check threshold
    of :class:`Thresholds` holds on both.
    """
    from synth.check.behaviour import behaviour
    from synth.check.scoring import score

    hypothesis = Hypothesis.parse(hypothesis_text)
    task = target.task
    inputs = [
        x for length in range(task.min_len, task.max_len + 1)
        for x in task.sample(n_per_length, seed + length, length=length)
    ]
    beh = behaviour(target, hypothesis.program, inputs)
    scores = score(target, hypothesis, n=n_score, seed=seed)
    checks = Thresholds().checks
    values = {"behaviour": beh.positions} | {k: _number(scores.get(k)) for k in checks if k != "behaviour"}
    holds = all(values[k] >= minimum for k, minimum in checks.items())
    return {
        "behaviour_fresh": beh.positions,
        "behaviour_exact_fresh": beh.exact,
        "n_inputs": beh.n,
        **{k: _finite_or_none(v) for k, v in values.items() if k != "behaviour"},
        "holds": bool(holds),
    }


# --- defaults and small helpers -----------------------------------------------------------------


def _default_score_fn(n: int, seed: int) -> ScoreFn:
    def score_fn(target: Target, hypothesis: Hypothesis) -> Mapping[str, Any]:
        from synth.check.scoring import score

        return score(target, hypothesis, n=n, seed=seed)

    return score_fn


def _default_necessity_fn(n: int, seed: int) -> NecessityFn:
    def necessity_fn(target: Target, hypothesis: Hypothesis, ablation: str) -> Mapping[str, Any]:
        from synth.check.scoring import resample_ablation_score

        return resample_ablation_score(target, hypothesis, n=n, seed=seed, ablation=ablation)

    return necessity_fn


def _reinitialized_copy(target: Target, seed: int) -> Target:
    import models

    return models.reinitialized(target, seed)


def _shuffled_copy(target: Target, seed: int) -> Target:
    import models

    return models.shuffled(target, seed)


def _default_networks() -> dict[str, NetworkFactory]:
    return {"reinitialized": _reinitialized_copy, "shuffled": _shuffled_copy}


def statistic_value(scores: Mapping[str, Any] | None, keys: Sequence[str]) -> float:
    """The minimum of the named scores; NaN if any is missing or undefined.

    A hypothesis that could not be scored (``{"error": ...}``) has statistic NaN, which
    the p-value counts against the real hypothesis (conservative).
    """
    if scores is None:
        return math.nan
    values = [_number(scores.get(k)) for k in keys]
    if any(not math.isfinite(v) for v in values):
        return math.nan
    return min(values)


def _number(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _nanmax(xs: Sequence[float]) -> float:
    defined = [x for x in xs if not math.isnan(x)]
    return max(defined) if defined else math.nan


def _mean(xs: Sequence[float]) -> float | None:
    finite = [x for x in xs if math.isfinite(x)]
    return sum(finite) / len(finite) if finite else None


def _quantile(xs: Sequence[float], q: float) -> float:
    """Upper empirical quantile; NaN (undefined) draws are placed at the top (conservative)."""
    if not xs:
        return math.nan
    ordered = sorted(xs, key=lambda x: (math.isnan(x), x))
    value = ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
    return math.inf if math.isnan(value) else value


def _json_float(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return _json_float(x)
    if isinstance(x, (int, str, bool)) or x is None:
        return x
    return str(x)
