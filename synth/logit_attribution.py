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

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterator, Mapping

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
    return dict(LogitParts(Unembedding.of(model), cache, n_pos))


@dataclass(frozen=True, eq=False)
class Unembedding:
    """The parameters that read a component's output into logits (the final LN and ``W_U``)."""

    n_layers: int
    n_heads: int
    norm: str | None
    w_u: torch.Tensor  # [d_model, d_vocab_out]
    w_o: torch.Tensor  # [n_layers, n_heads, d_head, d_model]
    b_o: torch.Tensor  # [d_model]: every layer's attention output bias, summed
    b_u: torch.Tensor | None
    ln_weight: torch.Tensor | None
    ln_bias: torch.Tensor | None

    @classmethod
    def of(cls, model: Any) -> Unembedding:
        cfg = model.cfg
        with torch.no_grad():
            w_u = model.W_U.detach().float().cpu()
            no_bias = torch.zeros(w_u.shape[0])
            b_o = model.b_O.detach().float().cpu().sum(0) if hasattr(model, "b_O") else no_bias
            b_u = model.b_U.detach().float().cpu() if hasattr(model, "b_U") else None
            weight, bias = _ln_params(getattr(model, "ln_final", None))
            return cls(int(cfg.n_layers), int(cfg.n_heads), getattr(cfg, "normalization_type", None), w_u,
                       model.W_O.detach().float().cpu(), b_o, b_u, weight, bias)


class LogitParts(Mapping):
    """Each component's direct logit contribution, computed when it is read (not stored): a
    network with a large vocabulary has one ``[batch, n_pos, d_vocab_out]`` tensor per head."""

    def __init__(self, unembedding: Unembedding, acts: Mapping[str, torch.Tensor], n_pos: int) -> None:
        self._u, self._acts, self._n_pos = unembedding, acts, n_pos
        self._keys = [k for k in component_keys(unembedding.n_layers, unembedding.n_heads) if k[0] in acts]
        self._keys.append(BIAS)
        scale_name = act_name("ln_final_scale")
        self._has_ln = unembedding.norm is not None and scale_name in acts
        self._scale = acts[scale_name].float().cpu() if self._has_ln else None
        self._batch = acts[act_name("z", 0)].shape[0]

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def _through(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float().cpu()
        if out.shape[1] != self._n_pos:
            out = out[:, : self._n_pos]
        if self._has_ln:
            if self._u.norm in ("LN", "LNPre"):
                out = out - out.mean(-1, keepdim=True)
            out = out / self._scale
            if self._u.ln_weight is not None:
                out = out * self._u.ln_weight
        return out @ self._u.w_u

    def __getitem__(self, key: tuple[str, int | None]) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        u = self._u
        with torch.no_grad():
            if key == BIAS:
                const = self._through(u.b_o.expand(self._batch, self._n_pos, -1).clone())
                if self._has_ln and u.ln_bias is not None:
                    const = const + u.ln_bias @ u.w_u
                return const + u.b_u if u.b_u is not None else const
            hook, head = key
            a = self._acts[hook]
            if head is not None:
                a = a[:, :, head].float().cpu() @ u.w_o[int(hook.split(".")[1]), head]
            if a.shape[0] != self._batch:
                a = a.expand(self._batch, *a.shape[1:])
            return self._through(a)


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
