"""The control stage: every control and the p-value on each candidate that passed the checks.

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
something else than the candidate: a draw that takes the candidate's values at its output
and at every variable its correspondence locates, on every cached input
(:meth:`BehaviourOracle.same_as`: the identical text, a query the predicate ignores, or
``select(indices, length, LT)`` where the candidate has ``select(tokens, tokens, TRUE)``)
is the candidate to every check, not a rival, and is redrawn (reported as
``program_redrawn_as_real``; at most ``max_redraws`` in a row per draw). Without this,
a candidate over few inputs (tracr:length) is beaten by copies of itself: many of its
shape compute the length. A *different* function that matches the output at the read
positions but differs at a located variable still counts, and ties count against the
hypothesis. The p-value is exact under
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
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import ControlVerdict, Thresholds
from mechsynth.synth.control.statistics import (
    MonteCarloTest,
    required_null_draws,
    sequential_p_value,
    stopping_exceedances,
)

from mechsynth.synth.accept import ControlError
from mechsynth.synth.control.config import ControlConfig, LocalizeFn, NecessityFn, NetworkFactory, ScoreFn
from mechsynth.synth.control.context import BehaviourOracle, Control, ControlContext
from mechsynth.synth.control.in_network import BroaderDistribution, Minimality, Necessity
from mechsynth.synth.control.nulls import EdgePopup, NullCorrespondences, NullPrograms, RandomNetworks
from mechsynth.synth.control.results import (
    Acceptance, CandidateControls, ControlResult, blocked, decide, flat_numbers, verdict_reason,
)

if TYPE_CHECKING:
    from mechsynth.dsl import Program
    from mechsynth.models import Target


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
        self.score_fn = score_fn or default_score_fn(n_inputs, seed)
        self.necessity_fn = necessity_fn or default_necessity_fn(n_inputs, seed)
        self.localize_fn = localize_fn
        self.networks = dict(networks) if networks is not None else default_networks()
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
                and not blocked(cc, self.config.thresholds)
            ):
                sig, fams = self._significance(ctx, need, sig, deadline)
                cc = dataclasses.replace(
                    cc, significance=sig, n_tested=n_tested, n_required=need, null_families=fams
                )
            elif cc.n_tested != n_tested:
                cc = dataclasses.replace(cc, n_tested=n_tested, n_required=need)
            topped.append(cc)
        return decide(topped, n_tested, self.config.thresholds)


class LoopControls:
    """The synthesis loop's controls stage (``synth.loop.Controls``), backed by :class:`ControlStage`.

    ``check`` runs every control on a candidate that passed the checks and decides with
    Holm over every hypothesis the run has scored so far (``n_tested``) and over every
    candidate controlled so far (each verdict is final when it is given: a candidate's draws
    are sized for the hypotheses scored by then; ``stage.finalize(candidates, n_tested)``
    re-decides them all with their draws topped up, for analyses after a run).
    ``to_json()`` gives every control's numbers for the report.
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
            from mechsynth.synth.localize import Localizer

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
    ) -> ControlVerdict:
        floor = time.monotonic() + self.min_seconds
        deadline = None if deadline is None else max(deadline, floor)
        cc = self.stage.run(target, hypothesis, n_tested=n_tested, real_scores=scores, deadline=deadline)
        self.candidates.append(cc)
        n = max(n_tested, len(self.candidates))
        decision = decide(self.candidates, n, self.stage.config.thresholds).decisions[-1]
        return ControlVerdict(decision.accepted, verdict_reason(decision), flat_numbers(decision))

    def to_json(self) -> dict[str, Any]:
        return {"config": self.stage.config.to_json(), "candidates": [c.to_json() for c in self.candidates]}


def loop_controls(
    seed: int, thresholds: Thresholds | None = None, *, edge_popup: bool = False
) -> LoopControls:
    """The frivolous-circuit controls of a run (the one place the CLI and ``synth.run`` build them)."""
    config = ControlConfig(thresholds=thresholds or Thresholds(), edge_popup=edge_popup, seed=seed)
    return LoopControls(config)


def default_score_fn(n: int, seed: int) -> ScoreFn:
    def score_fn(target: Target, hypothesis: Hypothesis) -> Mapping[str, Any]:
        from mechsynth.synth.check.scoring import score

        return score(target, hypothesis, n=n, seed=seed)

    return score_fn


def default_necessity_fn(n: int, seed: int) -> NecessityFn:
    def necessity_fn(target: Target, hypothesis: Hypothesis, ablation: str) -> Mapping[str, Any]:
        from mechsynth.synth.check.scoring import resample_ablation_score

        return resample_ablation_score(target, hypothesis, n=n, seed=seed, ablation=ablation)

    return necessity_fn


def reinitialized_copy(target: Target, seed: int) -> Target:
    from mechsynth import models

    return models.reinitialized(target, seed)


def shuffled_copy(target: Target, seed: int) -> Target:
    from mechsynth import models

    return models.shuffled(target, seed)


def default_networks() -> dict[str, NetworkFactory]:
    return {"reinitialized": reinitialized_copy, "shuffled": shuffled_copy}
