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
whole-input resampling changes nothing and loss recovered is 0/0, reported as NaN
(interchange across lengths, synth.check.interchange, does test such a variable).

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
from typing import TYPE_CHECKING
from collections.abc import Mapping, Sequence

import torch

from mechsynth.synth.check.batching import Block, Patch
from mechsynth.synth.check.claims import Claims, Group
from mechsynth.synth.check.patching import (
    CheckError,
    ReadIndex,
    as_read_index,
    readout_loss,
)

if TYPE_CHECKING:
    from mechsynth.models import Target

ABLATIONS = ("resample", "mean", "zero")
NUMERIC_ATOL = 1e-2  # numerical readouts "agree" within this (models.target.NUMERIC_ATOL)
TIE_ATOL = 1e-5  # logits this close to the maximum count as tied for the top class


def agreeing_rows(codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For codes ``[n, L]``, a uniformly random row ``r[s, k]`` with ``codes[r, k] == codes[s, k]``.

    Vectorised over rows and positions: sort each column, find the run of equal codes
    each element falls in, and pick a uniform element of that run.
    """
    n, length = codes.shape
    # Means computed in a different order can differ in the last bits: agree to 1e-9. None agrees with None.
    c = torch.nan_to_num(torch.round(codes.double() * 1e9), nan=-1e300)
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
    a, c = read.take(logits), read.take(clean)
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


def _against_clean(target: Target, group: Group, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, R] loss, [n, R] agreement) of ``logits`` against the clean run."""
    numeric, clean, multi = numeric_column(target), group.clean_logits, is_multilabel(target)
    return (
        readout_loss(logits, clean, group.readout, numeric, multilabel=multi),
        predictions_agree(logits, clean, group.readout, numeric, multilabel=multi),
    )


def group_losses(
    target: Target, group: Group, logits: torch.Tensor, baseline: tuple[torch.Tensor, torch.Tensor]
) -> GroupLosses:
    """Losses and agreement of patched ``logits`` next to the ``baseline``'s (from `_against_clean`)."""
    loss, same = _against_clean(target, group, logits)
    return GroupLosses(loss, baseline[0], same, baseline[1], group.readout.valid)


def scrub_losses(target: Target, group: Group, plan: ScrubPlan, logits: Mapping) -> GroupLosses:
    """The scrubbing numbers of one group from its blocks' logits."""
    resampled = _resampled(group, plan.resampled, plan.rows, logits)
    scrubbed = logits[plan.scrubbed] if plan.scrubbed else resampled
    return group_losses(target, group, scrubbed, _against_clean(target, group, resampled))


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
    target: Target, group: Group, plan: AblationPlan, logits: Mapping
) -> tuple[GroupLosses, GroupLosses, dict[str, GroupLosses]]:
    """(kept, dropped, {variable: alone dropped}) of one group from its blocks' logits."""
    resampled = _resampled(group, plan.resampled, plan.rows, logits)
    base = _against_clean(target, group, resampled)  # the one baseline of every ablation here
    kept = logits[plan.kept] if plan.kept else resampled
    dropped = logits[plan.dropped] if plan.dropped else group.clean_logits
    single = {name: group_losses(target, group, logits[b], base) for name, b in plan.single.items()}
    return group_losses(target, group, kept, base), group_losses(target, group, dropped, base), single
