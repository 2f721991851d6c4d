"""The coarsening feedback proposer (synth.propose.coarsen): drop the claim a network does not support."""

from __future__ import annotations

from mechsynth import dsl
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.propose.coarsen import CoarsenProposer
from mechsynth.synth.propose.interface import ProposalContext, ScoredCandidate

PROGRAM = dsl.parse(
    "frac = numerical(aggregate(select(indices, indices, LEQ), map(eq(1), tokens)))\n"
    "sign = map(cmp(0.5), frac)\n"
    "out = map(eq(0), sign)"
)
CLAIMS = {"tokens": "hook_embed", "frac": "blocks.0.attn.hook_z[0]", "sign": "blocks.0.hook_mlp_out",
          "out": "blocks.1.hook_mlp_out"}


def _cand(scores: dict, accepted: bool = False, claims: dict | None = None) -> ScoredCandidate:
    return ScoredCandidate(Hypothesis(PROGRAM, claims or CLAIMS), "model-guided", scores, accepted=accepted)


def test_the_worst_failing_claim_is_dropped_first_then_the_next() -> None:
    scores = {"behaviour": 1.0, "iia[tokens]": 1.0, "iia[frac]": 0.55, "iia[sign]": 0.7, "iia[out]": 0.95}
    proposer = CoarsenProposer()
    ctx = ProposalContext(None, None, best=(_cand(scores),))
    assert proposer.has_more(ctx)
    (first,) = list(proposer.propose(ctx))
    assert "frac" not in first.hypothesis.correspondence
    assert first.hypothesis.program == PROGRAM
    assert {k: str(v) for k, v in first.hypothesis.correspondence.items()} == {
        k: v for k, v in CLAIMS.items() if k != "frac"}
    assert first.meta["coarsen_dropped"] == "frac" and first.meta["coarsen_iia"] == 0.55
    (second,) = list(proposer.propose(ctx))  # the same feedback again: the next failing claim
    assert "sign" not in second.hypothesis.correspondence and "frac" in second.hypothesis.correspondence
    assert not proposer.has_more(ctx)  # both failing claims tried; the passing one is never dropped


def test_nothing_is_coarsened_that_misses_the_behaviour_bar_is_accepted_or_has_one_claim_left() -> None:
    failing = {"iia[frac]": 0.5, "iia[sign]": 0.5, "iia[out]": 0.5}
    proposer = CoarsenProposer()
    assert not proposer.has_more(ProposalContext(None, None, best=(_cand({"behaviour": 0.9, **failing}),)))
    assert not proposer.has_more(ProposalContext(None, None, best=(
        _cand({"behaviour": 1.0, **failing}, accepted=True),)))
    one = {"tokens": "hook_embed", "sign": "blocks.0.hook_mlp_out"}
    lone = _cand({"behaviour": 1.0, **failing}, claims=one)
    assert not proposer.has_more(ProposalContext(None, None, best=(lone,)))
    passing = {"behaviour": 1.0, "iia[frac]": 0.9, "iia[sign]": 0.85, "iia[out]": 0.99}
    assert not proposer.has_more(ProposalContext(None, None, best=(_cand(passing),)))


def test_nothing_is_offered_past_the_deadline() -> None:
    from mechsynth.synth.propose.interface import now

    scores = {"behaviour": 1.0, "iia[frac]": 0.55, "iia[sign]": 0.7, "iia[out]": 0.95}
    proposer = CoarsenProposer()
    late = ProposalContext(None, None, best=(_cand(scores),), deadline=now() - 1.0)
    assert list(proposer.propose(late)) == []
    (first,) = list(proposer.propose(ProposalContext(None, None, best=(_cand(scores),))))
    assert first.meta["coarsen_dropped"] == "frac"  # the late round took nothing off the list
