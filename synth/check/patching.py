"""Patching: read and overwrite activations at hypothesis locations, batched.

Every check in mechsynth (causal scrubbing, interchange interventions, resample
ablation) is the same operation underneath: run the network on a batch of token
sequences while some activations are *replaced* by activations taken from other runs,
and read the logits and some activations back. This module is that operation and
nothing else.

A `Location` (dsl.hypothesis) names a TransformerLens hook, optionally one head of
a hook with a head axis (``blocks.L.attn.hook_z``: ``[batch, pos, head, d_head]``;
transformer_lens 4.x has no ``hook_result`` on native models, so heads are patched
before ``W_O``) and optionally a set of dimensions of the last axis (tracr gives every
variable its own residual dimensions). `resolve` checks a location against the model
and turns it into a `Site`: the canonical hook name (aliases such as ``hook_z`` map to
``attn.o.hook_in`` in 4.x), the hook's position in execution order, and the shape of
one position's activation. Anything that cannot be a per-position location raises a
`CheckError` with a one-line message.

`run` performs one forward pass with a list of `Edit`s (site, positions, values, and
optionally a slice of batch rows, so that several differently patched runs share one
forward pass) and captures the sites asked for. Edits at the same hook are applied in the order given, so
a whole-hook *base* edit (mean or zero ablation of the embeddings) can be followed by
the claimed-dimension edits that overwrite part of it.

An edit's values may also be a `Pull`: values read *during the same pass*, at the edit's
own site, from other rows of the batch. A row block that computes some variable's
activation and a block that is patched with it can then share one forward pass, because
hooks fire in execution order and a claimed parent always lives at an earlier hook than
its consumer (synth.check.batching builds whole checks this way).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING
from collections.abc import Mapping, Sequence

import torch

from mechsynth.dsl.location import Location, Subspace, act_name
from mechsynth.models.bridge import Entering, can_stage, staged_forward
from mechsynth.models.device import module_device

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


class CheckError(ValueError):
    """A hypothesis that cannot be checked on this target (bad location, order, program)."""


@dataclass(frozen=True)
class Site:
    """A location resolved against one model: canonical hook, execution order, per-position shape."""

    location: Location
    hook: str
    order: int
    shape: tuple[int, ...]  # the hook's activation shape after [batch, pos]

    @property
    def head(self) -> int | None:
        return self.location.head

    @property
    def dims(self) -> tuple[int, ...] | None:
        return self.location.dims

    def _basis(self, like: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor | None:
        """The orthonormal ``[d, k]`` columns of the subspace to read or write: ``basis`` when given
        (DAS, while it fits one), else the location's learned subspace (None for a whole or dims site)."""
        if basis is not None:
            if self.dims is not None:
                raise CheckError(f"location {self.location}: a basis is for a whole hook or head, not dims")
            return basis.to(like.device, like.dtype)
        sub = self.location.subspace
        return None if sub is None else subspace_matrix(sub).to(like.device, like.dtype)

    def _view(self, act: torch.Tensor, positions: slice) -> torch.Tensor:
        # Basic indexing only, so the result is a view that writes go through.
        view = act[:, positions]
        if self.head is not None:
            view = view[:, :, self.head]
        return view

    def read(self, act: torch.Tensor, positions: slice = slice(None), *,
             basis: torch.Tensor | None = None) -> torch.Tensor:
        """The site's values ``[batch, pos, ...]`` inside a whole-hook activation.

        With a subspace (the location's, or an explicit ``[d, k]`` ``basis``) the values are its
        k coordinates ``R_k^T x``.
        """
        view = self._view(act, positions)
        r = self._basis(view, basis)
        if self.dims is not None:
            return view[..., torch.tensor(self.dims, dtype=torch.long, device=act.device)]
        if r is not None:
            return view @ r
        return view

    def write(self, act: torch.Tensor, values: torch.Tensor, positions: slice = slice(None), *,
              basis: torch.Tensor | None = None) -> None:
        """Overwrite the site's values in place (``values`` shaped like `read`'s result).

        A subspace site swaps the subspace component only, ``x + R_k (v - R_k^T x)``: the one
        definition of the interchange in a learned subspace, used by the checks (the location's
        stored subspace) and by DAS while it fits ``basis`` (differentiable in ``basis`` and
        ``values``; ``act`` must not be a leaf that requires grad).
        """
        view = self._view(act, positions)
        r = self._basis(view, basis)
        if self.dims is not None:
            dims = torch.tensor(self.dims, dtype=torch.long, device=act.device)
            view[..., dims] = values.to(act.device, act.dtype)
        elif r is not None:
            # Under autograd the product must not keep ``view`` itself for the backward pass, since
            # add_ then changes it (a contiguous view is saved as it is): it reads a copy.
            current = (view.clone() if torch.is_grad_enabled() else view) @ r
            view.add_((values.to(act.device, act.dtype) - current) @ r.T)
        else:
            view.copy_(values.to(act.device, act.dtype))


@functools.cache
def subspace_matrix(subspace: Subspace) -> torch.Tensor:
    """A learned subspace's columns as an orthonormal ``[d, k]`` float64 matrix.

    The stored numbers keep 6 significant digits, so they are re-orthonormalised (QR, signs
    fixed so each column keeps its stored direction); memoised per subspace.
    """
    raw = torch.tensor(subspace.basis, dtype=torch.float64).T
    q, r = torch.linalg.qr(raw)
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)


@dataclass(frozen=True, eq=False)
class Pull:
    """Edit values taken, in the same pass, from other rows: ``act[rows[s, k], k]`` at the site.

    ``rows`` is ``[n, P]`` (absolute batch rows, one per edited row and edited position).
    The source rows' own edits at this hook must come earlier in the edit list (they are read
    as they stand when this edit is applied).
    """

    rows: torch.Tensor

    def values(self, site: Site, act: torch.Tensor, positions: slice) -> torch.Tensor:
        current = site.read(act, positions)
        rows = self.rows.to(current.device)
        return current[rows, torch.arange(rows.shape[1], device=current.device)[None, :]]


@dataclass(frozen=True)
class Edit:
    """Replace ``site``'s values at ``positions`` (a slice of model positions) by ``values``.

    ``rows`` restricts the edit to a slice of the batch, so that several differently
    patched runs can share one forward pass (``values`` then covers those rows only).
    ``values`` may be a `Pull` from other rows of the same pass.
    """

    site: Site
    values: torch.Tensor | Pull
    positions: slice = field(default_factory=lambda: slice(None))
    rows: slice = field(default_factory=lambda: slice(None))


@dataclass(frozen=True)
class HookInfo:
    """What a probe forward pass tells us about a model's hooks."""

    order: Mapping[str, int]  # canonical hook name -> rank in execution order
    shapes: Mapping[str, tuple[int, ...]]  # canonical name -> shape after [batch, pos]
    positional: Mapping[str, bool]  # whether axis 1 is the position axis
    canonical: Mapping[str, str]  # any hook name or alias -> canonical name


_PROBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def probe(model: TransformerBridge) -> HookInfo:
    """Hook order and shapes of a model, learned once per model object (every score of a run
    resolves its claims on the same network; a modified copy is a new object)."""
    info = _PROBED.get(model)
    if info is None:
        info = _PROBED[model] = _probe(model)
    return info


def _probe(model: TransformerBridge) -> HookInfo:
    """Run the model on two tiny inputs (1 and 2 positions) to learn hook order and shapes."""
    n_ctx = int(model.cfg.n_ctx)
    lengths = (1, 2) if n_ctx >= 2 else (1,)
    caches = []
    with torch.no_grad():
        for length in lengths:
            tokens = torch.zeros(1, length, dtype=torch.long, device=module_device(model))
            _, cache = model.run_with_cache(tokens)
            caches.append(cache)
    canonical = {name: hp.name for name, hp in model.hook_dict.items()}
    order: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    positional: dict[str, bool] = {}
    last = caches[-1]
    for name in last.keys():
        canon = canonical.get(name, name)
        canonical.setdefault(name, canon)
        if canon in order:
            continue
        order[canon] = len(order)
        shape = tuple(last[name].shape)
        shapes[canon] = shape[2:]
        if len(lengths) == 2 and name in caches[0]:
            first = tuple(caches[0][name].shape)
            # The position axis is axis 1 iff only axis 1 changes when the input gets one longer.
            positional[canon] = (
                len(first) == len(shape) >= 3 and first[1] == 1 and shape[1] == 2 and first[2:] == shape[2:]
            )
        else:
            positional[canon] = len(shape) >= 3
    frozen = [MappingProxyType(m) for m in (order, shapes, positional, canonical)]
    return HookInfo(*frozen)


def resolve(model: TransformerBridge, location: Location, info: HookInfo | None = None) -> Site:
    """Check a location against the model and return its `Site` (CheckError on any mismatch)."""
    info = info or probe(model)
    if location.hook not in info.canonical:
        close = sorted(h for h in info.canonical if h.split(".")[-1] == location.hook.split(".")[-1])[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CheckError(f"location {location}: the model has no hook {location.hook!r}{hint}")
    hook = info.canonical[location.hook]
    if hook not in info.order:
        raise CheckError(f"location {location}: hook {location.hook!r} does not fire in a forward pass")
    if not info.positional[hook]:
        raise CheckError(f"location {location}: hook {location.hook!r} has no per-position axis")
    shape = info.shapes[hook]
    last_axis = shape[-1] if shape else 0
    if location.head is not None:
        if len(shape) != 2:
            raise CheckError(f"location {location}: hook {location.hook!r} has no head axis ({list(shape)})")
        if location.head >= shape[0]:
            raise CheckError(f"location {location}: head {location.head} out of range (layer has {shape[0]})")
        last_axis = shape[1]
    elif len(shape) != 1 and location.dims is not None:
        raise CheckError(f"location {location}: dims need a head index on a hook with a head axis")
    if location.subspace is not None and location.subspace.d != last_axis:
        raise CheckError(f"location {location.describe()}: the subspace's columns have {location.subspace.d} "
                         f"entries, the axis has {last_axis}")
    if location.subspace is not None and len(shape) != 1 and location.head is None:
        raise CheckError(f"location {location.describe()}: a subspace needs a head index on a hook "
                         "with a head axis")
    if location.dims is not None:
        bad = [d for d in location.dims if d >= last_axis]
        if bad:
            raise CheckError(f"location {location}: dim {bad[0]} out of range (the axis has {last_axis})")
        if len(set(location.dims)) != len(location.dims):
            raise CheckError(f"location {location}: repeated dims")
    return Site(location, hook, info.order[hook], shape)


def block_starts(model: TransformerBridge, info: HookInfo | None = None) -> tuple[int, ...]:
    """Execution rank of each block's first hook (its ``hook_resid_pre``), block 0 first."""
    info = info or probe(model)
    names = (info.canonical[act_name("resid_pre", layer)] for layer in range(int(model.cfg.n_layers)))
    return tuple(info.order[name] for name in names)


def site_layer(site: Site, starts: Sequence[int]) -> int:
    """The block a site's hook fires in (``starts`` from `block_starts`): -1 for the embeddings,
    ``len(starts) - 1`` for the last block and whatever follows it (the final norm, the unembedding)."""
    return sum(1 for s in starts if s <= site.order) - 1


class PassCounter:
    """Counts batched forward passes (one per `run` call), to report the cost of a check."""

    def __init__(self) -> None:
        self.passes = 0
        self.sequences = 0

    def add(self, batch: int) -> None:
        self.passes += 1
        self.sequences += batch


def run(
    model: TransformerBridge,
    tokens: torch.Tensor,
    edits: Sequence[Edit] = (),
    capture: Sequence[Site] = (),
    *,
    counter: PassCounter | None = None,
    need_logits: bool = True,
    entering: Sequence[Entering | tuple[int, torch.Tensor]] = (),
) -> tuple[torch.Tensor | None, dict[Site, torch.Tensor]]:
    """One forward pass with edits applied; returns (logits or None, captured site values).

    Captured values are read after the edits at that hook, as full-position tensors
    ``[batch, pos, ...]``. With ``need_logits=False`` the pass stops right after the last
    captured hook, which saves the later layers.

    ``entering`` (increasing layers) lets the last rows of the batch skip the blocks before the
    one they enter (models.bridge.staged_forward): an `Entering` (or ``(layer, residual)``) gives
    the residual stream entering block ``layer`` of ``k`` rows, and for a later stage the clean
    values inside that block where they join, which must be what those rows' own ``tokens``
    produce there (no edit of theirs before that point). At a hook, only the rows that have
    entered are in the activation, so an edit's rows must lie among them. Where the model cannot
    be run in stages (models.bridge.can_stage), every row runs from its tokens, which gives the
    same result.
    """
    entering = [e if isinstance(e, Entering) else Entering(int(e[0]), e[1]) for e in entering]
    staged = bool(entering) and not capture and can_stage(model)
    joined = sum(e.rows for e in entering) if staged else 0
    by_hook: dict[str, list[Edit]] = {}
    for e in edits:
        by_hook.setdefault(e.site.hook, []).append(e)
    reads: dict[str, list[Site]] = {}
    for s in capture:
        reads.setdefault(s.hook, []).append(s)
    captured: dict[Site, torch.Tensor] = {}
    stop_hook = max(capture, key=lambda s: s.order).hook if (capture and not need_logits) else None

    def make_hook(hook_name: str):
        def fn(act: torch.Tensor, hook: object) -> torch.Tensor:
            if hook_name in by_hook:
                act = act.clone()
                for e in by_hook[hook_name]:
                    values = e.values
                    if isinstance(values, Pull):  # read now: earlier edits at this hook are in place
                        values = values.values(e.site, act, e.positions)
                    e.site.write(act[e.rows], values, e.positions)  # a row slice is a view
            for s in reads.get(hook_name, ()):
                captured[s] = s.read(act).detach().clone()
            if hook_name == stop_hook:
                raise _Stop()
            return act

        return fn

    hooks = [(h, make_hook(h)) for h in sorted(set(by_hook) | set(reads))]
    if counter is not None:
        counter.add(int(tokens.shape[0]))
    logits = None
    with torch.no_grad():
        try:
            with model.hooks(fwd_hooks=hooks):
                if staged:
                    logits = staged_forward(model, tokens[: int(tokens.shape[0]) - joined], entering)
                else:
                    logits = model(tokens)
        except _Stop:
            pass
    return logits, captured


class _Stop(Exception):
    """Raised inside a hook to end a forward pass whose remaining layers are not needed."""


@dataclass(frozen=True, eq=False)
class ReadIndex:
    """The model positions read in each batch row (a task may read different positions per input).

    ``index[b, r]`` is row b's r-th read position; rows reading fewer positions than the
    widest row are filled with position 0 and ``valid`` is False there. Every per-position
    number (losses, agreement) is ``[batch, R]`` and is pooled over ``valid`` entries only.
    """

    index: torch.Tensor  # [n, R] long
    valid: torch.Tensor  # [n, R] bool

    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> ReadIndex:
        rows = [tuple(r) for r in rows]
        if rows and all(r == rows[0] for r in rows):  # the common case: every row reads the same positions
            return cls.same(rows[0], len(rows), device)
        width = max((len(r) for r in rows), default=0)
        index = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        valid = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
        for b, r in enumerate(rows):
            index[b, : len(r)] = torch.tensor(list(r), dtype=torch.long, device=device)
            valid[b, : len(r)] = True
        return cls(index, valid)

    @classmethod
    def same(cls, positions: Sequence[int], n: int, device: torch.device | str = "cpu") -> ReadIndex:
        """The same positions in each of ``n`` rows."""
        index = torch.tensor(list(positions), dtype=torch.long, device=device)[None, :].expand(n, -1)
        return cls(index, torch.ones(index.shape, dtype=torch.bool, device=device))

    def take(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits[b, index[b, r]]``: ``[n, R, ...]``."""
        rows = torch.arange(self.index.shape[0], device=logits.device)[:, None]
        return logits[rows, self.index.to(logits.device)]


def as_read_index(
    positions: Sequence[int] | ReadIndex, n: int, device: torch.device | str = "cpu"
) -> ReadIndex:
    return positions if isinstance(positions, ReadIndex) else ReadIndex.same(positions, n, device)


def readout_loss(
    logits: torch.Tensor, clean: torch.Tensor, positions: Sequence[int] | ReadIndex,
    numerical_column: int | None, *, multilabel: bool = False,
) -> torch.Tensor:
    """Per-input, per-readout-position loss of ``logits`` against the clean model's ``clean`` logits.

    We explain the model, not the labels, so the reference is the clean network itself:
    categorical outputs use KL(clean || patched) of the softmax distributions (0 for the
    clean run); numerical outputs use the squared error of the readout column; multilabel
    outputs (a BCE head, one independent label per column) the per-label binary KL,
    ``sum_j KL(Bernoulli(sigmoid(clean_j)) || Bernoulli(sigmoid(patched_j)))``. ``positions``
    are the same model positions in every row, or a `ReadIndex` of each row's. Returns
    ``[batch, R]`` (entries where the `ReadIndex` is not valid are meaningless).
    """
    read = as_read_index(positions, logits.shape[0], logits.device)
    return loss_at_read(read.take(logits).double(), read.take(clean).double(), numerical_column,
                        multilabel=multilabel)


def loss_at_read(
    a: torch.Tensor, c: torch.Tensor, numerical_column: int | None, *, multilabel: bool = False
) -> torch.Tensor:
    """`readout_loss` of logits already read at the readout positions (float64 ``[..., n, R, V]``);
    the clean ``c`` ``[n, R, V]`` broadcasts, so many patched runs are compared in one call."""
    if numerical_column is not None:
        return (a[..., numerical_column] - c[..., numerical_column]) ** 2
    if multilabel:
        return binary_kl(c, a).sum(-1).clamp_min(0.0)
    log_p, log_q = torch.log_softmax(c, -1), torch.log_softmax(a, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def binary_kl(clean: torch.Tensor, patched: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bernoulli(sigmoid(clean)) || Bernoulli(sigmoid(patched))) from logits, stable
    for large logits (log-sigmoids, never log of a rounded probability)."""
    import torch.nn.functional as F

    p = torch.sigmoid(clean)
    log_p, log_not_p = F.logsigmoid(clean), F.logsigmoid(-clean)
    log_q, log_not_q = F.logsigmoid(patched), F.logsigmoid(-patched)
    return p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)
