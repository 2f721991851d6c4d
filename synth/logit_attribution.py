"""Direct logit attribution: each component's own additive share of the output logits.

The residual stream at the read position is a sum: embedding + position embedding + every
head's ``z @ W_O`` + every layer's output bias + every MLP's output. The unembedding reads it
through the final LayerNorm, ``LN(x) = (x - mean(x)) / scale * w + b``. With the *observed*
``scale`` of each position (``ln_final.hook_scale``) held fixed, LN is linear in ``x``, so
each component's direct contribution to the logits is ``center(out_c) / scale * w @ W_U``
and the contributions plus ``b @ W_U + b_U`` sum to the logits exactly (the scale is the
one nonlinearity, and it is the network's own at that input). That is the linearisation
TransformerLens's ``apply_ln_to_stack`` makes; this module computes it from the cached
activations and the bridge's ``W_O``/``W_U`` (networks without a final LN: scale 1, w 1).

A network whose output is a *vote* of several components (no single variable equals the
output) is explained by fitting each component's contribution as a function of the variable
it holds (:mod:`synth.propose.explain_output`).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import torch

from mechsynth.dsl.location import act_name

BIAS = ("bias", None)  # the constant part: output biases, LN bias, unembedding bias


def component_keys(n_layers: int, n_heads: int) -> list[tuple[str, int | None]]:
    """(hook, head) of every component that writes the residual stream, in layer order."""
    keys: list[tuple[str, int | None]] = [(act_name("embed"), None), (act_name("pos_embed"), None)]
    for layer in range(n_layers):
        keys += [(act_name("z", layer), h) for h in range(n_heads)]
        keys.append((act_name("mlp_out", layer), None))
    return keys


def direct_logit_parts(model: Any, cache: Mapping[str, torch.Tensor], n_pos: int) -> dict:
    """``{(hook, head): [batch, n_pos, d_vocab_out]}`` plus :data:`BIAS`; they sum to the logits.

    ``cache`` holds the model's activations over all ``n_pos`` model positions.
    """
    cfg = model.cfg
    norm = getattr(cfg, "normalization_type", None)
    with torch.no_grad():
        w_u = model.W_U.detach().float().cpu()
        scale_name = act_name("ln_final_scale")
        has_ln = norm is not None and scale_name in cache
        scale = cache[scale_name].float().cpu() if has_ln else None
        ln = getattr(model, "ln_final", None)
        weight, bias = _ln_params(ln) if has_ln else (None, None)

        def through(out: torch.Tensor) -> torch.Tensor:
            out = out.float().cpu()
            if out.shape[1] != n_pos:
                out = out[:, :n_pos]
            if has_ln:
                if norm in ("LN", "LNPre"):
                    out = out - out.mean(-1, keepdim=True)
                out = out / scale
                if weight is not None:
                    out = out * weight
            return out @ w_u

        parts: dict = {}
        batch = cache[act_name("z", 0)].shape[0]
        for hook, head in component_keys(int(cfg.n_layers), int(cfg.n_heads)):
            if hook not in cache:
                continue
            a = cache[hook]
            if head is not None:
                layer = int(hook.split(".")[1])
                a = a[:, :, head].float().cpu() @ model.W_O[layer, head].detach().float().cpu()
            if a.shape[0] != batch:
                a = a.expand(batch, *a.shape[1:])
            parts[(hook, head)] = through(a)
        b_o = model.b_O.detach().float().cpu().sum(0) if hasattr(model, "b_O") else torch.zeros(w_u.shape[0])
        const = through(b_o.expand(batch, n_pos, -1).clone())
        if has_ln and bias is not None:
            const = const + bias @ w_u
        if hasattr(model, "b_U"):
            const = const + model.b_U.detach().float().cpu()
        parts[BIAS] = const
    return parts


def _ln_params(ln: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The final LayerNorm's weight and bias (the bridge wraps the original module)."""
    if ln is None:
        return None, None
    inner = getattr(ln, "original_component", None) or getattr(ln, "_original_component", ln)
    w = getattr(inner, "weight", None)
    b = getattr(inner, "bias", None)
    return (
        w.detach().float().cpu() if w is not None else None,
        b.detach().float().cpu() if b is not None else None,
    )
