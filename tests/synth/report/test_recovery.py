"""Recovery comparison and the model-guided layer walk on a small tracr target."""

from __future__ import annotations

import pytest

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location


@pytest.fixture(scope="module")
def hist(target_named):
    return target_named("tracr:hist")


def test_ground_truth_recovers_itself(hist):
    from mechsynth.synth.report.recovery import compare

    rec = compare(hist.ground_truth, hist.ground_truth, hist)
    assert rec.recovered and rec.program_equivalent
    assert rec.matched == rec.matched_exact == len(rec.variables) >= 1


def test_wrong_program_or_wrong_component_is_not_a_recovery(hist):
    from mechsynth.dsl import parse
    from mechsynth.synth.report.recovery import compare

    gt = hist.ground_truth
    wrong = Hypothesis(parse("out = selector_width(select(tokens, tokens, LT))"), {})
    rec = compare(wrong, gt, hist)
    assert not rec.program_equivalent and rec.counterexample is not None and not rec.recovered
    # The right program with its variable claimed at the wrong component.
    moved = {v: Location("blocks.0.attn.hook_z", head=0) for v in gt.correspondence if v not in ("tokens",)}
    rec = compare(gt.with_correspondence(moved), gt, hist)
    assert rec.program_equivalent and not rec.recovered


def test_relabelled_variable_counts_as_equivalent(hist):
    from mechsynth.dsl import parse
    from mechsynth.synth.report.recovery import compare

    gt = hist.ground_truth
    ((var, loc),) = [(v, loc) for v, loc in gt.correspondence.items() if loc.component == "mlp"]
    # Same information at the same component, different value names; the output maps it back.
    text = "w = selector_width(select(tokens, tokens, EQ))\nm = map(add(10), w)\nout = map(add(-10), m)"
    hyp = Hypothesis(parse(text), {"m": loc})
    rec = compare(hyp, gt, hist)
    assert rec.program_equivalent and rec.recovered
    assert rec.matched_exact == 0 and rec.matched == 1


def test_walk_explains_every_component_of_hist(hist):
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import compose, walk
    from mechsynth.synth.observe import observe

    obs = observe(hist, per_length=64)
    state = walk(obs, MatchThresholds())
    assert state.outputs, state.notes
    hyp, _ = next(compose(state, obs))
    locations = {str(loc) for loc in hyp.correspondence.values()}
    assert any(loc.startswith("blocks.0.hook_mlp_out") for loc in locations)
