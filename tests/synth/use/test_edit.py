"""edit: a change to the program, applied to the network at the claimed locations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechsynth.synth.use.edit import EditKind, apply_edits, edit, frontier, parse_edits
from mechsynth.synth.use.inputs import UseError


def test_a_selector_edit_makes_sort_sort_descending(target_named):
    target = target_named("tracr:sort")
    result = edit(target, target.ground_truth, "smaller = select(sequence_map, sequence_map, GT)", n=300)
    assert result.patched == {"target_pos": str(target.ground_truth.correspondence["target_pos"])}
    assert result.n_touched > 100
    assert result.follows_edited >= 0.99
    assert result.follows_edited_touched >= 0.99
    assert result.baseline_touched < 0.1  # the unedited network does not sort descending
    assert result.follows_original_untouched >= 0.99


def test_a_selector_edit_of_reverse_patches_the_output_head(target_named):
    target = target_named("tracr:reverse")
    result = edit(target, target.ground_truth, "reverse_selector = select(indices, indices, EQ)", n=200)
    assert result.patched == {"reverse": "blocks.3.attn.hook_z[0]"}
    assert result.follows_edited_touched >= 0.99


def test_values_the_original_never_computes_are_built_from_tracr_labels(target_named):
    target = target_named("tracr:hist")  # NEQ counts the other tokens: 0 happens, hist is never 0
    result = edit(target, target.ground_truth, "same_tok = select(tokens, tokens, NEQ)", n=200)
    assert result.built > 0 and result.unpatched == 0
    assert result.follows_edited >= 0.99


def test_edit_syntax():
    edits = parse_edits("a = select(indices, indices, EQ); b = tokens")
    assert [(e.variable, e.kind) for e in edits] == [("a", EditKind.REDEFINE), ("b", EditKind.BYPASS)]
    for bad in ("", "a select(x)", "a == b", "a = b; a = c", "1a = b"):
        with pytest.raises(UseError):
            parse_edits(bad)


def test_edits_that_do_not_fit_the_program_are_one_line_errors(target_named):
    program = target_named("tracr:reverse").ground_truth.program
    for bad in ("nope = tokens", "opp_idx = map(add(1), reverse)", "reverse_selector = tokens",
                "opp_idx = opp_idx", "opp_idx = map(frobnicate, tokens)"):
        with pytest.raises(UseError) as e:
            apply_edits(program, parse_edits(bad))
        assert "\n" not in str(e.value)


def test_deleting_a_branch_and_the_frontier(target_named):
    hyp = target_named("tracr:reverse").ground_truth
    edited = apply_edits(hyp.program, parse_edits("opp_idx_1 = opp_idx"))
    located = [v for v in hyp.correspondence if v not in ("tokens", "indices")]
    assert frontier(hyp.program, edited, located) == ("opp_idx_1",)  # reverse reads it: not a frontier
    assert str(edited.node("opp_idx_1")) == "map(identity, opp_idx)"


@given(st.sampled_from(["EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE", "FALSE"]))
def test_a_redefined_selector_prints_back_as_written(pred):
    from mechsynth.dsl import parse

    program = parse("s = select(indices, indices, EQ)\nout = aggregate(s, tokens)")
    edited = apply_edits(program, parse_edits(f"s = select(tokens, indices, {pred})"))
    assert str(edited.node("s")) == f"select(tokens, indices, {pred})"
    assert edited.node("out") == program.node("out")
