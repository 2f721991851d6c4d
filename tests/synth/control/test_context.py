"""The program null excludes draws that compute the candidate's function (synth.control.context).

A draw is the candidate to every check when it takes the candidate's values at the output and
at every located variable on the cached inputs (``BehaviourOracle.same_as``); such a draw is
redrawn, counted, and never used as a rival. tracr:length's ``selector_width(select(tokens,
tokens, TRUE))`` is the case that needed it: many programs of its shape compute the length.
The rule depends on the programs' values only, so the hand-wired copy network (lengths 2..4)
is enough here; the end-to-end case on tracr:length is the slow test at the bottom.
"""

from __future__ import annotations

import pytest
from tiny_targets import EMBED, MLP0, copy_target

from mechsynth import dsl
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import ControlError, Thresholds
from mechsynth.synth.control.config import ControlConfig
from mechsynth.synth.control.context import BehaviourOracle, ControlContext
from mechsynth.synth.control.nulls import NullPrograms
from mechsynth.synth.control.stage import ControlStage

LENGTH = dsl.parse("s = select(tokens, tokens, TRUE)\nout = selector_width(s)")


@pytest.fixture(scope="module")
def oracle():
    return BehaviourOracle(copy_target(), n_per_length=16, seed=0)


@pytest.mark.parametrize(
    "text",
    [
        "s = select(indices, length, LT)\nout = selector_width(s)",  # other primitives, same length
        "s = select(indices, indices, EQ)\nout = selector_width(s)",  # always 1: not the length
        "s = select(tokens, indices, TRUE)\nout = selector_width(s)",
    ],
)
def test_a_draw_is_the_candidate_exactly_when_its_output_takes_the_same_values(oracle, text):
    draw = dsl.parse(text)
    inputs = oracle.inputs
    computes_length = dsl.evaluate(draw, inputs) == [[len(x)] * len(x) for x in inputs]
    # The selector is not located, so it may differ (select(indices, length, LT) is all True too,
    # but select(tokens, indices, TRUE) reads other variables): only the output is compared.
    assert oracle.same_as(draw, LENGTH, ("tokens", "out")) == computes_length
    assert computes_length == ("EQ" not in text)


def test_a_located_intermediate_that_differs_makes_another_function(oracle):
    real = dsl.parse("x = map(add(1), tokens)\nout = map(add(-1), x)")
    draw = dsl.parse("x = map(add(2), tokens)\nout = map(add(-2), x)")
    assert dsl.evaluate(draw, oracle.inputs) == dsl.evaluate(real, oracle.inputs)  # same output
    assert oracle.same_as(draw, real, ("tokens", "out"))  # x unplaced: no check reads it
    assert not oracle.same_as(draw, real, ("tokens", "x", "out"))  # x placed: another claim
    # A located variable the draw does not define is never the same.
    other = dsl.parse("y = map(add(2), tokens)\nout = map(add(-2), y)")
    assert not oracle.same_as(other, real, ("tokens", "x", "out"))


def _context(**config):
    stage = ControlStage(ControlConfig(thresholds=Thresholds(alpha=0.25), network_seeds=(0,), **config),
                         n_inputs=16)
    return ControlContext(stage, copy_target(), Hypothesis(LENGTH, {"tokens": EMBED, "out": MLP0}))


def test_no_program_null_draw_computes_the_candidates_function():
    ctx = _context()
    draws = [ctx.null_program_draw(i) for i in range(60)]
    assert all(d is not None for d in draws)
    length = [[len(x)] * len(x) for x in ctx.behaviour.inputs]
    # Judged apart from the rule: by evaluating each draw and comparing with the length.
    assert all(dsl.evaluate(d, ctx.behaviour.inputs) != length for d in draws)
    assert ctx.n_redrawn > 0  # many draws of this shape are the length: they were excluded
    res = NullPrograms().run(ctx)
    assert res.numbers["n_redrawn_as_real"] == ctx.n_redrawn
    assert res.numbers["max"] < 1.0  # no excluded draw slipped in as a tie


def test_the_redraw_budget_is_a_config_number():
    ctx = _context(max_redraws=1)
    draws = [ctx.null_program_draw(i) for i in range(60)]
    # One draw per index: where it was the candidate there is no draw (None counts against it).
    assert sum(d is None for d in draws) == ctx.n_redrawn > 0
    with pytest.raises(ControlError):
        ControlConfig(max_redraws=0)


@pytest.mark.slow
def test_tracr_length_passes_the_program_null(target_named):
    """The run on tracr:length failed null_programs at 95% quantile 1.0 before the exclusion."""
    from mechsynth.synth.control.stage import LoopControls

    tracr = target_named("tracr:length")
    controls = LoopControls(ControlConfig(network_seeds=(0,)))
    cc = controls.stage.run(tracr, tracr.ground_truth, n_tested=1)
    res = cc.result("null_programs")
    assert res.passed, res.reason
    assert res.numbers["n_redrawn_as_real"] > 0 and res.numbers["quantile"] < 1.0
    assert cc.significance.n_exceed == 0
