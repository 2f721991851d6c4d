"""models.bridge.staged_forward: rows that join the batch at a later block, from the residual there."""

from __future__ import annotations

import pytest
import torch

from mechsynth.dsl.location import act_name
from mechsynth.models import load_target
from mechsynth.models.bridge import can_stage, staged_forward


def _resid(model, tokens):
    store = {}

    def keep(layer):
        def fn(act, hook):
            store[layer] = act.detach().clone()
            return act

        return fn

    hooks = [(act_name("resid_pre", layer), keep(layer)) for layer in range(model.cfg.n_layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    return logits, store


@pytest.mark.parametrize("spec", ["tracr:reverse", "trained:palindrome"])
def test_rows_joining_at_each_block_get_their_own_logits(spec):
    target = load_target(spec)
    model = target.model
    assert can_stage(model)
    tokens = target.tokens(target.task.sample(12, 0, length=target.task.max_len))
    clean, resid = _resid(model, tokens)
    layers = list(range(1, model.cfg.n_layers))
    # Row group 0 starts at the embeddings, group k joins at block layers[k-1].
    groups = torch.arange(tokens.shape[0]) % (len(layers) + 1)
    with torch.no_grad():
        logits = staged_forward(model, tokens[groups == 0],
                                [(layer, resid[layer][groups == k + 1]) for k, layer in enumerate(layers)])
    order = torch.cat([torch.nonzero(groups == k).flatten() for k in range(len(layers) + 1)])
    torch.testing.assert_close(logits, clean[order], atol=1e-5, rtol=0)


def test_hooks_fire_only_on_the_rows_present():
    target = load_target("tracr:reverse")
    model = target.model
    tokens = target.tokens(target.task.sample(6, 1, length=target.task.max_len))
    _, resid = _resid(model, tokens)
    seen = {}

    def note(name):
        def fn(act, hook):
            seen[name] = int(act.shape[0])
            return act

        return fn

    names = [act_name("embed"), act_name("mlp_out", 0), act_name("mlp_out", 3)]
    with torch.no_grad(), model.hooks(fwd_hooks=[(h, note(h)) for h in names]):
        staged_forward(model, tokens[:2], [(2, resid[2][2:])])
    assert seen == {names[0]: 2, names[1]: 2, names[2]: 6}


def test_entering_layers_must_increase():
    target = load_target("tracr:reverse")
    tokens = target.tokens(target.task.sample(4, 0, length=target.task.max_len))
    _, resid = _resid(target.model, tokens)
    with pytest.raises(ValueError, match="increase"):
        staged_forward(target.model, tokens[:1], [(2, resid[2][1:2]), (1, resid[1][2:])])
