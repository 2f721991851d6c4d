"""Frivolous-circuit controls and the acceptance rule (synth.control.stage).

The network in these tests (tests/tiny_targets.copy_target) copies each token to
the output through layer 0's MLP; its heads and layer 1 are present but do nothing. So we
know exactly which claims are true, which are frivolous, and which control must say so.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_targets import COPY, EMBED, MLP0, copy_target, tiny_target

from mechsynth import dsl
from mechsynth.synth.accept import ControlError, Thresholds
from mechsynth.synth.control.config import ControlConfig
from mechsynth.synth.control.context import LocationSpace, random_correspondence, random_program_like
from mechsynth.synth.control.in_network import Minimality, Necessity
from mechsynth.synth.control.nulls import NullCorrespondences, RandomNetworks
from mechsynth.synth.control.results import decide
from mechsynth.synth.control.stage import ControlStage
from mechsynth.dsl.hypothesis import Hypothesis

WITH_ZERO = dsl.parse("z = map(mul(0), indices)\nout = seqmap(add, tokens, z)")


def true_hypothesis() -> Hypothesis:
    return Hypothesis(COPY, {"tokens": EMBED, "out": MLP0})


def unused_component() -> Hypothesis:
    """Right output, claimed to be computed by a head the network does not use."""
    return Hypothesis(COPY, {"tokens": EMBED, "out": "blocks.1.attn.hook_z[0]"})


def redundant_node() -> Hypothesis:
    """The true mechanism plus a node (a constant, at an unused head) that changes nothing."""
    corr = {"tokens": EMBED, "z": "blocks.0.attn.hook_z[0]", "out": "blocks.0.hook_mlp_out[dims=3,4,5]"}
    return Hypothesis(WITH_ZERO, corr)


# --- the frivolous hypotheses, on the real checks ----------------------------------------------


@pytest.fixture(scope="module")
def judged():
    """The true and two frivolous hypotheses through the real checks and controls (small, fast)."""
    target = copy_target()
    # alpha = 0.25 over 3 hypotheses needs only 12 null draws: small enough for the default suite.
    config = ControlConfig(
        thresholds=Thresholds(alpha=0.25),
        network_seeds=(0,),
        correspondence_draws=6,
        min_null_draws=9,
    )
    networks = {
        "reinitialized": lambda t, s: tiny_target(100 + s),
        "shuffled": lambda t, s: tiny_target(200 + s),
    }
    stage = ControlStage(
        config,
        networks=networks,
        controls=[Necessity(), Minimality(), NullCorrespondences(), RandomNetworks()],
        n_inputs=16,
    )
    hyps = [true_hypothesis(), unused_component(), redundant_node()]
    candidates = [stage.run(target, h, n_tested=len(hyps)) for h in hyps]
    return stage.finalize(candidates, n_tested=len(hyps))


def test_true_hypothesis_is_accepted(judged):
    decision = judged.decisions[0]
    assert decision.accepted, decision.rejected_by
    assert decision.p_adjusted < judged.thresholds.alpha


def test_output_through_an_unused_component_is_rejected_by_necessity(judged):
    decision = judged.decisions[1]
    assert not decision.accepted
    assert "necessity" in decision.rejected_by
    necessity = decision.controls.result("necessity")
    assert necessity.numbers["necessity_loss_fraction"] < 0.05
    assert necessity.numbers["ablated"] == ["blocks.1.attn.hook_z[0]"]


def test_redundant_extra_node_is_rejected_by_minimality(judged):
    decision = judged.decisions[2]
    # Significance may reject it too: other programs of its shape (a different dead node)
    # explain the network as well, so it is not singled out by the program null either.
    assert "minimality" in decision.rejected_by
    assert set(decision.rejected_by) <= {"minimality", "significance"}
    minimality = decision.controls.result("minimality")
    assert minimality.numbers["superfluous"] == ["z"]
    assert minimality.numbers["ablation_cost"]["out"] > 0.5  # the real node is needed


def test_behaviour_oracle_separates_the_right_program_from_random_ones():
    from mechsynth.synth.control.context import BehaviourOracle

    oracle = BehaviourOracle(copy_target(), n_per_length=16, seed=0)
    assert oracle.bound(COPY) == pytest.approx(1.0)
    assert oracle.bound(dsl.parse("out = map(identity, indices)")) < 0.6
    # A program computing nothing on some positions cannot score there.
    assert oracle.same_as(dsl.parse("out = map(add(0), tokens)"), COPY)
    assert not oracle.same_as(dsl.parse("out = map(add(1), tokens)"), COPY)


def test_acceptance_is_json_with_every_number(judged):
    data = json.loads(json.dumps(judged.to_json()))
    assert data["n_tested"] == 3 and data["correction"] == "holm" and data["alpha"] == 0.25
    assert data["thresholds"]["min_necessity"] == 0.5
    first = data["decisions"][0]
    assert {"p_value", "p_adjusted", "rejected_by", "controls"} <= set(first)
    names = [c["name"] for c in first["controls"]["controls"]]
    assert names == ["necessity", "minimality", "null_correspondences", "random_networks"]
    assert first["controls"]["significance"]["n_draws"] >= 1


# --- the acceptance rule, with a scripted score function ----------------------------------------


def scripted_score(target, hypothesis):
    """1.0 for the true placement of `out`, a deterministic low score for anything else."""
    loc = hypothesis.correspondence.get("out")
    if loc == MLP0:
        value = 1.0
    else:
        value = 0.05 + 0.3 * (zlib.crc32(str(loc).encode()) % 1000) / 1000
    if "random" in target.name:
        value = 0.1
    return {"behaviour": 1.0, "loss_recovered": value, "iia": value}


def scripted_necessity(target, hypothesis, ablation):
    used = any(loc.hook == "blocks.0.hook_mlp_out" for loc in hypothesis.correspondence.values())
    return {"necessity_loss_fraction": 1.0 if used else 0.0}


def scripted_stage(**config):
    # No localiser: random programs are scored at the real claims by the scripted score.
    options = {"network_seeds": (0,), "correspondence_draws": 5}
    cfg = ControlConfig(**{**options, **config})
    counter = {"calls": 0}

    def score(target, hypothesis):
        counter["calls"] += 1
        return scripted_score(target, hypothesis)

    stage = ControlStage(
        cfg,
        score_fn=score,
        necessity_fn=scripted_necessity,
        networks={"reinitialized": lambda t, s: tiny_target(s, name="random"),
                  "shuffled": lambda t, s: tiny_target(s + 50, name="random")},
        controls=[Necessity(), NullCorrespondences(), RandomNetworks()],
    )
    return stage, counter


@pytest.fixture(scope="module")
def target():
    return copy_target()


def test_holm_counts_every_hypothesis_scored(target):
    stage, _ = scripted_stage(min_null_draws=99, max_null_draws=100_000)
    cc = stage.run(target, true_hypothesis(), n_tested=1)
    assert cc.significance.n_draws == 100 and cc.significance.n_exceed == 0
    assert decide([cc], 1, stage.config.thresholds).decisions[0].accepted
    # The same evidence after a search that scored 20 hypotheses does not survive the correction.
    late = decide([cc], 20, stage.config.thresholds).decisions[0]
    assert not late.accepted and late.rejected_by == ("significance",)
    assert late.p_adjusted == pytest.approx(20 / 101)
    # finalize tops up the draws to what 20 hypotheses need; random programs never match the
    # network's output (a draw that is the copy program written differently is redrawn).
    final = stage.finalize([cc], n_tested=20).decisions[0]
    sig = final.controls.significance
    assert sig.n_draws == 2000 and sig.n_planned == 2000 and sig.n_exceed == 0
    assert final.controls.null_families["program"] == 2000
    assert final.controls.null_families["program_redrawn_as_real"] > 0
    assert final.accepted and final.p_adjusted == pytest.approx(20 / 2001)


def test_capped_draws_are_reported_underpowered(target):
    stage, _ = scripted_stage(min_null_draws=10, max_null_draws=10)
    cc = stage.run(target, true_hypothesis(), n_tested=20)
    assert cc.underpowered and cc.n_required == 2000
    decision = decide([cc], 20, stage.config.thresholds).decisions[0]
    assert not decision.accepted and "underpowered" in decision.rejected_by


def test_frivolous_candidates_stop_their_null_draws_early(target):
    stage, counter = scripted_stage(min_null_draws=99, max_null_draws=100_000)
    cc = stage.run(target, unused_component(), n_tested=200)  # needs 20,000 draws to be acceptable
    assert cc.significance.stopped_early
    assert counter["calls"] < 2000  # a few hundred draws, not twenty thousand


def test_deadline_interrupts_draws_without_biasing_the_p_value(target):
    stage, _ = scripted_stage(min_null_draws=99)
    cc = stage.run(target, true_hypothesis(), n_tested=5, deadline=0.0)  # already passed
    assert cc.significance.interrupted and cc.significance.n_draws == 0
    assert cc.significance.p_value == 1.0 and cc.underpowered


def test_named_check_thresholds_reject(target):
    stage, _ = scripted_stage()
    scores = {"behaviour": 0.5, "loss_recovered": 1.0}
    cc = stage.run(target, true_hypothesis(), n_tested=1, real_scores=scores)
    decision = decide([cc], 1, stage.config.thresholds).decisions[0]
    assert "threshold:behaviour" in decision.rejected_by and "threshold:iia" in decision.rejected_by


def test_decide_needs_the_whole_family(target):
    stage, _ = scripted_stage()
    ccs = [stage.run(target, h, n_tested=2) for h in (true_hypothesis(), unused_component())]
    with pytest.raises(ControlError):
        decide(ccs, 1, stage.config.thresholds)


def test_random_networks_gate(target):
    stage, _ = scripted_stage()
    cc = stage.run(target, true_hypothesis(), n_tested=1)
    res = cc.result("random_networks")
    assert res.passed and res.numbers["best_control"] == pytest.approx(0.1)
    assert set(res.numbers["copies"]) == {"reinitialized[0]", "shuffled[0]"}


def test_bad_thresholds_are_typed_errors():
    with pytest.raises(ControlError):
        Thresholds(alpha=0)
    with pytest.raises(ControlError):
        ControlConfig(min_null_draws=10, max_null_draws=5)
    with pytest.raises(ControlError):
        ControlConfig(n_behaviour=0)


# --- null generators ----------------------------------------------------------------------------


SPACE = LocationSpace(n_layers=3, n_heads=4, d_model=20)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_correspondences_keep_kinds_and_layer_order(seed):
    program = dsl.parse("a = map(add(1), tokens)\nb = aggregate(select(indices, indices, EQ), a)")
    corr = {"tokens": EMBED, "a": "blocks.0.hook_mlp_out[dims=3,4]", "b": "blocks.1.attn.hook_z[2]"}
    hyp = Hypothesis(program, corr)
    null = random_correspondence(hyp, SPACE, np.random.default_rng(seed))
    a, b = null.correspondence["a"], null.correspondence["b"]
    assert null.program == program
    assert str(null.correspondence["tokens"]) == EMBED  # primitive inputs are given, not claimed
    assert a.component == "mlp" and a.head is None and len(a.dims) == 2 and max(a.dims) < 20
    assert b.component == "attn" and b.hook.endswith("attn.hook_z") and 0 <= b.head < 4 and b.dims is None
    assert 0 <= a.layer < 3 and 0 <= b.layer < 3
    assert a.layer < b.layer  # an MLP output read by a head must come from an earlier layer


def test_random_correspondence_needs_a_claim():
    hyp = Hypothesis(COPY, {"tokens": EMBED})
    assert random_correspondence(hyp, SPACE, np.random.default_rng(0)) is None


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_programs_have_the_same_shape(seed):
    program = dsl.parse(
        "a = map(add(1), tokens)\ns = select(indices, a, LT)\n"
        "w = selector_width(s)\nout = seqmap(add, w, tokens)"
    )
    null = random_program_like(program, np.random.default_rng(seed))
    assert null.size == program.size
    assert [node.op for _, node in null.assignments] == [node.op for _, node in program.assignments]
    assert [null.kind(v) for v in null.variables if v not in ("tokens", "indices", "length")] == [
        program.kind(v) for v in program.variables if v not in ("tokens", "indices", "length")
    ]
    assert random_program_like(program, np.random.default_rng(seed)) == null  # deterministic



# --- the loop's controls stage ------------------------------------------------------------------


def test_loop_controls_give_a_verdict_with_flat_numbers(target):
    from mechsynth.synth.control.stage import LoopControls

    controls = LoopControls(
        ControlConfig(network_seeds=(0,), correspondence_draws=5),
        localize_fn=None,
        score_fn=scripted_score,
        necessity_fn=scripted_necessity,
        networks={"reinitialized": lambda t, s: tiny_target(s, name="random"),
                  "shuffled": lambda t, s: tiny_target(s + 50, name="random")},
        controls=[Necessity(), NullCorrespondences(), RandomNetworks()],
    )
    good = controls.check(target, true_hypothesis(), {"behaviour": 1.0, "loss_recovered": 1.0, "iia": 1.0},
                          n_tested=1, deadline=None)
    assert good.passed and good.reason.startswith("every control passed")
    assert good.numbers["p_value"] == pytest.approx(1 / 101) and good.numbers["necessity.passed"] == 1.0
    assert all(v is None or isinstance(v, float) for v in good.numbers.values())
    bad = controls.check(target, unused_component(), {"behaviour": 1.0, "loss_recovered": 1.0, "iia": 1.0},
                         n_tested=2, deadline=None)
    assert not bad.passed and "necessity:" in bad.reason
    data = json.loads(json.dumps(controls.to_json()))
    assert len(data["candidates"]) == 2
    final = controls.stage.finalize(controls.candidates, n_tested=2)
    assert [d.accepted for d in final.decisions] == [True, False]
