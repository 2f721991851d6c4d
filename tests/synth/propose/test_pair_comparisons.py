"""An MLP that compares a token with a related position's token (synth.propose.pair_comparisons).

Synthetic MLP outputs on a palindrome-style batch: the comparison is written where the test
puts it (one side of each mirror pair, or every position for the previous token), with the
token's own code and noise beside it; where nothing compares, nothing may be proposed.
"""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth import dsl
from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.guided_state import GuidedState, Located, MatchThresholds
from mechsynth.synth.propose.match_stats import decode_accuracy
from mechsynth.synth.propose.pair_comparisons import Side, explain_comparison, pair_relations

LENGTH = 8


def _inputs(seed: int, n: int = 240) -> list[list[str]]:
    """Half palindromes over four tokens, one or two positions changed (a palindrome sampler)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        half = [rng.choice("abcd") for _ in range(LENGTH // 2)]
        x = half + half[::-1]
        if i % 2:
            for j in rng.sample(range(LENGTH), rng.choice((1, 2))):
                x[j] = rng.choice([t for t in "abcd" if t != x[j]])
        out.append(x)
    return out


def _state(inputs: list[list[str]]) -> tuple[Pool, GuidedState]:
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool, thresholds=MatchThresholds.soft())
    state.located["tokens"] = Located("tokens", Location(act_name("embed")), -1.0)
    state.located["indices"] = Located("indices", Location(act_name("pos_embed")), -1.0)
    return pool, state


def _mlp_out(inputs: list[list[str]], written: torch.Tensor, seed: int, d: int = 32) -> torch.Tensor:
    """``[positions, d]``: token and position codes in random directions, ``written`` along another."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.tensor([["abcd".index(t) for t in x] for x in inputs]).reshape(-1)
    pos = torch.arange(LENGTH).repeat(len(inputs))
    act = torch.randn(4, d, generator=g, dtype=torch.float64)[tokens]
    act = act + torch.randn(LENGTH, d, generator=g, dtype=torch.float64)[pos]
    direction = torch.randn(d, generator=g, dtype=torch.float64)
    act = act + 2.0 * torch.nan_to_num(written.reshape(-1).double(), nan=0.0)[:, None] * direction
    return act + 0.3 * torch.randn(act.shape, generator=g, dtype=torch.float64)


def _mirror_match(inputs: list[list[str]], later_only: bool) -> torch.Tensor:
    x = torch.tensor([["abcd".index(t) for t in row] for row in inputs])
    match = (x == x.flip(1)).double()
    if later_only:
        match[:, : LENGTH // 2] = float("nan")  # written at the later position of each pair only
    return match


def test_a_comparison_written_at_one_side_of_each_mirror_pair_is_found_with_its_extension() -> None:
    inputs = _inputs(0)
    pool, state = _state(inputs)
    act = _mlp_out(inputs, _mirror_match(inputs, later_only=True), seed=1)
    found = explain_comparison(pool, state, 0, act, ["tokens", "indices"], state.thresholds)
    assert found, "the comparison the MLP writes must be found"
    best = found[0]
    assert (best.relation, best.side, best.fn) == ("mirror", Side.EARLIER, "eq")
    assert best.decode >= state.thresholds.decode
    mask = pool.batch.mask
    codes = pool.values[best.name][mask]
    expected = _mirror_match(inputs, later_only=True).reshape(-1)
    defined = ~torch.isnan(expected)
    assert torch.equal(torch.isnan(codes), ~defined)
    assert torch.equal(codes[defined].bool(), expected[defined].bool())
    # The extension compares every position with its mirror, and is located first at the MLP.
    assert best.extension is not None
    full = pool.values[best.extension][mask]
    assert torch.equal(full.bool(), _mirror_match(inputs, later_only=False).reshape(-1).bool())
    where = Location(act_name("mlp_out", 0))
    located = [n for n, loc in state.located.items() if loc.location == where]
    assert located.index(best.extension) < located.index(best.name)


def test_a_previous_token_comparison_is_found_through_the_offset_relation() -> None:
    inputs = _inputs(2)
    pool, state = _state(inputs)
    x = torch.tensor([["abcd".index(t) for t in row] for row in inputs]).double()
    prev = torch.full_like(x, float("nan"))
    prev[:, 1:] = (x[:, 1:] == x[:, :-1]).double()
    act = _mlp_out(inputs, prev, seed=3)
    found = explain_comparison(pool, state, 0, act, ["tokens", "indices"], state.thresholds)
    assert found and found[0].relation == "offset(+1)" and found[0].extension is None
    codes = pool.values[found[0].name][pool.batch.mask]
    defined = ~torch.isnan(prev.reshape(-1))
    assert torch.equal(codes[defined].bool(), prev.reshape(-1)[defined].bool())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_an_mlp_that_compares_nothing_gets_no_comparison(seed: int) -> None:
    inputs = _inputs(seed)
    pool, state = _state(inputs)
    act = _mlp_out(inputs, torch.zeros(len(inputs), LENGTH), seed=seed + 1)
    assert explain_comparison(pool, state, 0, act, ["tokens", "indices"], state.thresholds) == []
    assert not any(loc.location.component == "mlp" for loc in state.located.values())


def test_the_bar_is_the_walks_decode_bar() -> None:
    """A comparison decodable just below ``th.decode`` is not proposed; the same at the bar is."""
    inputs = _inputs(4)
    pool, state = _state(inputs)
    act = _mlp_out(inputs, _mirror_match(inputs, later_only=True), seed=5)
    rows = ~torch.isnan(_mirror_match(inputs, later_only=True).reshape(-1))
    acc = decode_accuracy(act[rows], _mirror_match(inputs, later_only=True).reshape(-1)[rows])
    above = MatchThresholds.soft()
    assert acc >= above.decode
    strict = MatchThresholds(decode=min(1.0, acc + 1e-6), whole_mlp=True)
    assert all(c.decode >= strict.decode for c in explain_comparison(pool, state, 0, act, ["tokens"], strict))
    assert explain_comparison(*_state(inputs), 0, act, ["tokens"], above)


def test_a_comparison_an_earlier_mlp_wrote_is_not_explained_again() -> None:
    inputs = _inputs(6)
    pool, state = _state(inputs)
    act = _mlp_out(inputs, _mirror_match(inputs, later_only=True), seed=7)
    assert explain_comparison(pool, state, 0, act, ["tokens", "indices"], state.thresholds)
    # MLP 1 reads the residual stream, which still carries MLP 0's comparison.
    assert explain_comparison(pool, state, 1, act, ["tokens", "indices"], state.thresholds) == []


def test_relations_are_offsets_the_mirror_and_single_key_head_selectors() -> None:
    pool, _ = _state(_inputs(8))
    labels = [label for label, _ in pair_relations(pool, ["tokens", "indices"])]
    assert labels[:4] == ["offset(+1)", "offset(-1)", "offset(+2)", "offset(-2)"] and "mirror" in labels
    from mechsynth.dsl.program import Node

    wide = pool.add(Node("select", ("tokens", "tokens", "EQ"), None), prefix="s", dedupe=False)
    assert all(name != wide for _, name in pair_relations(pool, ["tokens"], [wide]))


@pytest.mark.parametrize("lengths", [(6, 8)])
def test_the_mirror_needs_the_length_when_lengths_vary(lengths: tuple[int, int]) -> None:
    rng = random.Random(0)
    inputs = [[rng.choice("ab") for _ in range(rng.choice(lengths))] for _ in range(64)]
    pool, _ = _state(inputs)
    assert "mirror" not in [label for label, _ in pair_relations(pool, ["tokens", "indices"])]
    assert "mirror" in [label for label, _ in pair_relations(pool, ["tokens", "indices", "length"])]
