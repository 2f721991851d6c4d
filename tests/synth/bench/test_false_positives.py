"""The false-positive suite (synth.bench.false_positives): the engine on copies that implement nothing.

The network here (tests/tiny_targets.copy_target) copies each token to the output through
layer 0's MLP; its re-initialised and shuffled copies compute nothing of the kind.
"""

from __future__ import annotations

import json
import math

import pytest
from tiny_targets import copy_target, tiny_target

from mechsynth.synth.bench.false_positives import (
    RunOutcome,
    false_positive_suite,
    run_outcome,
    verify_on_fresh_inputs,
)
from mechsynth.synth.accept import ControlError

def test_false_positive_suite_reports_gaps_and_accepted_counts():
    def run_fn(target, seed, budget, out):
        real = "random" not in target.name
        return RunOutcome(target.name, int(real), 0.99 if real else 0.2 + 0.01 * seed, 10, 0.1)

    networks = {"reinitialized": lambda t, s: tiny_target(s, name="random"),
                "shuffled": lambda t, s: tiny_target(s + 9, name="random")}
    report = false_positive_suite([copy_target()], seeds=(0, 1, 2), run_fn=run_fn, networks=networks)
    data = json.loads(json.dumps(report.to_json()))
    assert data["false_positives"] == 0 and data["control_runs"] == 6 and data["real_targets_accepting"] == 1
    real = next(r for r in data["rows"] if r["network"] == "real")
    assert real["gap_statistic"] == pytest.approx(0.99 - 0.22)
    assert math.isclose(real["best_control_statistic"], 0.22) and real["controls_reaching_checks"] == 6


def test_false_positive_suite_saves_each_outcome_and_a_rerun_reuses_them(tmp_path):
    calls = []

    def run_fn(target, seed, budget, out):
        calls.append(out)
        return RunOutcome(target.name, 0, -math.inf if "random" in target.name else 0.9, 3, 0.1)

    networks = {"reinitialized": lambda t, s: tiny_target(s, name="random")}
    args = dict(seeds=(0, 1), kinds=("reinitialized",), run_fn=run_fn, networks=networks, out=str(tmp_path))
    first = false_positive_suite([copy_target()], budget_seconds=5.0, **args).to_json()
    assert len(calls) == 3 and len(set(calls)) == 3
    again = false_positive_suite([copy_target()], budget_seconds=5.0, **args).to_json()
    assert len(calls) == 3 and again["rows"] == first["rows"]  # nothing ran twice; -inf survives JSON
    false_positive_suite([copy_target()], budget_seconds=6.0, **args)  # another budget: run again
    assert len(calls) == 6


def test_hypotheses_accepted_on_a_copy_are_verified_and_only_untrue_ones_are_false_positives(tmp_path):
    texts = {0: "out = map(identity, tokens)\n--\ntokens: hook_embed", 1: "bogus"}

    def run_fn(target, seed, budget, out):
        real = "random" not in target.name
        accepted = () if not real and seed == 2 else (texts[0] if real else texts[seed],)
        return RunOutcome(target.name, len(accepted), 0.9, 5, 0.1, accepted_hypotheses=accepted)

    verified = []

    def verify_fn(copy, text, seed):
        verified.append((copy.name, text, seed))
        return {"holds": text != "bogus", "behaviour_fresh": 1.0 if text != "bogus" else 0.3}

    networks = {"reinitialized": lambda t, s: tiny_target(s, name="random")}
    args = dict(seeds=(0, 1, 2), kinds=("reinitialized",), run_fn=run_fn, networks=networks,
                verify_fn=verify_fn, out=str(tmp_path))
    data = false_positive_suite([copy_target()], **args).to_json()
    assert data["accepted_on_copies"] == 2 and data["false_positives"] == 1
    assert len(verified) == 2 and {v[2] for v in verified} == {7919, 7920}  # fresh seeds; not the real run
    row = next(r for r in data["rows"] if r["network"] == "reinitialized[1]")
    assert row["accepted_hypotheses"] == [{"hypothesis": "bogus", "holds": False, "behaviour_fresh": 0.3}]
    again = false_positive_suite([copy_target()], **args).to_json()
    assert len(verified) == 2 and again["false_positives"] == 1  # saved with the outcome, not redone


def test_run_outcome_ignores_candidates_that_claim_no_internal_component():
    from types import SimpleNamespace


    def cand(status, corr, lr, iia, behaviour=1.0):
        scores = {"behaviour": behaviour, "loss_recovered": lr, "iia": iia}
        stages = {"check": scores} | ({"controls": {}} if status != "filtered" else {})
        return SimpleNamespace(status=status, correspondence=corr, program="p", flat_scores=lambda: scores,
                               scores=stages)

    constant = cand("failed", {"tokens": "hook_embed"}, 1.0, 1.0)  # patches nothing: 1 by default
    head = cand("failed", {"tokens": "hook_embed", "x": "blocks.0.attn.hook_z[0]"}, 0.4, 0.7)
    filtered = cand("filtered", {"x": "blocks.0.hook_mlp_out"}, 0.9, 0.9, behaviour=0.95)
    every = [constant, head, filtered]
    result = SimpleNamespace(target="t", accepted=(), n_scored=3, candidates=lambda: every)
    outcome = run_outcome(result, 1.0)
    assert outcome.best_statistic == pytest.approx(0.4) and outcome.best_behaviour == 1.0
    assert outcome.passed_checks == 2  # both reached the controls (the filtered one did not)
    only_vacuous = SimpleNamespace(target="t", accepted=(), n_scored=1, candidates=lambda: [constant])
    assert run_outcome(only_vacuous, 1.0).best_statistic == -math.inf


def test_false_positive_suite_in_parallel_needs_specs_and_the_default_engine():
    with pytest.raises(ControlError, match="back end needs"):
        false_positive_suite([copy_target()], jobs=2, run_fn=lambda *a: None)
    with pytest.raises(ControlError, match="jobs must be"):
        false_positive_suite(["tracr:reverse"], jobs=0)




def test_a_copy_can_compute_a_simple_map_that_a_hypothesis_describes_exactly():
    """tracr:sort's weight-shuffled copy (seed 1) outputs 4 - token at every position: a
    hypothesis saying so is true of that copy (what the suite's verification establishes);
    the same hypothesis off by one is not."""
    from mechsynth.models import load_target, shuffled

    copy = shuffled(load_target("tracr:sort"), 1)
    true_of_copy = (
        "program:\n    v = map(rsub(3), tokens)\n    out = map(add(1), v)\n"
        "correspondence:\n    tokens: hook_embed\n    v: blocks.0.hook_mlp_out[dims=3,10]\n"
    )
    check = verify_on_fresh_inputs(copy, true_of_copy, 7920, n_per_length=100)
    assert check["holds"] and check["behaviour_exact_fresh"] == 1.0 and check["iia"] == 1.0
    wrong = verify_on_fresh_inputs(copy, true_of_copy.replace("add(1)", "add(2)"), 7920, n_per_length=100)
    assert not wrong["holds"] and wrong["behaviour_fresh"] == 0.0


@pytest.mark.slow
def test_false_positive_suite_runs_in_worker_processes(tmp_path):
    report = false_positive_suite(["tracr:hist"], seeds=(0,), kinds=("shuffled",), budget_seconds=5.0,
                                  out=str(tmp_path), jobs=2)
    data = report.to_json()
    assert data["real_targets_accepting"] == 1 and data["false_positives"] == 0 and data["control_runs"] == 1
    assert (tmp_path / "tracr_hist" / "real.outcome.json").exists()
    assert (tmp_path / "tracr_hist" / "shuffled-0" / "run.sqlite").exists()
