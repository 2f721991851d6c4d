"""Feedback proposer: drop the claim of a variable that the network does not hold where it is claimed.

A hypothesis claims, for each of its variables, the activation that holds it. The walk claims
every variable it located, at the component whose output decodes it best. In a trained
network some of those variables are real steps of the computation but not *causal variables at
that component*: the two layer-0 heads of a Dyck recogniser each decode a prefix fraction (of
open, of close brackets), yet what layer 1 reads is one depth signal the two heads and the MLP
write together, so interchanging one head's fraction moves the output only sometimes (an
interchange accuracy, IIA, of 0.59 on trained:dyck1) and drags the whole hypothesis below the
bar even though the program reproduces the network exactly.

Causal scrubbing has a coarser hypothesis for that case (Chan et al. 2022): the variable stays
in the program, computed from its parents, but the hypothesis no longer says where it lives —
its consumer's claim stands for every path from the variable's claimed ancestors to the
consumer. That is a weaker claim, and it is scored as one: the scrubbed loss, the IIA of every
variable still claimed and every control (necessity, null correspondences of the same size,
null programs, random networks) are computed for it as for any hypothesis.

For each scored, unaccepted candidate whose program reproduces the network (behaviour at the
acceptance bar) and whose worst claimed variable fails interchange, this proposer offers the same
hypothesis without that variable's claim, worst first, one variable per proposal, as long as a
non-primitive claim remains (``MIN_CLAIMS``). The DAS proposer (:mod:`synth.propose.das_location`)
works on the same feedback from the other side (the variable is at the right place, in a
subspace); the checks decide which reading the network supports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.program import PRIMITIVE_VARIABLES
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.propose.das_location import _iia_by_variable
from mechsynth.synth.propose.interface import Proposal, ProposalContext, ScoredCandidate, expired

MIN_CLAIMS = 1  # non-primitive claims a coarsened hypothesis keeps at least
MAX_PER_ROUND = 2  # coarsened proposals per round


@dataclass
class CoarsenProposer:
    """See the module docstring."""

    name: str = "coarsen"
    _tried: set[str] = field(default_factory=set, repr=False)  # hypotheses (text) already offered

    def _todo(self, best: Sequence[ScoredCandidate]) -> list[tuple[ScoredCandidate, str]]:
        bars = Thresholds()
        out = []
        for cand in best:
            if cand.accepted or cand.scores.get("behaviour", 0.0) < bars.behaviour:
                continue
            hyp = cand.hypothesis
            claimed = [v for v in hyp.correspondence if v not in PRIMITIVE_VARIABLES]
            if len(claimed) <= MIN_CLAIMS:
                continue
            iia = _iia_by_variable(cand.scores)
            failing = sorted((x, v) for v, x in iia.items()
                             if v in claimed and not math.isnan(x) and x < bars.iia)
            for _, variable in failing:
                if str(_without(hyp, variable)) not in self._tried:
                    out.append((cand, variable))
                    break
        return out

    def has_more(self, context: ProposalContext) -> bool:
        return bool(self._todo(context.best))

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        if expired(context.deadline):
            return  # nothing offered after the deadline: the loop would not score it
        for cand, variable in self._todo(context.best)[:MAX_PER_ROUND]:
            coarse = _without(cand.hypothesis, variable)
            self._tried.add(str(coarse))
            yield Proposal(source=self.name, hypothesis=coarse, meta={
                "coarsen_dropped": variable,
                "coarsen_from": str(cand.hypothesis.correspondence[variable]),
                "coarsen_iia": cand.scores.get(f"iia[{variable}]"),
                "refines": cand.source,
            })


def _without(hyp: Hypothesis, variable: str) -> Hypothesis:
    corr = {k: v for k, v in hyp.correspondence.items() if k != variable}
    return hyp.with_correspondence(corr)
