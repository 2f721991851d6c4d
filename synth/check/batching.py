"""Batching: every patched run a score needs on one length group, as one forward pass.

A check is a set of *blocks*: ``n`` token sequences (one per input of the group) run
through the network with some activations patched. Causal scrubbing (synth.check.scrub)
needs a block per located variable (its scrubbed activation, the *pool* its consumers
draw from), one for the readout and one for the resampled baseline; the node-level
ablations and the interchange interventions (synth.check.interchange) add a block per
ablated set or intervention. A `Patch` overwrites one site at some positions, either with
fixed values (clean activations gathered from the group's clean pass) or with the
activation of *another block at the same site* (``source``), row by row and position by
position: that is how a scrubbed parent's value reaches its consumer.

Blocks depend on one another only through such sources, and a source is always an
earlier hook than the block that reads it (a claimed parent is computed before its
consumer; synth.check.claims rejects anything else). So all blocks can run in **one**
forward pass, stacked along the batch: when the hook of a source site fires, the source
block's rows already hold their patched activation there, and the consumer's rows read
it in place (patching.Pull). This is `Batching.FUSED`, the default: a score costs the
clean pass plus one wider pass per length group, instead of one pass per level of the
hypothesis graph plus one per check. The per-position arithmetic is the same as running
the blocks one by one; only float rounding of a wider batch can differ.

Rows the clean pass already computed
-------------------------------------
Many blocks change only what the embedding hooks hold: an interchange of ``tokens`` or
``indices``, the ablation of a located input, a scrubbing pool whose parents all sit at the
embeddings. Such a row's whole run is a function of its two embedding activations
(``hook_embed`` and ``hook_pos_embed``; the network reads the token ids through nothing else:
no attention mask is passed to a same-length group). When both equal, bit for bit, those of
a row of the group's clean pass, the row *is* that clean row: its logits and its activation
at every site are the clean ones, already computed. Often they do: swapping ``indices``
between two inputs of one length changes nothing, swapping ``tokens`` at every position is
the clean run of the source, and a pool that resamples tokens from rows agreeing on every
token rebuilds the reference's own embedding. Given the group's clean run (`CleanRun`),
the fused pass computes each such block's effective embeddings, and a block whose every
row matches a clean row leaves the pass: its logits are gathered from the clean logits and
its consumers' patches read the clean activations of the matched rows instead. This is
exact (the same numbers, not an approximation); only the float rounding of a different
batch width can differ, as for any fused pass.

The same holds for a patch anywhere else that writes, bit for bit, what the row's clean run
holds there: a write that changes nothing. Interchanging a variable between two inputs that
agree on it at every position (tracr's ``length`` within one length; ``opp_idx``, a function
of the length and the position) is such a write, and so is a scrubbing pool all of whose
parents' draws agree. Matching is done row by row: a block some of whose rows equal clean
rows runs only its other rows (a block that other blocks read from runs whole, so that their
row indices stay valid). Rows are found by an integer hash of their entries' bits, which does
not depend on the batch they were computed in.

Rows that enter at a later block
--------------------------------
Before its first patched hook a row *is* a clean row (its own tokens', or its resampled
base's), so the residual stream entering that block is the clean one, which the group's clean
pass keeps (``Group.resid``). A row therefore joins the fused pass at the block of its first
patch, or of the first site another block reads from it, carrying that residual
(models.bridge.staged_forward, a layer loop of our own over the bridge's components: the
bridge's ``start_at_layer`` still runs the earlier blocks). Blocks are laid out in the batch in
order of entry, so at every hook the rows present are a prefix of the batch and every edit's
rows are among them. Where the model cannot be run that way (models.bridge.can_stage), every
row starts at the embeddings, with the same numbers.

`Batching.REFERENCE` runs the blocks one by one, in the order given, each source block
first with its pooled sites captured: the straightforward reading of the same plan,
kept so that a test can check that the fused pass gives the same numbers.

What the blocks contain is decided, and every random draw made, before anything runs,
in the order the checks have always drawn in, so both modes see the same draws.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from mechsynth.models.bridge import Entering, Stage, join_stage, max_stage
from mechsynth.synth.check.patching import Edit, PassCounter, Pull, Site, block_starts, run, site_layer

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from mechsynth.synth.check.claims import Claims, Group


class Batching(StrEnum):
    """How the blocks of one length group are run."""

    FUSED = "fused"  # all blocks in one forward pass
    REFERENCE = "reference"  # one forward pass per block, sources first


@dataclass(frozen=True, eq=False)
class Patch:
    """Overwrite ``site`` at ``positions`` with fixed ``values``, or with block ``source``'s own
    activation at ``site``: row ``rows[s, k]`` of the source for row s at the k-th position."""

    site: Site
    positions: slice
    values: torch.Tensor | None = None
    source: str | None = None
    rows: torch.Tensor | None = None  # [n, P] long, with ``source``


@dataclass(frozen=True, eq=False)
class Block:
    """``tokens`` run with ``patches`` applied in order; ``logits``: whether anything reads its output."""

    name: str
    tokens: torch.Tensor  # [n, T]
    patches: tuple[Patch, ...] = ()
    logits: bool = True


@dataclass(frozen=True, eq=False)
class CleanRun:
    """A group's clean pass as the fused pass reuses it: tokens, logits, embedding activations
    (whole ``hook_embed`` / ``hook_pos_embed`` sites) and every claimed site's activation."""

    tokens: torch.Tensor  # [n, T]
    logits: torch.Tensor  # [n, T, d_vocab_out]
    embeds: Mapping[Site, torch.Tensor]  # whole embedding sites -> [n, T, d_model]
    sites: Mapping[Site, torch.Tensor]  # claimed sites -> site values [n, T, ...]
    resid: tuple[torch.Tensor, ...] = ()  # residual stream entering each block [n, T, d_model]
    joins: Mapping[tuple[int, Stage], torch.Tensor] = field(default_factory=dict)  # claims.Group.joins

    @functools.cached_property
    def token_index(self) -> _RowIndex:
        return _RowIndex.of(self.tokens)

    def rows_of_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The clean row with each row's token ids (-1 where none has them)."""
        if tokens is self.tokens:  # most blocks run the group's own inputs
            return torch.arange(int(tokens.shape[0]), device=tokens.device)
        # Each block's tokens are looked up up to three times (idle patches, clean rows, entry layer):
        # remembered by tensor, which the memo keeps alive so that its id cannot be reused.
        memo = self._token_rows
        if id(tokens) not in memo:
            memo[id(tokens)] = (tokens, self.token_index.find(tokens))
        return memo[id(tokens)][1]

    @functools.cached_property
    def _token_rows(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        return {}

    @functools.cached_property
    def embed_index(self) -> _RowIndex:
        return _RowIndex.of(torch.cat([v.flatten(1) for v in self.embeds.values()], 1))

    @classmethod
    def of_group(cls, group: Group, claims: Claims) -> CleanRun:
        return cls(
            group.tokens, group.clean_logits, dict(zip(claims.embed_sites, group.embeds)),
            {c.site: group.clean[name] for name, c in claims.claims.items()}, group.resid, group.joins,
        )


@dataclass(frozen=True, eq=False)
class _RowIndex:
    """Rows of a 2-d tensor, findable by content. A row's key is an integer hash of its entries' bits
    (a fixed random int64 weight per column, products and sum wrapping around): integer arithmetic,
    so the same row gets the same key in a batch of any width (a float projection through a matrix
    product can round differently with the batch width, and then an equal row is not found). A
    looked-up candidate is then compared entry by entry, so a key collision can only make a matching
    row look unmatched (it is then run like any other), never match a different row."""

    rows: torch.Tensor  # [n, D]
    weights: torch.Tensor  # [D] int64
    keys: torch.Tensor  # [n] sorted
    order: torch.Tensor  # [n]: row of each sorted key

    @classmethod
    def of(cls, rows: torch.Tensor) -> _RowIndex:
        flat = rows.flatten(1)
        gen = torch.Generator().manual_seed(0)
        weights = torch.randint(-(2**62), 2**62, (flat.shape[1],), generator=gen, dtype=torch.int64)
        weights = weights.to(flat.device)
        keys, order = torch.sort(_row_keys(flat, weights))
        return cls(flat, weights, keys, order)

    def find(self, rows: torch.Tensor) -> torch.Tensor:
        """For each of ``rows``, an equal indexed row, or -1 where it equals none."""
        mine = rows.flatten(1).to(self.rows.device, self.rows.dtype)
        if mine.shape[1] != self.rows.shape[1]:
            return torch.full((mine.shape[0],), -1, dtype=torch.long, device=self.rows.device)
        probe = _row_keys(mine, self.weights)
        at = torch.searchsorted(self.keys, probe).clamp_max(len(self.keys) - 1)
        found = self.order[at]
        equal = (self.keys[at] == probe) & (self.rows[found] == mine).all(1)
        return torch.where(equal, found, -1)


def _row_keys(flat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[n] int64 hash of each row's entries (their bit patterns for floats)."""
    if flat.is_floating_point():
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
        flat = flat.contiguous().view(bits)
    return (flat.long() * weights).sum(1)


def _clean_rows(clean: CleanRun, block: Block) -> torch.Tensor:
    """The clean row that each of ``block``'s rows equals, -1 where it equals none (see the module
    docstring). A row equals clean row c when its effective embeddings are c's and every other patch
    writes, bit for bit, c's own clean values there (a write that changes nothing). A block whose
    patches read other blocks, or write a site the clean run did not keep, matches nowhere."""
    n = int(block.tokens.shape[0])
    nowhere = torch.full((n,), -1, dtype=torch.long, device=clean.tokens.device)
    by_hook = {s.hook: s for s in clean.embeds}
    if any(p.source is not None or (p.site.hook not in by_hook and p.site not in clean.sites)
           for p in block.patches):
        return nowhere
    start = clean.rows_of_tokens(block.tokens)  # a clean row with the same token ids
    if not bool((start >= 0).any()):
        return nowhere
    rows = start  # no patch at the embeddings: the row's embeddings are its own clean row's
    if any(p.site.hook in by_hook for p in block.patches):
        effective = []
        for hook, site in by_hook.items():
            act = clean.embeds[site][start.clamp_min(0)].clone()  # the row's own embedding before its patches
            for p in block.patches:
                if p.site.hook == hook:
                    p.site.write(act, p.values, p.positions)
            effective.append(act.flatten(1))
        rows = clean.embed_index.find(torch.cat(effective, 1))
    ok = (start >= 0) & (rows >= 0)
    at = rows.clamp_min(0)
    for p in block.patches:
        if p.site.hook not in by_hook and bool(ok.any()):
            own = clean.sites[p.site][at][:, p.positions]
            ok &= (p.values.to(own.device) == own).flatten(1).all(1)
    return torch.where(ok, rows, -1)


def _sourced_sites(blocks: Sequence[Block]) -> dict[str, list[Site]]:
    """Block name -> the sites other blocks read from it."""
    out: dict[str, list[Site]] = {}
    for b in blocks:
        for p in b.patches:
            if p.source is not None and p.site not in out.setdefault(p.source, []):
                out[p.source].append(p.site)
    return out


def run_blocks(
    model: TransformerBridge, blocks: Sequence[Block], counter: PassCounter,
    batching: Batching = Batching.FUSED, clean: CleanRun | None = None,
) -> dict[str, torch.Tensor | None]:
    """Logits of every block (None for a block whose output nothing reads, in reference mode).

    With the group's ``clean`` run, the fused pass leaves out the blocks that equal clean rows
    (see the module docstring); the reference mode runs every block whatever ``clean`` is.
    """
    if not blocks:
        return {}
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise ValueError(f"block names repeat: {names}")
    if batching is Batching.REFERENCE:
        return _run_one_by_one(model, blocks, counter)
    if clean is None:
        return _run_fused(model, blocks, counter)
    return _run_fused_reusing(model, blocks, counter, clean)


def _from_clean(clean: CleanRun, rows: torch.Tensor, patch: Patch) -> torch.Tensor:
    """A patch's values when its source block is the clean rows ``rows``: what `Pull` would read."""
    pool = clean.sites[patch.site][rows][:, patch.positions]
    r = patch.rows.to(pool.device)
    return pool[r, torch.arange(r.shape[1], device=pool.device)[None, :]]


def _without_idle_embeds(clean: CleanRun, block: Block) -> Block:
    """The block without the embedding patches that write, in every row, what the row's own tokens
    put there (the first patch at an embedding hook sees the clean embedding of the row's tokens;
    within one length, resampling ``indices`` is such a patch). Nothing changes for the block, but
    it can then enter the network at a later block."""
    by_hook = {s.hook: s for s in clean.embeds}
    if not any(p.source is None and p.site.hook in by_hook for p in block.patches):
        return block
    rows = clean.rows_of_tokens(block.tokens)
    if not bool((rows >= 0).all()):
        return block
    seen: set[str] = set()
    patches = []
    for p in block.patches:
        first = p.site.hook not in seen
        seen.add(p.site.hook)
        if first and p.source is None and p.site.hook in by_hook:
            own = p.site.read(clean.embeds[by_hook[p.site.hook]][rows], p.positions)
            if own.shape == p.values.shape and bool((p.values.to(own.device) == own).all()):
                continue
        patches.append(p)
    return block if len(patches) == len(block.patches) else Block(block.name, block.tokens, tuple(patches),
                                                                   block.logits)


def _rows_of(block: Block, keep: torch.Tensor) -> Block:
    """The block restricted to the rows ``keep`` (fixed-value patches only)."""
    return Block(block.name, block.tokens[keep], tuple(
        Patch(p.site, p.positions, values=p.values[keep.to(p.values.device)]) for p in block.patches
    ), block.logits)


def _run_fused_reusing(
    model: TransformerBridge, blocks: Sequence[Block], counter: PassCounter, clean: CleanRun
) -> dict[str, torch.Tensor | None]:
    sourced = _sourced_sites(blocks)
    matched: dict[str, torch.Tensor] = {}  # block -> the clean row of each of its rows (-1: it runs)
    kept: list[Block] = []
    for b in blocks:
        # A consumer of a left-out block reads fixed clean values instead (then it may match too).
        if any(p.source in matched for p in b.patches):
            b = Block(b.name, b.tokens, tuple(
                Patch(p.site, p.positions, values=_from_clean(clean, matched[p.source], p))
                if p.source in matched else p
                for p in b.patches
            ), b.logits)
        b = _without_idle_embeds(clean, b)
        rows = _clean_rows(clean, b)
        found = rows >= 0
        if bool(found.all()):
            matched[b.name] = rows
        elif b.name in sourced or not bool(found.any()):
            kept.append(b)  # a block other blocks read from runs whole: their rows index it
        else:
            matched[b.name] = rows
            kept.append(_rows_of(b, ~found))  # only the rows no clean row equals
    logits: dict[str, Any] = _run_fused(model, kept, counter, clean) if kept else {}
    out: dict[str, torch.Tensor | None] = {}
    for b in blocks:
        rows = matched.get(b.name)
        if rows is None:
            out[b.name] = logits[b.name]
            continue
        full = clean.logits[rows.clamp_min(0)]
        if b.name in logits:  # some rows ran
            full[rows < 0] = logits[b.name]
        out[b.name] = full
    return out


def _run_one_by_one(
    model: TransformerBridge, blocks: Sequence[Block], counter: PassCounter
) -> dict[str, torch.Tensor | None]:
    sourced = _sourced_sites(blocks)
    captured: dict[str, Mapping[Site, torch.Tensor]] = {}
    logits: dict[str, torch.Tensor | None] = {}
    for b in blocks:
        edits = []
        for p in b.patches:
            values = p.values
            if p.source is not None:
                pool = captured[p.source][p.site][:, p.positions]
                rows = p.rows.to(pool.device)
                values = pool[rows, torch.arange(rows.shape[1], device=pool.device)[None, :]]
            edits.append(Edit(p.site, values, p.positions))
        capture = sourced.get(b.name, [])
        logits[b.name], captured[b.name] = run(
            model, b.tokens, edits, capture=capture, counter=counter, need_logits=b.logits or not capture
        )
    return logits


def _entry_points(
    model: TransformerBridge, blocks: Sequence[Block], clean: CleanRun | None
) -> tuple[dict[str, tuple[int, Stage]], dict[str, torch.Tensor]]:
    """Where each block's rows enter the network (block, and stage inside it), and their clean rows.

    A block enters at the first block with one of its patches or with a site other blocks read from
    it (-1: at the embeddings); before that its rows are clean rows, so the residual stream they
    carry is the clean one. Inside that block it joins at the latest stage its first such hooks
    allow (models.bridge.join_stage) and the clean run kept the values for. Rows whose tokens are no
    clean row's, or a run without the clean residuals, start at the embeddings.
    """
    if clean is None or not clean.resid:
        return {b.name: (-1, Stage.BLOCK) for b in blocks}, {}
    starts = block_starts(model)
    last = len(starts) - 1
    sourced = _sourced_sites(blocks)
    top = max_stage(model) or Stage.BLOCK
    points, rows = {}, {}
    for b in blocks:
        sites = [p.site for p in b.patches] + sourced.get(b.name, [])
        layer = min((site_layer(s, starts) for s in sites), default=last)
        found = clean.rows_of_tokens(b.tokens) if layer >= 0 else None
        if found is None or not bool((found >= 0).all()):
            points[b.name] = (-1, Stage.BLOCK)
            continue
        layer = min(layer, last)
        first = [s for s in sites if site_layer(s, starts) == layer]
        stage = min((join_stage(model, layer, s.hook) for s in first), default=top)
        while stage > Stage.BLOCK and not all((layer, Stage(k)) in clean.joins
                                              for k in range(Stage.ATTN_OUT, stage + 1)):
            stage = Stage(stage - 1)  # the clean run did not keep what this stage needs
        points[b.name] = (layer, stage)
        rows[b.name] = found
    return points, rows


def _run_fused(
    model: TransformerBridge, blocks: Sequence[Block], counter: PassCounter, clean: CleanRun | None = None
) -> dict[str, torch.Tensor | None]:
    points, clean_rows = _entry_points(model, blocks, clean)
    order = sorted(blocks, key=lambda b: points[b.name])  # rows that enter later join the batch later
    starts, start = {}, 0
    for b in order:
        starts[b.name] = start
        start += int(b.tokens.shape[0])
    edits = []
    for b in blocks:  # in the given order: a source's own edits at a hook precede its consumers' pulls
        rows = slice(starts[b.name], starts[b.name] + int(b.tokens.shape[0]))
        for p in b.patches:
            values = p.values if p.source is None else Pull(p.rows + starts[p.source])
            edits.append(Edit(p.site, values, p.positions, rows))
    entering = []
    for layer, stage in sorted({points[b.name] for b in order if points[b.name][0] >= 0}):
        idx = torch.cat([clean_rows[b.name] for b in order if points[b.name] == (layer, stage)])
        z = clean.joins[(layer, Stage.ATTN_OUT)][idx] if stage >= Stage.ATTN_OUT else None
        post = clean.joins[(layer, Stage.MLP_OUT)][idx] if stage >= Stage.MLP_OUT else None
        entering.append(Entering(layer, clean.resid[layer][idx], stage, z, post))
    tokens = torch.cat([b.tokens for b in order])
    logits, _ = run(model, tokens, edits, counter=counter, entering=entering)
    return {b.name: logits[starts[b.name] : starts[b.name] + int(b.tokens.shape[0])] for b in blocks}
