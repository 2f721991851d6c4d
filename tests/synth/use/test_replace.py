"""replace: the program as a drop-in for the network."""

from __future__ import annotations

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.use.edit import apply_edits, parse_edits
from mechsynth.synth.use.replace import replace


def test_the_ground_truth_replaces_a_tracr_network_and_compiles_back(target_named):
    target = target_named("tracr:hist")
    result = replace(target, target.ground_truth, n=200)
    assert {a.positions for a in result.agreement.values()} == {1.0}
    assert result.tracr["compiled"] and result.tracr["agreement_positions"] == 1.0
    assert result.program_nodes == 2 and result.network_parameters > 0


def test_a_wrong_program_does_not_replace_the_network(target_named):
    target = target_named("tracr:hist")
    wrong = apply_edits(target.ground_truth.program, parse_edits("same_tok = select(tokens, tokens, NEQ)"))
    result = replace(target, Hypothesis(wrong, {}), n=200)
    assert result.agreement["task"].positions < 0.5
    assert result.tracr["compiled"] and result.tracr["agreement_positions"] < 0.5
