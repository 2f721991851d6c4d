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

`Batching.REFERENCE` runs the blocks one by one, in the order given, each source block
first with its pooled sites captured: the straightforward reading of the same plan,
kept so that a test can check that the fused pass gives the same numbers.

What the blocks contain is decided, and every random draw made, before anything runs,
in the order the checks have always drawn in, so both modes see the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from collections.abc import Mapping, Sequence

import torch

from mechsynth.synth.check.patching import Edit, PassCounter, Pull, Site, run

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


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
    batching: Batching = Batching.FUSED,
) -> dict[str, torch.Tensor | None]:
    """Logits of every block (None for a block whose output nothing reads, in reference mode)."""
    if not blocks:
        return {}
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise ValueError(f"block names repeat: {names}")
    if batching is Batching.REFERENCE:
        return _run_one_by_one(model, blocks, counter)
    return _run_fused(model, blocks, counter)


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


def _run_fused(
    model: TransformerBridge, blocks: Sequence[Block], counter: PassCounter
) -> dict[str, torch.Tensor | None]:
    starts, start = {}, 0
    for b in blocks:
        starts[b.name] = start
        start += int(b.tokens.shape[0])
    edits = []
    for b in blocks:
        rows = slice(starts[b.name], starts[b.name] + int(b.tokens.shape[0]))
        for p in b.patches:
            values = p.values if p.source is None else Pull(p.rows + starts[p.source])
            edits.append(Edit(p.site, values, p.positions, rows))
    logits, _ = run(model, torch.cat([b.tokens for b in blocks]), edits, counter=counter)
    return {b.name: logits[starts[b.name] : starts[b.name] + int(b.tokens.shape[0])] for b in blocks}
