"""Whole-output MLP claims (trained networks) keep overlapping explanations as ranked alternatives."""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.explain_mlps import WHOLE_ALTERNATIVES, explain_mlp
from mechsynth.synth.propose.guided_state import GuidedState, MatchThresholds


def _explain(th: MatchThresholds) -> tuple[Pool, GuidedState]:
    inputs = [list(x) for x in itertools.product((1, 2, 3), repeat=3)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool)
    mask = pool.batch.mask
    tokens = pool.values["tokens"][mask]
    codes = torch.unique(tokens)
    act = torch.stack([(tokens == c).double() for c in codes], 1)  # the MLP writes the token one-hot
    network_out = (torch.zeros_like(pool.values["tokens"]), torch.zeros_like(mask), 1e-6)
    explain_mlp(pool, state, 0, act, ["tokens"], [], th, 3, network_out)
    return pool, state


def _located_maps(pool: Pool, state: GuidedState) -> list[str]:
    return sorted(str(pool.items[n].node.args[0]) for n, loc in state.located.items() if loc.layer == 0.5)


def test_whole_output_claims_keep_the_token_indicators_beside_the_token() -> None:
    pool, state = _explain(MatchThresholds.soft())
    maps = _located_maps(pool, state)
    indicators = [m for m in maps if m.startswith("eq(")]
    # The covering explanation (the token itself) and the best overlapping ones (its indicators).
    assert len(indicators) == WHOLE_ALTERNATIVES and len(maps) > len(indicators)
    assert all(loc.location.dims is None for loc in state.located.values() if loc.layer == 0.5)


def test_exact_claims_keep_only_the_covering_explanation() -> None:
    pool, state = _explain(MatchThresholds())
    assert not [m for m in _located_maps(pool, state) if m.startswith("eq(")]


def test_a_numerical_output_is_first_explained_by_the_value_it_writes_not_a_relabelling() -> None:
    from mechsynth.dsl.program import Fn, Node
    from mechsynth.synth.propose.match_stats import magnitude_r2

    inputs = [list(x) for x in itertools.product((1, 2), repeat=4)]  # two tokens: the indicators sum to one
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool)
    mask = pool.batch.mask
    ones = pool.add(Node("map", (Fn("eq", 1, (1,)), "tokens"), "numerical"), prefix="is_one")
    twos = pool.add(Node("map", (Fn("eq", 1, (2,)), "tokens"), "numerical"), prefix="is_two")
    difference = (pool.values[ones] - pool.values[twos])[mask]
    act = torch.stack([difference, torch.zeros_like(difference)], 1)  # the MLP writes ones - twos in dim 0
    network_out = (torch.zeros_like(pool.values["tokens"]), torch.zeros_like(mask), 1e-6)
    bar = MatchThresholds().explain
    for labellings in (1, 3):
        state = GuidedState(pool)
        explain_mlp(pool, state, 0, act.clone(), [ones, twos], [], MatchThresholds(), labellings, network_out)
        info = [n for n, loc in state.located.items() if loc.location.dims == (0,)]
        assert info, state.notes
        # Its class means cannot tell ones - twos from ones (2 * ones - 1); the magnitude can.
        assert magnitude_r2(act[:, :1], pool.values[info[0]][mask]) >= bar, pool.items[info[0]].node


def _one_hot_tokens(n_tokens: int) -> tuple[Pool, GuidedState, torch.Tensor]:
    inputs = [list(x) for x in itertools.product(range(1, n_tokens + 1), repeat=3)]
    pool = Pool(dsl.encode(inputs))
    mask = pool.batch.mask
    tokens = pool.values["tokens"][mask]
    act = torch.stack([(tokens == c).double() for c in torch.unique(tokens)], 1)
    return pool, GuidedState(pool), act


def test_the_dimensions_of_a_one_hot_are_pooled_as_indicators_but_not_located() -> None:
    pool, state, act = _one_hot_tokens(4)
    network_out = (torch.zeros_like(pool.values["tokens"]), torch.zeros_like(pool.batch.mask), 1e-6)
    explain_mlp(pool, state, 0, act, ["tokens"], [], MatchThresholds(), 3, network_out)
    assert {loc.location.dims for loc in state.located.values() if loc.layer == 0.5} == {(0, 1, 2, 3)}
    # Each dimension is the indicator of one token, written as a magnitude, waiting for a reader.
    assert sorted(at.location.dims for at in state.parts.values()) == [(0,), (1,), (2,), (3,)]
    assert not set(state.parts) & set(state.located)
    mask = pool.batch.mask
    for name, at in state.parts.items():
        assert pool.items[name].node.encoding == "numerical"
        assert torch.equal(pool.values[name][mask].double(), act[:, at.location.dims[0]])


def test_whole_output_claims_pool_no_indicators() -> None:
    pool, state, act = _one_hot_tokens(4)
    network_out = (torch.zeros_like(pool.values["tokens"]), torch.zeros_like(pool.batch.mask), 1e-6)
    explain_mlp(pool, state, 0, act, ["tokens"], [], MatchThresholds.soft(), 3, network_out)
    assert state.parts == {}
