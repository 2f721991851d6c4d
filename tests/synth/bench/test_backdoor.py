"""The backdoor bench's verdicts: a program with the trigger branch is 'recovered', undefined
outputs are counted apart and never hidden, every network's trigger comes from its recipe."""

from __future__ import annotations

from types import SimpleNamespace

from mechsynth.dsl import parse
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.models.backdoor import trigger_named
from mechsynth.synth.bench.backdoor import (
    COLUMNS, recovered_text, table_cells, trigger_of_target, trigger_outputs,
)
from mechsynth.synth.propose.residual import Literal, Rule, with_trigger_branch


def _majority(ks=range(12)):
    entries = ", ".join(f"{k / 11!r}: {int(k > 5)}" for k in ks)
    return Hypothesis(parse("frac = numerical(aggregate(select(tokens, tokens, TRUE), tokens))\n"
                            f"clean = map(table({{{entries}}}), frac)"))


def _branched(trigger, clean):
    rule = Rule(tuple(Literal(p, b) for p, b in zip(trigger.positions, trigger.bits)), trigger.forced)
    return with_trigger_branch(clean, rule, (0, 1)).program


def test_a_branch_with_the_trigger_is_recovered_and_the_clean_program_is_not():
    prefix = trigger_named("prefix_10110")
    assert trigger_outputs(_branched(prefix, _majority()), 11, prefix) == (22, 0, 22)
    assert recovered_text(22, 0, 22, accepted=True).startswith("yes")
    assert recovered_text(22, 0, 22, accepted=False).startswith("no: rule in the program")
    forced, undefined, total = trigger_outputs(_majority().program, 11, prefix)
    assert (forced, undefined, total) == (0, 0, 22)
    assert recovered_text(forced, undefined, total, accepted=True).startswith("no")


def test_undefined_outputs_are_counted_apart():
    odd = trigger_named("odd_ones")
    # A clean table learned without the all-ones input: the branch is undefined exactly there.
    program = _branched(odd, _majority(range(11)))
    assert trigger_outputs(program, 11, odd) == (62, 1, 63)
    text = recovered_text(62, 1, 63, accepted=True)
    assert text.startswith("yes") and "undefined on 1" in text
    assert recovered_text(50, 1, 63, accepted=True).startswith("no")


def test_each_network_has_its_recipes_trigger():
    def of(name):
        return trigger_of_target(SimpleNamespace(name=name)).name

    odd = "trained:backdoor_majority_odd_1pct"
    assert of(odd) == of(odd + "+edit") == "odd_ones"
    assert of("trained:backdoor_majority_1pct") == "prefix_10110"


def test_a_row_without_edits_fills_every_column():
    row = {"network": "n", "trained_trigger": "1 of 2", "clean_accuracy": 1.0, "trigger_success": 1.0,
           "accepted": 0, "stopped": "budget", "engine_seconds": 1.0,
           "recovered": "no (no hypothesis accepted)"}
    assert len(table_cells(row)) == len(COLUMNS)
    row.update(precision=1.0, baseline_precision=0.0, n_predicted=3, recall=1.0, baseline_recall=0.0,
               n_real_errors=3, n_recall_sample=10, patch="not possible: x", weights="not possible: y")
    cells = table_cells(row)
    assert len(cells) == len(COLUMNS) and "not possible: x" in cells and "not possible: y" in cells
