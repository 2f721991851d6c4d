"""Target(first_position_id=k): every forward pass embeds model position p as position id k + p."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mechsynth.models import load_target
from mechsynth.models.target import Target, TargetError


def _plain_forward_at_offset(model, tokens: torch.Tensor, first: int) -> torch.Tensor:
    """The unshifted network fed position ids first..first+T-1 (the positional embedding replaced)."""
    table = model.W_pos.detach()

    def at_offset(act, hook):
        return table[first : first + act.shape[1]].expand_as(act).clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[("hook_pos_embed", at_offset)]):
        return model(tokens)


def test_shifted_target_agrees_with_a_plain_forward_at_that_offset() -> None:
    base = load_target("trained:dyck1_next")
    task = dataclasses.replace(base.task, max_len=10)  # 17 positions - 3 = 14 left: BOS + 10 fit
    shifted = dataclasses.replace(base, name="dyck1_next@3", task=task, first_position_id=3, info={})
    xs = base.task.sample(8, seed=1, length=10)
    tokens = base.tokens(xs)
    expected = _plain_forward_at_offset(base.model, tokens, 3)
    assert torch.allclose(shifted.logits(xs), expected, atol=1e-5)
    assert not torch.allclose(base.logits(xs), expected, atol=1e-3)  # the offset changes the function
    assert base.model.W_pos.shape[0] == 17  # the shared network is untouched
    assert shifted.on("cpu") is shifted and dataclasses.replace(shifted).model is shifted.model


def test_offset_that_leaves_too_few_positions_is_one_line() -> None:
    base = load_target("trained:dyck1_next")
    with pytest.raises(TargetError, match="need 17 positions, but the network has n_ctx=16"):
        Target("x", base.model, base.task, base.input_ids, base.output_values, first_position_id=1)
    with pytest.raises(TargetError, match="non-negative integer"):
        Target("x", base.model, base.task, base.input_ids, base.output_values, first_position_id=-1)
