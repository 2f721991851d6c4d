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
