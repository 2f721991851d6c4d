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


def test_a_fit_the_budget_cuts_is_reported(monkeypatch):
    """Half of the remaining budget per fit: a clock past that point at the fit's second cycle check
    cuts it after one cycle; the proposal and the proposer's usage say so. A budget already spent
    before the first step gives a logged rejection, not an unfitted rotation."""
    import itertools

    from mechsynth.synth import das
    from mechsynth.synth.propose import das_location

    target = rotated_copy_target()
    hyp = Hypothesis(COPY, {"tokens": EMBED, "out": "blocks.0.hook_mlp_out[dims=3,4,5]"})
    failed = ScoredCandidate(hyp, "model-guided", {"iia[out]": 0.1})
    ticks = itertools.count(0)
    clock = lambda: float(next(ticks))  # noqa: E731  one tick per question: steps, not time
    monkeypatch.setattr(das_location.time, "monotonic", clock)
    monkeypatch.setattr(das, "_clock", clock)
    proposer = DASLocationProposer(steps=40, n_train=32)
    # tick 0: the proposer's own deadline check; 1: the fit starts, its deadline 1 + 0.5 * (6 - 1) = 3.5;
    # cycle checks (every 8 steps) at ticks 2, 3 go on, at 4 stop: 16 steps (the whole budget: 40)
    (proposal,) = list(proposer.propose(ProposalContext(target, None, best=(failed,), deadline=6.0)))
    assert proposal.hypothesis is not None
    assert proposal.meta["das_cut_short"] is True and proposal.meta["das_steps"] == 16
    assert proposal.hypothesis.correspondence["out"].subspace.steps == 16
    usage = proposer.usage()
    assert usage["summary"]["fits"] == 1 and usage["summary"]["cut_short"] == 1
    assert "cut short by the deadline after 16 of 40 steps" in usage["calls"][0]["outcome"]
    ticks = itertools.count(10)
    (late,) = list(proposer.propose(ProposalContext(target, None, best=(failed,), deadline=11.0)))
    assert late.hypothesis is None and "no time for a step" in late.error
    assert proposer.usage()["summary"]["fits"] == 2


def test_a_head_variable_is_widened_to_its_layers_attention_output_first():
    """A variable failing at one head: first the layer's whole attention output (nothing fitted), then
    subspaces of the head, then subspaces of the attention output."""
    from mechsynth.dsl.location import Location

    loc = Location("blocks.1.attn.hook_z", 0)
    moves = [(str(w), k) for w, k in DASLocationProposer._moves(loc)]
    assert moves[0] == ("blocks.1.hook_attn_out", 0)
    assert moves[1:4] == [("blocks.1.attn.hook_z[0]", 1), ("blocks.1.attn.hook_z[0]", 2),
                          ("blocks.1.attn.hook_z[0]", 4)]
    assert moves[4:] == [("blocks.1.hook_attn_out", 1), ("blocks.1.hook_attn_out", 2),
                         ("blocks.1.hook_attn_out", 4)]
    assert [k for _, k in DASLocationProposer._moves(Location("blocks.0.hook_mlp_out"))] == [1, 2, 4]

    target = rotated_copy_target()
    hyp = Hypothesis(COPY, {"tokens": EMBED, "out": "blocks.0.attn.hook_z[0]"})
    failed = ScoredCandidate(hyp, "model-guided", {"iia[out]": 0.1})
    proposer = DASLocationProposer(steps=8, n_train=32)
    ctx = ProposalContext(target, None, best=(failed,))
    (widened,) = list(proposer.propose(ctx))
    assert widened.hypothesis.correspondence["out"] == Location("blocks.0.hook_attn_out")
    assert widened.meta["das_k"] == 0 and widened.meta["das_from"] == "blocks.0.attn.hook_z[0]"
    assert proposer.usage()["summary"]["fits"] == 0  # nothing was fitted
    (fitted,) = list(proposer.propose(ctx))
    assert fitted.hypothesis.correspondence["out"].hook == "blocks.0.attn.hook_z"
    assert fitted.hypothesis.correspondence["out"].subspace.k == 1


def test_past_the_deadline_nothing_is_fitted(monkeypatch):
    from mechsynth.synth import das
    from mechsynth.synth.propose.interface import now

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted past the deadline")

    monkeypatch.setattr(das, "with_das", no_fit)
    hyp = Hypothesis(COPY, {"tokens": EMBED, "out": "blocks.0.hook_mlp_out[dims=3,4,5]"})
    failed = ScoredCandidate(hyp, "model-guided", {"iia[out]": 0.1})
    proposer = DASLocationProposer(steps=20, n_train=32)
    ctx = ProposalContext(rotated_copy_target(), None, best=(failed,), deadline=now() - 1.0)
    assert list(proposer.propose(ctx)) == [] and proposer.usage()["summary"]["fits"] == 0
    assert proposer.has_more(ctx)  # the feedback is still there: a resumed run may fit it


def test_the_moved_hypothesis_is_also_offered_without_the_other_failing_claims():
    """One fit, two readings: the worst variable in its subspace with every claim kept, and the same
    without the claims of the other variables whose interchange failed (the passing ones stay)."""
    from mechsynth import dsl

    program = dsl.parse("mid = map(identity, tokens)\nkept = map(identity, tokens)\nout = map(identity, mid)")
    claims = {"tokens": EMBED, "mid": "blocks.0.attn.hook_z[0]", "kept": "blocks.0.attn.hook_z[1]",
              "out": "blocks.0.hook_mlp_out[dims=3,4,5]"}
    scores = {"iia[tokens]": 1.0, "iia[mid]": 0.5, "iia[kept]": 0.9, "iia[out]": 0.1, "iia[mid+out]": 0.05}
    failed = ScoredCandidate(Hypothesis(program, claims), "model-guided", scores)
    proposer = DASLocationProposer(steps=8, n_train=32)
    moved, coarse = list(proposer.propose(ProposalContext(rotated_copy_target(), None, best=(failed,))))
    assert set(moved.hypothesis.correspondence) == set(claims) and "das_coarsened" not in moved.meta
    assert set(coarse.hypothesis.correspondence) == {"tokens", "kept", "out"}
    assert coarse.hypothesis.correspondence["out"] == moved.hypothesis.correspondence["out"]  # one fit
    assert coarse.hypothesis.correspondence["out"].subspace.k == 1
    assert coarse.meta["das_coarsened"] == ["mid"] and proposer.usage()["summary"]["fits"] == 1
