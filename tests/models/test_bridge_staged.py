"""models.bridge.staged_forward: rows that join the batch at a later block, from the residual there."""

from __future__ import annotations

import pytest
import torch

from mechsynth.dsl.location import act_name
from mechsynth.models import load_target
from mechsynth.models.bridge import Entering, Stage, can_stage, join_stage, max_stage, staged_forward


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


def _clean_acts(model, tokens, names):
    store = {}

    def keep(name):
        def fn(act, hook):
            store[name] = act.detach().clone()
            return act

        return fn

    with torch.no_grad(), model.hooks(fwd_hooks=[(n, keep(n)) for n in names]):
        logits = model(tokens)
    return logits, store


@pytest.mark.parametrize("spec", ["tracr:reverse", "trained:palindrome", "trained:dyck1"])
def test_rows_joining_inside_each_block_get_their_own_logits(spec):
    target = load_target(spec)
    model = target.model
    assert max_stage(model) is Stage.MLP_OUT
    tokens = target.tokens(target.task.sample(14, 0, length=target.task.max_len))
    n_layers = model.cfg.n_layers
    names = [act_name(kind, layer) for layer in range(n_layers) for kind in ("resid_pre", "z", "post")]
    clean, acts = _clean_acts(model, tokens, names)
    # Row group 0 starts at the embeddings; the others join at (layer, stage), every stage of every block.
    points = [(layer, stage) for layer in range(n_layers) for stage in Stage]
    groups = torch.arange(tokens.shape[0]) % (len(points) + 1)
    entering = []
    for k, (layer, stage) in enumerate(points):
        rows = groups == k + 1
        z = acts[act_name("z", layer)][rows] if stage >= Stage.ATTN_OUT else None
        post = acts[act_name("post", layer)][rows] if stage >= Stage.MLP_OUT else None
        entering.append(Entering(layer, acts[act_name("resid_pre", layer)][rows], stage, z, post))
    with torch.no_grad():
        logits = staged_forward(model, tokens[groups == 0], entering)
    order = torch.cat([torch.nonzero(groups == k).flatten() for k in range(len(points) + 1)])
    torch.testing.assert_close(logits, clean[order], atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec,kind", [("tracr:reverse", "mlp_out"), ("trained:palindrome", "z"),
                                       ("trained:palindrome", "mlp_out")])
def test_an_edit_where_rows_join_inside_a_block_is_the_plain_forward_with_that_edit(spec, kind):
    from mechsynth.dsl.location import Location
    from mechsynth.synth.check.patching import Edit, resolve, run

    target = load_target(spec)
    model = target.model
    layer = model.cfg.n_layers - 1
    stage = join_stage(model, layer, resolve(model, Location(act_name(kind, layer))).hook)
    assert stage is (Stage.ATTN_OUT if kind == "z" else Stage.MLP_OUT)
    tokens = target.tokens(target.task.sample(10, 3, length=target.task.max_len))
    names = [act_name("resid_pre", layer), act_name("z", layer), act_name("post", layer)]
    _, acts = _clean_acts(model, tokens, names)
    site = resolve(model, Location(act_name(kind, layer), head=0 if kind == "z" else None))
    values = torch.randn((6, *([tokens.shape[1]] + list(site.shape[1:] if kind == "z" else site.shape))),
                         generator=torch.Generator().manual_seed(0))
    edits = [Edit(site, values, rows=slice(4, 10))]  # the 6 joining rows, patched where they join
    plain, _ = run(model, tokens, edits)
    z = acts[names[1]][4:]
    post = acts[names[2]][4:] if stage is Stage.MLP_OUT else None
    joined, _ = run(model, tokens, edits, entering=[Entering(layer, acts[names[0]][4:], stage, z, post)])
    torch.testing.assert_close(joined, plain, atol=1e-5, rtol=0)


def test_an_attention_only_network_joins_at_the_attention_output_at_the_latest():
    model = load_target("trained:reverse").model
    assert model.cfg.attn_only
    assert max_stage(model) is Stage.ATTN_OUT
