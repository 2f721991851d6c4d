"""Feedback proposer: move a variable that fails interchange at its hook into a learned DAS subspace.

The model-guided walk places each variable at a whole hook or at a head (or at basis dims of
an MLP output). A trained network often keeps the variable along a few directions of that
activation mixed with others, and the claim then fails interchange even though the place is
right. When the checks report a scored, unaccepted candidate whose worst variable has an
interchange accuracy (IIA) below the acceptance bar, this proposer offers the same hypothesis
with that variable at a k-dim subspace of the same hook (and head), fitted by
``synth.das.fit_location`` on training inputs; the loop then scores it on held-out inputs
and the controls refit the subspace on their nulls. One proposal per (program, variable, place, k),
smallest k first (``KS``), so the cheapest rotation that works is found first.

A variable placed at one attention head may be written by several heads of its layer together
(trained:count_token: the count of 0s moves with the source only when both heads of layer 0
are patched, 1.000 of read positions, against 0.278 and 0.368 for either head alone), and no
subspace of one head's output holds it. For such a variable the proposer first *widens* the
place to the layer's whole attention output (``hook_attn_out``, the sum of every head's write),
as it is (k = 0: nothing fitted), then tries subspaces of the head, then subspaces of the layer's
attention output. The consumers and the program are unchanged; the checks judge the new place.

A trained network rarely fails interchange at one claim only: the walk claims every variable it
located, and several of them may be steps the network computes but no causal variable at their
component (two heads' prefix fractions that layer 1 reads only through the MLP's depth sign; see
:mod:`synth.propose.coarsen`). Each moved hypothesis is therefore offered twice: as it is, and
*coarsened* — without the claims of the other variables whose interchange failed in the same
scores (``das_coarsened`` in its meta). Both are scored (no second fit) and the checks choose;
without the second reading, reaching "the worst variable in a subspace, the other failing
claims dropped" takes one round per dropped claim, each behind a walk of the network
(trained:dyck1: the depth sign at MLP 0 in a k=1 subspace fails interchange at 0.636 with both
layer-0 fractions and MLP 1 claimed, and passes every check at 0.898, loss recovered 0.996,
without those three claims).

A fit gets at most ``FIT_SHARE`` of the run's remaining budget (the rest is for scoring the
fitted hypothesis and its controls, whose refits on the nulls cost as much as the fit). The fit
is anytime (``synth.das``): cut short, it returns its best rotation so far, which is proposed
with ``das_cut_short`` and the steps it ran in its meta (and the `Subspace` records those steps,
so the controls refit the nulls by the same shorter procedure). A fit cut before its first step
has nothing to propose and is a counted, logged rejection saying so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mechsynth.dsl.location import Location, act_name
from mechsynth.dsl.program import PRIMITIVE_VARIABLES
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.propose.interface import Proposal, ProposalContext, ScoredCandidate, expired

KS = (1, 2, 4)  # subspace sizes tried for a failing variable, in order
MAX_PER_ROUND = 2  # DAS fits per round (each is a fixed number of gradient steps, or fewer when cut short)
FIT_SHARE = 0.5  # the most of the run's remaining budget one fit may take


def _iia_by_variable(scores: Mapping[str, Any]) -> dict[str, float]:
    """Single-variable IIA from the loop's flat scores (``iia[x]``; joint ``iia[a+b]`` left out)."""
    return {key[4:-1]: x for key, x in scores.items()
            if key.startswith("iia[") and key.endswith("]") and "+" not in key and isinstance(x, float)}


@dataclass
class DASLocationProposer:
    """See the module docstring."""

    name: str = "das"
    steps: int = 150
    n_train: int = 256
    _tried: set[tuple[str, str, str, int]] = field(default_factory=set, repr=False)
    _fits: list[dict[str, Any]] = field(default_factory=list, repr=False)  # one entry per fit, for `usage`

    def usage(self) -> dict[str, Any]:
        """Every fit of this invocation (outcome, steps, seconds) and a summary, stored with the run
        and shown in its report: a fit the deadline cut short is reported there as such."""
        summary = {
            "fits": len(self._fits),
            "cut_short": sum(1 for f in self._fits if f.get("cut_short")),
            "steps": sum(f.get("steps", 0) for f in self._fits),
            "seconds": round(sum(f["latency_s"] for f in self._fits), 3),
        }
        return {"summary": summary, "calls": list(self._fits)}

    def _record(self, round_: int, variable: str, k: int, seconds: float, *, steps: int = 0,
                of: int = 0, cut_short: bool = False, error: str | None = None) -> None:
        if error is not None:
            outcome = "error"
        elif cut_short:
            outcome = f"{variable} k={k}: cut short by the deadline after {steps} of {of} steps"
        else:
            outcome = f"{variable} k={k}: {steps} steps"
        entry: dict[str, Any] = {"index": len(self._fits), "round": round_, "outcome": outcome,
                                 "steps": steps, "cut_short": cut_short, "latency_s": round(seconds, 3)}
        if error is not None:
            entry["error"] = error
        self._fits.append(entry)

    @staticmethod
    def _moves(loc: Location) -> list[tuple[Location, int]]:
        """Where a variable failing interchange at ``loc`` is offered next, in order: (place, k),
        k = 0 for the whole place (see the module docstring)."""
        here = loc.without_subspace()
        here = Location(here.hook, here.head) if here.dims is not None else here
        k_now = getattr(loc.subspace, "k", 0)
        same = [(here, k) for k in KS if k > k_now]
        if loc.head is None or loc.layer is None or loc.component != "attn":
            return same
        layer_out = Location(act_name("attn_out", loc.layer))
        return [(layer_out, 0), *same, *((layer_out, k) for k in KS)]

    def _todo(self, best: tuple[ScoredCandidate, ...] | Any
              ) -> list[tuple[ScoredCandidate, str, Location, int]]:
        bar = Thresholds().iia
        out = []
        for cand in best:
            if cand.accepted:
                continue
            hyp = cand.hypothesis
            scored = [(x, v) for v, x in _iia_by_variable(cand.scores).items()
                      if v in hyp.correspondence and v not in PRIMITIVE_VARIABLES and not math.isnan(x)]
            if not scored:
                continue
            worst, variable = min(scored)
            if worst >= bar:
                continue
            program = str(hyp.program)
            for where, k in self._moves(hyp.correspondence[variable]):
                if (program, variable, str(where), k) not in self._tried:
                    out.append((cand, variable, where, k))
                    break
        return out

    def has_more(self, context: ProposalContext) -> bool:
        return bool(self._todo(context.best))

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        from mechsynth.synth import das
        from mechsynth.synth.check.patching import CheckError

        for cand, variable, where, k in self._todo(context.best)[:MAX_PER_ROUND]:
            if expired(context.deadline):
                return
            hyp = cand.hypothesis
            self._tried.add((str(hyp.program), variable, str(where), k))
            if k == 0:  # the whole wider place: nothing to fit
                corr = {**hyp.correspondence, variable: where}
                yield from self._readings(cand, variable, hyp.with_correspondence(corr), {
                    "das_variable": variable, "das_k": 0, "das_place": str(where),
                    "das_from": str(hyp.correspondence[variable]), "refines": cand.source})
                continue
            cfg = das.DASConfig(k=k, n_train=self.n_train, steps=self.steps, seed=context.seed)
            start = time.monotonic()
            deadline = None if context.deadline is None else start + FIT_SHARE * (context.deadline - start)
            try:
                fitted, fit = das.with_das(context.target, hyp, variable, cfg, deadline=deadline,
                                           location=where)
            except (CheckError, ValueError) as e:
                self._record(context.round, variable, k, time.monotonic() - start, error=str(e))
                yield Proposal(source=self.name, error=f"DAS for {variable!r}: {e}")
                continue
            self._record(context.round, variable, k, time.monotonic() - start, steps=fit.steps_run,
                         of=cfg.steps, cut_short=fit.cut_short)
            meta = {
                "das_variable": variable, "das_k": k, "das_place": str(where), "das_train_iia": fit.train_iia,
                "das_train_loss": fit.train_loss, "das_n_train": fit.n_train,
                "das_steps": fit.steps_run, "das_cut_short": fit.cut_short,
                "das_seconds": round(time.monotonic() - start, 3), "refines": cand.source,
            }
            if fit.steps_run == 0:
                yield Proposal(source=self.name, meta=meta, error=(
                    f"DAS for {variable!r} (k={k}): the run's budget left no time for a step "
                    f"(0 of {cfg.steps}); nothing to score"))
                continue
            yield from self._readings(cand, variable, fitted, meta)

    def _readings(self, cand: ScoredCandidate, variable: str, moved: Any, meta: Mapping[str, Any]
                  ) -> Iterator[Proposal]:
        """The moved hypothesis, then the same without the other failing claims (module docstring)."""
        yield Proposal(source=self.name, hypothesis=moved, meta=meta)
        bar = Thresholds().iia
        failing = sorted(v for v, x in _iia_by_variable(cand.scores).items()
                         if v != variable and v in moved.correspondence and v not in PRIMITIVE_VARIABLES
                         and not math.isnan(x) and x < bar)
        if failing:
            corr = {k: loc for k, loc in moved.correspondence.items() if k not in failing}
            yield Proposal(source=self.name, hypothesis=moved.with_correspondence(corr),
                           meta={**meta, "das_coarsened": failing})
