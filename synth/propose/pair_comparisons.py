"""Explaining an MLP as a comparison of the token at a position with the token at a related position.

Many algorithmic tasks need to know whether two positions hold the same token: a palindrome
compares each position with its mirror (``length - 1 - i``), a "repeated token" or
"sorted" check compares each position with the previous one. A transformer does it in two
steps: attention brings (some of) the partner's token to the position, and the MLP there
turns "own token" and "partner's token" into the comparison, which later layers read (a
layer-1 head averaging "do they match" over the pairs). In a compiled network the head
isolates the partner's key and the walk explains the head as ``aggregate(pair, tokens)``
and the MLP as ``seqmap(eq, tokens, partner)``. A trained network's head is often diffuse
(a few tenths of its attention on the partner, the rest spread), so no head is explained,
and the MLP's output, which holds the comparison, is left with no candidate.

This step asks the MLP's output directly: for each *pair relation* (a selector that picks at
most one key per query, over positions) the walk can write — a fixed offset (the previous
position, two back, the next ...: the same shifts the head matcher tries) and the mirror
``select(indices, opp_index, EQ)`` with ``opp_index = length - indices - 1`` where the
network knows the length — and each comparison of the token with the partner's token
(``eq``, and ``cmp``: below / equal / above; ``neq`` carries ``eq``'s information and is one of
its labellings), is the comparison decodable from the MLP's output (the walk's decode
statistic, :func:`synth.propose.match_stats.decode_accuracy`, at the walk's decode bar)?

A pair's comparison is one fact about the pair, and a network need not write it at both of
the pair's positions: a bidirectional palindrome network writes "token == mirror token"
cleanly at the later position of each pair and only roughly at the earlier one. So each
relation is also tried one-sided — the partner before the query (``selector_and(pair,
select(indices, indices, LT))``), and after it — and the comparison is decoded on the
positions where that side defines it. When a one-sided comparison decodes at the bar, the
MLP is explained by it, and by its *symmetric extension* (the comparison through the whole
relation, defined at both positions of each pair), which a later layer reading the pairs at
every position needs; both are located at the MLP's output, the extension first, and the
checks (scrubbing, interchange) choose: a refuted extension is excluded by the walk's feedback
and the one-sided comparison is offered instead. Nothing is proposed when no comparison
decodes at the bar (on a network that does not compare, or through a relation the network
does not use).

The relation's selector and the partner's aggregate are pooled, not located: no head is
claimed to isolate the partner. Only the comparison is claimed, at the whole MLP output.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.propose.enumerate import Pool, fit_map, try_add
from mechsynth.synth.propose.explain_heads import SELECT_OFFSETS, _shifted_predicate
from mechsynth.synth.propose.guided_state import GuidedState, Located, MatchThresholds
from mechsynth.synth.propose.match_stats import class_ids, sampled_decode_accuracy

if TYPE_CHECKING:
    pass

COMPARISONS = ("eq", "cmp")  # two-argument library functions a comparison is tried with (neq: eq relabelled)


class Side(enum.StrEnum):
    """Which partner of a pair the query compares with."""

    BOTH = "both"  # the whole relation: every position with a partner
    EARLIER = "earlier"  # only where the partner is before the query
    LATER = "later"  # only where the partner is after the query


@dataclass(frozen=True)
class PairComparison:
    """A comparison the MLP's output decodes: ``seqmap(fn, x, aggregate(relation[side], x))``.

    ``name`` is the pooled comparison (located at the MLP), ``extension`` its symmetric
    extension through the whole relation when ``side`` is one-sided (also located), ``decode``
    the decode accuracy of ``name`` on the positions where it is defined.
    """

    relation: str  # a readable label: "mirror", "offset(+1)" (partner one back), ...
    side: Side
    fn: str
    name: str
    decode: float
    extension: str | None = None


def pair_relations(pool: Pool, avail: Sequence[str], singles: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, pooled selector) for each pair relation over positions the walk can write.

    Fixed offsets (``SELECT_OFFSETS``: the partner ``c`` positions back or ahead), the mirror
    when the length is known (constant on the batch, or an available variable), and the
    single-key selectors ``singles`` that this layer's heads were matched with.
    """
    from mechsynth.dsl.program import Node

    out: list[tuple[str, str]] = []
    for c in SELECT_OFFSETS:
        node = Node("select", ("indices", "indices", _shifted_predicate(torch.eq, c)), None)
        name = _pooled(pool, node, "pair_offset")
        if name is not None:
            out.append((f"offset({c:+d})", name))
    mirror = _mirror_index(pool, avail)
    if mirror is not None:
        name = _pooled(pool, Node("select", ("indices", mirror, "EQ"), None), "pair_mirror")
        if name is not None:
            out.append(("mirror", name))
    for s in singles:
        values = pool.values[s]
        if bool((values.sum(-1) <= 1).all()) and all(s != n for _, n in out):
            out.append((f"head selector {s}", s))
    return out


def explain_comparison(
    pool: Pool,
    state: GuidedState,
    layer: int,
    act: torch.Tensor,
    avail: Sequence[str],
    th: MatchThresholds,
    singles: Sequence[str] = (),
) -> list[PairComparison]:
    """The comparisons the MLP output ``act`` (``[positions, d]``) decodes at ``th.decode``, located.

    Best decode first, at most one per relation; each is pooled and located at the whole MLP
    output (with its symmetric extension first, when one-sided). See the module docstring.
    """
    from mechsynth.dsl.program import Fn, Node

    mask = pool.batch.mask
    act = act.double()
    where = Location(act_name("mlp_out", layer))
    # The token at each position (where the residual stream still holds it): what a pair compares.
    values_of = [x for x in ("tokens",) if x in avail]
    # A pair an earlier component already compared is read here, not compared again (the residual
    # stream carries the comparison on, and a finer one, cmp after eq, decodes from it as well).
    written = {
        pool.items[n].meta.get("pair") for n, loc in state.located.items() if 0 <= loc.layer < layer + 0.5
    }
    found: list[tuple[float, str, Side, str, Any, torch.Tensor, str]] = []
    for label, relation in pair_relations(pool, avail, singles):
        best: tuple[float, str, Side, str, Any, torch.Tensor, str] | None = None
        if pool.key(pool.values[relation]) in written:
            continue
        for side, restricted in _sides(pool, relation):
            for x in values_of:
                partner = Node("aggregate", (restricted, x, None), "categorical")
                partner_name = _pooled(pool, partner, "partner")
                if partner_name is None:
                    continue
                for fn in COMPARISONS:
                    node = Node("seqmap", (Fn(fn, 2, ()), x, partner_name), "categorical")
                    try:
                        values = pool.evaluate(node)
                    except (ValueError, RuntimeError, TypeError):
                        continue
                    codes = values[mask]
                    rows = ~torch.isnan(codes)
                    if int(rows.sum()) < 2 or class_ids(codes[rows])[1] < 2:
                        continue
                    acc = sampled_decode_accuracy(act[rows], codes[rows])
                    if acc < th.decode or not state.allows(where, values):
                        continue
                    if best is None or acc > best[0]:
                        best = (acc, label, side, fn, node, values, relation)
        if best is not None:
            found.append(best)
    found.sort(key=lambda t: -t[0])
    out: list[PairComparison] = []
    for acc, label, side, fn, node, values, relation in found:
        extension = None
        if side != Side.BOTH:
            extension = _extension(pool, state, node, relation, where, layer, acc)
        name = pool.add(node, prefix=f"mlp{layer}_cmp", values=values, dedupe=False,
                        meta=_meta(pool, relation, fn))
        if name is None:
            continue
        state.located[name] = Located(name, where, layer + 0.5, acc)
        out.append(PairComparison(label, side, fn, name, round(acc, 4), extension))
    return out


def _sides(pool: Pool, relation: str) -> list[tuple[Side, str]]:
    """The relation and its one-sided restrictions (partner earlier, later), each distinct and non-empty."""
    from mechsynth.dsl.program import Node

    out = [(Side.BOTH, relation)]
    seen = {pool.key(pool.values[relation])}
    for side, pred in ((Side.EARLIER, "LT"), (Side.LATER, "GT")):
        order = _pooled(pool, Node("select", ("indices", "indices", pred), None), "order")
        if order is None:
            continue
        node = Node("selector_and", (relation, order), None)
        values = pool.evaluate(node)
        key = pool.key(values)
        if key in seen or not bool(values.any()):
            continue
        seen.add(key)
        name = _pooled(pool, node, "pair_side")
        if name is not None:
            out.append((side, name))
    return out


def _extension(
    pool: Pool, state: GuidedState, node: Any, relation: str, where: Location, layer: int, acc: float
) -> str | None:
    """The one-sided comparison ``node`` through the whole ``relation``, located first at ``where``."""
    from mechsynth.dsl.program import Node

    fn, x, _partner = node.args
    partner = _pooled(pool, Node("aggregate", (relation, x, None), "categorical"), "partner")
    if partner is None:
        return None
    full = Node("seqmap", (fn, x, partner), "categorical")
    try:
        values = pool.evaluate(full)
    except (ValueError, RuntimeError, TypeError):
        return None
    if not state.allows(where, values):
        return None
    name = pool.add(full, prefix=f"mlp{layer}_cmp", values=values, dedupe=False,
                    meta=_meta(pool, relation, fn.name))
    if name is None:
        return None
    state.located[name] = Located(name, where, layer + 0.5, acc)
    return name


def _meta(pool: Pool, relation: str, fn: str) -> dict[str, Any]:
    """The pair a comparison compares (so a later MLP does not compare it again), and its role name."""
    meta: dict[str, Any] = {"pair": pool.key(pool.values[relation])}
    if fn == "eq":
        meta["role"] = "match"
    return meta


def _mirror_index(pool: Pool, avail: Sequence[str]) -> str | None:
    """``length - indices - 1`` as the cheapest map the DSL fits, when the network knows the length.

    With one length on the batch the mirror is a function of ``indices`` alone
    (``map(rsub(7), indices)``); with several it needs ``length``, which must be available.
    """
    mask = pool.batch.mask
    length, indices = pool.values["length"], pool.values["indices"]
    target = length - indices - 1
    if int(torch.unique(length[mask]).numel()) == 1:
        args = ["indices"]
    elif "length" in avail:
        args = ["length", "indices"]
    else:
        return None
    node = fit_map(pool, args, target, where=mask)
    if node is None:
        return None
    return _pooled(pool, node, "opp_index")


def _pooled(pool: Pool, node: Any, prefix: str) -> str | None:
    """The pooled name of ``node``'s values: the existing variable when one has them, else a new one."""
    try:
        values = pool.evaluate(node)
    except (ValueError, RuntimeError, TypeError, KeyError):
        return None
    return pool.lookup(values) or try_add(pool, node, prefix=prefix, values=values)
