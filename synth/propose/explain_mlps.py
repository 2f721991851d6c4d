"""Explaining one MLP: ``map``/``seqmap``/``selector_width`` candidates that cover its output.

Candidates are built by the enumerator from the available variables and the function
library, cheapest first; each claims the output dimensions it explains (R^2 per dimension).
An MLP may compute several variables side by side in different residual directions, so
blocks are chosen to cover every active dimension and split where their subspaces are
independent. Dimensions no library function explains get a fitted lookup map
(:func:`_fit_block`), which the DSL simplifies to a closed form when one fits.

A trained MLP rarely has such clean dimensions: its output is a smooth function spread over
every direction, and what it computes is seen only in what it lets the unembedding read.
Where nothing covers it, :func:`read_lookup` asks whether the MLP's output at the positions the
task reads is a *lookup of one or two available variables* (``seqmap(table, a, b)``, for the
two operands a split head gathered): the table is fitted to the network's decoded outputs
(a majority table, so the network's few mistakes do not block it), simplified to a closed
form when one is exact (``Mod(x + y, 23)``), and kept when the MLP's output decodes it and its
class means explain the output (the fit scores), at the whole ``hook_mlp_out``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from mechsynth.synth.propose.enumerate import Pool, agreement, function_instances, try_add
from mechsynth.synth.propose.interface import expired
from mechsynth.dsl.location import Location, act_name

from mechsynth.synth.propose.guided_state import (
    TABLE_SUPPORT,
    GuidedState,
    Located,
    MatchThresholds,
    layer_of,
    representatives,
)
from mechsynth.synth.propose.match_stats import (
    class_ids,
    explain_stats,
    explains,
    magnitude_r2,
    sampled_decode_accuracy,
)
from mechsynth.synth.propose.pair_comparisons import explain_comparison

if TYPE_CHECKING:
    pass


SCREEN_ROWS = 4096  # rows on which a candidate is screened before its R^2 on the whole batch
SCREEN_MARGIN = 0.1  # a candidate this far below the R^2 bar on the sample is not computed in full
WHOLE_ALTERNATIVES = 2  # blocks beyond the covering ones whose variables a whole-output claim keeps


@dataclass(frozen=True)
class BlockCandidate:
    """A candidate that explains a block of an MLP's output dimensions, with its fit."""

    cost: float
    node: Any
    values: torch.Tensor
    decode: float  # decode accuracy of its values from the block
    magnitude: bool  # the block is its value times one direction (a numerical variable's encoding)


def explain_mlp(
    pool: Pool,
    state: GuidedState,
    layer: int,
    act: torch.Tensor,
    avail: list[str],
    counting: list[str],
    th: MatchThresholds,
    labellings: int,
    network_out: tuple[torch.Tensor, torch.Tensor, float],
    deadline: float | None = None,
) -> dict[str, Any]:
    from mechsynth.dsl.program import Node

    mask = pool.batch.mask
    act = act.double()
    var = act.var(0)
    active = var > max(1e-8, 1e-6 * float(var.max()))
    info: dict[str, Any] = {"active": int(active.sum()), "blocks": []}
    candidates: list[tuple[float, Any]] = []
    for s in counting:
        candidates.append((0.0, Node("selector_width", (s,), "categorical")))
    reps = representatives(state, avail)
    for x in reps:
        for fn in function_instances(pool, 1, [x]):
            candidates.append((float(fn.family.cost), Node("map", (fn, x), "categorical")))
    for x, y in itertools.permutations(reps, 2):
        lx, ly = state.located.get(x), state.located.get(y)
        if lx is not None and ly is not None and lx.location == ly.location:
            continue  # two labellings of one component's variable, not two variables
        for fn in function_instances(pool, 2, [x, y]):
            candidates.append((float(fn.family.cost) + 0.5, Node("seqmap", (fn, x, y), "categorical")))
    # Cheapest function first; among equals, read the most recently written variables (a network
    # computes a variable in order to read it) and the cheapest ones.
    candidates.sort(
        key=lambda t: (
            t[0],
            -max((layer_of(state, i) for i in t[1].inputs), default=-1.0),
            sum(pool.items[i].cost for i in t[1].inputs),
        )
    )
    blocks: dict[tuple[int, ...], list[BlockCandidate]] = {}
    seen: set[str] = set()
    active_idx = torch.nonzero(active).reshape(-1)
    sub = act[:, active_idx]
    # Screen candidates on a row sample of a large batch; only the promising get the full R^2.
    step = max(1, sub.shape[0] // SCREEN_ROWS)
    screen = sub[::step]
    for i, (cost, node) in enumerate(candidates):
        if i % 64 == 0 and expired(deadline):
            state.notes.append(f"MLP {layer}: deadline reached after {i} of {len(candidates)} candidates")
            info["deadline"] = True
            break
        try:
            values = pool.evaluate(node)
        except (ValueError, RuntimeError, TypeError, ZeroDivisionError):
            continue
        codes = values[mask]
        if float(torch.isnan(codes).double().mean()) > 0.5:
            continue  # None (undefined) is a value of its own here, but not most of the time
        key = pool.key(values)
        if key in seen:
            continue
        seen.add(key)
        if step > 1:
            _, r2, total = explain_stats(screen, codes[::step])
            if float(r2.max()) < th.explain - SCREEN_MARGIN:
                overall = float((r2 * total).sum() / total.sum().clamp(min=1e-12))
                if overall > info.get("best_r2", -1.0):
                    info["best_r2"], info["best_candidate"] = overall, str(node)
                continue
        _, r2, total = explain_stats(sub, codes)
        overall = float((r2 * total).sum() / total.sum().clamp(min=1e-12))
        if overall > info.get("best_r2", -1.0):  # the closest candidate, for the partial explanation
            info["best_r2"], info["best_candidate"] = overall, str(node)
        dims = (r2 >= th.explain).nonzero().reshape(-1)
        if dims.numel() == 0:
            continue
        block = tuple(int(active_idx[d]) for d in dims.tolist())
        entries = blocks.setdefault(block, [])
        # A one-dimension block written as value * direction holds that value, not an affine
        # relabelling of it that the class means cannot tell apart (see match_stats.magnitude_r2).
        magnitude = (
            not th.whole_mlp and len(block) == 1 and magnitude_r2(act[:, list(block)], codes) >= th.explain
        )
        # The labelling that reproduces the network's outputs is always kept: it is the one the
        # unembedding reads, whatever the cap on alternatives; so is the block's first magnitude fit.
        if (
            len(entries) >= labellings
            and agreement(values, *network_out) < th.output
            and not (magnitude and not any(e.magnitude for e in entries))
        ):
            continue
        # Claimed at the whole output (trained networks), a variable is decoded from the whole output.
        cols = active_idx.tolist() if th.whole_mlp else list(block)
        acc = sampled_decode_accuracy(act, codes, cols)
        if acc < th.decode:
            continue
        entries.append(BlockCandidate(cost, node, values, acc, magnitude))
    for entries in blocks.values():
        entries.sort(key=lambda e: not e.magnitude)  # stable: the magnitude fits lead, cheapest first
    # Cover the active dimensions with as few variables as possible (largest blocks first), then split
    # a block into smaller explained blocks when their subspaces are independent (ranks add up):
    # side-by-side variables live in independent directions, while the one-hot directions of a
    # single categorical variable are linearly tied (they sum to one) and stay together.
    found = {b: e for b, e in blocks.items() if e}
    uncovered = set(active_idx.tolist())
    chosen: list[tuple[int, ...]] = []
    for block in sorted(found, key=lambda b: (-len(b), found[b][0].cost)):
        if not uncovered & set(block):
            continue
        uncovered -= set(block)
        chosen += _split_block(block, found, act)
    if th.whole_mlp:
        # Claimed at the whole output, the variables of overlapping blocks are alternative
        # explanations of one MLP (a sign of a depth beside a floor ratio): the best few are kept,
        # and the components that read the MLP and the checks choose between them.
        chosen += [b for b in sorted(found, key=lambda b: (-len(b), found[b][0].cost)) if b not in chosen][
            :WHOLE_ALTERNATIVES
        ]
    chosen = list(dict.fromkeys(chosen))
    kept: set[str] = set()
    for block in chosen:
        names = []
        for entry in blocks[block]:
            node, values, acc = entry.node, entry.values, entry.decode
            if pool.key(values) in kept:
                continue
            kept.add(pool.key(values))
            numerical = len(block) == 1 and pool.items[node.inputs[0]].dtype != "value"
            node = Node(node.op, node.args, "numerical" if numerical else "categorical")
            where = Location(act_name("mlp_out", layer), dims=None if th.whole_mlp else block)
            if not state.allows(where, values):
                continue
            name = pool.add(node, prefix=f"mlp{layer}_", values=values, dedupe=False)
            if name is None:
                continue
            state.located[name] = Located(name, where, layer + 0.5, acc)
            names.append(name)
        info["blocks"].append({"dims": block, "variables": names})
        _pool_magnitude_parts(pool, state, layer, block, found)
    if uncovered and th.whole_mlp and chosen:
        uncovered = set()  # the matched variable is claimed at the whole output
    if uncovered and not chosen:
        lookup = read_lookup(pool, state, layer, act, avail, th, network_out, deadline)
        if lookup is not None:
            info["blocks"].append({"dims": tuple(sorted(uncovered)), "variables": [lookup["name"]], **lookup})
            uncovered = set()
    if uncovered and th.whole_mlp and not chosen:
        # No map and no lookup of the outputs covers it: does it compare the token with a related
        # position's (a diffuse head brought the partner's token)? Claimed at the whole output.
        singles = [
            s for (at, _), head in state.heads.items() if at == layer for s in head.get("selectors", [])
        ]
        compared = explain_comparison(pool, state, layer, act[:, active_idx], avail, th, singles)
        if compared:
            info["comparisons"] = [dataclasses.asdict(c) for c in compared]
            names = [n for c in compared for n in (c.extension, c.name) if n is not None]
            info["blocks"].append({"dims": tuple(sorted(uncovered)), "variables": names})
            uncovered = set()
    if uncovered:
        fitted = _fit_block(pool, state, layer, act, sorted(uncovered), avail)
        if fitted is not None:
            info["blocks"].append({"dims": tuple(sorted(uncovered)), "variables": [fitted], "fitted": True})
            uncovered = set()
    if uncovered:
        info["unexplained_dims"] = sorted(uncovered)
        state.notes.append(f"MLP {layer}: {len(uncovered)} active dims not explained by any candidate")
    return info


LOOKUP_ARGSETS = 48  # argument tuples a read-position lookup is fitted on at most


def read_lookup(
    pool: Pool,
    state: GuidedState,
    layer: int,
    act: torch.Tensor,
    avail: Sequence[str],
    th: MatchThresholds,
    network_out: tuple[torch.Tensor, torch.Tensor, float],
    deadline: float | None = None,
) -> dict[str, Any] | None:
    """The MLP as a fitted lookup of one or two available variables at the read positions.

    For each argument tuple (pairs first, the most recently written first: the operands a head
    of this layer gathered are tried before the embeddings), a table from the arguments to the
    network's decoded outputs is fitted where all are defined (majority vote, agreeing on at
    least ``th.output``), simplified by the DSL to a closed form when one is exact. A table
    (no closed form) must be small against the data: at most one entry per ``TABLE_SUPPORT``
    read positions, so it cannot memorise them. The lookup is kept when the MLP's output at
    those positions decodes it (``th.decode``) and its class means explain the output
    (R^2 >= ``th.explain``). Returns the located variable with its scores, or None.
    """
    from mechsynth.synth.propose.enumerate import MIN_DEFINED, fit_map

    target, read, atol = network_out
    mask = pool.batch.mask
    rows = read & mask
    n_read = int(rows.sum())
    if n_read < 2:
        return None
    act_r = act[rows[mask]]
    reps = [n for n in representatives(state, avail) if pool.items[n].kind == "sop"]
    pairs = [
        (x, y)
        for x, y in itertools.combinations(reps, 2)
        if state.located.get(x) is None
        or state.located.get(y) is None
        or state.located[x].location != state.located[y].location
    ]
    recency = {n: _recency(state, n, layer) for n in reps}
    argsets = sorted(pairs, key=lambda a: -min(recency[n] for n in a)) + sorted(
        [(x,) for x in reps], key=lambda a: -recency[a[0]]
    )
    where = Location(act_name("mlp_out", layer))
    for args in argsets[:LOOKUP_ARGSETS]:
        if expired(deadline):
            return None
        defined = rows.clone()
        for a in args:
            defined &= ~torch.isnan(pool.values[a])
        if float(defined.sum()) < MIN_DEFINED * n_read:
            continue
        node = fit_map(pool, list(args), target, defined, min_agreement=th.output)
        if node is None:
            continue
        fn = node.args[0]
        if fn.name == "table" and len(fn.params[0]) > max(2, n_read // TABLE_SUPPORT):
            continue
        values = pool.evaluate(node)
        codes = values[rows]
        ok = ~torch.isnan(codes)
        if int(torch.unique(codes[ok]).numel()) < 2 or not state.allows(where, values):
            continue
        agree = agreement(values, target, read, atol)
        acc, r2 = explains(act_r[ok], codes[ok])
        if agree < th.output or acc < th.decode or r2 < th.explain:
            continue
        name = pool.add(node, prefix=f"mlp{layer}_lookup", values=values, dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(name, where, layer + 0.5, min(acc, r2))
        return {
            "name": name,
            "lookup": str(node),
            "decode": round(acc, 4),
            "r2": round(r2, 4),
            "agreement": round(agree, 4),
        }
    return None


def _recency(state: GuidedState, name: str, layer: int) -> float:
    """A variable's writer order; an unlocated pooled one (a split head's operand) counts as this layer's."""
    loc = state.located.get(name)
    if loc is not None:
        return loc.layer
    return float(layer) if name not in ("tokens", "indices", "length") else -1.0


def _fit_block(
    pool: Pool, state: GuidedState, layer: int, act: torch.Tensor, dims: list[int], avail: list[str]
) -> str | None:
    """A lookup map for MLP dimensions no library function explains.

    The rows of the block are clustered (it is a function of its inputs, so it takes finitely
    many values on the batch); if the cluster is a function of one available variable, or of a
    pair, a table from those variables to cluster labels is fitted (the DSL simplifies it to a
    closed form when one fits). Labels are provisional (ordered along the block's main
    direction); a head that reads the variable may relabel it (see ``_relabel``).
    """
    from mechsynth.dsl.program import Node

    mask = pool.batch.mask
    block = act[:, dims]
    scale = float(block.abs().max()) or 1.0
    rounded = torch.round(block / (1e-2 * scale))
    uniq, ids = torch.unique(rounded, dim=0, return_inverse=True)
    n = uniq.shape[0]
    if n < 2 or n > 64:
        return None
    centred = uniq - uniq.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    order = torch.argsort(centred @ direction)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    labels = torch.full(mask.shape, float("nan"), dtype=torch.float64)
    labels[mask] = rank[ids].double()
    options: list[tuple[int, float, tuple[str, ...]]] = []
    for args in [(x,) for x in avail] + list(itertools.permutations(avail, 2)):
        if len(args) == 2 and args[0] > args[1]:
            continue
        joint = torch.zeros(int(mask.sum()), dtype=torch.long)
        for a in args:
            a_ids, na = class_ids(pool.values[a][mask])
            joint = joint * na + a_ids
        _, j_ids = torch.unique(joint, return_inverse=True)
        nj = int(j_ids.max()) + 1
        if int(torch.unique(j_ids * n + ids).numel()) != nj:
            continue  # the block is not a function of these arguments
        recency = -max(layer_of(state, a) for a in args)
        options.append((len(args), nj, recency, args))
    for *_, args in sorted(options)[:3]:
        node = _fit_node(pool, args, labels)
        if node is None:
            continue
        name = try_add(pool, node, prefix=f"mlp{layer}_fit", dedupe=False)
        where = Location(act_name("mlp_out", layer), dims=tuple(dims))
        if name is None or not state.allows(where, pool.values[name]):
            continue
        state.located[name] = Located(name, where, layer + 0.5, 1.0)
        return name
    del Node
    return None


def _fit_node(pool: Pool, args: tuple[str, ...], labels: torch.Tensor) -> Any:
    from mechsynth.synth.propose.enumerate import fit_map

    return fit_map(pool, list(args), labels)


def _rank(act: torch.Tensor, dims: Sequence[int]) -> int:
    x = act[:, list(dims)]
    x = x - x.mean(0)
    return int(torch.linalg.matrix_rank(x, atol=1e-4 * max(1.0, float(x.abs().max()))))


def _complete_one_hot(act: torch.Tensor, dims: Sequence[int]) -> bool:
    """Whether ``dims`` hold a whole categorical encoding: several directions with a constant sum.

    Side-by-side categorical variables that are functions of one input (``tokens == "a"``,
    ``tokens == "b"``) are linearly dependent as a whole, but each keeps its own complete
    one-hot group; a piece of a single variable's one-hot code does not sum to a constant.
    """
    if len(dims) < 2:
        return False
    total = act[:, list(dims)].sum(1)
    return float(total.std()) <= 1e-3 * max(1.0, float(act[:, list(dims)].abs().max()))


def _pool_magnitude_parts(
    pool: Pool,
    state: GuidedState,
    layer: int,
    block: tuple[int, ...],
    found: dict[tuple[int, ...], list[BlockCandidate]],
) -> None:
    """Pool each dimension of a block kept whole as a variable of its own, when it writes its value.

    Numerical variables side by side in their own directions (an indicator of every token
    value) sum to one exactly like a categorical one-hot, so the block stays whole. Its
    dimensions are pooled as :attr:`GuidedState.parts`, not located: a head that averages one
    of them locates it (:func:`synth.propose.explain_heads.explain_head`), so only the reading
    some component confirms enters the later layers.
    """
    singles = [found.get((d,)) for d in block]
    if len(block) < 2 or not all(e and e[0].magnitude for e in singles):
        return
    for d, entries in zip(block, singles, strict=True):
        best = entries[0]
        where = Location(act_name("mlp_out", layer), dims=(d,))
        if not state.allows(where, best.values):
            continue
        node = dataclasses.replace(best.node, encoding="numerical")
        name = pool.add(node, prefix=f"mlp{layer}_part", values=best.values, dedupe=False)
        if name is not None:
            state.parts[name] = Located(name, where, layer + 0.5, best.decode)


def _split_block(
    block: tuple[int, ...], found: dict[tuple[int, ...], list], act: torch.Tensor
) -> list[tuple[int, ...]]:
    inner = sorted((b for b in found if b != block and set(b) < set(block)), key=lambda b: (-len(b), b))
    parts: list[tuple[int, ...]] = []
    left = set(block)
    for b in inner:
        if set(b) <= left:
            parts.append(b)
            left -= set(b)
    if left or len(parts) < 2:
        return [block]
    independent = sum(_rank(act, b) for b in parts) == _rank(act, block)
    if not independent and not all(_complete_one_hot(act, b) for b in parts):
        return [block]
    out: list[tuple[int, ...]] = []
    for b in parts:
        out += _split_block(b, found, act)
    return out
