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
    blocks.0.hook_resid_post[das k=2 n=512 steps=200 seed=0 basis=0.1,-0.3,...|0.7,...]
                                          a learned k-dim subspace (see below)

A *learned subspace* (distributed alignment search, Geiger et al. 2023; fitted by
``synth.das``) says a variable lives in a direction, not in a set of basis dims: the k
orthonormal columns of a rotation ``R_k`` (``d x k``) of the hook's last axis. Patching it
swaps only that component: ``x + R_k R_k^T (x_src - x)``. The columns are stored as plain
numbers (6 significant digits, columns separated by ``|``), read back with ``float`` and never
executed, together with how they were fitted (k, number of training inputs, gradient steps,
seed), so that a control can refit the same procedure on its null. `Location.describe` prints
it readably: ``blocks.0.hook_resid_post subspace k=2, learned by DAS on 512 inputs``.

Hook names are built in one place, :func:`act_name` (TransformerLens's ``get_act_name``
vocabulary: ``act_name("z", 1) == "blocks.1.attn.hook_z"``), never by hand.

Both the targets (``models``, which know where tracr put each variable) and the engine
(``synth``) speak in locations, so they live here, below both.
"""

from __future__ import annotations

import math
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
_GLOBAL_HOOKS = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "ln_final_scale": "ln_final.hook_scale",
}


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


def _six(x: float) -> float:
    """A float rounded to the 6 significant digits the text form keeps (so text round-trips exactly)."""
    return float(f"{float(x):.6g}")


@dataclass(frozen=True, order=True)
class Subspace:
    """A learned k-dim subspace of a hook's last axis: k orthonormal columns and how they were fitted."""

    basis: tuple[tuple[float, ...], ...]  # k columns, each of the axis' length d
    n_train: int = 0  # training inputs DAS saw
    steps: int = 0  # gradient steps
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            cols = tuple(tuple(_six(v) for v in col) for col in self.basis)
        except (TypeError, ValueError):
            raise HypothesisError(f"subspace basis must be columns of numbers, got {self.basis!r}") from None
        if not cols or not cols[0] or any(len(c) != len(cols[0]) for c in cols):
            raise HypothesisError("subspace basis needs k >= 1 columns of one length")
        if len(cols) > len(cols[0]):
            raise HypothesisError(f"subspace of {len(cols)} columns in a {len(cols[0])}-dim axis")
        if not all(math.isfinite(v) for c in cols for v in c):
            raise HypothesisError("subspace basis holds NaN or infinite numbers")
        for name in ("n_train", "steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HypothesisError(f"subspace {name} must be a non-negative int, got {value!r}")
        object.__setattr__(self, "basis", cols)

    @property
    def k(self) -> int:
        return len(self.basis)

    @property
    def d(self) -> int:
        return len(self.basis[0])

    def __str__(self) -> str:
        cols = "|".join(",".join(f"{v:.6g}" for v in col) for col in self.basis)
        return f"das k={self.k} n={self.n_train} steps={self.steps} seed={self.seed} basis={cols}"

    @classmethod
    def parse(cls, text: str) -> Subspace:
        m = _SUBSPACE_RE.fullmatch(text.strip())
        if m is None:
            raise HypothesisError("cannot read subspace: expected 'das k=K n=N steps=S seed=SEED "
                                  "basis=c,c,...|c,c,...'")
        try:
            cols = tuple(tuple(float(v) for v in col.split(",")) for col in m.group("basis").split("|"))
        except ValueError:
            raise HypothesisError("cannot read subspace: a basis entry is not a number") from None
        sub = cls(cols, int(m.group("n")), int(m.group("steps")), int(m.group("seed")))
        if sub.k != int(m.group("k")):
            raise HypothesisError(f"subspace says k={m.group('k')} but gives {sub.k} columns")
        return sub


_SUBSPACE_RE = re.compile(
    r"das\s+k=(?P<k>\d+)\s+n=(?P<n>\d+)\s+steps=(?P<steps>\d+)\s+seed=(?P<seed>\d+)\s+basis=(?P<basis>[^\]]+)"
)

_LOCATION_RE = re.compile(r"^\s*(?P<hook>[A-Za-z_][\w.]*)\s*(?:\[(?P<args>[^\]]*)\])?\s*$")


def hook_in_layer(hook: str, layer: int) -> str:
    """The same block hook in another layer (``blocks.1.attn.hook_z`` -> ``blocks.3.attn.hook_z``)."""
    m = re.match(r"blocks\.\d+\.(.+)$", hook)
    if m is None:
        raise HypothesisError(f"{hook!r} is not a block hook")
    return f"blocks.{int(layer)}.{m.group(1)}"


@dataclass(frozen=True, order=True)
class Location:
    """Where a variable lives: a TransformerLens hook name, an optional head, optional dims or
    an optional learned subspace (not both)."""

    hook: str
    head: int | None = None
    dims: tuple[int, ...] | None = None
    subspace: Subspace | None = None

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
        if self.subspace is not None:
            if not isinstance(self.subspace, Subspace):
                raise HypothesisError(f"subspace must be a Subspace, got {self.subspace!r}")
            if self.dims is not None:
                raise HypothesisError("a location has dims or a learned subspace, not both")

    def without_subspace(self) -> Location:
        """The same hook and head, whole (what a subspace is fitted inside)."""
        return Location(self.hook, self.head)

    def describe(self) -> str:
        """Readable form: the location, with a learned subspace summarised instead of its numbers."""
        if self.subspace is None:
            return str(self)
        return (f"{self.without_subspace()} subspace k={self.subspace.k}, learned by DAS on "
                f"{self.subspace.n_train} inputs")

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
        if self.subspace is not None:
            args.append(str(self.subspace))
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
        subspace = None
        if args is not None and re.search(r"(^|,)\s*das\s", args):
            at = re.search(r"(^|,)\s*das\s", args)
            subspace = Subspace.parse(args[at.end(1):])
            args = args[: at.start()] if at.start() > 0 else None
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
        return cls(m.group("hook"), head, dims, subspace)

    def to_json(self) -> dict[str, Any]:
        dims = list(self.dims) if self.dims else None
        out: dict[str, Any] = {"hook": self.hook, "head": self.head, "dims": dims}
        if self.subspace is not None:
            out["subspace"] = str(self.subspace)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Location:
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, dict) or "hook" not in data:
            raise HypothesisError(f"cannot read location from {data!r}")
        dims = data.get("dims")
        sub = data.get("subspace")
        if sub is not None and not isinstance(sub, str):
            raise HypothesisError(f"location subspace must be its text form, got {sub!r}")
        subspace = Subspace.parse(sub) if sub is not None else None
        return cls(data["hook"], data.get("head"), tuple(dims) if dims else None, subspace)
