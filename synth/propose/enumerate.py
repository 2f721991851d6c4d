"""Enumerate: bottom-up, typed, cost-ordered program enumeration with observational equivalence.

Both proposers build programs out of the same material: the DSL's registered primitives
(``map``, ``seqmap``, ``select``, ``aggregate``, ``selector_width``, ... and anything a
user registers) applied to function-library items (``add(1)``, ``eq("a")``, ``min``, ...).
This module owns that material:

* A :class:`Pool` holds variables together with their value tensors on one encoded batch
  of inputs (the DSL's fast tensor path, ``dsl.interpret``): SOps as ``[batch, pos]``
  codes, selectors as ``[batch, query, key]`` booleans. Adding a variable evaluates only
  the new node from its children's cached tensors.
* **Observational equivalence**: two expressions with the same value tensor on the batch
  cannot be told apart by any check that only looks at those inputs, so the pool keeps
  one program per distinct value tensor (the cheapest; a hash of the tensor is the key).
  This is what makes bottom-up search tractable (Udupa et al. 2013, "TRANSIT").
* :func:`function_instances` turns registered function families into concrete functions
  to try: parameterless families as they are, parameterised ones with literals drawn from
  small integers and from the values the argument actually takes on the batch. Families
  that only make sense when fitted to data (lookup tables, sympy forms) are left to
  :func:`fit_map`, which fits a table on the finite observed domain and lets the DSL
  simplify it to a closed form where one fits.
* :func:`enumerate_programs` is the I/O-only search: grow the pool by size and cost from
  ``tokens``, ``indices`` and ``length`` until a variable reproduces a target value
  vector (the network's outputs) or a budget (count, time) runs out. It is the baseline
  the benchmark compares the model-guided proposer against, and its throughput
  (distinct programs per second, :func:`throughput`) is a headline number.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch


# Small integers every parameterised family is tried with, besides observed values.
SMALL_INTS = (0, 1, -1, 2, -2, 3)
# Cap on literals per parameter drawn from observed values (keeps instance counts bounded).
MAX_OBSERVED_LITERALS = 8
_SCALE = 1e6  # values are compared after rounding to 1e-6 (means of small integers are exact enough)


class EnumerationError(ValueError):
    """The enumerator was given something it cannot work with."""


@dataclass(frozen=True)
class Item:
    """One pooled variable: its defining node (None for a primitive variable), kind and cost."""

    name: str
    node: Any  # dsl.program.Node | None
    kind: str  # "sop" or "selector"
    dtype: str  # decoding dtype: "bool" | "number" | "value"
    cost: float
    size: int
    parents: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def value_key(values: torch.Tensor, mask: torch.Tensor) -> str:
    """A hash of a value tensor on the real positions (NaN, i.e. None, included).

    Positions outside ``mask`` are set to one constant rather than dropped: the mask is the
    batch's, fixed for a pool, so the keys tell the same tensors apart, and a selector's key
    costs a vectorised AND and a bit-pack instead of a boolean gather of ``[N, T, T]`` (the
    walk asks for ~20,000 keys on a trained network: that gather was a quarter of a run).
    """
    if values.dtype == torch.bool:
        data = np.packbits((values & mask).contiguous().numpy())
    else:
        v = torch.where(mask, values, torch.zeros((), dtype=values.dtype))
        data = torch.nan_to_num(torch.round(v * _SCALE), nan=-7.0e15).contiguous().numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


class Pool:
    """Variables and their value tensors on one batch, one per distinct value (the cheapest)."""

    def __init__(self, batch: Any) -> None:
        from mechsynth.dsl.interpret import eval_node, node_dtype

        self.batch = batch
        self._eval_node = eval_node
        self._node_dtype = node_dtype
        self.items: dict[str, Item] = {}
        self.values: dict[str, torch.Tensor] = {}
        self._by_key: dict[str, str] = {}
        self._counter = itertools.count()
        self.n_evaluated = 0
        self.fn_memo: dict[tuple, list[Any]] = {}  # function instances per (arity, arguments)
        self.sel_mask = batch.pair_mask
        for name, t, dtype in (
            ("tokens", batch.tokens, "value"),
            ("indices", batch.indices, "number"),
            ("length", batch.length, "number"),
        ):
            self.items[name] = Item(name, None, "sop", dtype, 0.0, 0)
            self.values[name] = t
            self._by_key.setdefault(self.key(t), name)

    # --- values ----------------------------------------------------------------------------
    def key(self, values: torch.Tensor) -> str:
        return value_key(values, self.sel_mask if values.dim() == 3 else self.batch.mask)

    def evaluate(self, node: Any) -> torch.Tensor:
        self.n_evaluated += 1
        return self._eval_node(node, [self.values[c] for c in node.inputs], self.batch)

    def dtype_of(self, node: Any) -> str:
        return self._node_dtype(node, [self.items[c].dtype for c in node.inputs])

    def lookup(self, values: torch.Tensor) -> str | None:
        return self._by_key.get(self.key(values))

    def add(
        self,
        node: Any,
        *,
        prefix: str = "v",
        values: torch.Tensor | None = None,
        dedupe: bool = True,
        extra_cost: float = 0.0,
        name: str | None = None,
        meta: dict | None = None,
    ) -> str | None:
        """Add ``node`` (evaluated unless ``values`` is given). Returns its name, or None when an
        equivalent variable is already pooled (``dedupe``) or the node is undefined everywhere."""
        if values is None:
            values = self.evaluate(node)
        is_sel = values.dim() == 3
        if not is_sel:
            real = values[self.batch.mask]
            if bool(torch.isnan(real).all()):
                return None
        key = self.key(values)
        if dedupe and key in self._by_key:
            return None
        parents = tuple(node.inputs)
        cost = float(node.primitive.cost) + extra_cost + sum(_fn_costs(node))
        cost += sum(self.items[p].cost for p in parents)
        size = 1 + sum(self.items[p].size for p in parents)
        name = name or f"{prefix}{next(self._counter)}"
        dtype = "bool" if is_sel else self.dtype_of(node)
        self.items[name] = Item(
            name, node, "selector" if is_sel else "sop", dtype, cost, size, parents, dict(meta or {})
        )
        self.values[name] = values
        self._by_key.setdefault(key, name)
        return name

    # --- programs --------------------------------------------------------------------------
    def closure(self, name: str) -> list[str]:
        """``name`` and every pooled variable it depends on, in topological order."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for p in self.items[n].parents:
                visit(p)
            order.append(n)

        visit(name)
        return order

    def program(self, name: str, rename: Callable[[str], str] | None = None) -> Any:
        """The DSL program computing pooled variable ``name`` (its dependency closure)."""
        from mechsynth.dsl.program import Node, Program

        names = [n for n in self.closure(name) if self.items[n].node is not None]
        if not names:
            # A primitive variable on its own: wrap it so the program has an assignment.
            from mechsynth.dsl.program import Fn

            return Program((("out", Node("map", (Fn("identity", 1, ()), name))),), "out")
        mapping = {n: (rename(n) if rename else None) or n for n in names}
        assignments = tuple((mapping[n], self.items[n].node.with_inputs(mapping)) for n in names)
        return Program(assignments, mapping[name])

    def sops(self) -> list[str]:
        return [n for n, it in self.items.items() if it.kind == "sop"]

    def selectors(self) -> list[str]:
        return [n for n, it in self.items.items() if it.kind == "selector"]

    def decoded(self, name: str) -> list[list[Any]]:
        from mechsynth.dsl.interpret import decode

        return decode(self.values[name], self.items[name].dtype, self.batch)


def _fn_costs(node: Any) -> list[float]:
    from mechsynth.dsl.program import Fn

    return [float(a.family.cost) for a in node.args if isinstance(a, Fn)]


# --- function instances ----------------------------------------------------------------------
def _distinct_values(pool: Pool, name: str, limit: int) -> list[Any]:
    v = pool.values[name][pool.batch.mask]
    v = v[~torch.isnan(v)]
    codes = torch.unique(v).tolist()
    if len(codes) > limit:
        return []
    cb = pool.batch.codebook
    return [cb.decode(c, pool.items[name].dtype) for c in codes]


def function_instances(pool: Pool, arity: int, args: Sequence[str]) -> list[Any]:
    """Concrete ``Fn`` items of every registered family of ``arity`` worth trying on ``args``."""
    from mechsynth.dsl import registry
    from mechsynth.dsl.program import Fn

    memo_key = (arity, tuple(args), len(registry.functions()))
    cached = pool.fn_memo.get(memo_key)
    if cached is not None:
        return cached
    literals: list[Any] = list(SMALL_INTS)
    for a in args:
        for v in _distinct_values(pool, a, MAX_OBSERVED_LITERALS):
            if v not in literals and not isinstance(v, bool):
                literals.append(v)
    out = []
    for fam in registry.functions(arity):
        if not getattr(fam, "fit", True) and fam.params:
            continue
        if not fam.params:
            out.append(Fn(fam.name, arity, ()))
            continue
        if len(fam.params) > 2:
            continue
        for params in itertools.product(literals, repeat=len(fam.params)):
            if fam.check_params is not None:
                try:
                    fam.check_params(params)
                except Exception:  # noqa: BLE001 - a family rejecting a literal is expected
                    continue
            out.append(Fn(fam.name, arity, tuple(params)))
    pool.fn_memo[memo_key] = out
    return out


def try_add(pool: Pool, node: Any, **kw: Any) -> str | None:
    """``pool.add`` that treats a node the DSL cannot evaluate on this batch as no candidate."""
    try:
        return pool.add(node, **kw)
    except (ValueError, TypeError, RuntimeError, KeyError, OverflowError, ZeroDivisionError):
        return None


# --- fitting maps on finite domains ------------------------------------------------------------
def fit_map(
    pool: Pool,
    args: Sequence[str],
    target: torch.Tensor,
    where: torch.Tensor | None = None,
    *,
    min_agreement: float = 1.0,
) -> Any:
    """A ``map``/``seqmap`` node over ``args`` reproducing ``target`` codes where ``where`` holds.

    The function is fitted as a lookup table over the observed (finite) argument values and
    handed to the DSL's fitter, which returns the cheapest registered closed form that agrees
    with the table (or the table itself). With ``min_agreement`` 1 the target must be a
    function of ``args`` on the batch (else None). Below 1 the network may err: each argument
    value gets its most frequent target, and the table is kept when it agrees with the target
    on at least ``min_agreement`` of the positions (a trained network that is wrong on a few
    inputs still has the function it means).
    """
    from mechsynth.dsl.program import Node
    from mechsynth.synth.accept import Thresholds

    mask = pool.batch.mask if where is None else where
    cols = [pool.values[a][mask] for a in args]
    y = target[mask]
    if min_agreement >= 1.0:
        table = _exact_table(cols, y)
    else:
        table = _majority_table(cols, y, min_agreement)
    if not table:
        return None
    # A closed form stands in for a majority table only at the bar a trained network's outputs
    # must meet against a variable; a table kept at any agreement (ranked later) keeps that bar.
    closed_form_bar = 1.0 if min_agreement >= 1.0 else max(min_agreement, Thresholds().prefilter_behaviour)
    fn = fit_function(pool, args, table, min_agreement=closed_form_bar)
    if fn is None:
        return None
    op = "map" if len(args) == 1 else "seqmap"
    return Node(op, (fn, *args), "categorical")


def _exact_table(cols: Sequence[torch.Tensor], y: torch.Tensor) -> dict[tuple, float] | None:
    table: dict[tuple, float] = {}
    for key, val in zip(zip(*[c.tolist() for c in cols]), y.tolist()):
        if any(k != k for k in key) or val != val:
            continue
        old = table.setdefault(key, val)
        if abs(old - val) > 1e-6:
            return None
    return table


def _majority_table(
    cols: Sequence[torch.Tensor], y: torch.Tensor, min_agreement: float
) -> dict[tuple, float] | None:
    counts: dict[tuple, dict[float, int]] = {}
    for key, val in zip(zip(*[c.tolist() for c in cols]), y.tolist()):
        if any(k != k for k in key) or val != val:
            continue
        votes = counts.setdefault(key, {})
        val = round(val, 6)
        votes[val] = votes.get(val, 0) + 1
    total = sum(n for votes in counts.values() for n in votes.values())
    if not total:
        return None
    table = {key: max(votes, key=lambda v: (votes[v], -v)) for key, votes in counts.items()}
    agreed = sum(votes[table[key]] for key, votes in counts.items())
    return table if agreed / total >= min_agreement else None


def fit_function(
    pool: Pool, args: Sequence[str], table: dict[tuple, float], min_agreement: float = 1.0
) -> Any:
    """The simplest DSL ``Fn`` agreeing with ``table`` (argument codes -> output code).

    Delegates to ``dsl.fit.fit_table``, which tries the registered families (cheapest first)
    and falls back to a lookup table; below ``min_agreement`` 1 a modular closed form agreeing
    with that share of the entries is taken before the table.
    """
    from mechsynth.dsl.fit import fit_table

    cb = pool.batch.codebook
    dtypes = [pool.items[a].dtype for a in args]
    domain = [tuple(cb.decode(c, d) for c, d in zip(k, dtypes)) for k in table]
    outputs = [cb.decode(c, "value") for c in table.values()]
    try:
        return fit_table(domain, outputs, len(args), arg_dtypes=dtypes, min_agreement=min_agreement)
    except (ValueError, TypeError):
        return None


# --- the I/O-only enumerator ---------------------------------------------------------------------
@dataclass
class EnumerationStats:
    """What one enumeration did: distinct programs kept, nodes evaluated, seconds."""

    distinct: int = 0
    evaluated: int = 0
    seconds: float = 0.0
    stopped: str = ""

    @property
    def per_second(self) -> float:
        return self.distinct / self.seconds if self.seconds > 0 else 0.0


def grow(
    pool: Pool,
    *,
    max_size: int = 4,
    max_count: int = 20_000,
    deadline: float | None = None,
    seed: int = 0,
    stop: Callable[[str], bool] | None = None,
    comparisons: Sequence[str] = ("EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE"),
) -> Iterator[str]:
    """Grow ``pool`` bottom-up by program size, cheapest first; yield each new distinct variable.

    Every registered primitive whose signature the enumerator can fill (sop/selector
    arguments from the pool, fn1/fn2 from :func:`function_instances`, predicates from
    ``comparisons``, optional literals at their defaults) is enumerated, so a user-registered
    primitive or function family is searched with no edit here. ``stop(name)`` ends the
    search early (e.g. when a variable reproduces the target).
    """
    from mechsynth.dsl import registry
    from mechsynth.dsl.program import Node

    rng = random.Random(seed)
    prims = [p for p in registry.primitives() if p.signature and _fillable(p)]
    added = 0
    for size in range(1, max_size + 1):
        by_size: dict[int, list[str]] = {}
        for n, it in pool.items.items():
            by_size.setdefault(it.size, []).append(n)
        new_nodes: list[tuple[float, int, Any]] = []
        for prim in prims:
            var_slots = [p for p in prim.signature if p.kind in ("sop", "selector")]
            arity = len(var_slots)
            # Children sizes must sum to size - 1.
            for sizes in _compositions(size - 1, arity):
                choices = []
                for slot, s in zip(var_slots, sizes):
                    names = [n for n in by_size.get(s, []) if pool.items[n].kind == slot.kind]
                    choices.append(names)
                for combo in itertools.product(*choices):
                    if deadline is not None and time.monotonic() > deadline:
                        return
                    for args in _fill_args(pool, prim, combo, comparisons):
                        node = Node(prim.name, args, None if prim.result == "selector" else "categorical")
                        # A function's own cost counts: the cheapest explanation first, ties at random.
                        cost = prim.cost + sum(pool.items[c].cost for c in combo) + sum(_fn_costs(node))
                        new_nodes.append((cost, rng.random(), node))
        new_nodes.sort(key=lambda t: (t[0], t[1]))
        for _, _, node in new_nodes:
            if deadline is not None and time.monotonic() > deadline:
                return
            if added >= max_count:
                return
            name = try_add(pool, node)
            if name is None:
                continue
            added += 1
            yield name
            if stop is not None and stop(name):
                return


def _fillable(prim: Any) -> bool:
    return all(p.kind != "value" or p.optional for p in prim.signature)


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    if parts == 0:
        if total == 0:
            yield ()
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def _fill_args(pool: Pool, prim: Any, combo: Sequence[str], comparisons: Sequence[str]) -> Iterator[tuple]:
    sop_args = [c for c in combo if pool.items[c].kind == "sop"]
    slots: list[list[Any]] = []
    it = iter(combo)
    for p in prim.signature:
        if p.kind in ("sop", "selector"):
            slots.append([next(it)])
        elif p.kind == "fn1":
            slots.append(function_instances(pool, 1, sop_args[:1]))
        elif p.kind == "fn2":
            slots.append(function_instances(pool, 2, sop_args[:2]))
        elif p.kind == "pred":
            slots.append(list(comparisons))
        elif p.kind == "value":
            slots.append([p.default])
        elif p.kind == "direction":
            from mechsynth.dsl.program import Direction

            slots.append(list(Direction))
    yield from itertools.product(*slots)


def enumerate_programs(
    inputs: Sequence[Sequence[Any]],
    outputs: Sequence[Sequence[Any]] | None = None,
    *,
    max_size: int = 4,
    max_count: int = 20_000,
    budget_seconds: float | None = None,
    seed: int = 0,
    symbols: Iterable[Any] = (),
) -> tuple[list[Any], EnumerationStats]:
    """I/O-only synthesis: programs (cheapest first) whose output equals ``outputs`` where defined.

    ``outputs`` holds a value or None per position (None: not read). Without outputs the
    enumeration just runs to its budget (used to measure throughput).
    """
    from mechsynth.dsl.interpret import encode

    batch = encode(inputs, symbols=list(symbols) + [v for row in (outputs or []) for v in row])
    pool = Pool(batch)
    target = read = None
    if outputs is not None:
        target, read = encode_outputs(batch, outputs)
    found: list[str] = []

    def stop(name: str) -> bool:
        if target is None or pool.items[name].kind != "sop":
            return False
        if matches(pool.values[name], target, read):
            found.append(name)
        return len(found) >= 3

    start = time.monotonic()
    deadline = None if budget_seconds is None else start + budget_seconds
    stats = EnumerationStats()
    for name in list(pool.items):  # a primitive variable may already be the answer
        stop(name)
    for _ in grow(pool, max_size=max_size, max_count=max_count, deadline=deadline, seed=seed, stop=stop):
        stats.distinct += 1
    stats.seconds = time.monotonic() - start
    stats.evaluated = pool.n_evaluated
    return [pool.program(n) for n in found], stats


def encode_outputs(batch: Any, outputs: Sequence[Sequence[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Output codes ``[batch, pos]`` and the mask of positions that are read (value not None)."""
    target = torch.full(batch.tokens.shape, float("nan"), dtype=torch.float64)
    read = torch.zeros(batch.tokens.shape, dtype=torch.bool)
    cb = batch.codebook
    for b, row in enumerate(outputs):
        for i, v in enumerate(row):
            if v is not None:
                target[b, i] = cb.encode(v)
                read[b, i] = True
    return target, read


MIN_DEFINED = 0.5  # a program undefined (None) on more of the read positions explains too little


def agreement(values: torch.Tensor, target: torch.Tensor, read: torch.Tensor, atol: float = 1e-2) -> float:
    """Fraction of read positions, where ``values`` is defined, on which it equals ``target``.

    Where a program's output is None (RASP's "undefined", e.g. a shift at the first position)
    the network still emits something; like the behaviour check, those positions are not
    compared, but the program must be defined on at least ``MIN_DEFINED`` of them (else 0).
    A trained network errs on a few inputs, so a proposer ranks by this score instead of
    demanding equality; the checks decide acceptance.
    """
    v, t = values[read], target[read]
    defined = ~torch.isnan(v)
    if v.numel() == 0 or float(defined.double().mean()) < MIN_DEFINED:
        return 0.0
    return float((torch.abs(v[defined] - t[defined]) <= atol).double().mean())


def matches(values: torch.Tensor, target: torch.Tensor, read: torch.Tensor, atol: float = 1e-2) -> bool:
    """Whether ``values`` equal ``target`` at every read position where they are defined."""
    return agreement(values, target, read, atol) == 1.0


def throughput(
    target: Any, *, seconds: float = 5.0, seed: int = 0, n_inputs: int = 256, max_size: int = 6
) -> EnumerationStats:
    """Enumerator throughput on a target's inputs: distinct programs per second (for the bench)."""
    inputs = target.task.sample(n_inputs, seed)
    _, stats = enumerate_programs(
        inputs, None, max_size=max_size, max_count=10**9, budget_seconds=seconds, seed=seed
    )
    stats.stopped = "budget"
    return stats


@dataclass
class EnumerativeProposer:
    """Proposer ``"enumerator"``: I/O-only synthesis against the network's outputs, then localisation.

    It sees the observed inputs and the network's decoded outputs, nothing inside the
    network; the loop localises what it finds. This is the baseline the model-guided
    proposer is measured against, and a fallback when the layer walk finds nothing.
    """

    name: str = "enumerator"
    max_size: int = 4
    max_count: int = 20_000
    max_seconds: float = 30.0
    max_programs: int = 3
    exhaustive: bool = True  # one round says everything it has to say
    last_stats: EnumerationStats | None = None

    def propose(self, context: Any) -> Iterator[Any]:
        from mechsynth.synth.propose.interface import Proposal, expired
        from mechsynth.dsl.hypothesis import Hypothesis

        if expired(context.deadline):
            return
        obs = context.observations
        inputs = obs.all_inputs()
        outputs = [list(row) for g in obs.groups for row in g.outputs]
        budget = self.max_seconds
        if context.deadline is not None:
            budget = min(budget, max(0.0, context.deadline - time.monotonic()))
        programs, stats = enumerate_programs(
            inputs,
            outputs,
            max_size=self.max_size,
            max_count=self.max_count,
            budget_seconds=budget,
            seed=context.seed,
        )
        self.last_stats = stats
        meta = {
            "distinct": stats.distinct,
            "seconds": round(stats.seconds, 3),
            "per_second": round(stats.per_second, 1),
        }
        for program in programs[: self.max_programs]:
            yield Proposal(source=self.name, hypothesis=Hypothesis(program, {}), meta=meta)
