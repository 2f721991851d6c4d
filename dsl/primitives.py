"""The RASP primitives, registered like any user extension.

Each primitive below is one ``@register.primitive`` entry: its signature (which the
parser and printer follow), a tensor implementation (which the interpreter
calls as ``impl(batch, *args)``), a dtype rule, a value-set rule (used to tabulate
RASP lambdas and to type programs) and a z3 encoding (used by
``dsl.equivalence``). Semantics follow tracr's ``rasp.evaluate``:

=================  ======================================================
``tokens``         the input values
``indices``        0, 1, ..., n-1
``length``         n at every position
``map(f, x)``      f(x) position-wise; None stays None
``seqmap(g, x, y)``  g(x, y) position-wise; None if either is None
``full(c)``        c at every position (RASP ``Full``)
``constant(vs)``   vs[i] at position i (RASP ``ConstantSOp``; None past its end)
``select(k, q, p)``  selector[q][k] = p(k[k], q[q]) (RASP's key-first predicate)
``select_best(s, x, d)``  of the keys s selects for a query, those with the smallest (d=ARGMIN)
                   or largest (d=ARGMAX) x; ties keep every best key (not in RASP, see below)
``aggregate(s, x, default=None)``  mean of x over the keys s selects; default if none
``selector_width(s)``  number of keys s selects
``selector_and/or(s, t)``, ``selector_not(s)``  elementwise logic on selectors
``constant_selector(m)``  m[q][k] (RASP ``ConstantSelector``; False outside m)
=================  ======================================================

``select_best`` is the one primitive here that RASP lacks. A RASP selector is a predicate of
one key and one query, so "the key whose value is the smallest one above the query's" (what
a sorting head attends to: the next output is the smallest remaining token) is no
``select``: it compares keys with each other. ``select_best(select(tokens, q, GT), tokens,
ARGMIN)`` says it directly. Keys whose score is None are never chosen; a query whose
selector row is empty selects nothing (an ``aggregate`` through it gives its default).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from mechsynth.dsl.errors import EvaluationError
from mechsynth.dsl.interpret import DTYPE, Batch, comparison
from mechsynth.dsl.program import Direction
from mechsynth.dsl.registry import register
from mechsynth.dsl.values import SYMBOL_BASE, is_number

Tensor = torch.Tensor
_NAN = float("nan")


def _guard(f: Any, out: Tensor, *inputs: Tensor) -> Tensor:
    """None (NaN) wherever an input is None, as RASP skips the function there."""
    if out.dtype != torch.bool and getattr(f, "nan_safe", False):
        return out  # arithmetic already propagated NaN
    bad = torch.isnan(inputs[0])
    for x in inputs[1:]:
        bad = bad | torch.isnan(x)
    return torch.where(bad, _NAN, out.to(DTYPE))


# ---------------------------------------------------------------- primitive variables


@register.primitive("tokens", (), dtype="value", cost=0.0,
                    value_set=lambda args, sets, ctx: frozenset(ctx.vocab),
                    z3=lambda z, args, kids: z.tokens(),
                    doc="The input values.", example="tokens")
def _tokens(batch: Batch) -> Tensor:
    return batch.tokens


@register.primitive("indices", (), dtype="number", cost=0.0,
                    value_set=lambda args, sets, ctx: frozenset(range(ctx.max_len)),
                    z3=lambda z, args, kids: z.indices(),
                    doc="The position of each element: 0, 1, ..., n-1.", example="indices")
def _indices(batch: Batch) -> Tensor:
    return batch.indices


@register.primitive("length", (), dtype="number", cost=0.0,
                    value_set=lambda args, sets, ctx: frozenset(range(1, ctx.max_len + 1)),
                    z3=lambda z, args, kids: z.length(),
                    doc="The input length n, at every position.", example="length")
def _length(batch: Batch) -> Tensor:
    return batch.length


# ---------------------------------------------------------------- position-wise functions


def _map_dtype(args: tuple, child: tuple) -> str:
    return args[0].family.output_dtype(args[0].params, child[0])


@register.primitive("map", "f: fn1, x: sop", cost=1.0, dtype=_map_dtype,
                    value_set=lambda args, sets, ctx: ctx.image(args[0], sets[0]),
                    z3=lambda z, args, kids: z.map(args[0], kids[0]),
                    doc="f(x) at every position; None stays None.", example="map(add(1), tokens)")
def _map(batch: Batch, f: Any, x: Tensor) -> Tensor:
    return _guard(f, f(x), x)


@register.primitive("seqmap", "f: fn2, x: sop, y: sop", cost=1.5, dtype=_map_dtype,
                    value_set=lambda args, sets, ctx: ctx.image(args[0], sets[0], sets[1]),
                    z3=lambda z, args, kids: z.map(args[0], kids[0], kids[1]),
                    doc="f(x, y) at every position; None if x or y is None.",
                    example="seqmap(sub, length, indices)")
def _seqmap(batch: Batch, f: Any, x: Tensor, y: Tensor) -> Tensor:
    return _guard(f, f(x, y), x, y)


def _value_dtype(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if is_number(value) else "value"


@register.primitive("full", "value: value", cost=0.5,
                    dtype=lambda args, child: _value_dtype(args[0]),
                    value_set=lambda args, sets, ctx: frozenset({args[0]} - {None}),
                    z3=lambda z, args, kids: z.full(args[0]),
                    doc="The constant value at every position (RASP Full).", example="full(0)")
def _full(batch: Batch, value: Any) -> Tensor:
    return torch.full_like(batch.tokens, batch.code(value)).masked_fill(~batch.mask, _NAN)


def _constant_dtype(args: tuple, child: tuple) -> str:
    kinds = {_value_dtype(v) for v in args[0] if v is not None}
    return kinds.pop() if len(kinds) == 1 else "value"


@register.primitive("constant", "values: value", cost=0.5, dtype=_constant_dtype,
                    value_set=lambda args, sets, ctx: frozenset(set(args[0]) - {None}),
                    z3=lambda z, args, kids: z.constant(args[0]),
                    doc="values[i] at position i, None past the end (RASP ConstantSOp).",
                    example="constant((1, 0, 1))")
def _constant(batch: Batch, values: tuple) -> Tensor:
    if not isinstance(values, tuple):
        raise EvaluationError("constant(...) takes a tuple of values")
    row = [batch.code(v) for v in values[: batch.width]] + [_NAN] * max(0, batch.width - len(values))
    out = torch.tensor(row, dtype=DTYPE).expand(batch.size, batch.width)
    return out.masked_fill(~batch.mask, _NAN)


# ---------------------------------------------------------------- attention


@register.primitive("select", "keys: sop, queries: sop, predicate: pred", result="selector", cost=2.0,
                    z3=lambda z, args, kids: z.select(args[2], kids[0], kids[1]),
                    doc="selector[q][k] = predicate(keys[k], queries[q]); a None key or query selects "
                        "nothing. Predicates: EQ LT LEQ GT GEQ NEQ TRUE FALSE (key OP query), or a "
                        "2-argument function of (k, q) returning bools.",
                    example="select(indices, indices, LEQ)")
def _select(batch: Batch, keys: Tensor, queries: Tensor, predicate: Any) -> Tensor:
    k = keys[:, None, :]
    q = queries[:, :, None]
    if predicate in _NAN_FALSE:
        # IEEE comparisons with NaN are False, so None keys/queries and padding (NaN)
        # are never selected: one op, no masking needed.
        return comparison(predicate, k, q)
    if isinstance(predicate, str):
        sel = comparison(predicate, k, q)
    else:
        # Functions broadcast: [B, 1, K] keys against [B, Q, 1] queries, so a predicate
        # that reads only the key (key_eq(c)) is computed once per key.
        sel = predicate(k, q)
        if sel.dtype != torch.bool:
            sel = sel == 1.0  # NaN (undefined) is not selected
    # None keys/queries, and padding (also NaN), select nothing. The key side is
    # applied first: cheap when the predicate reads only the key.
    return (sel & ~torch.isnan(k)) & ~torch.isnan(q)


_NAN_FALSE = frozenset({"EQ", "LT", "LEQ", "GT", "GEQ"})


@register.primitive("select_best", "selector: selector, scores: sop, direction: direction", result="selector",
                    cost=3.0, z3=lambda z, args, kids: z.select_best(kids[0], kids[1], args[2]),
                    doc="Of the keys the selector selects for each query, the ones with the smallest "
                        "(ARGMIN) or largest (ARGMAX) score; ties keep every best key, None scores are "
                        "never chosen. Not in RASP: it compares keys with each other.",
                    example="select_best(select(tokens, tokens, GT), tokens, ARGMIN)")
def _select_best(batch: Batch, selector: Tensor, scores: Tensor, direction: Direction) -> Tensor:
    return best_keys(selector, scores, direction)


def best_keys(selector: Tensor, scores: Tensor, direction: Direction) -> Tensor:
    """``select_best`` on tensors: ``selector`` [B, Q, K] bool, ``scores`` [B, K] codes (NaN = None)."""
    s = scores[:, None, :]
    ok = selector & ~torch.isnan(s)
    lowest = direction is Direction.ARGMIN
    fill = float("inf") if lowest else -float("inf")
    masked = torch.where(ok, s, fill)
    best = masked.amin(-1, keepdim=True) if lowest else masked.amax(-1, keepdim=True)
    return ok & (masked == best)


def _aggregate_dtype(args: tuple, child: tuple) -> str:
    # A mean of bools is a fraction; only a default that is not a number makes it "value".
    default = args[2]
    if child[1] == "value" or not (default is None or is_number(default)):
        return "value"
    return child[1]


def _aggregate_value_set(args: tuple, sets: tuple, ctx: Any) -> frozenset:
    default = args[2]
    values = set(sets[1])
    out = set(values)
    if ctx.encoding == "numerical":
        out |= _means(values, ctx.max_len)
    if default is not None:
        out.add(default)
    return frozenset(out)


def _means(values: set, max_len: int, limit: int = 200_000) -> set:
    """Every mean of a multiset of 1..max_len numbers drawn from ``values``."""
    nums = sorted({float(v) for v in values if is_number(v)})
    sums = {0.0}
    out: set = set()
    for n in range(1, max_len + 1):
        sums = {s + v for s, v in itertools.product(sums, nums)}
        if len(sums) > limit:
            raise EvaluationError("value set of a numerical aggregate is too large to enumerate")
        out |= {s / n for s in sums}
    return out


@register.primitive("aggregate", "selector: selector, x: sop, default: value = None", cost=3.0,
                    dtype=_aggregate_dtype, value_set=_aggregate_value_set,
                    z3=lambda z, args, kids: z.aggregate(kids[0], kids[1], args[2]),
                    doc="Mean of x over the selected keys; default where nothing is selected. With "
                        "one selected key (categorical use) it copies that value.",
                    example="aggregate(select(indices, indices, EQ), tokens)")
def _aggregate(batch: Batch, selector: Tensor, x: Tensor, default: Any) -> Tensor:
    w = selector.to(DTYPE)
    missing = torch.isnan(x)  # padding keys are NaN too, but never selected
    total = torch.bmm(w, x.masked_fill(missing, 0.0)[:, :, None])[:, :, 0]
    count = w.sum(-1)
    out = total / count
    real_missing = missing & batch.mask
    if bool(real_missing.any()):
        # A selected None makes the result None (RASP cannot average None either).
        n_missing = torch.bmm(w, real_missing.to(DTYPE)[:, :, None])[:, :, 0]
        out = out.masked_fill(n_missing > 0, _NAN)
    if bool((x >= SYMBOL_BASE).any()):
        # Symbols cannot be averaged: defined only when all selected symbols agree.
        hi = x.masked_fill(missing, -float("inf"))[:, None, :].masked_fill(~selector, -float("inf")).amax(-1)
        lo = x.masked_fill(missing, float("inf"))[:, None, :].masked_fill(~selector, float("inf")).amin(-1)
        out = out.masked_fill((hi != lo) & (hi >= SYMBOL_BASE), _NAN)
    out = torch.where(count > 0, out, batch.code(default))
    return out.masked_fill(~batch.mask, _NAN)


def _constant_selector_value_check(matrix: Any) -> tuple:
    if not isinstance(matrix, tuple) or not all(isinstance(r, tuple) for r in matrix):
        raise EvaluationError("constant_selector(...) takes a tuple of rows of bools")
    return matrix


@register.primitive("constant_selector", "matrix: value", result="selector", cost=2.0,
                    z3=lambda z, args, kids: z.constant_selector(args[0]),
                    doc="A fixed selector: selector[q][k] = matrix[q][k], False outside the matrix "
                        "(RASP ConstantSelector).",
                    example="constant_selector(((True, False), (True, True)))")
def _constant_selector(batch: Batch, matrix: tuple) -> Tensor:
    matrix = _constant_selector_value_check(matrix)
    t = batch.width
    dense = torch.zeros(t, t, dtype=torch.bool)
    for q, row in enumerate(matrix[:t]):
        for k, hit in enumerate(row[:t]):
            dense[q, k] = bool(hit)
    return dense.expand(batch.size, t, t) & batch.pair_mask


@register.primitive("selector_width", "selector: selector", cost=2.0, dtype="number",
                    value_set=lambda args, sets, ctx: frozenset(range(ctx.max_len + 1)),
                    z3=lambda z, args, kids: z.selector_width(kids[0]),
                    doc="Number of keys selected by each query.",
                    example="selector_width(select(tokens, tokens, EQ))")
def _selector_width(batch: Batch, selector: Tensor) -> Tensor:
    # Summing the bytes of a bool tensor is ~2x faster than a float sum on CPU.
    width = selector.view(torch.uint8).sum(-1, dtype=torch.int16)
    return width.to(DTYPE).masked_fill(~batch.mask, _NAN)


@register.primitive("selector_and", "a: selector, b: selector", result="selector", cost=1.0,
                    z3=lambda z, args, kids: z.selector_logic("and", kids),
                    doc="Keys selected by both selectors.", example="selector_and(s, t)")
def _selector_and(batch: Batch, a: Tensor, b: Tensor) -> Tensor:
    return a & b


@register.primitive("selector_or", "a: selector, b: selector", result="selector", cost=1.0,
                    z3=lambda z, args, kids: z.selector_logic("or", kids),
                    doc="Keys selected by either selector.", example="selector_or(s, t)")
def _selector_or(batch: Batch, a: Tensor, b: Tensor) -> Tensor:
    return a | b


@register.primitive("selector_not", "a: selector", result="selector", cost=1.0,
                    z3=lambda z, args, kids: z.selector_logic("not", kids),
                    doc="Keys not selected (among real positions).", example="selector_not(s)")
def _selector_not(batch: Batch, a: Tensor) -> Tensor:
    return ~a & batch.pair_mask


# ---------------------------------------------------------------- output votes
# A trained network often computes its output as the *sum* of several components' direct
# logit contributions: no single variable equals the output, each component casts a vote
# (a score per output label that depends on the variable it holds) and the unembedding
# takes the argmax of the sum. RASP has no such node (tracr reads one categorical SOp), and
# a seqmap table over k variables grows as the product of their value sets, so a vote is
# its own primitive: additive in the voters, so its table grows as their sum. The DSL's
# signatures are fixed, so it is registered once per number of voters (vote2 .. voteN,
# one definition below). ``scores = (labels, bias, table_1, ..., table_k)``: ``labels`` the
# output values, ``bias`` one score per label, ``table_c`` pairs ``(value, (score per
# label))`` for voter c; a value missing from a voter's table abstains (adds 0). Ties go to
# the first label. Undefined (None) where any voter is.
MAX_VOTERS = 5
_VOTER_NAMES = "abcdefgh"


def _vote_scores(scores: Any, k: int) -> tuple[tuple, tuple, tuple]:
    if not (isinstance(scores, tuple) and len(scores) == k + 2):
        raise EvaluationError(f"vote{k}(...): scores must be (labels, bias, {k} voter tables)")
    labels, bias, tables = scores[0], scores[1], scores[2:]
    if not (isinstance(labels, tuple) and isinstance(bias, tuple) and len(bias) == len(labels) > 0):
        raise EvaluationError(f"vote{k}(...): labels and bias must be tuples of one length")
    for table in tables:
        ok = isinstance(table, tuple) and all(
            isinstance(e, tuple) and len(e) == 2 and isinstance(e[1], tuple) and len(e[1]) == len(labels)
            for e in table
        )
        if not ok:
            raise EvaluationError(f"vote{k}(...): a voter table holds (value, (one score per label)) pairs")
    return labels, bias, tables


def _vote(batch: Batch, *args: Any) -> Tensor:
    *voters, scores = args
    labels, bias, tables = _vote_scores(scores, len(voters))
    total = torch.tensor(bias, dtype=DTYPE).expand(*batch.tokens.shape, len(labels)).clone()
    undefined = ~batch.mask
    for x, table in zip(voters, tables):
        undefined |= torch.isnan(x)
        if not table:
            continue
        keys = torch.tensor([batch.code(v) for v, _ in table], dtype=DTYPE)
        rows = torch.tensor([s for _, s in table], dtype=DTYPE)
        total += (x[..., None] == keys).to(DTYPE) @ rows
    codes = torch.tensor([batch.code(v) for v in labels], dtype=DTYPE)
    return codes[total.argmax(-1)].masked_fill(undefined, _NAN)


def _vote_dtype(args: tuple, child: tuple) -> str:
    kinds = {_value_dtype(v) for v in args[-1][0] if v is not None}
    return kinds.pop() if len(kinds) == 1 else "value"


for _k in range(2, MAX_VOTERS + 1):
    register.primitive(
        f"vote{_k}",
        ", ".join(f"{n}: sop" for n in _VOTER_NAMES[:_k]) + ", scores: value",
        cost=1.0 + _k,
        dtype=_vote_dtype,
        value_set=lambda args, sets, ctx: frozenset(set(args[-1][0]) - {None}),
        doc=f"argmax over labels of bias + the sum of {_k} voters' label scores (a sum of direct "
            "logit contributions); scores = (labels, bias, one ((value, scores), ...) table per voter).",
        example=f"vote{_k}({', '.join(_VOTER_NAMES[:_k])}, ((0, 1), (0.0, 0.0)"
                + ", ((0, (1.0, 0.0)),)" * _k + "))",
    )(_vote)
