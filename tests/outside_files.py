"""Files as outside tools write them, for the outside-checkpoint tests (tests/models/test_outside.py,
tests/synth/test_cli.py): a TransformerLens (HookedTransformer) state dict of a bridge's weights,
and torch.save output tagged as saved from a GPU."""

from __future__ import annotations

from contextlib import contextmanager

import einops
import torch


def classic_state_dict(bridge: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What `HookedTransformer.state_dict()` saves for the same weights (inverse of the bridge's
    conversion; the forward-pass comparisons below are what make this inverse trustworthy)."""
    cfg = bridge.cfg
    out: dict[str, torch.Tensor] = {}
    for key, t in bridge.state_dict().items():
        t = t.detach().clone()
        if key == "embed.weight":
            out["embed.W_E"] = t
        elif key == "pos_embed.weight":
            out["pos_embed.W_pos"] = t
        elif key == "unembed.weight":
            out["unembed.W_U"] = t.T.contiguous()
        elif key == "unembed.bias":
            out["unembed.b_U"] = t
        elif ".attn." in key:
            prefix, rest = key.split(".attn.")
            proj, kind = rest.split(".")
            name = f"{prefix}.attn.{'W' if kind == 'weight' else 'b'}_{proj.upper()}"
            if proj == "o":
                out[name] = einops.rearrange(t, "d (h k) -> h k d", h=cfg.n_heads) if kind == "weight" else t
            elif kind == "weight":
                out[name] = einops.rearrange(t, "(h k) d -> h d k", h=cfg.n_heads)
            else:
                out[name] = einops.rearrange(t, "(h k) -> h k", h=cfg.n_heads)
            if proj == "q" and kind == "weight":  # buffers HookedTransformer saves too
                out[f"{prefix}.attn.mask"] = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx)).bool()
                out[f"{prefix}.attn.IGNORE"] = torch.tensor(-1e5)
        elif ".mlp." in key:
            prefix, rest = key.split(".mlp.")
            proj, kind = rest.split(".")
            out[f"{prefix}.mlp.{'W' if kind == 'weight' else 'b'}_{proj}"] = t.T.contiguous() \
                if kind == "weight" else t
        else:  # ln1 / ln2 / ln_final
            out[key.replace(".weight", ".w").replace(".bias", ".b")] = t
    return out


@contextmanager
def saved_from_cuda():
    """torch.save tags every storage 'cuda:0', as a checkpoint saved on a GPU is tagged."""
    import torch.serialization as ts

    def tagger(storage):
        return "cuda:0"

    ts.register_package(1, tagger, lambda storage, location: None)
    try:
        yield
    finally:
        ts._package_registry[:] = [entry for entry in ts._package_registry if entry[1] is not tagger]
