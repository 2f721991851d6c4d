"""Feedback proposer: move a variable that fails interchange at its hook into a learned DAS subspace.

The model-guided walk places each variable at a whole hook or at a head (or at basis dims of
an MLP output). A trained network often keeps the variable along a few directions of that
activation mixed with others, and the claim then fails interchange even though the place is
right. When the checks report a scored, unaccepted candidate whose worst variable has an
interchange accuracy (IIA) below the acceptance bar, this proposer offers the same hypothesis
with that variable at a k-dim subspace of the same hook (and head), fitted by
``synth.das.fit_location`` on training inputs; the loop then scores it on held-out inputs
and the controls refit the subspace on their nulls. One proposal per (program, variable, k),
smallest k first (``KS``), so the cheapest rotation that works is found first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mechsynth.dsl.program import PRIMITIVE_VARIABLES
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.propose.interface import Proposal, ProposalContext, ScoredCandidate

KS = (1, 2, 4)  # subspace sizes tried for a failing variable, in order
MAX_PER_ROUND = 2  # DAS fits per round (each is a fixed number of gradient steps)


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
    _tried: set[tuple[str, str, int]] = field(default_factory=set, repr=False)

    def _todo(self, best: tuple[ScoredCandidate, ...] | Any) -> list[tuple[ScoredCandidate, str, int]]:
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
            k_now = getattr(hyp.correspondence[variable].subspace, "k", 0)
            program = str(hyp.program)
            for k in KS:
                if k > k_now and (program, variable, k) not in self._tried:
                    out.append((cand, variable, k))
                    break
        return out

    def has_more(self, context: ProposalContext) -> bool:
        return bool(self._todo(context.best))

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        from mechsynth.synth import das
        from mechsynth.synth.check.patching import CheckError

        for cand, variable, k in self._todo(context.best)[:MAX_PER_ROUND]:
            if context.deadline is not None and time.monotonic() > context.deadline:
                return
            hyp = cand.hypothesis
            self._tried.add((str(hyp.program), variable, k))
            cfg = das.DASConfig(k=k, n_train=self.n_train, steps=self.steps, seed=context.seed)
            start = time.monotonic()
            try:
                fitted, fit = das.with_das(context.target, hyp, variable, cfg,
                                           location=hyp.correspondence[variable].without_subspace())
            except (CheckError, ValueError) as e:
                yield Proposal(source=self.name, error=f"DAS for {variable!r}: {e}")
                continue
            yield Proposal(source=self.name, hypothesis=fitted, meta={
                "das_variable": variable, "das_k": k, "das_train_iia": fit.train_iia,
                "das_train_loss": fit.train_loss, "das_n_train": fit.n_train,
                "das_seconds": round(time.monotonic() - start, 3), "refines": cand.source,
            })
