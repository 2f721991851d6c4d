"""Causal scrubbing (Chan et al. 2022) on a residual-stream transformer, batched.

The claim being tested: *the network's output depends on the input only through the
claimed variables, each held at its location, each computed from its claimed parents.*
Causal scrubbing tests it by replacing activations with activations from *other*
inputs in every way the claim says cannot matter, and measuring how much of the
network's behaviour survives.

The recursive algorithm
-----------------------
Chan et al. define it on the treeified hypothesis graph. For a node ``v`` evaluated for
a reference input ``x`` (an input that agrees with the tree above on ``v``'s value):

* each claimed parent ``p`` of ``v`` is evaluated, recursively, on a fresh input ``x_p``
  drawn from the data *conditioned on agreeing with x on the value of p*;
* everything else that feeds ``v`` (every path the hypothesis does not claim) is
  evaluated on an independent random input;
* the leaves are inputs: a located primitive (``tokens`` at ``hook_embed``) takes the
  reference input's own activation.

The root is the readout (logits) on the real input; the scrubbed loss is compared with
the clean loss and with the loss when the whole input is resampled.

What this means on the residual stream
--------------------------------------
Values are per position, so agreement is per position: the value of a parent at
position ``k`` comes from an input whose value of that parent *at k* equals the
reference's. Only inputs of the reference's length are drawn (see synth.check.claims), so a
variable that depends on the length alone is never varied: for the `length` program the
whole-input resampling changes nothing and loss recovered is 0/0. `scrub_across_lengths`
(the end of this module) then draws resampled inputs of any length, aligned at the
positions both inputs have; synth.check.scoring chooses it (``lengths="auto"``).

The scrubbed activation of ``v`` is computed in one forward pass whose
**base input is a random other input** (for ``ablation="resample"``; the mean or zero
embedding for "mean"/"zero"), with the locations of ``v``'s claimed parents overwritten,
position by position, by their own scrubbed activations. Concretely, what is resampled
(comes from the base, not from an agreeing input) when computing ``v``:

* the token and position embeddings, unless a claimed parent lives there (then only
  the parent's dims are overwritten; the complement dims stay resampled);
* every attention head output and MLP output that is not the location of a claimed
  parent of ``v``, including heads/MLPs that hold *other* claimed variables (an edge
  the hypothesis does not draw is a path it calls irrelevant);
* the complement of a claimed parent's subspace: only ``dims`` (or one head of
  ``hook_z``) are overwritten;
* the BOS position, where the program has no value.

Components that sit *between* a parent's location and ``v``'s location and read the
parent (tracr's selector-width helper head, for instance) see the overwritten parent,
so a claimed edge ``p -> v`` stands for every path from ``p``'s location to ``v``'s
location (path-patching semantics); a path from the input to ``v`` that avoids every
claimed parent location sees only the base input.

Batching and treeification
--------------------------
For each located variable (in topological order) we compute a *pool* holding its
scrubbed activation for every input of the group as reference, at every position.
Variables at the same depth of the claims graph share one forward pass (each in its own
block of batch rows), so scrubbing costs, per length group, one pass per level plus one
for the readout, whatever the number of inputs. A consumer's patch at position ``k`` for reference row
``s`` is drawn uniformly from the pool rows whose reference agrees with row ``s`` on the
parent at ``k``. Each (consumer row, parent, position) draw is independent, so every
node of the per-position tree gets its own conditional sample; the one approximation to
a fully treeified tree is that different positions of one pool row share that row's
upstream draws (a pool row is one forward pass), which only matters when a consumer
happens to draw the same row for two positions.

`resample_ablation_score` is the fast node-level variant used for pre-filtering (no
agreement sampling, no program values): one pass that is the readout step of scrubbing
with the reference's *own* clean activations at the locations the readout is claimed to
read (the output variable's), everything else resampled (sufficiency: a mislocated
output fails it, and scrubbing, which patches those locations with values from other
inputs, can hardly do better); one where all claimed locations are resampled on the
clean input (necessity of the set); and one per claimed variable where only its location
is resampled (necessity of each node: a location the network does not use scores ~0 and
is flagged this way). Together with the scrubbing base pass these are three forward
passes per length group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from mechsynth.synth.check.batching import Block, Patch
from mechsynth.synth.check.claims import Claims, Group
from mechsynth.synth.check.patching import (
    CheckError,
    PassCounter,
    ReadIndex,
    as_read_index,
    loss_at_read,
)

if TYPE_CHECKING:
    from mechsynth.models import Target

ABLATIONS = ("resample", "mean", "zero")
NUMERIC_ATOL = 1e-2  # numerical readouts "agree" within this (models.target.NUMERIC_ATOL)
TIE_ATOL = 1e-5  # logits this close to the maximum count as tied for the top class


def _code_key(codes: torch.Tensor) -> torch.Tensor:
    """Codes as comparable keys. Means computed in a different order can differ in the last
    bits: agreement to 1e-9; None (NaN) agrees with None; infinities stay infinite (-inf marks
    no position in the across-lengths tables)."""
    return torch.nan_to_num(torch.round(codes.double() * 1e9), nan=-1e300, posinf=float("inf"),
                            neginf=float("-inf"))


def agreeing_rows(codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For codes ``[n, L]``, a uniformly random row ``r[s, k]`` with ``codes[r, k] == codes[s, k]``.

    Vectorised over rows and positions: sort each column, find the run of equal codes
    each element falls in, and pick a uniform element of that run.
    """
    n, length = codes.shape
    c = _code_key(codes)
    order = torch.argsort(c, dim=0, stable=True)  # [n, L]
    sc = torch.gather(c, 0, order)
    new = torch.ones(n, length, dtype=torch.bool, device=codes.device)
    new[1:] = sc[1:] != sc[:-1]
    gid = new.T.reshape(-1).cumsum(0) - 1  # column-major run ids; each column starts a new run
    counts = torch.bincount(gid)
    starts = counts.cumsum(0) - counts
    u = torch.rand(n * length, generator=gen, dtype=torch.float64)
    offset = torch.minimum((u * counts[gid]).long(), counts[gid] - 1)
    pick = starts[gid] + offset  # column-major flat index into the sorted table
    chosen = order.T.reshape(-1)[pick].view(length, n)  # chosen original row, per sorted slot
    out = torch.empty(length, n, dtype=torch.long, device=codes.device)
    out.scatter_(1, order.T, chosen)
    return out.T.contiguous()


def _gather(pool: torch.Tensor, rows: torch.Tensor, group: Group) -> torch.Tensor:
    """``pool[rows[s, k], offset + k]`` for every reference row s and input position k."""
    pos = torch.arange(group.length, device=pool.device) + group.offset
    return pool[rows.to(pool.device), pos[None, :]]


def base_run(
    claims: Claims, group: Group, ablation: str, gen: torch.Generator
) -> tuple[torch.Tensor, list[Patch], torch.Tensor | None]:
    """The base of a scrubbed pass: (tokens, whole-embedding patches, resampled rows or None)."""
    n = group.size
    if ablation == "resample":
        rows = torch.randint(n, (n,), generator=gen).to(group.tokens.device)  # a CPU draw: same rows anywhere
        return group.tokens[rows], [], rows
    patches = []
    for site, clean in zip(claims.embed_sites, group.embeds):
        value = clean.mean(0, keepdim=True) if ablation == "mean" else torch.zeros_like(clean[:1])
        patches.append(Patch(site, slice(None), values=value.expand_as(clean)))
    return group.tokens, patches, None


@dataclass(frozen=True)
class GroupLosses:
    """Per-input, per-readout-position results of one length group (pooled where ``valid``)."""

    loss: torch.Tensor  # [n, R] patched loss vs clean
    loss_resampled: torch.Tensor  # [n, R]
    same: torch.Tensor  # [n, R] bool: patched prediction equals the clean prediction
    same_resampled: torch.Tensor  # [n, R]
    valid: torch.Tensor  # [n, R] bool: a position the row's input reads (see patching.ReadIndex)


def predictions_agree(
    logits: torch.Tensor, clean: torch.Tensor, readout: Sequence[int] | ReadIndex, numeric: int | None,
    *, multilabel: bool = False,
) -> torch.Tensor:
    """[n, R] bool: decoded patched output equals the clean network's output at each readout position
    (multilabel: the same set of positive logits)."""
    read = as_read_index(readout, logits.shape[0], logits.device)
    return agree_at_read(read.take(logits), read.take(clean), numeric, multilabel=multilabel)


def agree_at_read(
    a: torch.Tensor, c: torch.Tensor, numeric: int | None, *, multilabel: bool = False
) -> torch.Tensor:
    """`predictions_agree` of logits already read at the readout positions (``[..., n, R, V]``, the
    clean ``c`` broadcasting)."""
    if numeric is not None:
        return (a[..., numeric] - c[..., numeric]).abs() <= NUMERIC_ATOL
    if multilabel:
        return ((a > 0) == (c > 0)).all(-1)
    # tracr writes an all-zero output where the program is undefined, so logits can tie exactly; an
    # argmax would then flip on float noise. Two outputs agree when their sets of top classes intersect.
    top_a = a >= a.amax(-1, keepdim=True) - TIE_ATOL
    top_c = c >= c.amax(-1, keepdim=True) - TIE_ATOL
    return (top_a & top_c).any(-1)


def numeric_column(target: Target) -> int | None:
    return target.numeric_column if target.task.output_kind == "numerical" else None


def is_multilabel(target: Target) -> bool:
    """Whether the target's head is read as independent labels (per-label binary KL, set agreement)."""
    return target.task.output_kind == "multilabel"


def _levels(claims: Claims) -> list[list[str]]:
    """Non-primitive claims grouped by depth: a variable's level is one more than its deepest parent's."""
    depth: dict[str, int] = {}
    for name, claim in claims.claims.items():
        if claim.primitive:
            depth[name] = 0
        else:
            depth[name] = 1 + max((depth[p] for p in claim.parents), default=0)
    top = max(depth.values(), default=0)
    return [[n for n in claims.claims if depth[n] == d] for d in range(1, top + 1)]


def _parent_patch(claims: Claims, group: Group, parent: str, gen: torch.Generator, prefix: str) -> Patch:
    """A parent's scrubbed values for every row: per position, from a row that agrees on the parent."""
    agree = agreeing_rows(group.codes[parent], gen)
    site = claims.claims[parent].site
    if claims.claims[parent].primitive:  # an input leaf: the agreeing input's own activation
        return Patch(site, group.positions, values=_gather(group.clean[parent], agree, group))
    return Patch(site, group.positions, source=f"{prefix}pool:{parent}", rows=agree)


@dataclass(frozen=True)
class ScrubPlan:
    """The blocks of one group's scrubbing and which of them give the scrubbed and resampled logits."""

    blocks: tuple[Block, ...]
    scrubbed: str
    resampled: str | None  # a block, or None: the clean logits of ``rows`` (the whole input resampled)
    rows: torch.Tensor | None


def plan_scrub(
    claims: Claims, group: Group, ablation: str, gen: torch.Generator, prefix: str = "scrub/"
) -> ScrubPlan:
    """Causal scrubbing of one length group as blocks (see the module docstring)."""
    if ablation not in ABLATIONS:
        raise CheckError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    blocks = []
    for level in _levels(claims):
        for name in level:
            # A pool: the variable's scrubbed activation with every input of the group as reference.
            tokens, patches, _ = base_run(claims, group, ablation, gen)
            patches += [_parent_patch(claims, group, p, gen, prefix) for p in claims.claims[name].parents]
            blocks.append(Block(f"{prefix}pool:{name}", tokens, tuple(patches), logits=False))
    tokens, base, rows = base_run(claims, group, ablation, gen)
    resampled = None
    if rows is None:  # mean/zero: the resampled run is the ablated base itself
        resampled = f"{prefix}resampled"
        blocks.append(Block(resampled, tokens, tuple(base)))
    patches = base + [_parent_patch(claims, group, p, gen, prefix) for p in claims.root_parents]
    scrubbed = resampled
    if claims.root_parents or rows is None:
        scrubbed = f"{prefix}scrubbed"
        blocks.append(Block(scrubbed, tokens, tuple(patches)))
    if scrubbed is None:  # nothing claimed: the scrubbed run is the resampled run
        return ScrubPlan(tuple(blocks), "", None, rows)
    return ScrubPlan(tuple(blocks), scrubbed, resampled, rows)


def _resampled(
    group: Group, resampled: str | None, rows: torch.Tensor | None, logits: Mapping
) -> torch.Tensor:
    # Resampling the whole input is the clean run of the other input.
    return group.clean_logits[rows] if resampled is None else logits[resampled]


class Judge:
    """Loss and agreement against one group's clean run (`readout_loss`, `predictions_agree`) of
    many patched logits, in one call over them all: the logits a score will ask about are announced
    with `want`, and the first question answers every announced one (the clean side read once).
    A logits tensor is known by identity, so it must not be changed in place after `want`."""

    def __init__(self, target: Target, group: Group) -> None:
        self.numeric, self.multilabel = numeric_column(target), is_multilabel(target)
        self.group = group
        self._pending: dict[int, torch.Tensor] = {}
        self._done: dict[int, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}  # keeps keys alive

    def want(self, logits: Sequence[torch.Tensor | None]) -> None:
        for t in logits:
            if t is not None and id(t) not in self._done:
                self._pending[id(t)] = t

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([n, R] loss, [n, R] agreement) of ``logits``."""
        if id(logits) not in self._done:
            self._pending[id(logits)] = logits
            self._flush()
        return self._done[id(logits)][1]

    def _flush(self) -> None:
        todo, self._pending = list(self._pending.values()), {}
        read = self.group.readout
        clean = read.take(self.group.clean_logits)
        patched = torch.stack([read.take(t) for t in todo])  # [k, n, R, V]
        loss = loss_at_read(patched.double(), clean.double(), self.numeric, multilabel=self.multilabel)
        same = agree_at_read(patched, clean, self.numeric, multilabel=self.multilabel)
        for i, t in enumerate(todo):
            self._done[id(t)] = (t, (loss[i], same[i]))


def _against_clean(target: Target, group: Group, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, R] loss, [n, R] agreement) of ``logits`` against the clean run."""
    return Judge(target, group)(logits)


def group_losses(
    target: Target, group: Group, logits: torch.Tensor, baseline: tuple[torch.Tensor, torch.Tensor],
    judge: Judge | None = None,
) -> GroupLosses:
    """Losses and agreement of patched ``logits`` next to the ``baseline``'s (from `_against_clean`)."""
    loss, same = (judge or Judge(target, group))(logits)
    return GroupLosses(loss, baseline[0], same, baseline[1], group.readout.valid)


def scrub_losses(
    target: Target, group: Group, plan: ScrubPlan, logits: Mapping, judge: Judge | None = None
) -> GroupLosses:
    """The scrubbing numbers of one group from its blocks' logits (``judge``: the group's, to share
    one loss call with the other checks)."""
    judge = judge or Judge(target, group)
    resampled = _resampled(group, plan.resampled, plan.rows, logits)
    scrubbed = logits[plan.scrubbed] if plan.scrubbed else resampled
    judge.want([resampled, scrubbed])
    return group_losses(target, group, scrubbed, judge(resampled), judge)


@dataclass(frozen=True)
class AblationPlan:
    """The blocks of one group's node-level ablations (see `plan_ablations`)."""

    blocks: tuple[Block, ...]
    resampled: str | None
    rows: torch.Tensor | None
    kept: str | None  # None: nothing claimed at the readout, kept = resampled
    dropped: str | None  # None: nothing claimed, dropped = clean
    single: Mapping[str, str]  # variable -> block with only its node ablated


def plan_ablations(
    claims: Claims, group: Group, ablation: str, gen: torch.Generator, prefix: str = "ablate/"
) -> AblationPlan:
    """Node-level resample ablation of one group: (claimed nodes kept, rest ablated), (all claimed
    nodes ablated), and {variable: only that node ablated}. Ablated values come from one base run."""
    tokens, base, rows = base_run(claims, group, ablation, gen)
    blocks = []
    resampled = None
    if rows is None:
        resampled = f"{prefix}resampled"
        blocks.append(Block(resampled, tokens, tuple(base)))
    # Sufficiency: the readout step of scrubbing with the reference's own clean values at the locations
    # the readout is claimed to read (no agreement sampling), everything else from the ablated base.
    kept = None
    if claims.root_parents:
        kept = f"{prefix}kept"
        keep = [Patch(claims.claims[p].site, group.positions, values=group.clean[p][:, group.positions])
                for p in claims.root_parents]
        blocks.append(Block(kept, tokens, tuple(base + keep)))
    # Necessity: the clean input, with claimed locations taken from the ablated base run.
    n = group.size
    same_row = torch.arange(n, device=group.tokens.device)[:, None].expand(n, group.length)

    def drop(name: str) -> Patch:
        site = claims.claims[name].site
        if rows is not None:  # the resampled activations are the clean ones of the other input
            return Patch(site, group.positions, values=group.clean[name][rows][:, group.positions])
        return Patch(site, group.positions, source=resampled, rows=same_row)

    names = list(claims.claims)
    dropped = None
    if names:
        dropped = f"{prefix}drop"
        blocks.append(Block(dropped, group.tokens, tuple(drop(name) for name in names)))
    single = {name: f"{prefix}drop:{name}" for name in names}
    blocks += [Block(single[name], group.tokens, (drop(name),)) for name in names]
    return AblationPlan(tuple(blocks), resampled, rows, kept, dropped, single)


def ablation_losses(
    target: Target, group: Group, plan: AblationPlan, logits: Mapping, judge: Judge | None = None
) -> tuple[GroupLosses, GroupLosses, dict[str, GroupLosses]]:
    """(kept, dropped, {variable: alone dropped}) of one group from its blocks' logits."""
    judge = judge or Judge(target, group)
    resampled = _resampled(group, plan.resampled, plan.rows, logits)
    kept = logits[plan.kept] if plan.kept else resampled
    dropped = logits[plan.dropped] if plan.dropped else group.clean_logits
    judge.want([resampled, kept, dropped] + [logits[b] for b in plan.single.values()])
    base = judge(resampled)  # the one baseline of every ablation here
    single = {name: group_losses(target, group, logits[b], base, judge) for name, b in plan.single.items()}
    return (group_losses(target, group, kept, base, judge), group_losses(target, group, dropped, base, judge),
            single)


# ---------------------------------------------------------------------------------------------
# Scrubbing across lengths
# ---------------------------------------------------------------------------------------------
#
# When every input of one length gives the network the same output (tracr's `length`, an
# (ab)^n language), resampling within a length changes nothing and loss recovered is 0/0.
# `scrub_across_lengths` draws every resampled input from *all* lengths instead. A pass runs
# in the frame of its base input (the resampled one, of its own length L'); a claimed parent
# of the consumer is overwritten at the positions the reference (length L) and the base both
# have, k < min(L, L'), and the base keeps its own activations elsewhere (the alignment of
# synth.check.interchange's sources of any length). Only the readout step crosses lengths:
# the pool of an intermediate variable is computed, as within a length, on a base of the
# reference's own length, because a variable computed by attention over positions (the
# length itself) needs the reference's positions; so paths into an intermediate variable
# that the hypothesis does not claim are resampled within the length only (weaker than a
# full across-length test there; the readout's unclaimed paths do cross lengths). The
# readout is compared with the
# reference's clean output at its read positions below min(L, L') only. Agreement is per
# position as within a length: the value of a parent at k comes from a row of any length
# whose value at k equals the reference's and whose scrubbed activation exists at k (its own
# base has position k); when no such row exists, the clean activation of an agreeing input
# is used instead (counted in ``fallback``). Each (consumer, base length) is one forward pass,
# rows of different alignment lengths sharing it through row slices of the edits.


def matching_rows(query: torch.Tensor, keys: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For ``[N, L]`` query and key codes (+inf: no key there), a uniform row ``r[s, k]`` with
    ``keys[r, k] == query[s, k]``, or -1 where none matches."""
    n, length = keys.shape
    sk, order = torch.sort(keys.T.contiguous(), dim=1, stable=True)  # [L, N]
    q = query.T.contiguous()
    lo = torch.searchsorted(sk, q, right=False)
    hi = torch.searchsorted(sk, q, right=True)
    count = hi - lo
    u = torch.rand(length, n, generator=gen, dtype=torch.float64)
    off = torch.minimum((u * count).long(), (count - 1).clamp_min(0))
    pick = torch.gather(order, 1, (lo + off).clamp(max=n - 1))
    return torch.where(count > 0, pick, -1).T.contiguous()


@dataclass(frozen=True, eq=False)
class _AllRows:
    """Every input of every length group, indexed globally (group order, then row order)."""

    groups: tuple[Group, ...]
    group: torch.Tensor  # [N] group index of each row
    index: torch.Tensor  # [N] row within its group
    lengths: torch.Tensor  # [N]
    width: int  # the longest input

    @classmethod
    def of(cls, groups: Sequence[Group]) -> _AllRows:
        g = torch.cat([torch.full((x.size,), i, dtype=torch.long) for i, x in enumerate(groups)])
        idx = torch.cat([torch.arange(x.size) for x in groups])
        lengths = torch.cat([torch.full((x.size,), x.length, dtype=torch.long) for x in groups])
        return cls(tuple(groups), g, idx, lengths, max(x.length for x in groups))

    @property
    def size(self) -> int:
        return int(self.group.shape[0])

    def present(self) -> torch.Tensor:
        """[N, width] bool: the row's input has position k."""
        return torch.arange(self.width)[None, :] < self.lengths[:, None]

    def codes(self, name: str) -> torch.Tensor:
        """[N, width] keys of a program variable (-inf where a row has no position k)."""
        out = torch.full((self.size, self.width), float("-inf"), dtype=torch.float64)
        for i, g in enumerate(self.groups):
            out[self.group == i, : g.length] = g.codes[name].double().cpu()
        return _code_key(out)

    def clean(self, name: str) -> torch.Tensor:
        """[N, width, ...] clean site values of a claimed variable at the input positions (0 beyond)."""
        first = self.groups[0].clean[name]
        out = first.new_zeros((self.size, self.width, *first.shape[2:]))
        for i, g in enumerate(self.groups):
            out[(self.group == i).to(out.device), : g.length] = g.clean[name][:, g.positions]
        return out


def _frame_runs(
    target: Target, rows: _AllRows, base: torch.Tensor, values: Mapping[Any, torch.Tensor],
    counter: PassCounter, capture: Any = None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Run each reference row s in the frame of input ``base[s]``, every site of ``values``
    ([N, width, ...]) overwritten at the aligned positions k < min(L_s, L_base).

    Returns each row's logits (in its base's frame) and, with ``capture``, the captured
    site's values [N, width, ...] at the input positions (zero beyond the base's length).
    """
    from mechsynth.synth.check.patching import Edit, run

    n = rows.size
    base_len = rows.lengths[base]
    aligned = torch.minimum(rows.lengths, base_len)
    out_logits: list[torch.Tensor | None] = [None] * n
    caught = None
    for frame in sorted(set(base_len.tolist())):
        members = [int(s) for s in torch.nonzero(base_len == frame).flatten()]
        members.sort(key=lambda s: int(aligned[s]))
        g0 = rows.groups[int(rows.group[base[members[0]]])]
        tokens = torch.stack([rows.groups[int(rows.group[base[s]])].tokens[int(rows.index[base[s]])]
                              for s in members])
        edits, start = [], 0
        for a in sorted(set(int(aligned[s]) for s in members)):
            block = [s for s in members if int(aligned[s]) == a]
            sl, idx = slice(start, start + len(block)), torch.tensor(block)
            start += len(block)
            for site, v in values.items():
                edits.append(Edit(site, v[idx.to(v.device), :a], slice(g0.offset, g0.offset + a), sl))
        logits, acts = run(target.model, tokens, edits, capture=[capture] if capture else [], counter=counter)
        for j, s in enumerate(members):
            out_logits[s] = logits[j]
        if capture is not None:
            got = acts[capture][:, g0.positions]
            if caught is None:
                caught = got.new_zeros((n, rows.width, *got.shape[2:]))
            caught[torch.tensor(members, device=caught.device), :frame] = got
    return out_logits, caught


@dataclass(frozen=True)
class AcrossLengths:
    """Scrubbing across lengths: per reference group its losses, and how often a parent's
    scrubbed activation had to fall back to a clean agreeing one."""

    losses: tuple[GroupLosses, ...]
    fallback: float  # share of (row, parent, position) draws that used a clean agreeing activation


def scrub_across_lengths(
    target: Target, claims: Claims, groups: Sequence[Group], gen: torch.Generator, counter: PassCounter
) -> AcrossLengths:
    """Causal scrubbing with every resampled input drawn from all lengths (see the section above)."""
    rows = _AllRows.of(groups)
    n = rows.size
    present = rows.present()
    pools: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (values, valid [N, width])
    draws, fallbacks = 0, 0

    def parent_values(parent: str, base: torch.Tensor) -> torch.Tensor:
        nonlocal draws, fallbacks
        codes = rows.codes(parent)
        need = present & (torch.arange(rows.width)[None, :] < rows.lengths[base][:, None])
        clean_keys = torch.where(present, codes, float("inf"))
        clean_rows = matching_rows(codes, clean_keys, gen)  # always found: the row itself agrees
        clean = rows.clean(parent)
        pos = torch.arange(rows.width)[None, :].expand(n, -1)
        values = clean[clean_rows.clamp_min(0).to(clean.device), pos.to(clean.device)]
        if parent in pools:
            pool, valid = pools[parent]
            pool_rows = matching_rows(codes, torch.where(valid, codes, float("inf")), gen)
            ok = pool_rows >= 0
            from_pool = pool[pool_rows.clamp_min(0).to(pool.device), pos.to(pool.device)]
            mask = ok.to(pool.device).view(*ok.shape, *([1] * (from_pool.dim() - 2)))
            values = torch.where(mask, from_pool, values)
            draws += int(need.sum())
            fallbacks += int((need & ~ok).sum())
        return values

    sizes = torch.tensor([g.size for g in groups])
    starts = sizes.cumsum(0) - sizes
    for level in _levels(claims):
        for name in level:
            # In the reference's own length: a variable computed by attention over positions
            # (the length itself) needs the reference's positions.
            u = torch.rand(n, generator=gen, dtype=torch.float64)
            base = starts[rows.group] + torch.minimum((u * sizes[rows.group]).long(), sizes[rows.group] - 1)
            values = {claims.claims[p].site: parent_values(p, base) for p in claims.claims[name].parents}
            _, caught = _frame_runs(target, rows, base, values, counter, capture=claims.claims[name].site)
            valid = present & (torch.arange(rows.width)[None, :] < rows.lengths[base][:, None])
            pools[name] = (caught, valid)
    base = torch.randint(n, (n,), generator=gen)
    values = {claims.claims[p].site: parent_values(p, base) for p in claims.root_parents}
    scrubbed, _ = _frame_runs(target, rows, base, values, counter) if values else ([None] * n, None)
    losses = []
    for gi, group in enumerate(groups):
        members = torch.nonzero(rows.group == gi).flatten().tolist()
        sc = group.clean_logits.clone()
        rs = group.clean_logits.clone()
        limit = torch.empty(group.size, dtype=torch.long)
        for j, s in enumerate(members):
            b = int(base[s])
            bg, bi = rows.groups[int(rows.group[b])], int(rows.index[b])
            a = min(group.length, bg.length)
            limit[j] = group.offset + a
            window = slice(group.offset, group.offset + a)
            rs[j, window] = bg.clean_logits[bi, window]
            sc[j, window] = (scrubbed[s] if scrubbed[s] is not None else bg.clean_logits[bi])[window]
        idx = group.readout.index
        valid = group.readout.valid & (idx >= group.offset) & (idx < limit.to(idx.device)[:, None])
        base_losses = _against_clean(target, group, rs)
        gl = group_losses(target, group, sc, base_losses)
        losses.append(GroupLosses(gl.loss, gl.loss_resampled, gl.same, gl.same_resampled, valid))
    return AcrossLengths(tuple(losses), fallbacks / draws if draws else 0.0)
