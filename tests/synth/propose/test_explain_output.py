"""The output step when no single located variable is the answer: a fitted lookup over several.

A constructed case: the located variables are the token and the previous two tokens (written
by two heads); the "network" outputs the sum of the token and the previous one, mod 3, plus a
carry where the token two back is 2, wrong on a few inputs. No variable alone is the output
(nor says anything about it), no pair is; the lookup over all three is, and it is found and
kept although it is imperfect, claimed at the (unexplained) last MLP as a second candidate.
"""

from __future__ import annotations

import itertools

import pytest
import sympy
import torch

from mechsynth import dsl
from mechsynth.dsl.location import Location, act_name
from mechsynth.dsl.printer import X, Y
from mechsynth.dsl.program import Fn, Node
from mechsynth.synth.propose.enumerate import Pool, agreement
from mechsynth.synth.propose.explain_output import (
    MIN_GAIN,
    OutputKind,
    _greedy,
    claimed_at_last_mlp,
    fit_lookup,
)
from mechsynth.synth.propose.guided_state import GuidedState, Located, MatchThresholds
from mechsynth.synth.propose.model_guided import _match_outputs, compose, network_outputs

LENGTH = 5
ERRORS = 5  # inputs on which the constructed network is wrong


def _case(output, errors: int = ERRORS):
    """Inputs, the pool with the located variables, and observations whose outputs are ``output``."""
    from mechsynth.synth.observe import LengthGroup, Observations

    inputs = [list(x) for x in itertools.product((0, 1, 2), repeat=LENGTH)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool, thresholds=MatchThresholds.soft())
    state.located["tokens"] = Located("tokens", Location(act_name("embed")), -1.0)
    state.located["indices"] = Located("indices", Location(act_name("pos_embed")), -1.0)
    for head, shift in ((0, 1), (1, 2)):
        sel = pool.add(
            Node("select", ("indices", "indices", Fn("expr", 2, (sympy.Eq(X + shift, Y),))), None),
            prefix="sel",
            dedupe=False,
        )
        name = pool.add(
            Node("aggregate", (sel, "tokens", None), "categorical"), prefix=f"prev{shift}_", dedupe=False
        )
        state.located[name] = Located(name, Location(act_name("z", 0), head=head), 0.0)
    outputs = []
    for b, x in enumerate(inputs):
        row = [None, None] + [output(x, i) for i in range(2, LENGTH)]
        if b < errors:  # the network errs on a few inputs
            row[-1] = (row[-1] + 1) % 3
        outputs.append(tuple(row))
    n = len(inputs)
    acts = {act_name("mlp_out", 0): torch.randn(n, LENGTH, 8), act_name("z", 0): torch.randn(n, LENGTH, 2, 4)}
    patterns = (torch.zeros(n, 2, LENGTH, LENGTH),)
    group = LengthGroup(
        LENGTH, tuple(map(tuple, inputs)), tuple(outputs), acts, patterns, (torch.zeros(n, 2, LENGTH),)
    )
    obs = Observations("constructed", (group,), 1, 2, 8, "all", "categorical")
    return inputs, pool, state, obs


def _sum3(x, i):
    return (x[i] + x[i - 1] + (x[i - 2] == 2)) % 3


def test_the_output_is_a_lookup_over_three_located_variables_found_although_the_network_errs():
    inputs, pool, state, obs = _case(_sum3)
    target, read, atol = network_outputs(pool, obs)
    fit = fit_lookup(state, target, read, int(read.sum()) // 8, atol)
    assert fit is not None and fit.kind == OutputKind.LOOKUP
    assert set(fit.reads) == {"tokens", "prev1_1", "prev2_3"}
    n_read = int(read.sum())
    assert fit.agreement == pytest.approx(1 - ERRORS / n_read, abs=1e-6)  # imperfect, and kept
    assert fit.entries == 27
    # The program is the task's function where the network is right: the lookup evaluates it.
    values = dsl.decode(pool.values[fit.name], "value", pool.batch)
    for x, row in zip(inputs, values):
        assert [row[i] for i in range(2, LENGTH)] == [_sum3(x, i) for i in range(2, LENGTH)]


def test_the_output_step_proposes_the_lookup_and_its_claim_at_the_last_mlp():
    inputs, pool, state, obs = _case(_sum3)
    _match_outputs(state, obs, state.thresholds)
    assert len(state.outputs) == 2
    first, second = state.outputs  # the stronger claim first, the checks decide
    assert state.output_agreement[first] == state.output_agreement[second] >= state.thresholds.output
    assert state.located[first].location == Location(act_name("mlp_out", 0))  # the MLP is the lookup
    assert second not in state.located  # the other is claimed nowhere
    hyps = [hyp for hyp, _ in compose(state, obs)]
    claimed = [set(h.correspondence.values()) for h in hyps]
    assert Location(act_name("mlp_out", 0)) in claimed[0]
    assert Location(act_name("mlp_out", 0)) not in claimed[1]
    heads = {Location(act_name("z", 0), head=0), Location(act_name("z", 0), head=1)}
    assert heads <= claimed[0] and heads <= claimed[1]
    # One program (its output named for the MLP where it is claimed there), the pair code a closed form.
    rhs = [[line.split(" = ", 1)[1] for line in str(h.program).splitlines()] for h in hyps]
    assert rhs[0] == rhs[1]
    assert any(r.startswith("seqmap(3*x + y, ") for r in rhs[0])


def test_an_mlp_something_explains_is_not_claimed_as_the_lookup():
    inputs, pool, state, obs = _case(_sum3)
    other = pool.add(Node("map", (Fn("expr", 1, (X + 1,)), "tokens"), "categorical"), prefix="m")
    state.located[other] = Located(other, Location(act_name("mlp_out", 0)), 0.5)
    target, read, atol = network_outputs(pool, obs)
    fit = fit_lookup(state, target, read, int(read.sum()) // 8, atol)
    assert claimed_at_last_mlp(state, obs, fit) is None


def test_when_the_located_variables_do_not_hold_the_output_the_note_says_how_much_they_do():
    # The output reads the token three back, which no component writes: nothing can explain it.
    inputs, pool, state, obs = _case(lambda x, i: (x[i] + x[0] * (i == 3)) % 3, errors=0)
    _match_outputs(state, obs, state.thresholds)
    assert state.outputs == []
    note = next(n for n in state.notes if n.startswith("output: best lookup"))
    target, read, atol = network_outputs(pool, obs)
    fit = fit_lookup(state, target, read, int(read.sum()) // 8, atol)
    assert f"agrees on {fit.agreement:.3f} (bar 0.9)" in note
    assert fit.agreement < state.thresholds.output and fit.ceiling is not None
    assert fit.ceiling[0] < state.thresholds.output  # even a table of every tuple falls short
    # Here the bound on entries did not bind, so the note does not repeat the same numbers.
    assert fit.ceiling == (round(fit.agreement, 3), fit.entries) and "without the bound" not in note
    assert agreement(pool.values[fit.name], target, read, atol) == pytest.approx(fit.agreement, abs=1e-6)


def test_greedy_picks_only_while_the_score_rises_and_within_the_size_bound():
    gains = {0: 0.5, 1: 0.3, 2: 0.001}

    def score(picked):
        return sum(gains[i] for i in picked)

    chosen, s = _greedy(3, score, len, 0.0, 3, None)
    assert chosen == [0, 1] and s == pytest.approx(0.8)  # option 2 adds less than MIN_GAIN
    assert gains[2] < MIN_GAIN
    chosen, _ = _greedy(3, score, len, 0.0, 3, 1)
    assert chosen == [0]


def test_greedy_in_pairs_finds_what_only_two_options_together_determine():
    def xor_score(picked):  # options 0 and 1 only together say anything; option 2 a little alone
        return 1.0 if {0, 1} <= set(picked) else (0.6 if 2 in picked else 0.5)

    assert _greedy(3, xor_score, len, 0.5, 3, None)[0] == [2]  # one at a time: stuck after 2
    chosen, s = _greedy(3, xor_score, len, 0.5, 3, None, step=2)
    assert sorted(chosen) == [0, 1] and s == 1.0


def _no_00(x, i) -> float:
    """Whether a 0 0 occurred in ``x[: i + 1]`` (the answer is its negation: Tomita 4's shape)."""
    return float(any(x[j - 1] == x[j] == 0 for j in range(1, i + 1)))


def _two_descents(x, i) -> float:
    """Whether 1 0 occurred more than once in ``x[: i + 1]`` (the answer is its negation: Tomita 7)."""
    return float(sum(x[j - 1] == 1 and x[j] == 0 for j in range(1, i + 1)) > 1)


def _pattern_case(heads_hold_seen: bool = True, rule=_no_00, length: int = 6):
    """Binary inputs; the "network" answers "not rule so far"; both heads of layer 1 hold the
    rule's variable (plus noise), layer 0 and the MLPs hold noise."""
    from mechsynth.synth.observe import LengthGroup, Observations

    inputs = [list(x) for x in itertools.product((0, 1), repeat=length)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool, thresholds=MatchThresholds.soft())
    state.located["tokens"] = Located("tokens", Location(act_name("embed")), -1.0)
    state.located["indices"] = Located("indices", Location(act_name("pos_embed")), -1.0)
    gen = torch.Generator().manual_seed(0)
    n = len(inputs)
    seen = torch.zeros(n, length)
    outputs = []
    for b, x in enumerate(inputs):
        row = []
        for i in range(length):
            seen[b, i] = rule(x, i)
            row.append(1 - int(seen[b, i]))
        outputs.append(tuple(row))
    z1 = 0.1 * torch.randn(n, length, 2, 4, generator=gen)
    if heads_hold_seen:
        z1[:, :, :, 0] += seen[:, :, None]
    acts = {
        act_name("z", 0): torch.randn(n, length, 2, 4, generator=gen),
        act_name("mlp_out", 0): torch.randn(n, length, 8, generator=gen),
        act_name("z", 1): z1,
        act_name("mlp_out", 1): torch.randn(n, length, 8, generator=gen),
    }
    patterns = tuple(torch.zeros(n, 2, length, length) for _ in range(2))
    bos = tuple(torch.zeros(n, 2, length) for _ in range(2))
    group = LengthGroup(length, tuple(map(tuple, inputs)), tuple(outputs), acts, patterns, bos)
    return pool, state, Observations("constructed", (group,), 2, 2, 8, "all", "categorical")


def test_the_output_as_whether_a_token_pattern_occurred_so_far_is_found_and_located():
    from mechsynth.synth.propose.explain_output import fit_prefix_pattern

    pool, state, obs = _pattern_case()
    target, read, atol = network_outputs(pool, obs)
    assert fit_lookup(state, target, read, int(read.sum()) // 8, atol).agreement < 0.9  # tokens alone: no
    fit = fit_prefix_pattern(state, obs, target, read, atol)
    assert fit is not None and fit.kind == OutputKind.PATTERN and fit.agreement == 1.0
    seen = fit.reads[0]
    assert state.located[seen].location == Location(act_name("z", 1))  # both heads hold it: the layer
    pool, state, obs = _pattern_case()  # the whole output step, from the walk's located variables
    _match_outputs(state, obs, state.thresholds)
    assert state.output_agreement[state.outputs[0]] == 1.0
    assert state.located[state.outputs[0]].location == Location(act_name("mlp_out", 1))
    hyp, _ = next(compose(state, obs))
    text = str(hyp.program)
    assert "map(gt(0), " in text and "LEQ" in text and "k + 1 == q" in text
    # Named by role: the previous token, the window ending here, whether it occurred so far.
    assert "prev_token = aggregate(" in text and "ends_00 = seqmap(and_, " in text
    assert "seen_00 = map(gt(0), frac_00)" in text
    assert hyp.correspondence["seen_00"] == Location(act_name("z", 1))
    assert Location(act_name("z", 1)) in set(hyp.correspondence.values())


def test_a_pattern_no_component_writes_is_not_located():
    from mechsynth.synth.propose.explain_output import fit_prefix_pattern

    pool, state, obs = _pattern_case(heads_hold_seen=False)
    target, read, atol = network_outputs(pool, obs)
    fit = fit_prefix_pattern(state, obs, target, read, atol)
    assert fit is not None and fit.agreement == 1.0  # the output is still that function...
    assert fit.reads[0] not in state.located  # ...but no component is claimed to write it


def test_a_constant_output_is_no_pattern():
    from mechsynth.synth.propose.explain_output import fit_prefix_pattern

    pool, state, obs = _pattern_case()
    target, read, atol = network_outputs(pool, obs)
    constant = torch.where(read, torch.ones_like(target), target)  # a network that always answers 1
    assert fit_prefix_pattern(state, obs, constant, read, atol) is None


def test_the_output_as_how_often_a_token_pattern_occurred_so_far_is_found_and_located():
    """0*1*0*1* (at most one 1 0 so far): no "seen" of any window says it, a count over 1 does."""
    from mechsynth.synth.propose.explain_output import PATTERN_COUNTS, fit_prefix_pattern

    assert PATTERN_COUNTS > 1
    pool, state, obs = _pattern_case(rule=_two_descents, length=7)
    target, read, atol = network_outputs(pool, obs)
    fit = fit_prefix_pattern(state, obs, target, read, atol)
    assert fit is not None and fit.kind == OutputKind.PATTERN and fit.agreement == 1.0
    over = fit.reads[0]
    assert state.located[over].location == Location(act_name("z", 1))
    pool, state, obs = _pattern_case(rule=_two_descents, length=7)
    _match_outputs(state, obs, state.thresholds)
    assert state.output_agreement[state.outputs[0]] == 1.0
    hyp, _ = next(compose(state, obs))
    text = str(hyp.program)
    assert "count_10 = selector_width(" in text and "key_eq(1)" in text and "LEQ" in text
    assert "count_10_over_1 = map(gt(1), count_10)" in text
    assert Location(act_name("z", 1)) in set(hyp.correspondence.values())


def test_a_pattern_count_the_output_does_not_read_is_not_preferred_to_seen():
    """Where "seen" already explains the output, a count threshold (agreeing no better) is not taken."""
    from mechsynth.synth.propose.explain_output import fit_prefix_pattern

    pool, state, obs = _pattern_case()
    target, read, atol = network_outputs(pool, obs)
    fit = fit_prefix_pattern(state, obs, target, read, atol)
    assert "selector_width" not in str(pool.items[fit.reads[0]].node)
    assert str(pool.items[fit.reads[0]].node).startswith("map(gt(0), ")


def test_the_pattern_output_is_found_before_any_component_is_walked():
    from mechsynth.synth.propose.model_guided import pattern_output

    _, _, obs = _pattern_case(rule=_two_descents, length=7)
    early = pattern_output(obs, MatchThresholds.soft())
    assert early is not None and early.output_agreement[early.outputs[0]] == 1.0
    assert not early.heads and not early.mlps  # no component was walked
    hyp, _ = next(compose(early, obs))
    assert "count_10_over_1 = map(gt(1), count_10)" in str(hyp.program)
    assert hyp.correspondence["count_10_over_1"] == Location(act_name("z", 1))


def test_an_output_no_pattern_count_gives_is_not_proposed_before_the_walk():
    from mechsynth.synth.propose.model_guided import pattern_output

    _, _, obs = _pattern_case(rule=lambda x, i: float(sum(x[: i + 1]) % 3 == 0), length=7)
    assert pattern_output(obs, MatchThresholds.soft()) is None
