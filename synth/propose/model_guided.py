"""Model-guided proposal: read the network layer by layer and explain each component with the DSL.

Searching for a whole program from input/output pairs is hopeless past tiny programs, and
would explain the *task*, not the network. Instead the activations serve as intermediate
specifications (DESIGN.md, "Propose"). Walking the layers in order, with a set of
*available* variables (those decodable from the residual stream entering the layer):

1. **Heads.** A head's attention pattern is matched by a ``select(keys, queries, pred)``
   over available variables. We do not try every selector: for a pair of variables
   ``(k, q)`` the pattern itself says, for each pair of observed values ``(k=a, q=b)``,
   whether the head attends — if the answer is the same every time the pair occurs, the
   pattern is a function of ``(k, q)`` and the relation it induces is named: a DSL
   comparison (``EQ``, ``LT``, ...) when one agrees on every observed pair, else the
   cheapest two-argument function the DSL can fit. The head's *output* (``hook_z``) is
   then matched with ``aggregate(selector, x)`` for an available ``x``: the aggregate must
   be decodable from the head's output and explain it (see "explains" below). A head whose
   pattern matches but whose output is no aggregate is remembered as a *counting* head:
   its selector is offered to the MLP of the same layer as ``selector_width(selector)``
   (that is how tracr, and plausibly a trained network, counts).
2. **MLPs.** The MLP output is matched with ``map(f, x)``, ``seqmap(g, x, y)`` and
   ``selector_width(s)`` candidates built by the enumerator from available variables and
   the registered function library. An MLP may compute several variables side by side in
   different residual directions, so each candidate claims the output dimensions it
   explains and candidates are chosen to cover every active dimension.
3. **Output.** The network's decoded outputs are a variable of the pool (or a fitted
   relabelling of one); its dependency closure, with every variable mapped to the component
   that wrote it, is a whole-program hypothesis.

"v explains activation A" means both directions of "A encodes exactly v": v is decodable
from A (nearest-class-mean classification of A recovers v) and A is a function of v (the
class means of A by v explain its variance, R^2). The thresholds are named in
:class:`MatchThresholds`; exactly-compiled (tracr) networks meet them at ~1.0, trained
networks are matched with softer ones and ranked.

Different value labellings of the same information (``length - indices`` vs
``length - indices - 1``) cannot be told apart from one MLP's output, so several labellings
are kept; the downstream components that read them (an ``EQ`` against ``indices``, the
network's output values) decide which one is right.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence

import torch

from synth.propose.enumerate import Pool, encode_outputs, fit_map, function_instances, matches, try_add
from dsl.hypothesis import Hypothesis
from dsl.location import Location
from synth.propose.interface import Proposal, ProposalContext

if TYPE_CHECKING:
    from synth.observe import Observations

COMPARISON_ORDER = ("EQ", "LT", "GT", "LEQ", "GEQ", "NEQ", "TRUE")


@dataclass(frozen=True)
class MatchThresholds:
    """How well a DSL object must match a component to be taken as its explanation.

    ``selector``: attention agreement (1 - mean total-variation distance between the head's
    pattern over non-BOS keys and the selector's uniform pattern); ``decode``:
    nearest-class-mean accuracy of the variable from the activation; ``explain``: fraction of
    the activation's variance (R^2) explained by the variable's class means; ``conflict``:
    largest fraction of (key value, query value) pairs on which the head's binarised pattern
    disagrees with itself (0 for an exact match).
    """

    selector: float = 0.95
    decode: float = 0.99
    explain: float = 0.99
    conflict: float = 0.0
    available: float = 0.99
    whole_mlp: bool = False  # claim a matched MLP variable at the whole hook_mlp_out, not its dims

    @staticmethod
    def soft() -> MatchThresholds:
        """Thresholds for trained networks, whose attention and encodings are not exact."""
        # A trained MLP spreads a variable over every output direction (no exact dims to claim).
        return MatchThresholds(
            selector=0.6, decode=0.9, explain=0.8, conflict=0.05, available=0.9, whole_mlp=True
        )


@dataclass
class Located:
    """A pooled variable that a component writes."""

    name: str
    location: Location
    layer: float  # ordering key: layer L attention = L, layer L MLP = L + 0.5, embeddings = -1
    score: float = 1.0


@dataclass
class GuidedState:
    """Everything the layer walk found (exposed for reports, notebooks and tests)."""

    pool: Pool
    located: dict[str, Located] = field(default_factory=dict)
    heads: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    mlps: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


# --- statistics of "v explains A" -----------------------------------------------------------------
def _class_ids(codes: torch.Tensor) -> tuple[torch.Tensor, int]:
    c = torch.nan_to_num(torch.round(codes * 1e6), nan=-7.0e15)
    _, inv = torch.unique(c, return_inverse=True)
    return inv, int(inv.max()) + 1 if inv.numel() else 0


def explain_stats(act: torch.Tensor, codes: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(decode accuracy over all dims, per-dim R^2, per-dim variance) of ``codes`` vs ``act``."""
    ids, n = _class_ids(codes)
    act = act.double()
    counts = torch.bincount(ids, minlength=n).double()
    sums = torch.zeros(n, act.shape[1], dtype=torch.float64).index_add_(0, ids, act)
    means = sums / counts[:, None]
    resid = act - means[ids]
    total = ((act - act.mean(0)) ** 2).sum(0)
    within = (resid**2).sum(0)
    r2 = 1.0 - within / total.clamp(min=1e-12)
    r2 = torch.where(total > 1e-9, r2, torch.zeros_like(r2))
    return float("nan"), r2, total


def decode_accuracy(act: torch.Tensor, codes: torch.Tensor) -> float:
    """In-sample accuracy of decoding ``codes`` from ``act``: the better of two decoders.

    A linear probe (least squares onto one-hot classes, argmax) reads a variable stored in
    its own directions among many others (the residual stream); nearest class mean reads a
    scalar encoding (a numerical variable in one direction) that no argmax of linear scores
    can split into its middle values.
    """
    ids, n = _class_ids(codes)
    if n <= 1:
        return 0.0
    act = act.double()
    counts = torch.bincount(ids, minlength=n).double()
    means = torch.zeros(n, act.shape[1], dtype=torch.float64).index_add_(0, ids, act) / counts[:, None]
    scale = act.std(0).clamp(min=1e-6)
    d = torch.cdist(act / scale, means / scale)
    ncm = float((d.argmin(1) == ids).double().mean())
    if ncm >= 0.999:
        return ncm
    x = torch.cat([act - act.mean(0), torch.ones(act.shape[0], 1, dtype=torch.float64)], 1)
    y = torch.nn.functional.one_hot(ids, n).double()
    gram = x.T @ x + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)
    probe = float(((x @ w).argmax(1) == ids).double().mean())
    return max(ncm, probe)


def explains(act: torch.Tensor, codes: torch.Tensor) -> tuple[float, float]:
    """(decode accuracy, overall R^2): both near 1 when ``act`` encodes exactly ``codes``."""
    _, r2, total = explain_stats(act, codes)
    tot = float(total.sum())
    overall = float((r2 * total).sum() / tot) if tot > 1e-9 else 0.0
    return decode_accuracy(act, codes), overall


# --- the proposer -------------------------------------------------------------------------------
@dataclass
class ModelGuidedProposer:
    """Layer-by-layer proposer (see the module docstring). ``soft`` None: decided per target."""

    name: str = "model-guided"
    thresholds: MatchThresholds | None = None
    labellings: int = 3  # value labellings kept per MLP block
    max_candidates: int = 12
    exhaustive: bool = True  # deterministic: a second round would repeat the first
    last_state: GuidedState | None = None

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        obs = context.observations
        thresholds = self.thresholds or (
            MatchThresholds() if _is_exact(context.target) else MatchThresholds.soft()
        )
        start = time.monotonic()
        state = walk(obs, thresholds, labellings=self.labellings, deadline=context.deadline)
        self.last_state = state
        n = 0
        for hyp, meta in compose(state, obs):
            meta = {**meta, "walk_seconds": round(time.monotonic() - start, 3)}
            yield Proposal(source=self.name, hypothesis=hyp, meta=meta)
            n += 1
            if n >= self.max_candidates:
                return


def _is_exact(target: Any) -> bool:
    info = getattr(target, "info", {}) or {}
    return info.get("kind") == "tracr"


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


def make_batch(obs: Observations, symbols: Sequence[Any] = ()) -> Any:
    from dsl.interpret import encode

    outs = [v for v in obs.network_outputs() if v is not None]
    return encode(obs.all_inputs(), symbols=list(symbols) + outs)


def walk(
    obs: Observations,
    thresholds: MatchThresholds,
    *,
    labellings: int = 3,
    deadline: float | None = None,
    batch: Any = None,
) -> GuidedState:
    """Explain every component, layer by layer; returns the pool of located variables."""
    batch = batch if batch is not None else make_batch(obs)
    pool = Pool(batch)
    state = GuidedState(pool)
    mask = batch.mask
    width = batch.width
    state.located["tokens"] = Located("tokens", Location("hook_embed"), -1.0)
    state.located["indices"] = Located("indices", Location("hook_pos_embed"), -1.0)
    available_cache: dict[tuple[str, int], bool] = {}

    def available(layer: int, before: float) -> list[str]:
        """Variables written before ``before``, and primitives decodable from resid_pre of ``layer``.

        A component's output is added to the residual stream, so a variable found in one is
        available to every later layer (a scalar in one direction among many is not recovered
        by a class decoder on the whole stream, so the test would wrongly drop numerical
        variables). Primitives are not written by any component: ``tokens`` and ``indices``
        are available where the residual stream encodes them, ``length`` only where some
        component has computed it. A primitive whose values a located variable already has
        is represented by the located variable: the network reads it from where it was written.
        """
        out = []
        resid = obs.flat(f"blocks.{layer}.hook_resid_pre")
        located_keys = {
            pool.key(pool.values[n])
            for n, loc in state.located.items()
            if loc.layer >= 0 and loc.layer < before
        }
        for name in list(pool.sops()):
            loc = state.located.get(name)
            if loc is not None and loc.layer >= before:
                continue
            if loc is None and name not in ("length",):
                continue
            if loc is None and pool.key(pool.values[name]) in located_keys:
                continue
            if loc is not None and loc.layer >= 0:
                out.append(name)
                continue
            key = (name, layer)
            if key not in available_cache:
                codes = pool.values[name][mask]
                acc = decode_accuracy(resid, codes)
                available_cache[key] = acc >= thresholds.available
            if available_cache[key]:
                out.append(name)
        return out

    network_out = network_outputs(pool, obs)
    for layer in range(obs.n_layers):
        if deadline is not None and time.monotonic() > deadline:
            state.notes.append(f"deadline reached before layer {layer}")
            break
        avail = available(layer, float(layer))
        patterns, bos = padded_patterns(obs, layer, width)
        counting: list[str] = []
        new_attn: list[str] = []
        for head in range(obs.n_heads):
            z = obs.flat(f"blocks.{layer}.attn.hook_z", head)
            if float(z.double().var(0).sum()) < 1e-8:
                continue
            explain = _explain_head_soft if thresholds.conflict > 0 else _explain_head
            info = explain(
                pool, state, obs, layer, head, z, patterns[:, head], bos[:, head], avail, thresholds
            )
            state.heads[(layer, head)] = info
            new_attn += info.get("aggregates", [])
            # Every matched selector is also offered to this layer's MLP as selector_width(s):
            # a head that counts (tracr's selector width) writes no aggregate of its own.
            counting += info.get("selectors", [])
        mlp_avail = avail + new_attn
        if not obs.has(f"blocks.{layer}.hook_mlp_out"):
            continue
        act = obs.flat(f"blocks.{layer}.hook_mlp_out")
        if float(act.double().var(0).sum()) > 1e-8:
            state.mlps[layer] = _explain_mlp(
                pool, state, layer, act, mlp_avail, counting, thresholds, labellings, network_out
            )
    _match_outputs(state, obs)
    return state


def representatives(state: GuidedState, names: Sequence[str]) -> list[str]:
    """One variable per MLP location (the first, cheapest labelling) plus all others.

    Other labellings of a component's variable carry the same information; the heads and
    the output that read it choose its labels (relabelling on demand), so searching over
    every labelling would only multiply the work.
    """
    seen: set[Location] = set()
    out = []
    for n in names:
        loc = state.located.get(n)
        if loc is not None and loc.layer >= 0 and loc.location.component == "mlp":
            if loc.location in seen:
                continue
            seen.add(loc.location)
        out.append(n)
    return out


def _layer_of(state: GuidedState, name: str) -> float:
    loc = state.located.get(name)
    return loc.layer if loc is not None else -1.0


def _explain_head(
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
    from dsl.program import Node

    batch = pool.batch
    mask = batch.mask
    pm = batch.pair_mask
    rowmax = pattern.amax(-1, keepdim=True)
    attended = (pattern >= 0.5 * rowmax) & (rowmax > 0.25 / (batch.width + 1)) & pm
    info: dict[str, Any] = {"selectors": [], "aggregates": [], "agreement": 0.0}
    ids = {n: _class_ids(pool.values[n])[0].reshape(pool.values[n].shape) for n in avail}
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
        recency = -(_layer_of(state, k) + _layer_of(state, q))
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
    for x in avail:
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
    seen_keys: set[str] = set()
    for _, node, acc, r2 in matches_:
        values = pool.evaluate(node)
        key = pool.key(values)
        if key in seen_keys:
            continue
        seen_keys.add(key)
        name = pool.add(node, prefix=f"attn{layer}_{head}_", values=values, dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(
            name, Location(f"blocks.{layer}.attn.hook_z", head=head), float(layer), min(acc, r2)
        )
        info["aggregates"].append(name)
        if len(info["aggregates"]) >= 2:
            break
    return info


def read_mask(pool: Pool, obs: Observations) -> torch.Tensor:
    """[batch, pos] True at the positions the task reads (every position, or the last one)."""
    mask = pool.batch.mask
    if obs.readout != "last":
        return mask
    last = torch.zeros_like(mask)
    last[torch.arange(mask.shape[0]), pool.batch.lengths - 1] = True
    return last


def argmax_agreement(
    sel: torch.Tensor, pattern: torch.Tensor, bos: torch.Tensor, rows: torch.Tensor
) -> float:
    """Fraction of query rows whose most-attended key (BOS aside) is one the selector selects.

    Trained heads are soft, so the exact-match statistic (total variation) is too strict;
    where the head puts most of its weight is the claim a selector makes. A row the selector
    leaves empty agrees when the head rests on BOS.
    """
    top = pattern.argmax(-1)  # [batch, query]
    hit = torch.gather(sel, 2, top[..., None])[..., 0].double()
    # Selecting every key always "contains" the argmax: charge a row for the share of the
    # keys it selects, so only a selector as specific as the head scores high.
    frac = sel.double().sum(-1) / pattern.gt(0).sum(-1).clamp(min=1).double()
    empty = ~sel.any(-1)
    ok = torch.where(empty, (bos > 0.5).double(), hit - frac)
    return float(ok[rows].mean()) if bool(rows.any()) else 0.0


def _explain_head_soft(
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
    """Head matching for trained networks: score candidate selectors by where the head looks.

    Candidates are ``select(k, q, pred)`` over available variables with the named comparisons
    and small shifts (``q == k + c``). A head matters either at every position (its output
    feeds later layers) or only where the task reads the output, so agreement is the better
    of the two; the head's output must then decode the aggregate at those same positions.
    """
    from dsl.program import Node

    mask = pool.batch.mask
    read = read_mask(pool, obs) & mask
    info: dict[str, Any] = {"selectors": [], "aggregates": [], "agreement": 0.0}
    preds: list[Any] = [c for c in COMPARISON_ORDER if c != "TRUE"]
    preds += [_shifted_predicate(torch.eq, c) for c in (1, -1, 2, -2)]
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
    for k, q, node in _functional_selectors(pool, state, pattern, mask, reps):
        candidates.append((pool.items[k].cost + pool.items[q].cost + 2.0, node))
    for cost, node in candidates:
        try:
            values = pool.evaluate(node)
        except ValueError:
            continue
        if causal_values is not None:
            values = values & causal_values
            cost += 1.0
        if not bool(values.any()):
            continue
        for ranking, (rows_name, agreement) in zip(rankings, agreements_of(values)):
            ranking.append((agreement, -cost, rows_name, node, values))
    nominated: list[tuple[float, str, Any, torch.Tensor]] = []
    for ranking in rankings:
        if not ranking:
            continue
        agreement, _, rows_name, node, values = max(ranking, key=lambda t: (t[0], t[1]))
        if agreement >= th.selector and all(node != n[2] for n in nominated):
            nominated.append((agreement, rows_name, node, values))
    for agreement, rows_name, node, values in sorted(nominated, key=lambda n: -n[0]):
        if causal_values is not None:
            base = try_add(pool, node, prefix=f"sel{layer}_{head}_base", dedupe=False)
            mask_name = try_add(pool, causal_node, prefix="causal", dedupe=False)
            if base is None or mask_name is None:
                continue
            node = Node("selector_and", (base, mask_name), None)
        sel = pool.add(node, prefix=f"sel{layer}_{head}_", values=values, dedupe=False)
        if sel is None:
            continue
        info["selectors"].append(sel)
        if agreement > info["agreement"]:
            info["agreement"], info["rows"] = agreement, rows_name
        rows = mask if rows_name == "all" else read
        for name in _head_aggregates(pool, state, layer, head, z, avail, th, sel, rows):
            info["aggregates"].append(name)
    return info


def _head_aggregates(
    pool: Pool,
    state: GuidedState,
    layer: int,
    head: int,
    z: torch.Tensor,
    avail: list[str],
    th: MatchThresholds,
    sel: str,
    rows: torch.Tensor,
) -> list[str]:
    """The (at most two) aggregates through selector ``sel`` that the head's output decodes."""
    from dsl.program import Node

    zr = z.double()[rows[pool.batch.mask]]
    best: list[tuple[float, Any, torch.Tensor]] = []
    for x in avail:
        agg = Node("aggregate", (sel, x, None), "categorical")
        try:
            vals = pool.evaluate(agg)
        except ValueError:
            continue
        codes = vals[rows]
        defined = ~torch.isnan(codes)
        if float(defined.double().mean()) < 0.5:
            continue
        acc = decode_accuracy(zr[defined], codes[defined])
        if acc >= th.decode:
            numerical = _is_mean(pool, sel, x) and pool.items[x].dtype != "value"
            node = Node("aggregate", (sel, x, None), "numerical" if numerical else "categorical")
            best.append((acc - 0.001 * pool.items[x].cost, node, vals))
    best.sort(key=lambda t: -t[0])
    names = []
    for acc, node, vals in best[:2]:
        name = pool.add(node, prefix=f"attn{layer}_{head}_", values=vals, dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(
            name, Location(f"blocks.{layer}.attn.hook_z", head=head), float(layer), acc
        )
        names.append(name)
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
    from dsl.program import Node

    top = pattern.argmax(-1)
    for k, q in itertools.product(reps, reps):
        kv, qv = pool.values[k], pool.values[q]
        at_top = torch.gather(torch.nan_to_num(kv, nan=-1e18), 1, top)[mask]
        qm = qv[mask]
        defined = ~torch.isnan(qm) & (at_top > -1e17)
        if float(defined.double().mean()) < 0.9:
            continue
        q_ids, nq = _class_ids(qm[defined])
        if nq < 2 or nq > 64:
            continue
        k_ids, nk = _class_ids(at_top[defined])
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
        node = fit_map(pool, [q], target)
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
    from dsl.interpret import comparison

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
    if same and k_relabel:
        ranks = _order_labels(kt, qt, rel)
        if ranks is not None:
            name, mapping = ranks
            yield name, ("order", mapping), 0.75
            return
    pred = _fit_predicate(kt, qt, rel)
    if pred is not None:
        yield pred, None, float(pred.family.cost)


def _order_labels(
    kt: torch.Tensor, qt: torch.Tensor, rel: torch.Tensor
) -> tuple[str, dict[float, float]] | None:
    """Labels under which ``rel`` (a relation of a variable with itself) is a named order.

    A head comparing a variable with itself (``select(keys, keys, LT)`` in a sort) fixes the
    order of the variable's values, not their names: the number of values each query value
    selects ranks it. Returns the comparison and the code -> rank map, or None.
    """
    from dsl.interpret import comparison

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
    from synth.propose.enumerate import fit_map

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
    from dsl import registry
    from dsl.program import Fn

    from dsl.values import SYMBOL_BASE

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
    from dsl.program import Fn

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

    from dsl.program import Fn

    x, y = sympy.symbols("x y")
    rel = {
        torch.eq: sympy.Eq,
        torch.lt: sympy.Lt,
        torch.le: sympy.Le,
        torch.gt: sympy.Gt,
        torch.ge: sympy.Ge,
    }[op]
    return Fn("expr", 2, (rel(x + c, y),))


def selector_agreement(
    sel: torch.Tensor, pattern: torch.Tensor, bos: torch.Tensor, mask: torch.Tensor
) -> float:
    """1 - mean total-variation distance between a head's pattern and a selector's uniform pattern.

    Compared over non-BOS keys after renormalising (a counting head also attends to BOS by
    design). A query whose selector row is empty must put its mass on BOS (when there is one).
    """
    s = sel.double()
    width = s.sum(-1)
    mass = pattern.sum(-1)
    p = pattern / mass.clamp(min=1e-9)[..., None]
    u = s / width.clamp(min=1)[..., None]
    tv = 0.5 * (p - u).abs().sum(-1)
    nonempty = width > 0
    row = torch.where(nonempty, 1.0 - tv, (mass < 0.5).double())
    row = torch.where(nonempty & (mass < 0.05), torch.zeros_like(row), row)
    return float(row[mask].mean())


def _explain_mlp(
    pool: Pool,
    state: GuidedState,
    layer: int,
    act: torch.Tensor,
    avail: list[str],
    counting: list[str],
    th: MatchThresholds,
    labellings: int,
    network_out: tuple[torch.Tensor, torch.Tensor, float],
) -> dict[str, Any]:
    from dsl.program import Node

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
            -max((_layer_of(state, i) for i in t[1].inputs), default=-1.0),
            sum(pool.items[i].cost for i in t[1].inputs),
        )
    )
    blocks: dict[tuple[int, ...], list[tuple[float, Any, torch.Tensor, float]]] = {}
    seen: set[str] = set()
    active_idx = torch.nonzero(active).reshape(-1)
    sub = act[:, active_idx]
    for cost, node in candidates:
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
        _, r2, _ = explain_stats(sub, codes)
        dims = (r2 >= th.explain).nonzero().reshape(-1)
        if dims.numel() == 0:
            continue
        block = tuple(int(active_idx[d]) for d in dims.tolist())
        entries = blocks.setdefault(block, [])
        # The labelling that reproduces the network's outputs is always kept: it is the one the
        # unembedding reads, whatever the cap on alternatives.
        if len(entries) >= labellings and not matches(values, *network_out):
            continue
        acc = decode_accuracy(act[:, list(block)], codes)
        if acc < th.decode:
            continue
        entries.append((cost, node, values, acc))
    # Cover the active dimensions with as few variables as possible (largest blocks first), then split
    # a block into smaller explained blocks when their subspaces are independent (ranks add up):
    # side-by-side variables live in independent directions, while the one-hot directions of a
    # single categorical variable are linearly tied (they sum to one) and stay together.
    found = {b: e for b, e in blocks.items() if e}
    uncovered = set(active_idx.tolist())
    chosen: list[tuple[int, ...]] = []
    for block in sorted(found, key=lambda b: (-len(b), found[b][0][0])):
        if not uncovered & set(block):
            continue
        uncovered -= set(block)
        chosen += _split_block(block, found, act)
    chosen = list(dict.fromkeys(chosen))
    for block in chosen:
        names = []
        for _cost, node, values, acc in blocks[block]:
            numerical = len(block) == 1 and pool.items[node.inputs[0]].dtype != "value"
            node = Node(node.op, node.args, "numerical" if numerical else "categorical")
            name = pool.add(node, prefix=f"mlp{layer}_", values=values, dedupe=False)
            if name is None:
                continue
            where = Location(f"blocks.{layer}.hook_mlp_out", dims=None if th.whole_mlp else block)
            state.located[name] = Located(name, where, layer + 0.5, acc)
            names.append(name)
        info["blocks"].append({"dims": block, "variables": names})
    if uncovered and th.whole_mlp and chosen:
        uncovered = set()  # the matched variable is claimed at the whole output
    if uncovered:
        fitted = _fit_block(pool, state, layer, act, sorted(uncovered), avail)
        if fitted is not None:
            info["blocks"].append({"dims": tuple(sorted(uncovered)), "variables": [fitted], "fitted": True})
            uncovered = set()
    if uncovered:
        info["unexplained_dims"] = sorted(uncovered)
        state.notes.append(f"MLP {layer}: {len(uncovered)} active dims not explained by any candidate")
    return info


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
    from dsl.program import Node

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
            a_ids, na = _class_ids(pool.values[a][mask])
            joint = joint * na + a_ids
        _, j_ids = torch.unique(joint, return_inverse=True)
        nj = int(j_ids.max()) + 1
        if int(torch.unique(j_ids * n + ids).numel()) != nj:
            continue  # the block is not a function of these arguments
        recency = -max(_layer_of(state, a) for a in args)
        options.append((len(args), nj, recency, args))
    for *_, args in sorted(options)[:3]:
        node = _fit_node(pool, args, labels)
        if node is None:
            continue
        name = try_add(pool, node, prefix=f"mlp{layer}_fit", dedupe=False)
        if name is None:
            continue
        state.located[name] = Located(
            name, Location(f"blocks.{layer}.hook_mlp_out", dims=tuple(dims)), layer + 0.5, 1.0
        )
        return name
    del Node
    return None


def _fit_node(pool: Pool, args: tuple[str, ...], labels: torch.Tensor) -> Any:
    from synth.propose.enumerate import fit_map

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


def network_outputs(pool: Pool, obs: Observations) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The network's decoded outputs as codes, the mask of read positions, and the match tolerance.

    Numerical readouts are float32 logits: they are rounded to 6 decimals so that a function
    fitted to them gets the values the network means (0.6, not 0.6000000238).
    """
    outputs = [list(row) for g in obs.groups for row in g.outputs]
    target, read = encode_outputs(pool.batch, outputs)
    if obs.output_kind == "numerical":
        target = torch.round(target * 1e6) / 1e6
        return target, read, 1e-2
    return target, read, 1e-6


def _match_outputs(state: GuidedState, obs: Observations) -> None:
    """Find located variables equal to the network's outputs (or relabel one to them)."""
    pool = state.pool
    target, read, atol = network_outputs(pool, obs)
    located = sorted(state.located.values(), key=lambda v: -v.layer)
    for loc in located:
        if matches(pool.values[loc.name], target, read, atol):
            state.outputs.append(loc.name)
    if state.outputs:
        return
    # Relabel: a located map/seqmap whose information equals the output's gets the output's values.
    from synth.propose.enumerate import fit_map

    for loc in located:
        item = pool.items[loc.name]
        if item.node is None or item.node.op not in ("map", "seqmap"):
            continue
        codes, tcodes = pool.values[loc.name][read], target[read]
        defined = ~torch.isnan(codes)
        if float(defined.double().mean()) < 0.5 or not _bijective(codes[defined], tcodes[defined]):
            continue
        where = read & ~torch.isnan(pool.values[loc.name])
        node = fit_map(pool, item.node.inputs, target, where)
        if node is None:
            continue
        node = type(node)(node.op, node.args, item.node.encoding)
        name = try_add(pool, node, prefix=f"{loc.name}_relabel", dedupe=False)
        if name is not None and matches(pool.values[name], target, read, atol):
            state.located[name] = Located(name, loc.location, loc.layer, loc.score)
            state.outputs.append(name)
            return


def _bijective(a: torch.Tensor, b: torch.Tensor) -> bool:
    ia, na = _class_ids(a)
    ib, nb = _class_ids(b)
    if na != nb:
        return False
    pairs = torch.unique(ia * nb + ib)
    return pairs.numel() == na


def compose(state: GuidedState, obs: Observations) -> Iterator[tuple[Hypothesis, dict[str, Any]]]:
    """Whole-program hypotheses: each output variable's closure, variables mapped to their writers."""
    pool = state.pool
    for out in state.outputs:
        names = pool.closure(out)
        rename = _readable_names(state, names)
        program = pool.program(out, rename=rename.get)
        corr = {}
        taken: set[Location] = set()
        shared = _split_shared_blocks(state, obs, [n for n in names if rename.get(n, n) in program.variables])
        for n in reversed(names):
            loc = state.located.get(n)
            if loc is None:
                continue
            new = rename.get(n, n)
            location = shared.get(n, loc.location)
            # Two variables of one program cannot both be what one component writes (two
            # labellings of one MLP block): the later reader keeps the claim, the other one
            # is left unclaimed.
            if new in program.variables and location not in taken:
                corr[new] = location
                taken.add(location)
        meta = {"output": out, "notes": list(state.notes)}
        yield Hypothesis(program, corr), meta


def _split_shared_blocks(state: GuidedState, obs: Observations, names: Sequence[str]) -> dict[str, Location]:
    """Disjoint dims for program variables that were found in the same MLP block.

    Two numerical variables that carry the same information (``tokens == "("`` and
    ``tokens == ")"`` over a two-token vocabulary) explain the same block equally well; a
    numerical encoding is the value times a direction, so each gets the dims whose
    activation rises with its value. Returns new locations only when that splits the block
    into disjoint, non-empty parts.
    """
    pool = state.pool
    mask = pool.batch.mask
    by_location: dict[Location, list[str]] = {}
    for n in names:
        loc = state.located.get(n)
        if loc is not None and loc.location.component == "mlp" and loc.location.dims:
            by_location.setdefault(loc.location, []).append(n)
    out: dict[str, Location] = {}
    for location, group in by_location.items():
        if len(group) < 2:
            continue
        act = obs.flat(location.hook).double()
        parts = {}
        for n in group:
            v = pool.values[n][mask]
            if bool(torch.isnan(v).any()) or float(v.std()) == 0:
                break
            dims = []
            for d in location.dims:
                a = act[:, d]
                if float(a.std()) > 0 and float(torch.corrcoef(torch.stack([v, a]))[0, 1]) > 0.99:
                    dims.append(d)
            parts[n] = tuple(dims)
        else:
            chosen = list(parts.values())
            flat = [d for p in chosen for d in p]
            if all(chosen) and len(flat) == len(set(flat)):
                for n, dims in parts.items():
                    out[n] = Location(location.hook, dims=dims)
    return out


def _readable_names(state: GuidedState, names: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in names:
        item = state.pool.items[n]
        if item.node is None:
            continue
        loc = state.located.get(n)
        if item.kind == "selector":
            base = "sel"
        elif loc is not None and loc.location.component == "attn":
            base = f"attn{loc.location.layer}_h{loc.location.head}"
        elif loc is not None and loc.location.component == "mlp":
            base = f"mlp{loc.location.layer}"
        else:
            base = "v"
        name = base
        i = 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        out[n] = name
    return out
