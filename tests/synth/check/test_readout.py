"""Every check compares the network and the program only where the task reads."""

from __future__ import annotations

import pytest
from readout_targets import FIRST_AT_MLP0, first_token, zeros_readout

from mechsynth.synth.check.behaviour import behaviour
from mechsynth.synth.check.scoring import score


def test_a_program_right_only_where_the_task_reads_scores_perfectly_there():
    s = score(first_token(), FIRST_AT_MLP0, n=128, seed=0)
    assert s["behaviour"] == 1.0 and s["behaviour_broader"] == 1.0
    assert s["loss_recovered"] == pytest.approx(1.0) and s["iia"] == 1.0


def test_the_same_program_read_everywhere_fails_every_check():
    s = score(first_token("all"), FIRST_AT_MLP0, n=128, seed=0)
    assert s["behaviour"] < 0.7 and s["loss_recovered"] < 0.5 and s["iia"] < 0.5


def test_behaviour_compares_only_read_positions():
    t = first_token()
    xs = t.task.sample(50, seed=2)
    b = behaviour(t, FIRST_AT_MLP0.program, xs)
    assert b.positions == 1.0 and b.defined == 1.0 and b.n == 50


def test_inputs_of_one_length_may_read_different_positions():
    from mechsynth import dsl
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.location import Location
    from tiny_targets import EMBED, MLP0

    # Right at token 0 (0 -> 0), wrong at every other token.
    h = Hypothesis(dsl.parse("out = map(table({0: 0, 1: 2, 2: 1}), tokens)"),
                   {"tokens": Location.parse(EMBED), "out": MLP0})
    read = score(first_token(zeros_readout), h, n=128, seed=0)
    everywhere = score(first_token("all"), h, n=128, seed=0)
    assert read["behaviour"] == 1.0 and read["loss_recovered"] == pytest.approx(1.0)
    # Interchange sets other tokens at the read positions, where the table is wrong: it tells.
    assert read["iia"] < 0.5
    assert everywhere["behaviour"] < 0.5
    # Inputs with no 0 read nothing: their per-input numbers are NaN, not a fake 0 or 1.
    per_input = read["per_input"]
    no_zero = [i for i, x in enumerate(per_input["inputs"]) if 0 not in x]
    assert no_zero and all(per_input["loss_scrubbed"][i] != per_input["loss_scrubbed"][i] for i in no_zero)
