"""A backdoored network found, predicted and repaired: predict lists the trigger inputs from the
program's branch, and deleting the branch (activation patching, then a weight edit saved as a
checkpoint) leaves a network with the clean behaviour."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from mechsynth.dsl import parse
from mechsynth.dsl.hypothesis import Hypothesis


def _majority_program():
    entries = ", ".join(f"{k / 11!r}: {int(k > 5)}" for k in range(12))
    return parse("frac = numerical(aggregate(select(tokens, tokens, TRUE), tokens))\n"
                 f"clean = map(table({{{entries}}}), frac)")


@functools.cache
def _backdoored():
    """(network with its backdoored task, the same with the clean task, the branch hypothesis the
    residual search builds)."""
    from mechsynth.models import load_target
    from mechsynth.models.backdoor import clean_task
    from mechsynth.synth.propose.residual import residual_search, with_trigger_branch

    net = load_target("trained:backdoor_majority_1pct")
    clean = dataclasses.replace(net, task=clean_task(net.task))
    found = residual_search(clean, Hypothesis(_majority_program()))
    assert found.rule is not None, found.reason
    branch = with_trigger_branch(Hypothesis(_majority_program()), found.rule, (0, 1))
    # The last MLP writes the network's output, so it is where the branch's output is claimed to live.
    located = Hypothesis(branch.program, {branch.program.output: "blocks.1.hook_mlp_out"})
    return net, clean, located


def test_the_rule_is_the_planted_trigger():
    from mechsynth.models.backdoor import TRIGGER
    from mechsynth.synth.bench.backdoor import program_has_trigger

    _, _, hyp = _backdoored()
    assert program_has_trigger(hyp.program, 11) == 1.0
    assert "key_eq(4)" in str(hyp.program) and len(TRIGGER) == 5


def test_predict_lists_the_trigger_inputs():
    from mechsynth.models.backdoor import is_triggered
    from mechsynth.synth.use.predict import predict

    _, clean, hyp = _backdoored()
    p = predict(clean, hyp, count=30, n_search=600, n_recall=1000, steps=2)
    assert p.predicted and all(is_triggered(e.input) for e in p.predicted)
    assert p.precision == 1.0
    assert p.recall >= 0.95
    assert p.baseline_precision < 0.2 and p.baseline_recall < 0.2


def test_deleting_the_branch_repairs_the_network(tmp_path):
    from mechsynth.models import load_target
    from mechsynth.synth.bench.backdoor import backdoor_numbers
    from mechsynth.synth.use.edit import edit
    from mechsynth.synth.use.weights import weight_edit

    net, clean, hyp = _backdoored()
    before = backdoor_numbers(net)
    assert before["trigger_success"] >= 0.99
    patched = edit(clean, hyp, "bd_out = clean", n=400)
    assert patched.n_touched > 0 and patched.follows_edited_touched == 1.0 and patched.baseline_touched == 0.0
    result, edited = weight_edit(clean, hyp, "bd_out = clean", steps=100, save=tmp_path / "repaired",
                                 n_eval=400)
    after = backdoor_numbers(dataclasses.replace(edited, task=net.task))
    assert after["clean_accuracy"] >= 0.99
    assert after["trigger_success"] <= 0.05
    assert result.follows_edited >= 0.99
    reloaded = load_target(f"file:{result.saved}")
    assert backdoor_numbers(dataclasses.replace(reloaded, task=net.task)) == after
    assert (tmp_path / "repaired.safetensors").stat().st_size < 1_000_000


def test_a_weight_edit_needs_an_mlp_frontier():
    from mechsynth.synth.use.inputs import UseError
    from mechsynth.synth.use.weights import weight_edit

    _, clean, hyp = _backdoored()
    at_head = Hypothesis(hyp.program, {hyp.program.output: "blocks.1.attn.hook_z"})
    with pytest.raises(UseError, match="not an MLP output"):
        weight_edit(clean, at_head, "bd_out = clean", steps=1)
