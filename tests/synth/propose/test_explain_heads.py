"""An exact head that averages one dimension of an MLP's one-hot locates that dimension."""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.explain_heads import explain_head
from mechsynth.synth.propose.explain_mlps import explain_mlp
from mechsynth.synth.propose.guided_state import GuidedState, MatchThresholds


def test_a_prefix_mean_of_one_token_locates_that_tokens_indicator() -> None:
    inputs = [list(x) for x in itertools.product((1, 2, 3, 4), repeat=3)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool)
    mask = pool.batch.mask
    tokens = pool.values["tokens"]
    codes = torch.unique(tokens[mask])
    mlp_out = torch.stack([(tokens[mask] == c).double() for c in codes], 1)  # MLP 0 writes the one-hot
    network_out = (torch.zeros_like(tokens), torch.zeros_like(mask), 1e-6)
    explain_mlp(pool, state, 0, mlp_out, ["tokens"], [], MatchThresholds(), 3, network_out)
    # Head 1.0 averages "token == codes[2]" over the prefix (select(indices, indices, LEQ)).
    width = pool.batch.width
    causal = torch.tril(torch.ones(width, width, dtype=torch.float64))
    pattern = (causal / causal.sum(-1, keepdim=True)).expand(tokens.shape[0], width, width).clone()
    hit = (tokens == codes[2]).double()
    frac = hit.cumsum(1) / torch.arange(1, width + 1, dtype=torch.float64)
    z = frac[mask][:, None] * torch.tensor([[0.7, -0.4]], dtype=torch.float64)
    avail = ["tokens", "indices", *state.located]
    info = explain_head(
        pool, state, None, 1, 0, z, pattern, torch.zeros(tokens.shape[0], width), avail, MatchThresholds()
    )
    assert info["aggregates"], info
    averaged = pool.items[info["aggregates"][0]].node.inputs[1]
    assert averaged in state.parts and averaged in state.located
    assert state.located[averaged].location.dims == (2,)
    others = [n for n in state.parts if n != averaged]
    assert others and not set(others) & set(state.located)  # the dimensions no head read stay pooled
