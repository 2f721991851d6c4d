"""Chains of aggregates: a later component reads an indicator or a threshold of an earlier one's variable.

A compiled network computes each variable once and hands it on exactly. A trained network
solving a formal language builds a *chain*: layer 0 averages token indicators over the prefix
(the fraction of open brackets), an MLP thresholds that fraction (the sign of the depth:
below, at or above one half), a layer-1 head averages an *indicator of the MLP's variable*
over the prefix (the fraction of earlier positions where the depth was negative: zero iff the
prefix never went below zero), and the output thresholds that second mean (balanced iff the
depth is zero and the mean of "was negative" is zero). Two pieces of that chain are no single
variable of the walk's pool, and this module supplies them:

* :func:`value_indicators` — ``map(eq(c), v)`` for each value ``c`` of a located variable ``v``
  that a component wrote and that takes few values (``INDICATOR_VALUES``): the aggregated
  values a later head may average, exactly as :func:`synth.propose.explain_heads.token_indicators`
  offers ``map(eq(c), tokens)`` for the first layer. A mean of ``v == c`` over the prefix is a
  running count of how often ``v`` took the value ``c`` (Tomita 7 counts changes this way, a
  Dyck recogniser counts negative depths).
* :func:`threshold_args` — the output step fits the network's output as a function of one or
  two located variables with a table (``synth.propose.model_guided._output_functions``), which
  must be small against the data. A mean over a prefix takes a new value at almost every
  (count, position) pair, so the table over it is too large, although the network reads it
  only through a threshold ("is the mean of 'was negative' above zero"). Each such numeric
  argument is replaced by its indicator ``map(gt(t), v)`` at the cut ``t`` where the network's
  own outputs say it is read: ``t`` is chosen among the gaps between the variable's observed
  values as the one whose two-sided table (with the other argument) agrees best with the
  network's outputs, and written as the largest observed value below the gap, so the fitted
  program reads ``v > 0`` where the network separates zero from the rest. The checks then
  score that program on fresh inputs: a cut that only fits the observed batch fails there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from mechsynth.synth.propose.enumerate import Pool, try_add

if TYPE_CHECKING:
    from mechsynth.synth.propose.guided_state import GuidedState

INDICATOR_VALUES = 4  # a located variable with at most this many values gets one indicator per value
CUT_CANDIDATES = 64  # observed values tried as a cut (evenly spread over the sorted values)
MANY_VALUES = 16  # a numeric output argument with more distinct values than this is read through a threshold


def value_indicators(pool: Pool, state: GuidedState, names: Sequence[str]) -> list[str]:
    """``map(eq(c), v)`` for each value ``c`` of each few-valued variable in ``names`` that a component wrote.

    Primitives are left out (``tokens`` has :func:`~synth.propose.explain_heads.token_indicators`);
    a two-valued 0/1 variable is its own indicator and gets none. Pooled once per variable.
    """
    from mechsynth.dsl.program import Fn, Node

    out: list[str] = []
    for name in names:
        if pool.items.get(name) is not None and pool.items[name].dtype == "value":
            continue
        memo = pool.fn_memo.get(("value_indicators", name))
        if memo is None:
            memo = []
            codes = _written_codes(pool, state, name) or []
            if 2 <= len(codes) <= INDICATOR_VALUES and not set(codes) <= {0.0, 1.0}:
                for code in codes:
                    node = Node("map", (Fn("eq", 1, (_number(code),)), name), "categorical")
                    new = try_add(pool, node, prefix=f"{name}_is")
                    if new is None:  # pooled already, or a value the DSL cannot encode (a null network's)
                        try:
                            new = pool.lookup(pool.evaluate(node))
                        except ValueError:
                            continue
                    if new is not None:
                        memo.append(new)
            pool.fn_memo[("value_indicators", name)] = memo
        out += [n for n in memo if n not in out]
    return out


def binary_written(pool: Pool, state: GuidedState, names: Sequence[str]) -> list[str]:
    """The variables in ``names`` that a component wrote and that take only the values 0 and 1.

    Such a variable is its own indicator (:func:`value_indicators` gives it none): a later head
    averaging it over many keys (the fraction of positions whose token matches its mirror's)
    writes the mean of an earlier component's indicator, one link of a chain.
    """
    return [name for name in names if set(_written_codes(pool, state, name) or ()) == {0.0, 1.0}]


def _written_codes(pool: Pool, state: GuidedState, name: str) -> list[float] | None:
    """The distinct defined values of ``name`` on the batch, or None unless a component wrote it."""
    loc = state.located.get(name)
    item = pool.items.get(name)
    if loc is None or loc.layer < 0 or item is None or item.kind != "sop":
        return None
    values = pool.values[name][pool.batch.mask]
    return torch.unique(values[~torch.isnan(values)]).tolist()


def _number(code: float) -> int | float:
    return int(code) if float(code).is_integer() else code


def threshold_args(
    pool: Pool, args: Sequence[str], target: torch.Tensor, where: torch.Tensor
) -> tuple[str, ...] | None:
    """``args`` with each many-valued numeric argument replaced by its best threshold indicator.

    Returns None when no argument needs a threshold (the caller fits ``args`` as they are) or
    when a threshold cannot be pooled. See the module docstring for how the cut is chosen.
    """
    out = list(args)
    changed = False
    for i, a in enumerate(args):
        item = pool.items[a]
        if item.kind != "sop" or item.dtype != "number":
            continue
        v = pool.values[a]
        codes = torch.unique(v[where & ~torch.isnan(v)])
        if codes.numel() <= MANY_VALUES:
            continue
        others = [pool.values[b] for j, b in enumerate(args) if j != i]
        cut = best_cut(v, others, target, where, codes)
        if cut is None:
            return None
        name = _gt_indicator(pool, a, cut)
        if name is None:
            return None
        out[i] = name
        changed = True
    return tuple(out) if changed else None


def best_cut(
    v: torch.Tensor,
    others: Sequence[torch.Tensor],
    target: torch.Tensor,
    where: torch.Tensor,
    codes: torch.Tensor,
) -> float | None:
    """The observed ``t`` whose majority table of ``(v > t, *others)`` agrees best with ``target``.

    Ties go to the lowest cut (the simplest reading: ``v > 0`` before ``v > 0.3``).
    """
    if codes.numel() < 2:
        return None
    n = codes.numel() - 1
    picks = torch.unique(torch.linspace(0, n - 1, min(n, CUT_CANDIDATES)).round().long())
    y = target[where]
    keys = torch.zeros_like(y, dtype=torch.long)
    for o in others:
        ids = torch.unique(torch.nan_to_num(o[where], nan=-7e15), return_inverse=True)[1]
        keys = keys * (int(ids.max()) + 1 if ids.numel() else 1) + ids
    _, y_ids = torch.unique(torch.nan_to_num(y, nan=-7e15), return_inverse=True)
    n_y = int(y_ids.max()) + 1 if y_ids.numel() else 1
    best: tuple[float, float] | None = None
    x = v[where]
    size = (2 * (int(keys.max()) + 1 if keys.numel() else 1)) * n_y
    for p in picks.tolist():
        t = float(codes[p])
        side = (x > t).long()
        joint = (keys * 2 + side) * n_y + y_ids
        counts = torch.bincount(joint, minlength=size).reshape(-1, n_y)
        agree = float(counts.amax(1).sum()) / max(1, y.numel())
        if best is None or agree > best[0] + 1e-12:
            best = (agree, t)
    return None if best is None else best[1]


def _gt_indicator(pool: Pool, name: str, cut: float) -> Any:
    from mechsynth.dsl.program import Fn, Node

    node = Node("map", (Fn("gt", 1, (_number(cut),)), name), "categorical")
    return try_add(pool, node, prefix=f"{name}_above", dedupe=False)
