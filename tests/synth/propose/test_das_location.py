"""The DAS feedback proposer (synth.propose.das_location): a variable failing interchange gets a subspace."""

from __future__ import annotations

from tiny_targets import COPY, EMBED, rotated_copy_target

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.propose.das_location import DASLocationProposer
from mechsynth.synth.propose.interface import ProposalContext, ScoredCandidate


def test_failing_variable_is_moved_into_a_fitted_subspace_once():
    target = rotated_copy_target()
    hyp = Hypothesis(COPY, {"tokens": EMBED, "out": "blocks.0.hook_mlp_out[dims=3,4,5]"})
    failed = ScoredCandidate(hyp, "model-guided", {"iia[tokens]": 1.0, "iia[out]": 0.1, "iia": 0.1})
    passed = ScoredCandidate(hyp, "model-guided", {"iia[out]": 0.95}, accepted=False)
    proposer = DASLocationProposer(steps=20, n_train=32)
    ctx = ProposalContext(target, None, best=(failed,))
    assert proposer.has_more(ctx)
    assert not proposer.has_more(ProposalContext(target, None, best=(passed,)))
    (proposal,) = list(proposer.propose(ctx))
    loc = proposal.hypothesis.correspondence["out"]
    assert loc.hook == "blocks.0.hook_mlp_out" and loc.dims is None and loc.subspace.k == 1
    assert proposal.hypothesis.correspondence["tokens"] == hyp.correspondence["tokens"]
    assert proposal.meta["das_variable"] == "out"
    (again,) = list(proposer.propose(ctx))  # the next size, not the same fit twice
    assert again.hypothesis.correspondence["out"].subspace.k == 2
