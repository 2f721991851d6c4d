"""Bounded equivalence: do two programs agree on every input up to a length?

``equivalent(a, b, vocab, max_len)`` returns None when programs ``a`` and ``b``
produce the same output at every position of every input over ``vocab`` of
length 1..max_len, and otherwise a shortest counterexample input. The
synthesizer uses it to deduplicate candidates, to compare a recovered program
with ground truth, and to feed counterexamples back to proposers.

Two methods, and the result says which was used (:class:`EquivalenceResult`):

* ``"z3"``: for each length n the programs are unrolled over n symbolic tokens
  (each constrained to the vocabulary) into z3 real arithmetic — every SOp
  position is a pair (value, defined), every selector entry a boolean, using each
  primitive's and function family's registered z3 encoding — and z3 is asked for
  an input on which the outputs differ. Arithmetic is exact (rationals), so a
  model found by z3 is re-checked with the interpreter; a spurious one (a float
  rounding difference) is blocked and the search continues.
* ``"exhaustive"``: every input is run through the batched interpreter. Used when
  something in either program has no z3 encoding (e.g. a user extension
  registered without one), when z3 gives up, or on request; only when the number
  of inputs is at most ``exhaustive_limit``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import z3

from mechsynth.dsl import registry
from mechsynth.dsl.errors import DSLError, EquivalenceError
from mechsynth.dsl.functions import z3_num
from mechsynth.dsl.interpret import encode, run
from mechsynth.dsl.program import Direction, Fn, Program
from mechsynth.dsl.values import SYMBOL_BASE, Codebook

_METHODS = ("auto", "z3", "exhaustive")


@dataclass(frozen=True)
class EquivalenceResult:
    """The outcome of a bounded equivalence check."""

    counterexample: list | None  # None: equivalent up to max_len
    method: str  # "z3" or "exhaustive"
    detail: str = ""  # why the method was chosen, when it was a fallback

    @property
    def equivalent(self) -> bool:
        return self.counterexample is None


def equivalent(a: Program, b: Program, vocab: Iterable[Any], max_len: int) -> list | None:
    """None if ``a`` and ``b`` agree on every input of length 1..max_len over ``vocab``, else an input."""
    return check_equivalence(a, b, vocab, max_len).counterexample


def check_equivalence(a: Program, b: Program, vocab: Iterable[Any], max_len: int, *, method: str = "auto",
                      exhaustive_limit: int = 200_000, timeout_ms: int = 20_000) -> EquivalenceResult:
    """Like :func:`equivalent`, also saying which method decided (see the module docstring)."""
    vocab = tuple(sorted(set(vocab), key=_key))
    if method not in _METHODS:
        raise DSLError(f"method must be one of {_METHODS}, got {method!r}")
    for p in (a, b):
        if p.kind(p.output) == "selector":
            raise DSLError("equivalence compares sequence outputs; the output is a selector")
    if not vocab or max_len < 1:
        raise DSLError("equivalence needs a non-empty vocabulary and max_len >= 1")
    n_inputs = sum(len(vocab) ** n for n in range(1, max_len + 1))
    detail = ""
    if method in ("auto", "z3"):
        missing = _missing_z3(a) or _missing_z3(b)
        if missing is None:
            try:
                return EquivalenceResult(_z3_check(a, b, vocab, max_len, timeout_ms), "z3")
            except _Z3GaveUp as e:
                detail = f"z3 gave up ({e})"
        else:
            detail = f"no z3 encoding for {missing}"
        if method == "z3":
            raise EquivalenceError(f"z3 cannot decide: {detail}")
    if n_inputs > exhaustive_limit:
        raise EquivalenceError(
            f"cannot decide equivalence: {detail or 'exhaustive requested'}, and {n_inputs} inputs exceed "
            f"the exhaustive limit of {exhaustive_limit}"
        )
    return EquivalenceResult(_exhaustive(a, b, vocab, max_len), "exhaustive", detail)


def _key(v: Any) -> tuple:
    from mechsynth.dsl.values import _sort_key

    return _sort_key(v)


# ---------------------------------------------------------------- exhaustive


def _inputs(vocab: Sequence[Any], n: int) -> Iterable[list]:
    return (list(x) for x in itertools.product(vocab, repeat=n))


def differing(a: Program, b: Program, inputs: Sequence[Sequence[Any]]) -> int | None:
    """Index of the first input on which the outputs of ``a`` and ``b`` differ, or None."""
    batch = encode(inputs, symbols=(*a.literals(), *b.literals()))
    va = run(a, batch)[a.output]
    vb = run(b, batch)[b.output]
    nan_a, nan_b = torch.isnan(va), torch.isnan(vb)
    close = torch.isclose(va, vb, rtol=1e-9, atol=1e-9) | (nan_a & nan_b)
    bad = ~(close | ~batch.mask).all(dim=1)
    idx = torch.nonzero(bad)
    return int(idx[0]) if idx.numel() else None


def _exhaustive(a: Program, b: Program, vocab: Sequence[Any], max_len: int,
                chunk: int = 50_000) -> list | None:
    for n in range(1, max_len + 1):
        it = _inputs(vocab, n)
        while True:
            block = list(itertools.islice(it, chunk))
            if not block:
                break
            i = differing(a, b, block)
            if i is not None:
                return block[i]
    return None


# ---------------------------------------------------------------- z3


class _Z3GaveUp(Exception):
    pass


def _missing_z3(p: Program) -> str | None:
    """The first primitive or function family in ``p`` without a z3 encoding, or None."""
    for _, node in p.assignments:
        prim = node.primitive
        if prim.z3 is None:
            return f"primitive {prim.name!r}"
        for arg in node.args:
            if isinstance(arg, Fn) and arg.family.z3 is None:
                return f"function {arg.name!r}"
    return None


@dataclass
class Z3Encoder:
    """Unrolls programs over one input length for z3 (the ``z`` argument of primitive z3 hooks).

    An SOp is a list of ``(value, defined)`` pairs, one per position (value: z3 real,
    holding value codes as in ``dsl.values``; defined: z3 bool, False for None); a
    selector is a ``[query][key]`` list of z3 bools.
    """

    n: int
    vocab: tuple
    codebook: Codebook
    token_vars: list

    # ----- helpers for hooks
    def code(self, value: Any) -> Any:
        """The z3 real of a literal's code."""
        if value is None:
            return z3.RealVal(0)
        return z3_num(self.codebook.encode(value))

    def apply_fn(self, fn: Fn, *args: Any) -> tuple[Any, Any]:
        """Encode ``fn`` on z3 reals: (value, extra defined-ness condition)."""
        fam = fn.family
        if fam.z3 is None:
            raise _Z3GaveUp(f"function {fn.name!r} has no z3 encoding")
        out = fam.z3(tuple(args), fn.params, self.code)
        value, ok = out if isinstance(out, tuple) else (out, z3.BoolVal(True))
        if not fam.symbols and self.codebook.symbols:
            ok = z3.And(ok, *[a < SYMBOL_BASE for a in args])  # arithmetic on a symbol is None
        return value, ok

    # ----- primitives
    def tokens(self) -> list:
        return [(t, z3.BoolVal(True)) for t in self.token_vars]

    def indices(self) -> list:
        return [(z3.RealVal(i), z3.BoolVal(True)) for i in range(self.n)]

    def length(self) -> list:
        return [(z3.RealVal(self.n), z3.BoolVal(True)) for _ in range(self.n)]

    def full(self, value: Any) -> list:
        return [(self.code(value), z3.BoolVal(value is not None)) for _ in range(self.n)]

    def constant(self, values: tuple) -> list:
        out = []
        for i in range(self.n):
            v = values[i] if i < len(values) else None
            out.append((self.code(v), z3.BoolVal(v is not None)))
        return out

    def constant_selector(self, matrix: tuple) -> list:
        def hit(q: int, k: int) -> bool:
            return q < len(matrix) and k < len(matrix[q]) and bool(matrix[q][k])
        return [[z3.BoolVal(hit(q, k)) for k in range(self.n)] for q in range(self.n)]

    def map(self, fn: Fn, *kids: list) -> list:
        out = []
        for pos in zip(*kids):
            value, ok = self.apply_fn(fn, *[v for v, _ in pos])
            out.append((value, z3.And(ok, *[d for _, d in pos])))
        return out

    def select(self, pred: Any, keys: list, queries: list) -> list:
        rows = []
        for qv, qd in queries:
            row = []
            for kv, kd in keys:
                if isinstance(pred, str):
                    hit = _comparison(pred, kv, qv)
                else:
                    value, ok = self.apply_fn(pred, kv, qv)
                    hit = z3.And(ok, value == 1)
                row.append(z3.And(kd, qd, hit))
            rows.append(row)
        return rows

    def select_best(self, sel: list, scores: list, direction: Any) -> list:
        """Keep a selected key when no other selected key (with a defined score) beats its score."""
        lowest = direction is Direction.ARGMIN
        rows = []
        for row in sel:
            ok = [z3.And(s, d) for s, (_, d) in zip(row, scores)]
            out = []
            for i, (v, _) in enumerate(scores):
                beats = [z3.Implies(ok[j], v <= w if lowest else v >= w)
                         for j, (w, _) in enumerate(scores) if j != i]
                out.append(z3.And(ok[i], *beats))
            rows.append(out)
        return rows

    def aggregate(self, sel: list, x: list, default: Any) -> list:
        out = []
        symbols = bool(self.codebook.symbols)
        for row in sel:
            count = z3.Sum([z3.If(s, z3.RealVal(1), z3.RealVal(0)) for s in row])
            total = z3.Sum([z3.If(s, v, z3.RealVal(0)) for s, (v, _) in zip(row, x)])
            ok = z3.And(*[z3.Implies(s, d) for s, (_, d) in zip(row, x)])
            if symbols:  # symbols are averaged only when all selected ones agree
                for (s1, (v1, _)), (s2, (v2, _)) in itertools.combinations(zip(row, x), 2):
                    mixed = z3.And(s1, s2, z3.Or(v1 >= SYMBOL_BASE, v2 >= SYMBOL_BASE))
                    ok = z3.And(ok, z3.Implies(mixed, v1 == v2))
            value = z3.If(count == 0, self.code(default), total / count)
            defined = z3.If(count == 0, z3.BoolVal(default is not None), ok)
            out.append((value, defined))
        return out

    def selector_width(self, sel: list) -> list:
        one, zero = z3.RealVal(1), z3.RealVal(0)
        return [(z3.Sum([z3.If(s, one, zero) for s in row]), z3.BoolVal(True)) for row in sel]

    def selector_logic(self, op: str, kids: list) -> list:
        if op == "not":
            return [[z3.Not(s) for s in row] for row in kids[0]]
        f = z3.And if op == "and" else z3.Or
        return [[f(s, t) for s, t in zip(r1, r2)] for r1, r2 in zip(kids[0], kids[1])]


def _comparison(name: str, k: Any, q: Any) -> Any:
    table = {"EQ": lambda: k == q, "LT": lambda: k < q, "LEQ": lambda: k <= q, "GT": lambda: k > q,
             "GEQ": lambda: k >= q, "NEQ": lambda: k != q, "TRUE": lambda: z3.BoolVal(True),
             "FALSE": lambda: z3.BoolVal(False)}
    return table[name]()


def unroll(program: Program, enc: Z3Encoder) -> dict[str, Any]:
    """Every variable of ``program`` as z3 terms for the encoder's length."""
    values: dict[str, Any] = {"tokens": enc.tokens(), "indices": enc.indices(), "length": enc.length()}
    for name, node in program.assignments:
        prim = registry.primitive(node.op)
        kids = [values[c] for c in node.inputs]
        values[name] = prim.z3(enc, node.args, kids)
    return values


def _z3_check(a: Program, b: Program, vocab: tuple, max_len: int, timeout_ms: int) -> list | None:
    codebook = Codebook.of([*vocab, *a.literals(), *b.literals()])
    codes = [z3_num(codebook.encode(v)) for v in vocab]
    for n in range(1, max_len + 1):
        tokens = [z3.Real(f"t{i}") for i in range(n)]
        enc = Z3Encoder(n, vocab, codebook, tokens)
        try:
            out_a = unroll(a, enc)[a.output]
            out_b = unroll(b, enc)[b.output]
        except (DSLError, z3.Z3Exception) as e:
            raise _Z3GaveUp(str(e)) from None
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        for t in tokens:
            solver.add(z3.Or(*[t == c for c in codes]))
        diffs = [z3.Or(da != db, z3.And(da, db, va != vb)) for (va, da), (vb, db) in zip(out_a, out_b)]
        solver.add(z3.Or(*diffs))
        for _ in range(20):  # re-check models with the interpreter; block spurious ones
            result = solver.check()
            if result == z3.unsat:
                break
            if result != z3.sat:
                raise _Z3GaveUp(f"solver returned {result} at length {n}")
            model = solver.model()
            values = [model.eval(t, model_completion=True) for t in tokens]
            inp = [vocab[next(i for i, c in enumerate(codes) if z3.is_true(model.eval(v == c)))]
                   for v in values]
            if differing(a, b, [inp]) is not None:
                return inp
            solver.add(z3.Or(*[t != v for t, v in zip(tokens, values)]))
        else:
            raise _Z3GaveUp(f"too many spurious counterexamples at length {n}")
    return None

