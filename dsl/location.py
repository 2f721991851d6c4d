"""Locations: the one address of an activation inside a TransformerLens model.

We do not invent a naming scheme: a location is a TransformerLens hook name, optionally
narrowed to one attention head (for hooks with a head axis, such as
``blocks.0.attn.hook_z``) and/or to a subspace of residual-stream dimensions (for hooks
whose last axis is ``d_model``, such as ``blocks.0.hook_mlp_out``; tracr labels every
residual dimension with the variable it holds). Values are read per sequence position.

Text form (used in hypothesis files, JSON and reports)::

    blocks.0.hook_mlp_out                 the whole MLP output
    blocks.1.attn.hook_z[2]               head 2 of layer 1
    blocks.0.hook_mlp_out[dims=3,4,5]     residual dimensions 3, 4, 5 of the MLP output

Hook names are built in one place, :func:`act_name` (TransformerLens's ``get_act_name``
vocabulary: ``act_name("z", 1) == "blocks.1.attn.hook_z"``), never by hand.

Both the targets (``models``, which know where tracr put each variable) and the engine
(``synth``) speak in locations, so they live here, below both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mechsynth.dsl.errors import HypothesisError

# Short activation names -> the hook suffix inside a block (TransformerLens's vocabulary).
_BLOCK_HOOKS = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
    "result": "attn.hook_result",
    "pre": "mlp.hook_pre",
    "post": "mlp.hook_post",
}
_GLOBAL_HOOKS = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}


def act_name(name: str, layer: int | None = None) -> str:
    """The TransformerLens hook name of activation ``name`` (in layer ``layer`` for block hooks)."""
    if name in _GLOBAL_HOOKS:
        if layer is not None:
            raise HypothesisError(f"activation {name!r} has no layer")
        return _GLOBAL_HOOKS[name]
    if name not in _BLOCK_HOOKS:
        known = ", ".join(sorted({*_BLOCK_HOOKS, *_GLOBAL_HOOKS}))
        raise HypothesisError(f"unknown activation {name!r}; known: {known}")
    if layer is None or int(layer) < 0:
        raise HypothesisError(f"activation {name!r} needs a layer >= 0")
    return f"blocks.{int(layer)}.{_BLOCK_HOOKS[name]}"


_LOCATION_RE = re.compile(r"^\s*(?P<hook>[A-Za-z_][\w.]*)\s*(?:\[(?P<args>[^\]]*)\])?\s*$")


def hook_in_layer(hook: str, layer: int) -> str:
    """The same block hook in another layer (``blocks.1.attn.hook_z`` -> ``blocks.3.attn.hook_z``)."""
    m = re.match(r"blocks\.\d+\.(.+)$", hook)
    if m is None:
        raise HypothesisError(f"{hook!r} is not a block hook")
    return f"blocks.{int(layer)}.{m.group(1)}"


@dataclass(frozen=True, order=True)
class Location:
    """Where a variable lives: a TransformerLens hook name, an optional head, optional dims."""

    hook: str
    head: int | None = None
    dims: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.hook or not re.fullmatch(r"[A-Za-z_][\w.]*", self.hook):
            raise HypothesisError(f"bad hook name {self.hook!r}")
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise HypothesisError(f"head index must be a non-negative int, got {self.head!r}")
        if self.dims is not None:
            dims = tuple(int(d) for d in self.dims)
            if not dims or any(d < 0 for d in dims):
                raise HypothesisError(f"dims must be non-empty non-negative ints, got {self.dims!r}")
            object.__setattr__(self, "dims", dims)

    @property
    def layer(self) -> int | None:
        """The block index this hook belongs to, or None for embeddings/final hooks."""
        m = re.match(r"blocks\.(\d+)\.", self.hook)
        return int(m.group(1)) if m else None

    @property
    def order(self) -> float | None:
        """Where this location is written in the forward pass: the embeddings at -1, layer L's
        attention at L and its MLP at L + 0.5; None for other hooks (no single writer)."""
        if self.component in ("embed", "pos_embed"):
            return -1.0
        if self.layer is None:
            return None
        if self.component == "attn":
            return float(self.layer)
        if self.component == "mlp":
            return self.layer + 0.5
        return None

    @property
    def component(self) -> str:
        """A coarse name of the writing component: 'attn', 'mlp', 'embed', 'pos_embed', 'resid'..."""
        if ".attn." in self.hook or self.hook.endswith("hook_attn_out"):
            return "attn"
        if ".mlp." in self.hook or self.hook.endswith("hook_mlp_out"):
            return "mlp"
        if self.hook.startswith("hook_pos_embed"):
            return "pos_embed"
        if self.hook.startswith("hook_embed"):
            return "embed"
        return "resid"

    def __str__(self) -> str:
        args = []
        if self.head is not None:
            args.append(str(self.head))
        if self.dims is not None:
            args.append("dims=" + ",".join(map(str, self.dims)))
        return self.hook + (f"[{', '.join(args)}]" if args else "")

    @classmethod
    def parse(cls, text: str) -> Location:
        text = text.strip()
        m = _LOCATION_RE.match(text)
        if not m:
            raise HypothesisError(f"cannot read location {text!r}: expected e.g. 'blocks.0.attn.hook_z[1]'")
        head: int | None = None
        dims: tuple[int, ...] | None = None
        args = m.group("args")
        if args is not None:
            # Split on commas that are not inside the dims list: "2, dims=3,4" -> head, dims.
            parts = re.split(r",\s*(?=dims=)", args.strip())
            for part in parts:
                part = part.strip().rstrip(",")
                try:
                    if part.startswith("dims="):
                        dims = tuple(int(d) for d in part[5:].split(",") if d.strip())
                    elif part:
                        head = int(part)
                except ValueError:
                    raise HypothesisError(f"cannot read location {text!r}: bad index {part!r}") from None
        return cls(m.group("hook"), head, dims)

    def to_json(self) -> dict[str, Any]:
        return {"hook": self.hook, "head": self.head, "dims": list(self.dims) if self.dims else None}

    @classmethod
    def from_json(cls, data: Any) -> Location:
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, dict) or "hook" not in data:
            raise HypothesisError(f"cannot read location from {data!r}")
        dims = data.get("dims")
        return cls(data["hook"], data.get("head"), tuple(dims) if dims else None)
