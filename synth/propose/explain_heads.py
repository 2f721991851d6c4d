"""Explaining one attention head: a ``select`` that matches its pattern, an ``aggregate`` its output.

For a pair of available variables ``(k, q)`` the pattern says, for each observed pair of values
``(k=a, q=b)``, whether the head attends; if the answer is the same every time the pair occurs
the pattern is a function of ``(k, q)`` and the relation is named: a DSL comparison when one
agrees on every observed pair (:func:`_name_relation`), a shifted comparison, or a fitted
relabelling of a variable. Trained heads are soft: :func:`explain_head_soft` ranks candidate
selectors by where the head looks instead; a sorting head, which attends to the best-scoring key
among those a relation selects (the smallest token above the query's), is no single ``select``
and is matched by ``select_best(select(k, q, pred), score, ARGMIN|ARGMAX)`` when that fits the
head better than every plain selector (:func:`_add_best_of`). The head's output (``hook_z``) is
then matched with ``aggregate(selector, x)`` for an available ``x``. A matched selector whose head writes no
aggregate is offered to the MLP of the same layer as ``selector_width`` (counting).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence

import torch

from mechsynth.synth.propose.enumerate import Pool, fit_map, try_add
from mechsynth.synth.propose.chains import binary_written, value_indicators
from mechsynth.synth.propose.interface import expired
from mechsynth.dsl.location import Location, act_name

from mechsynth.synth.propose.guided_state import (
    GuidedState,
    Located,
    MatchThresholds,
    layer_of,
    representatives,
)
from mechsynth.dsl.primitives import best_keys
from mechsynth.dsl.program import Direction, Node
from mechsynth.dsl.values import SYMBOL_BASE
from mechsynth.synth.propose.match_stats import (
    argmax_agreement,
    class_ids,
    decode_accuracy,
    explains,
    linear_r2,
    selector_agreement,
)

if TYPE_CHECKING:
    from mechsynth.synth.observe import Observations


COMPARISON_ORDER = ("EQ", "LT", "GT", "LEQ", "GEQ", "NEQ", "TRUE")
SELECT_OFFSETS = (1, -1, 2, -2)  # position shifts tried as selectors (q == k + c) and as pair relations


def padded_patterns(obs: Observations, layer: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention patterns of one layer over all inputs: [N, H, T, T] over input positions, [N, H, T] BOS."""
    pats, boss = [], []
    for g in obs.groups:
        p = g.patterns[layer]
        b = g.bos[layer]
        pad = width - g.length
        pats.append(torch.nn.functional.pad(p, (0, pad, 0, pad)))
        boss.append(torch.nn.functional.pad(b, (0, pad)))
    return torch.cat(pats, 0).double(), torch.cat(boss, 0).double()


def explain_head(
    pool: Pool,
    state: GuidedState,
    obs: Observations,
    layer: int,
    head: int,
    z: torch.Tensor,
    pattern: torch.Tensor,
    bos: torch.Tensor,
    avail: list[str],
    th: MatchThresholds,
) -> dict[str, Any]:
    from mechsynth.dsl.program import Node

    batch = pool.batch
    mask = batch.mask
    pm = batch.pair_mask
    rowmax = pattern.amax(-1, keepdim=True)
    attended = (pattern >= 0.5 * rowmax) & (rowmax > 0.25 / (batch.width + 1)) & pm
    info: dict[str, Any] = {"selectors": [], "aggregates": [], "agreement": 0.0}
    ids = {n: class_ids(pool.values[n])[0].reshape(pool.values[n].shape) for n in avail}
    sizes = {n: int(ids[n].max()) + 1 for n in avail}
    pm_flat = pm.reshape(-1)
    att_flat = attended.reshape(-1)
    found: list[tuple[tuple, Any, float]] = []
    reps = representatives(state, avail)
    for k, q in itertools.product(reps, reps):
        nk, nq = sizes[k], sizes[q]
        pair = (ids[k][:, None, :] * nq + ids[q][:, :, None]).reshape(-1)
        pair_all = torch.bincount(pair[pm_flat], minlength=nk * nq)
        pair_att = torch.bincount(pair[pm_flat & att_flat], minlength=nk * nq)
        conflict = torch.minimum(pair_att, pair_all - pair_att).sum().item() / max(1, int(pm_flat.sum()))
        if conflict > th.conflict:
            continue
        seen = pair_all > 0
        rel = (pair_att * 2 > pair_all)[seen]
        if bool(rel.all()) and (k, q) != (avail[0], avail[0]):
            continue  # TRUE on every pair: one canonical selector is enough
        kv, qv = _pair_codes(pool, k, q, seen, nk, nq)
        recency = -(layer_of(state, k) + layer_of(state, q))
        base = pool.items[k].cost + pool.items[q].cost
        for pred, relabel, pred_cost in _name_relation(
            kv, qv, rel, _relabelable(pool, state, k), _relabelable(pool, state, q), same=(k == q)
        ):
            found.append(((pred_cost, recency, base), (k, q, pred, relabel), conflict))
            break
    found.sort(key=lambda t: t[0])
    best_sel = []
    for _, (k, q, pred, relabel), _ in found[:3]:
        if relabel is not None:
            side, how = relabel
            var = k if side in ("k", "order") else q
            new = _relabel(pool, state, var, _relabelled_values(pool.values[var], how))
            if new is None:
                continue
            if side == "order":
                k = q = new
            else:
                k, q = (new, q) if side == "k" else (k, new)
        pred = _decoded_predicate(pool, k, q, pred)
        node = Node("select", (k, q, pred), None)
        try:
            values = pool.evaluate(node)
        except ValueError:  # a DSL error: this predicate cannot run on the batch
            continue
        agreement = selector_agreement(values, pattern, bos, mask)
        if agreement > info.get("best_agreement", -1.0):
            info["best_agreement"], info["best_selector"] = agreement, str(node)
        if agreement < th.selector:
            continue
        name = pool.add(node, prefix=f"sel{layer}_{head}_", values=values, dedupe=False)
        if name is not None:
            best_sel.append((agreement, name))
        if len(best_sel) >= 1:
            break
    if not best_sel:
        return info
    info["agreement"] = best_sel[0][0]
    info["selectors"] = [n for _, n in best_sel]
    sel = best_sel[0][1]
    # Match the head's output with aggregates of available variables.
    zf = z.double()
    matches_: list[tuple[float, str]] = []
    parts = [n for n, at in state.parts.items() if at.layer < layer and n not in state.located]
    for x in [*avail, *parts]:
        defaults: list[Any] = [None]
        if pool.items[x].dtype in ("number", "bool"):
            defaults.append(0)
        for default in defaults:
            node = Node("aggregate", (sel, x, default), "categorical")
            try:
                values = pool.evaluate(node)
            except (ValueError, RuntimeError):
                continue
            codes = values[mask]
            if bool(torch.isnan(codes).all()):
                continue
            acc, r2 = explains(zf, codes)
            if acc >= th.decode and r2 >= th.explain:
                numerical = _is_mean(pool, sel, x)
                node = Node("aggregate", (sel, x, default), "numerical" if numerical else "categorical")
                matches_.append((pool.items[x].cost + (0.1 if default is not None else 0.0), node, acc, r2))
    matches_.sort(key=lambda t: t[0])

    def written_at(name: str) -> float:
        at = state.located.get(name) or state.parts.get(name)
        return at.layer if at is not None else -1.0

    # One aggregate per value vector, in cost order; among variables with the same values it reads
    # the last one written (a network copies a variable, numerical(map(identity, x)), to read the copy).
    by_key: dict[str, tuple[Any, float, float, torch.Tensor]] = {}
    for _, node, acc, r2 in matches_:
        values = pool.evaluate(node)
        key = pool.key(values)
        kept = by_key.get(key)
        if kept is None or written_at(node.inputs[1]) > written_at(kept[0].inputs[1]):
            by_key[key] = (node, acc, r2, values)
    for node, acc, r2, values in by_key.values():
        name = pool.add(node, prefix=f"attn{layer}_{head}_", values=values, dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(
            name, Location(act_name("z", layer), head=head), float(layer), min(acc, r2)
        )
        averaged = node.inputs[1]
        if averaged in state.parts:  # the head reads this dimension of an MLP block: it is a variable
            state.located[averaged] = state.parts[averaged]
        info["aggregates"].append(name)
        if len(info["aggregates"]) >= 2:
            break
    return info


def _tag(head: int | None) -> str:
    """How a head is named in pooled variable names (``all``: the layer's heads together)."""
    return "all" if head is None else str(head)


def read_mask(pool: Pool, obs: Observations) -> torch.Tensor:
    """[batch, pos] True at the positions the task reads (where the network's output is observed)."""
    from mechsynth.synth.propose.enumerate import encode_outputs

    return encode_outputs(pool.batch, [list(row) for g in obs.groups for row in g.outputs])[1]


def explain_head_soft(
    pool: Pool,
    state: GuidedState,
    obs: Observations,
    layer: int,
    head: int | None,
    z: torch.Tensor,
    pattern: torch.Tensor,
    bos: torch.Tensor,
    avail: list[str],
    th: MatchThresholds,
    *,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Head matching for trained networks: score candidate selectors by where the head looks.

    Candidates are ``select(k, q, pred)`` over available variables with the named comparisons
    and small shifts (``q == k + c``). A head matters either at every position (its output
    feeds later layers) or only where the task reads the output, so agreement is the better
    of the two; the head's output must then decode the aggregate at those same positions.
    Past the run's ``deadline`` the ranking stops with the candidates scored so far (anytime).
    """
    from mechsynth.dsl.program import Node

    mask = pool.batch.mask
    read = read_mask(pool, obs) & mask
    info: dict[str, Any] = {"selectors": [], "aggregates": [], "agreement": 0.0}
    preds: list[Any] = [c for c in COMPARISON_ORDER if c != "TRUE"]
    preds += [_shifted_predicate(torch.eq, c) for c in SELECT_OFFSETS]
    reps = representatives(state, avail)
    # A causal head never looks ahead: its selectors are the candidates restricted to keys at
    # or before the query (``selector_and(s, select(indices, indices, LEQ))``).
    causal_node = Node("select", ("indices", "indices", "LEQ"), None)
    causal = _is_causal(pattern, pool.batch.pair_mask) and "indices" in pool.items
    causal_values = pool.evaluate(causal_node) if causal else None

    # Candidates are ranked on a subsample of inputs (the batch can hold thousands).
    step = max(1, pattern.shape[0] // SELECTOR_SAMPLE)
    sub_p, sub_b, sub_m, sub_r = pattern[::step], bos[::step], mask[::step], read[::step]

    def agreements_of(values: torch.Tensor) -> list[tuple[str, float]]:
        # Argmax agreement suits one-key heads; total variation suits heads spreading their
        # weight evenly over several keys (counting), where the argmax charge is too harsh.
        # Each metric nominates its own best selector: a single max over both lets a
        # spread-out selector outrank the one-key selector an induction head implements.
        v = values[::step]
        out = []
        for metric in (argmax_agreement, selector_agreement):
            a_all, a_read = metric(v, sub_p, sub_b, sub_m), metric(v, sub_p, sub_b, sub_r)
            out.append(("all", a_all) if a_all >= a_read else ("read", a_read))
        return out

    rankings: tuple[list, list] = ([], [])
    candidates: list[tuple[float, Any]] = []
    for k, q in itertools.product(reps, reps):
        for pred in preds:
            cost = pool.items[k].cost + pool.items[q].cost + (0.0 if isinstance(pred, str) else 1.0)
            candidates.append((cost, Node("select", (k, q, pred), None)))
    # The key a head looks at may be a function of the query everywhere, or only where the task
    # reads (a copy head whose other positions are free): both are fitted.
    for rows in (mask, read):
        for k, q, node in _functional_selectors(pool, state, pattern, rows, reps):
            if all(node != c[1] for c in candidates):
                candidates.append((pool.items[k].cost + pool.items[q].cost + 2.0, node))
    # Attention spread over every key (a count over the whole input): one canonical selector.
    candidates.append((0.5, Node("select", ("tokens", "tokens", "TRUE"), None)))
    bases: list[tuple[float, Any, torch.Tensor]] = []  # plain selects a select_best may narrow
    singles: list[tuple[float, Any, torch.Tensor]] = []  # selects of at most one key per query
    for i, (cost, node) in enumerate(candidates):
        if i % DEADLINE_EVERY == 0 and expired(deadline):
            info["deadline"] = True
            break
        try:
            values = pool.evaluate(node)
        except ValueError:
            continue
        if causal_values is not None:
            values = values & causal_values
            cost += 1.0
        if not bool(values.any()):
            continue
        if node.op == "select" and node.args[2] in BEST_BASE_PREDICATES:
            bases.append((cost, node, values))
        if node.op == "select" and bool((values.sum(-1) <= 1).all()):
            singles.append((cost, node, values))
        for ranking, (rows_name, agreement) in zip(rankings, agreements_of(values)):
            ranking.append((agreement, -cost, rows_name, node, values))
    _add_conjunctions(rankings, agreements_of, deadline)
    _add_best_of(rankings, agreements_of, pool, bases, causal_values, deadline)
    nominated: list[tuple[float, str, Any, torch.Tensor]] = []
    ranked = [t for ranking in rankings for t in ranking]
    if ranked:  # the closest selector, kept for the run's partial explanation
        top = max(ranked, key=lambda t: (t[0], t[1]))
        info["best_agreement"], info["best_selector"] = top[0], str(top[3])
    here = Location(act_name("z", layer), head=head)
    for ranking in rankings:
        # The best selector of each ranking that the checks have not refuted for this head.
        allowed = (t for t in sorted(ranking, key=lambda t: (-t[0], -t[1])) if state.allows(here, t[4]))
        top = next(allowed, None)
        if top is None:
            continue
        agreement, _, rows_name, node, values = top
        if agreement >= th.selector and all(node != n[2] for n in nominated):
            nominated.append((agreement, rows_name, node, values))
    for agreement, rows_name, node, values in sorted(nominated, key=lambda n: -n[0]):
        if isinstance(node, tuple):  # a conjunction of two selectors over different variables
            prefix = f"sel{layer}_{_tag(head)}_part"
            parts = [try_add(pool, part, prefix=prefix, dedupe=False) for part in node]
            if None in parts:
                continue
            node = Node("selector_and", tuple(parts), None)
        elif isinstance(node, BestOf):
            node = _best_of_node(pool, node, causal_node, f"sel{layer}_{_tag(head)}_")
            if node is None:
                continue
        if causal_values is not None and not torch.equal(pool.evaluate(node), values):
            base = try_add(pool, node, prefix=f"sel{layer}_{_tag(head)}_base", dedupe=False)
            mask_name = try_add(pool, causal_node, prefix="causal", dedupe=False)
            if base is None or mask_name is None:
                continue
            node = Node("selector_and", (base, mask_name), None)
        sel = pool.add(node, prefix=f"sel{layer}_{_tag(head)}_", values=values, dedupe=False)
        if sel is None:
            continue
        info["selectors"].append(sel)
        if agreement > info["agreement"]:
            info["agreement"], info["rows"] = agreement, rows_name
        rows = mask if rows_name == "all" else read
        for name in _head_aggregates(pool, state, layer, head, z, avail, th, sel, rows):
            info["aggregates"].append(name)
    if not info["aggregates"]:
        split = split_operands(pool, state, z, pattern, avail, th, singles, {"read": read, "all": mask})
        if split is not None:
            info["split"] = split
            info["operands"] = list(split.operands)
    return info


SPLIT_MASS = 0.9  # the share of a head's attention its single-key parts must hold together
SPLIT_SHARE = 0.1  # the share each part must hold (else the head looks at one key)
SPLIT_TOP = 6  # the single-key selectors, by attention mass, that are paired


@dataclass(frozen=True)
class Split:
    """A head whose attention splits over two keys, each named by a single-key selector.

    Its output is a mixture of the two keys' values with weights that depend on them, so it
    is no aggregate of one variable; it is a function of the pair ``operands`` (the aggregate of
    ``x`` through each part), which later components (an MLP computing a lookup of both)
    read. ``mass``: the share of the head's attention on the two parts at ``rows``; ``r2``: the
    share of the output's variance that the mixture model of :func:`mixture_fit` explains;
    ``decode``: the fraction of rows on which that model, given the observed weights, names the
    right pair of operand values among every pair.
    """

    selectors: tuple[str, str]
    operands: tuple[str, str]
    rows: str
    mass: float
    decode: float
    r2: float


def split_operands(
    pool: Pool,
    state: GuidedState,
    z: torch.Tensor,
    pattern: torch.Tensor,
    avail: Sequence[str],
    th: MatchThresholds,
    singles: Sequence[tuple[float, Any, torch.Tensor]],
    rows_by_name: dict[str, torch.Tensor],
) -> Split | None:
    """Two single-key selectors holding the head's attention together, and the operands they read.

    A trained head often attends to two keys at once (the two operands of a modular sum), with
    weights that depend on both; no single selector matches it and its output decodes no one
    aggregate. When two disjoint single-key selectors (``select(indices, indices, k + 2 == q)``:
    the key two positions back) hold ``SPLIT_MASS`` of the attention at the rows together, each
    at least ``SPLIT_SHARE``, the head is a pair: for the cheapest available ``x`` whose two
    aggregates (one through each part) explain the head's output as the attention-weighted
    mixture of one vector per value (:func:`mixture_fit`; R^2 >= ``th.explain``, pair decoded
    on >= ``th.decode`` of the rows), the two aggregates are pooled (not located: one head
    writes both, mixed) and offered to the layer's MLP. None when no pair of parts or
    operands fits.
    """
    from mechsynth.dsl.program import Node

    mask = pool.batch.mask
    pattern = pattern.double()
    best: tuple[float, float, str, tuple, tuple] | None = None
    for rows_name, rows in rows_by_name.items():
        if not bool(rows.any()):
            continue
        parts = []
        for cost, node, values in singles:
            hit = values.any(-1)[rows]
            if float(hit.double().mean()) < SPLIT_MASS:
                continue
            mass = float((pattern * values).sum(-1)[rows].mean())
            if mass >= SPLIT_SHARE:
                parts.append((mass, cost, node, values))
        parts.sort(key=lambda t: (-t[0], t[1]))
        parts = parts[:SPLIT_TOP]
        if not parts or parts[0][0] >= SPLIT_MASS:
            continue  # one key holds the attention: a plain selector explains it
        for (_ma, ca, a, va), (_mb, cb, b, vb) in itertools.combinations(parts, 2):
            if bool((va & vb)[rows].any()):
                continue
            union = float((pattern * (va | vb)).sum(-1)[rows].mean())
            if union < SPLIT_MASS:
                continue
            # The earlier key first: operands read in input order (a, b of a + b).
            at_a = float(va.double().argmax(-1)[rows].double().mean())
            at_b = float(vb.double().argmax(-1)[rows].double().mean())
            pair = ((a, va), (b, vb)) if at_a <= at_b else ((b, vb), (a, va))
            cand = (union, -(ca + cb), rows_name, pair)
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        return None
    union, _, rows_name, pair = best
    rows = rows_by_name[rows_name]
    zr = z.double()[rows[mask]]
    weights = [(pattern * v).sum(-1)[rows] for _, v in pair]
    for x in sorted(avail, key=lambda n: pool.items[n].cost):
        if pool.items[x].kind != "sop":
            continue
        ops = []
        for node, _ in pair:
            sel = pool.lookup(pool.evaluate(node)) or try_add(pool, node, prefix="part")
            if sel is None:
                return None
            agg = Node("aggregate", (sel, x, None), "categorical")
            try:
                vals = pool.evaluate(agg)
            except ValueError:
                break
            if bool(torch.isnan(vals[rows]).any()) or int(torch.unique(vals[rows]).numel()) < 2:
                break
            ops.append((sel, agg, vals))
        if len(ops) < 2:
            continue
        fit = mixture_fit(zr, weights, [vals[rows] for *_, vals in ops])
        if fit is None or fit[0] < th.explain or fit[1] < th.decode:
            continue
        names = [pool.lookup(vals) or pool.add(agg, prefix="operand", values=vals) for _, agg, vals in ops]
        if None in names:
            continue
        return Split(
            tuple(sel for sel, *_ in ops),
            tuple(names),
            rows_name,
            round(union, 4),
            round(fit[1], 4),
            round(fit[0], 4),
        )
    return None


MIXTURE_ROWS = 512  # rows on which a split head's pair is decoded (every pair of values is tried)
MIXTURE_VALUES = 64  # operands with more distinct values are not decoded pair by pair


def mixture_fit(
    z: torch.Tensor, weights: Sequence[torch.Tensor], operands: Sequence[torch.Tensor]
) -> tuple[float, float] | None:
    """(R^2, pair decode accuracy) of ``z = w1 * M1[x1] + w2 * M2[x2] + c`` over the rows.

    What a head attending to two keys writes: each key contributes its value vector, a function
    of the value it holds, scaled by its (observed) attention weight. The per-value vectors
    ``M1``, ``M2`` are fitted by least squares over the rows (one vector per value and part,
    far fewer parameters than rows when each value occurs several times), and the pair is
    decoded on each row as the pair of values whose mixture is nearest to ``z``. None when the
    operands take too many values to decode pair by pair.
    """
    ids = []
    for codes in operands:
        i, n = class_ids(codes)
        if n > MIXTURE_VALUES:
            return None
        ids.append((i, n))
    cols = [w[:, None] * torch.nn.functional.one_hot(i, n).double() for w, (i, n) in zip(weights, ids)]
    design = torch.cat([*cols, torch.ones(z.shape[0], 1, dtype=torch.float64)], 1)
    gram = design.T @ design + 1e-6 * torch.eye(design.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(gram, design.T @ z)
    total = float(((z - z.mean(0)) ** 2).sum())
    if total <= 1e-12:
        return None
    r2 = 1.0 - float(((z - design @ coef) ** 2).sum()) / total
    (i1, n1), (i2, n2) = ids
    m1, m2, c = coef[:n1], coef[n1 : n1 + n2], coef[-1]
    step = max(1, z.shape[0] // MIXTURE_ROWS)
    zs, w1, w2 = z[::step], weights[0][::step], weights[1][::step]
    # [rows, n1, n2, d]: every pair's mixture on every sampled row.
    pred = w1[:, None, None, None] * m1[None, :, None, :] + w2[:, None, None, None] * m2[None, None, :, :] + c
    dist = ((pred - zs[:, None, None, :]) ** 2).sum(-1).reshape(zs.shape[0], -1)
    best = dist.argmin(-1)
    decode = float(((best // n2 == i1[::step]) & (best % n2 == i2[::step])).double().mean())
    return r2, decode


# A layer's joint claim is ordered after its single heads' (attention L, MLP L + 0.5), so the
# output step tries the whole layer first when it explains the layer better than any head.
JOINT_ORDER = 0.25


def explain_layer_soft(
    pool: Pool,
    state: GuidedState,
    obs: Observations,
    layer: int,
    patterns: torch.Tensor,
    bos: torch.Tensor,
    avail: list[str],
    th: MatchThresholds,
    *,
    deadline: float | None = None,
) -> dict[str, Any] | None:
    """The heads of one layer together: one selection split between them (a sorting layer).

    A trained layer may share one job among its heads: each attends to the next output's key
    for part of the value range and rests on BOS elsewhere (trained:sort_after_sep's three
    layer-1 heads). No head alone is the selector, and a claim at one head fails interchange
    (the other heads still carry the base input's value). The layer's mean pattern is matched
    like one head's (:func:`explain_head_soft`) and its aggregate claimed at the whole
    ``hook_z``. Kept only when it beats every single head's agreement by ``COMPOSITE_GAIN`` and
    the heads' outputs together decode its aggregate; otherwise nothing it located is kept.
    ``patterns`` is ``[N, H, T, T]``, ``bos`` ``[N, H, T]``.
    """
    if patterns.shape[1] < 2:
        return None
    # The single heads' explanations: the agreement of the selector each head was explained by.
    single = max(
        (info.get("agreement", 0.0) for (lay, _), info in state.heads.items() if lay == layer), default=0.0
    )
    z = obs.flat(act_name("z", layer))
    before = set(state.located)
    info = explain_head_soft(
        pool, state, obs, layer, None, z, patterns.mean(1), bos.mean(1), avail, th, deadline=deadline
    )
    new = [n for n in state.located if n not in before]
    if not info["aggregates"] or info["agreement"] < single + COMPOSITE_GAIN:
        for name in new:
            del state.located[name]
        return None
    for name in info["aggregates"]:
        loc = state.located[name]
        state.located[name] = Located(name, loc.location, layer + JOINT_ORDER, loc.score)
    info["single_agreement"] = single
    return info


DEADLINE_EVERY = 32  # candidate selectors scored between two looks at the run's deadline
CONJUNCTION_TOP = 6  # the best single selectors per ranking that are paired into conjunctions
# How much a composite selector (a conjunction, a select_best) must beat every simpler one by.
COMPOSITE_GAIN = 0.05


def _add_conjunctions(rankings: Sequence[list], agreements_of: Any, deadline: float | None = None) -> None:
    """Rank ``selector_and(s, t)`` of the best single selectors over different variable pairs.

    A trained head often attends where two relations hold at once (the mirror position AND
    an equal token). Each ranking gets the conjunctions that beat its best single selector by
    ``COMPOSITE_GAIN``; entries are ``(agreement, -cost, rows, (node_s, node_t), values)``.
    """
    singles: list[tuple[float, Any, torch.Tensor]] = []
    for ranking in rankings:
        for _agreement, neg_cost, _, node, values in sorted(ranking, key=lambda t: (-t[0], -t[1]))[
            :CONJUNCTION_TOP
        ]:
            if all(node != n for _, n, _ in singles):
                singles.append((-neg_cost, node, values))
    best = [max((t[0] for t in ranking), default=0.0) for ranking in rankings]
    for (ca, a, va), (cb, b, vb) in itertools.combinations(singles, 2):
        if expired(deadline):
            return
        if a.args[:2] == b.args[:2]:
            continue  # one variable pair: the DSL names that relation directly
        both = va & vb
        if not bool(both.any()):
            continue
        for i, (rows_name, agreement) in enumerate(agreements_of(both)):
            if agreement >= best[i] + COMPOSITE_GAIN:
                rankings[i].append((agreement, -(ca + cb + 1.0), rows_name, (a, b), both))


# The relations a select_best narrows: an order (the keys above or below the query's value), a
# difference, or every key. EQ already names one value (its best-of is itself or a tie-break).
BEST_BASE_PREDICATES = ("LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE")


@dataclass(frozen=True)
class BestOf:
    """A ranked ``select_best(base, scores, direction)`` not yet in the pool (``causal``: base & causal)."""

    base: Node
    scores: str
    direction: Direction
    causal: bool


def _add_best_of(
    rankings: Sequence[list],
    agreements_of: Any,
    pool: Pool,
    bases: Sequence[tuple[float, Any, torch.Tensor]],
    causal_values: torch.Tensor | None,
    deadline: float | None = None,
) -> None:
    """Rank ``select_best(select(k, q, pred), score, ARGMIN|ARGMAX)`` for each plain base select.

    A sorting head attends, from each query, to the one key whose value is the smallest above
    the query's (the next output); no predicate of one key and one query names that key, but
    the best-scoring key among those ``select(k, q, GT)`` selects does. The score is the key
    variable itself or ``indices`` (the nearest or farthest selected key). An order base whose
    query takes symbol values (a separator) is also tried with the query relabelled so that
    each symbol lies beyond every key (:func:`_symbols_beyond`): from the separator, the first
    output is the smallest key of all. Scored by the same agreements as every other selector;
    an entry joins a ranking only when it beats the best selector already there by
    ``COMPOSITE_GAIN`` (a plain select that fits as well stays the explanation). Entries are
    ``(agreement, -cost, rows, BestOf, values)``.
    """
    best = [max((t[0] for t in ranking), default=0.0) for ranking in rankings]
    from mechsynth.dsl import registry

    cost_of = registry.primitive("select_best").cost  # the primitive's own cost, as registered
    causal = causal_values is not None
    seen: set[str] = set()
    todo = list(bases)
    for base_cost, node, _ in bases:
        k, q, pred = node.args
        relabelled = _symbols_beyond(pool, k, q, pred)
        if relabelled is None:
            continue
        new = Node("select", (k, relabelled, pred), None)
        values = pool.evaluate(new)
        if causal_values is not None:
            values = values & causal_values
        todo.append((base_cost + pool.items[relabelled].cost - pool.items[q].cost, new, values))
    for base_cost, node, values in todo:
        if expired(deadline):
            return
        k = node.args[0]
        for scores in dict.fromkeys((k, "indices")):
            if scores not in pool.items:
                continue
            score_values = pool.values[scores]
            for direction in Direction:
                chosen = best_keys(values, score_values, direction)
                if torch.equal(chosen, values):
                    continue  # narrows nothing: the base itself is ranked already
                key = pool.key(chosen)
                if key in seen:
                    continue
                seen.add(key)
                entry = BestOf(node, scores, direction, causal)
                cost = base_cost + cost_of + pool.items[scores].cost
                for i, (rows_name, agreement) in enumerate(agreements_of(chosen)):
                    if agreement >= best[i] + COMPOSITE_GAIN:
                        rankings[i].append((agreement, -cost, rows_name, entry, chosen))


ORDERS = {"GT": "below", "GEQ": "below", "LT": "above", "LEQ": "above"}


def _symbols_beyond(pool: Pool, k: str, q: str, pred: str) -> str | None:
    """``q`` relabelled so that its symbol values lie below (GT, GEQ) or above (LT, LEQ) every ``k``.

    Codes order every symbol after every number, so from a separator query ``select(tokens,
    tokens, GT)`` selects no number. The head decides what the separator means: this is the
    relabelling under which the separator is the start of the order (``map(table({...,
    'SEP': -1}), tokens)``), pooled once per (k, q, side); None when ``q`` has no symbol or
    number values, or the map cannot be fitted.
    """
    side = ORDERS.get(pred) if isinstance(pred, str) else None
    if side is None:
        return None
    memo_key = ("symbols_beyond", k, q, side)
    if memo_key in pool.fn_memo:
        return pool.fn_memo[memo_key][0]
    mask = pool.batch.mask
    qv, kv = pool.values[q], pool.values[k][mask]
    numbers = kv[~torch.isnan(kv) & (kv < SYMBOL_BASE)]
    symbols = ~torch.isnan(qv) & (qv >= SYMBOL_BASE) & mask
    name = None
    if numbers.numel() and bool(symbols.any()) and pool.items[q].dtype == "value":
        bound = float(numbers.min()) - 1.0 if side == "below" else float(numbers.max()) + 1.0
        target = torch.where(symbols, bound, qv)
        node = fit_map(pool, [q], target, where=mask)
        if node is not None:
            name = try_add(pool, node, prefix=f"{q}_{side}", dedupe=False)
    pool.fn_memo[memo_key] = [name]
    return name


def _best_of_node(pool: Pool, best: BestOf, causal_node: Node, prefix: str) -> Node | None:
    """Pool the base selector of a ranked ``BestOf`` (restricted to past keys when causal)."""
    base = try_add(pool, best.base, prefix=f"{prefix}base", dedupe=False)
    if base is None:
        return None
    if best.causal:
        mask_name = try_add(pool, causal_node, prefix="causal", dedupe=False)
        if mask_name is None:
            return None
        base = try_add(
            pool, Node("selector_and", (base, mask_name), None), prefix=f"{prefix}past", dedupe=False
        )
        if base is None:
            return None
    return Node("select_best", (base, best.scores, best.direction), None)


def _head_aggregates(
    pool: Pool,
    state: GuidedState,
    layer: int,
    head: int | None,
    z: torch.Tensor,
    avail: list[str],
    th: MatchThresholds,
    sel: str,
    rows: torch.Tensor,
) -> list[str]:
    """The (at most two) aggregates through selector ``sel`` that the head's output decodes."""
    from mechsynth.dsl.program import Node

    zr = z.double()[rows[pool.batch.mask]]
    here = Location(act_name("z", layer), head=head)
    best: list[tuple[float, Any, torch.Tensor]] = []
    chained = value_indicators(pool, state, avail)
    for x in [*avail, *token_indicators(pool), *chained]:
        agg = Node("aggregate", (sel, x, None), "categorical")
        try:
            vals = pool.evaluate(agg)
        except ValueError:
            continue
        codes = vals[rows]
        defined = ~torch.isnan(codes)
        if float(defined.double().mean()) < 0.5 or not state.allows(here, vals):
            continue
        if _is_mean(pool, sel, x) and _numbers(pool, x):
            # A mean takes many values: a linear readout, not a class decoder, says if z holds it.
            r2 = linear_r2(zr[defined], codes[defined])
            if r2 >= th.explain:
                node = Node("aggregate", (sel, x, None), "numerical")
                best.append((r2 - 0.001 * pool.items[x].cost, node, vals))
                continue
        acc = decode_accuracy(zr[defined], codes[defined])
        if acc >= th.decode:
            numerical = _is_mean(pool, sel, x) and pool.items[x].dtype != "value"
            node = Node("aggregate", (sel, x, None), "numerical" if numerical else "categorical")
            best.append((acc - 0.001 * pool.items[x].cost, node, vals))
    best.sort(key=lambda t: -t[0])
    # The best mean of an earlier component's indicator is kept beside the two best aggregates: a
    # positional mean (of indices) often decodes better from a causal head, but the chain of
    # aggregates (synth.propose.chains) is what the later components read.
    indicators = {*chained, *binary_written(pool, state, avail)}
    kept = best[:2] + [t for t in best[2:] if t[1].inputs[1] in indicators][:1]
    names = []
    for acc, node, vals in kept:
        name = pool.add(node, prefix=f"attn{layer}_{_tag(head)}_", values=vals, dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(name, here, float(layer), acc)
        names.append(name)
    return names


INDICATOR_VOCABULARY = 6  # token indicators are averaged by heads only over vocabularies this small


def token_indicators(pool: Pool) -> list[str]:
    """``map(eq(c), tokens)`` for each token value ``c`` of a small vocabulary (pooled once).

    A head attending uniformly over a set of keys and reading their token writes the fraction
    of each token among them (the fraction of open brackets in a prefix, of 1s in a
    majority vote); with few token values, each fraction is a numerical aggregate the head's
    output may hold. They are offered as aggregated values only, not as variables of their own.
    """
    from mechsynth.dsl.program import Fn, Node

    memo = pool.fn_memo.get(("token_indicators",))
    if memo is not None:
        return memo
    tokens = pool.values["tokens"]
    codes = torch.unique(tokens[pool.batch.mask]).tolist()
    names: list[str] = []
    if 2 <= len(codes) <= INDICATOR_VOCABULARY:
        for code in codes:
            value = pool.batch.codebook.decode(code, "value")
            node = Node("map", (Fn("eq", 1, (value,)), "tokens"), "categorical")
            try:
                values = pool.evaluate(node)
            except ValueError:
                continue
            name = pool.lookup(values) or pool.add(node, prefix="is_token")
            if name is not None:
                names.append(name)
    pool.fn_memo[("token_indicators",)] = names
    return names


def _functional_selectors(
    pool: Pool, state: GuidedState, pattern: torch.Tensor, mask: torch.Tensor, reps: Sequence[str]
) -> Iterator[tuple[str, str, Any]]:
    """``select(k, map(f, q), EQ)`` for heads whose most-attended key is a function of the query.

    A trained head that looks at one key per query (a mirror, a fixed offset) names that key
    by a function of the query's value; the key's value at the argmax is read off the pattern,
    the majority value per query value gives a table, and the DSL fits the cheapest map to it.
    Only tables that hold on nearly every query (``FUNCTIONAL``) and that are not the identity
    (plain ``EQ`` covers it) are offered.
    """
    from mechsynth.dsl.program import Node

    top = pattern.argmax(-1)
    for k, q in itertools.product(reps, reps):
        kv, qv = pool.values[k], pool.values[q]
        at_top = torch.gather(torch.nan_to_num(kv, nan=-1e18), 1, top)[mask]
        qm = qv[mask]
        defined = ~torch.isnan(qm) & (at_top > -1e17)
        if float(defined.double().mean()) < 0.9:
            continue
        q_ids, nq = class_ids(qm[defined])
        if nq < 2 or nq > 64:
            continue
        k_ids, nk = class_ids(at_top[defined])
        joint = torch.bincount(q_ids * nk + k_ids, minlength=nq * nk).reshape(nq, nk)
        if float(joint.amax(1).sum()) < FUNCTIONAL * float(defined.sum()):
            continue
        k_codes = torch.unique(torch.nan_to_num(torch.round(at_top[defined] * 1e6), nan=-7e15)) / 1e6
        best_k = k_codes[joint.argmax(1)]
        target = torch.full_like(qv, float("nan"))
        q_codes = torch.unique(torch.round(qm[defined] * 1e6)) / 1e6
        for code, val in zip(q_codes.tolist(), best_k.tolist()):
            target = torch.where(torch.isclose(qv, torch.tensor(code, dtype=qv.dtype)), val, target)
        if bool(torch.allclose(torch.nan_to_num(target[mask], nan=0.0), torch.nan_to_num(qv[mask], nan=0.0))):
            continue  # the identity: EQ already covers it
        node = fit_map(pool, [q], target, where=mask)
        if node is None:
            continue
        name = try_add(pool, node, prefix=f"{q}_key", dedupe=False)
        if name is None:
            continue
        yield k, q, Node("select", (k, name, "EQ"), None)


FUNCTIONAL = 0.9


SELECTOR_SAMPLE = 256


def _is_causal(pattern: torch.Tensor, pair_mask: torch.Tensor) -> bool:
    """Whether a head puts (numerically) no weight on any key after its query."""
    width = pattern.shape[-1]
    ahead = torch.triu(torch.ones(width, width, dtype=torch.bool), diagonal=1)
    return float(pattern[:, ahead].abs().max()) < 1e-6 if bool(ahead.any()) else False


def _numbers(pool: Pool, x: str) -> bool:
    """Whether every value ``x`` takes is a number (tokens of a numeric vocabulary included)."""
    v = pool.values[x][pool.batch.mask]
    v = v[~torch.isnan(v)]
    return v.numel() > 0 and bool((v < SYMBOL_BASE).all()) and pool.items[x].kind == "sop"


def _is_mean(pool: Pool, sel: str, x: str) -> bool:
    """Whether aggregate(sel, x) ever averages several different values (a numerical aggregate)."""
    s = pool.values[sel]
    xv = torch.nan_to_num(pool.values[x], nan=0.0)
    width = s.sum(-1)
    if bool((width <= 1).all()):
        return False
    hi = torch.where(s, xv[:, None, :], torch.full_like(s, -1e18, dtype=torch.float64)).amax(-1)
    lo = torch.where(s, xv[:, None, :], torch.full_like(s, 1e18, dtype=torch.float64)).amin(-1)
    return bool(((hi != lo) & (width > 1)).any())


def _pair_codes(pool: Pool, k: str, q: str, seen: torch.Tensor, nk: int, nq: int) -> tuple[list, list]:
    kc = _sorted_codes(pool.values[k])
    qc = _sorted_codes(pool.values[q])
    idx = torch.nonzero(seen).reshape(-1).tolist()
    return [kc[i // nq] for i in idx], [qc[i % nq] for i in idx]


def _sorted_codes(codes: torch.Tensor) -> list[float]:
    c = torch.nan_to_num(torch.round(codes * 1e6), nan=-7.0e15)
    u = torch.unique(c)
    return [float("nan") if v == -7.0e15 else v / 1e6 for v in u.tolist()]


SHIFTS = (1, -1, 2, -2, 3, -3)


def _name_relation(
    kv: list[float], qv: list[float], rel: torch.Tensor, k_relabel: bool, q_relabel: bool, same: bool = False
) -> Iterator[tuple[Any, tuple[str, Any] | None, float]]:
    """DSL predicates agreeing with ``rel`` on the observed (key, query) code pairs, best first.

    Yields ``(predicate, relabel, cost)``: a named comparison on the variables as they are; a
    comparison after shifting the values of a relabelable (MLP-written) key or query variable
    (``relabel`` = (side, shift): the MLP's output fixes the variable only up to its labels,
    and the head that reads it fixes the labels); else a fitted two-argument predicate.
    """
    from mechsynth.dsl.interpret import comparison

    if any(v != v for v in kv + qv):
        return
    kt = torch.tensor(kv, dtype=torch.float64)
    qt = torch.tensor(qv, dtype=torch.float64)
    for name in COMPARISON_ORDER:
        if bool((comparison(name, kt, qt) == rel).all()):
            yield name, None, 0.0
            return
    for side, ok in (("q", q_relabel), ("k", k_relabel)):
        if not ok:
            continue
        for c in SHIFTS:
            k2, q2 = (kt, qt + c) if side == "q" else (kt + c, qt)
            for name in COMPARISON_ORDER[:-1]:
                if bool((comparison(name, k2, q2) == rel).all()):
                    yield name, (side, c), 0.5
                    return
    for side, ok in (("q", q_relabel), ("k", k_relabel)):
        matching = _matching(kt, qt, rel, side) if ok and not same else None
        if matching is not None:
            yield "EQ", (side, matching), 0.6
            return
    if same and k_relabel:
        ranks = _order_labels(kt, qt, rel)
        if ranks is not None:
            name, mapping = ranks
            yield name, ("order", mapping), 0.75
            return
    pred = _fit_predicate(kt, qt, rel)
    if pred is not None:
        yield pred, None, float(pred.family.cost)


def _matching(kt: torch.Tensor, qt: torch.Tensor, rel: torch.Tensor, side: str) -> dict[float, float] | None:
    """Labels for one side under which ``rel`` is ``EQ``: each value of it selects one value of the other.

    A head that attends from each query value to exactly one key value, a different one for
    each (the mirror position in a reverse), compares the other side with a relabelling of this
    one; the relabelled variable is refitted as a map of its inputs (a closed form such as
    ``length - indices - 1`` where one exists) instead of a table predicate. Returns the
    code -> label map of ``side`` ("q" or "k"), or None when the relation is no such matching.
    """
    mine, other = (qt, kt) if side == "q" else (kt, qt)
    partner: dict[float, float] = {}
    for m, o, r in zip(mine.tolist(), other.tolist(), rel.tolist()):
        if not r:
            continue
        if partner.setdefault(m, o) != o:
            return None  # two values selected: no function
    if set(partner) != set(mine.tolist()) or len(set(partner.values())) != len(partner):
        return None  # a value selecting nothing, or two values selecting the same one
    return partner


def _order_labels(
    kt: torch.Tensor, qt: torch.Tensor, rel: torch.Tensor
) -> tuple[str, dict[float, float]] | None:
    """Labels under which ``rel`` (a relation of a variable with itself) is a named order.

    A head comparing a variable with itself (``select(keys, keys, LT)`` in a sort) fixes the
    order of the variable's values, not their names: the number of values each query value
    selects ranks it. Returns the comparison and the code -> rank map, or None.
    """
    from mechsynth.dsl.interpret import comparison

    values = sorted(set(kt.tolist()) | set(qt.tolist()))
    index = {v: i for i, v in enumerate(values)}
    pairs = [(index[k], index[q], bool(r)) for k, q, r in zip(kt.tolist(), qt.tolist(), rel.tolist())]
    # Each comparison turns every observed pair into a difference constraint on the labels
    # (edge a -> b with weight w: label[b] >= label[a] + w); the smallest labels meeting them
    # are longest-path lengths, and a positive cycle means the relation is no such order.
    for name, true_edge, false_edge in (
        ("LT", (0, 1, 1), (1, 0, 0)),
        ("LEQ", (0, 1, 0), (1, 0, 1)),
        ("GT", (1, 0, 1), (0, 1, 0)),
        ("GEQ", (1, 0, 0), (0, 1, 1)),
    ):
        edges = []
        for k, q, r in pairs:
            src, dst, w = true_edge if r else false_edge
            ends = (k, q)
            edges.append((ends[src], ends[dst], w))
        labels = _longest_paths(len(values), edges)
        if labels is None:
            continue
        # Values never compared on one input get the same rank; keep them apart (a relabelling
        # must not merge values) with a tie-break in their old order when that stays consistent.
        distinct = sorted(values, key=lambda v: (labels[index[v]], v))
        for mapping in (
            {v: float(i) for i, v in enumerate(distinct)},
            {v: float(labels[index[v]]) for v in values},
        ):
            k2 = torch.tensor([mapping[v] for v in kt.tolist()], dtype=torch.float64)
            q2 = torch.tensor([mapping[v] for v in qt.tolist()], dtype=torch.float64)
            if bool((comparison(name, k2, q2) == rel).all()):
                return name, mapping
    return None


def _longest_paths(n: int, edges: list[tuple[int, int, int]]) -> list[int] | None:
    labels = [0] * n
    for _ in range(n + 1):
        changed = False
        for a, b, w in edges:
            if labels[b] < labels[a] + w:
                labels[b] = labels[a] + w
                changed = True
        if not changed:
            return labels
    return None


def _relabelable(pool: Pool, state: GuidedState, name: str) -> bool:
    """Whether a variable's value labels are free: an MLP-written map fixes only its partition."""
    item = pool.items[name]
    loc = state.located.get(name)
    return (
        item.node is not None
        and item.node.op in ("map", "seqmap")
        and loc is not None
        and loc.location.component == "mlp"
    )


def _relabelled_values(values: torch.Tensor, how: Any) -> torch.Tensor:
    if isinstance(how, dict):
        out = torch.full_like(values, float("nan"))
        for code, label in how.items():
            out = torch.where(torch.isclose(values, torch.tensor(code, dtype=values.dtype)), label, out)
        return out
    return values + how


def _relabel(pool: Pool, state: GuidedState, name: str, target: torch.Tensor) -> str | None:
    """The same MLP variable with new value labels ``target`` (a refitted map of its inputs)."""
    from mechsynth.synth.propose.enumerate import fit_map

    item = pool.items[name]
    defined = ~torch.isnan(pool.values[name])
    if bool(torch.isnan(target[defined & pool.batch.mask]).any()):
        return None
    node = fit_map(pool, item.node.inputs, target)
    if node is None:
        return None
    node = type(node)(node.op, node.args, item.node.encoding)
    new = try_add(pool, node, prefix=f"{name}_relabel", dedupe=False)
    if new is None:
        return None
    m = pool.batch.mask
    got, want = torch.nan_to_num(pool.values[new][m], nan=-1e9), torch.nan_to_num(target[m], nan=-1e9)
    if not bool(torch.allclose(got, want)):
        return None
    loc = state.located[name]
    state.located[new] = Located(new, loc.location, loc.layer, loc.score)
    return new


def _fit_predicate(kt: torch.Tensor, qt: torch.Tensor, rel: torch.Tensor) -> Any:
    """A two-argument function of (key, query) giving the relation: a shifted comparison, else a table."""
    from mechsynth.dsl import registry
    from mechsynth.dsl.program import Fn

    from mechsynth.dsl.values import SYMBOL_BASE

    numeric = bool((kt < SYMBOL_BASE).all() and (qt < SYMBOL_BASE).all())
    for op in (torch.eq, torch.lt, torch.le, torch.gt, torch.ge) if numeric else ():
        for c in SHIFTS:
            if bool((op(kt + c, qt) == rel).all()):
                return _shifted_predicate(op, c)
    if kt.numel() > 64 or not registry.has_function("table", 2):
        return None
    entries = tuple(
        sorted(((_num(k), _num(q)), bool(r)) for k, q, r in zip(kt.tolist(), qt.tolist(), rel.tolist()))
    )
    return Fn("table", 2, (entries,))


def _decoded_predicate(pool: Pool, k: str, q: str, pred: Any) -> Any:
    """A fitted table predicate holds value codes; the program must hold the values."""
    from mechsynth.dsl.program import Fn

    if not isinstance(pred, Fn) or pred.name != "table":
        return pred
    cb = pool.batch.codebook
    dk, dq = pool.items[k].dtype, pool.items[q].dtype
    entries = tuple(((cb.decode(a, dk), cb.decode(b, dq)), r) for (a, b), r in pred.params[0])
    return Fn("table", 2, (entries,))


def _num(v: float) -> Any:
    return int(v) if v == int(v) else v


def _shifted_predicate(op: Any, c: int) -> Any:
    """``k + c OP q`` as a DSL two-argument ``expr`` function of (x=key, y=query)."""
    import sympy

    from mechsynth.dsl.program import Fn

    x, y = sympy.symbols("x y")
    rel = {
        torch.eq: sympy.Eq,
        torch.lt: sympy.Lt,
        torch.le: sympy.Le,
        torch.gt: sympy.Gt,
        torch.ge: sympy.Ge,
    }[op]
    return Fn("expr", 2, (rel(x + c, y),))
