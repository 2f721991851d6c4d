"""Chains of aggregates (synth.propose.chains): indicators of located variables, thresholds of means."""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.dsl.location import Location, act_name
from mechsynth.dsl.program import Fn, Node
from mechsynth.synth.propose.chains import best_cut, threshold_args, value_indicators
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.guided_state import GuidedState, Located


def _dyck_pool() -> tuple[Pool, GuidedState, str]:
    """Every bracket string up to length 8, with the depth's sign located at MLP 0."""
    inputs = [list(x) for n in range(1, 9) for x in itertools.product("()", repeat=n)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool)
    prog = dsl.parse(
        "frac = numerical(aggregate(select(indices, indices, LEQ), map(eq('('), tokens)))\n"
        "dsign = map(cmp(0.5), frac)"
    )
    names = {}
    for name, node in prog.assignments:
        node = node.with_inputs(names)
        names[name] = pool.add(node, prefix=name, dedupe=False)
    state.located[names["dsign"]] = Located(names["dsign"], Location(act_name("mlp_out", 0)), 0.5)
    return pool, state, names["dsign"]


def test_a_few_valued_located_variable_gets_one_indicator_per_value() -> None:
    pool, state, dsign = _dyck_pool()
    names = value_indicators(pool, state, ["tokens", "indices", dsign])
    assert len(names) == 3  # dsign takes -1, 0, 1; tokens and indices are primitives (none)
    mask = pool.batch.mask
    for name in names:
        node = pool.items[name].node
        assert node.op == "map" and node.inputs == (dsign,) and node.args[0].name == "eq"
        c = node.args[0].params[0]
        assert torch.equal(pool.values[name][mask].bool(), pool.values[dsign][mask] == c)
    assert value_indicators(pool, state, [dsign]) == names  # pooled once
    # A 0/1 variable is its own indicator.
    flag = pool.add(Node("map", (Fn("eq", 1, (-1,)), dsign), "categorical"), prefix="neg", dedupe=False)
    state.located[flag] = Located(flag, Location(act_name("mlp_out", 0)), 0.5)
    assert value_indicators(pool, state, [flag]) == []


def test_the_output_reads_a_many_valued_mean_through_the_cut_the_outputs_show() -> None:
    pool, state, dsign = _dyck_pool()
    (neg,) = [n for n in value_indicators(pool, state, [dsign]) if pool.items[n].node.args[0].params == (-1,)]
    sel = pool.add(Node("select", ("indices", "indices", "LEQ"), None), prefix="prefix", dedupe=False)
    ever = pool.add(Node("aggregate", (sel, neg, None), "numerical"), prefix="ever", dedupe=False)
    mask = pool.batch.mask
    # The balanced-prefix label: depth zero and never below zero.
    target = ((pool.values[dsign] == 0) & (pool.values[ever] == 0)).double()
    target[~mask] = float("nan")
    assert torch.unique(pool.values[ever][mask]).numel() > 16  # too many values for a table
    args = threshold_args(pool, (dsign, ever), target, mask)
    assert args is not None and args[0] == dsign
    node = pool.items[args[1]].node
    assert node.op == "map" and node.args[0].name == "gt" and node.args[0].params == (0,)
    assert threshold_args(pool, (dsign,), target, mask) is None  # nothing to threshold


def test_best_cut_prefers_the_lowest_of_equally_good_cuts() -> None:
    v = torch.tensor([0.0, 0.1, 0.2, 0.7, 0.8, 0.9], dtype=torch.float64)
    y = (v > 0.5).double()
    where = torch.ones_like(v, dtype=torch.bool)
    assert best_cut(v, [], y, where, torch.unique(v)) == 0.2
    assert best_cut(v, [], torch.ones_like(v), where, torch.unique(v)) == 0.0


def test_a_written_0_1_variable_is_its_own_indicator_for_a_later_mean() -> None:
    from mechsynth.synth.propose.chains import binary_written

    pool, state, dsign = _dyck_pool()
    flag = pool.add(Node("map", (Fn("eq", 1, (0,)), dsign), "categorical"), prefix="zero", dedupe=False)
    unwritten = pool.add(Node("map", (Fn("eq", 1, (1,)), dsign), "categorical"), prefix="pos", dedupe=False)
    state.located[flag] = Located(flag, Location(act_name("mlp_out", 0)), 0.5)
    # dsign takes three values, the primitives are written by no component, ``unwritten`` is not located.
    assert binary_written(pool, state, ["tokens", "indices", dsign, flag, unwritten]) == [flag]


def test_a_value_the_dsl_cannot_encode_gets_no_indicator_instead_of_an_error() -> None:
    pool, state, dsign = _dyck_pool()
    huge = pool.add(Node("map", (Fn("add", 1, (0,)), dsign), "categorical"), prefix="huge", dedupe=False)
    pool.values[huge] = torch.where(
        pool.values[dsign] > 0, 2.0**41, pool.values[dsign]
    )  # a null network's code
    state.located[huge] = Located(huge, Location(act_name("mlp_out", 0)), 0.5)
    names = value_indicators(pool, state, [huge])
    assert all(pool.items[n].node.args[0].params[0] != 2.0**41 for n in names)
