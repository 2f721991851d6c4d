"""The function library: what ``map``, ``seqmap`` and ``select`` apply position-wise.

Every entry is a registered *function family*: a name, an arity (1 for ``map``, 2
for ``seqmap`` and predicates), literal parameters, a vectorised torch
implementation on float64 value codes (``dsl.values``), a cost (the enumerator
prefers cheap explanations), an output dtype, and where one exists a sympy form
(for canonicalisation) and a z3 form (for equivalence checking). ``propose``
guesses parameters from example input/output pairs so that ``dsl.fit`` can
recognise an arbitrary Python function as a named family.

Three families are special in the text syntax but otherwise ordinary:

* ``table({key: value, ...})`` — a lookup table, the universal fallback for a
  function on a finite domain (keys of 2-argument tables are ``(x, y)`` tuples).
  A key that is not in the table maps to None. Float keys match to within a
  relative 1e-9 so that a table fitted on Python floats reads torch results.
* ``expr`` — a sympy expression in ``x`` (and ``y``), written directly as
  arithmetic: ``map(2*x + 1, t)``, ``seqmap(x + y/5, t, indices)``,
  ``select(indices, indices, q == k + 1)`` (``k``, ``q`` name key and query).
* comparisons return bools, coded 1.0/0.0; ``and_``/``or_`` follow Python's
  ``x and y`` / ``x or y`` (they return one of their arguments).

Implementations compute on float64 value codes and return codes, or bool tensors
for boolean results (``map`` stores those as 1.0/0.0; ``select`` uses them as they
are). They need not handle None: ``map``/``seqmap`` restore None wherever an
argument was None (families marked ``nan_safe`` propagate NaN themselves).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import sympy
import torch
import z3

from mechsynth.dsl.errors import DSLError, EvaluationError
from mechsynth.dsl.registry import register
from mechsynth.dsl.values import SYMBOL_BASE, Codebook, is_number

Tensor = torch.Tensor
_F64 = torch.float64
X, Y = sympy.symbols("x y")


def _exact(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def _z3_bool(b: Any) -> Any:
    return z3.If(b, z3.RealVal(1), z3.RealVal(0))


def _z3_truthy(x: Any) -> Any:
    return x != 0


def _z3_floor(x: Any) -> Any:
    return z3.ToReal(z3.ToInt(x))


# ---------------------------------------------------------------- one argument


@register.function("identity", 1, cost=0.5, output="same", symbols=True, nan_safe=True, sympy=lambda x: x,
                   z3=lambda a, p, c: a[0],
                   doc="x")
def _identity(x: Tensor) -> Tensor:
    return x


def _propose_add(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    for x, y in zip(xs, ys):
        if is_number(x) and is_number(y) and not isinstance(y, bool):
            yield (_exact(y - x),)
            return


@register.function("add", 1, ("k",), nan_safe=True, cost=1.0, sympy=lambda x, k: x + k,
                   z3=lambda a, p, c: a[0] + p[0], propose=_propose_add, doc="x + k")
def _add1(x: Tensor, k: float) -> Tensor:
    return x + k


def _propose_mul(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    for x, y in zip(xs, ys):
        if is_number(x) and is_number(y) and not isinstance(y, bool) and x != 0:
            yield (_exact(y / x),)
            return


@register.function("mul", 1, ("k",), nan_safe=True, cost=1.0, sympy=lambda x, k: k * x,
                   z3=lambda a, p, c: a[0] * p[0], propose=_propose_mul, doc="k * x")
def _mul1(x: Tensor, k: float) -> Tensor:
    return k * x


def _propose_rsub(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    for x, y in zip(xs, ys):
        if is_number(x) and is_number(y) and not isinstance(y, bool):
            yield (_exact(y + x),)
            return


@register.function("rsub", 1, ("k",), nan_safe=True, cost=1.0, sympy=lambda x, k: k - x,
                   z3=lambda a, p, c: p[0] - a[0], propose=_propose_rsub, doc="k - x")
def _rsub1(x: Tensor, k: float) -> Tensor:
    return k - x


def _small_ints(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    return ((k,) for k in range(2, 11))


def _nonzero(params: tuple) -> None:
    if params[0] == 0:
        raise DSLError("division by zero in a function parameter")


@register.function("div", 1, ("k",), nan_safe=True, cost=1.5, sympy=lambda x, k: x / k,
                   z3=lambda a, p, c: a[0] / p[0], propose=_small_ints, check_params=_nonzero, doc="x / k")
def _div1(x: Tensor, k: float) -> Tensor:
    return x / k


@register.function("floordiv", 1, ("k",), nan_safe=True, cost=1.5, sympy=lambda x, k: sympy.floor(x / k),
                   z3=lambda a, p, c: _z3_floor(a[0] / p[0]), propose=_small_ints, check_params=_nonzero,
                   doc="x // k")
def _floordiv1(x: Tensor, k: float) -> Tensor:
    return torch.floor(x / k)


@register.function("mod", 1, ("k",), nan_safe=True, cost=1.5, sympy=lambda x, k: sympy.Mod(x, k),
                   z3=lambda a, p, c: a[0] - p[0] * _z3_floor(a[0] / p[0]), propose=_small_ints,
                   check_params=_nonzero, doc="x % k (Python's sign convention)")
def _mod1(x: Tensor, k: float) -> Tensor:
    return _remainder(x, k)


def _remainder(x: Any, k: Any) -> Tensor:
    # Python's % (sign of the divisor). torch.remainder takes a slow path on NaN
    # (None) inputs, which are common here; the floor form is exact on integers.
    return x - k * torch.floor(x / k)


def _propose_values(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    seen: list = []
    for x in xs:
        if x is not None and x not in seen:
            seen.append(x)
    return ((v,) for v in seen)


def _propose_outputs(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    return _propose_values(ys, xs)


def _propose_eq(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    hits = [x for x, y in zip(xs, ys) if y is True]
    if len(set(hits)) == 1:
        yield (hits[0],)


def _propose_neq(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
    hits = [x for x, y in zip(xs, ys) if y is False]
    if len(set(hits)) == 1:
        yield (hits[0],)


def _cmp_family(name: str, op: Callable[[Tensor, float], Tensor], sym: Callable, z: Callable,
                propose: Callable, doc: str, cost: float) -> None:
    register.function(name, 1, ("c",), cost=cost, output="bool", sympy=sym, symbols=True,
                      z3=lambda a, p, c: _z3_bool(z(a[0], c(p[0]))), propose=propose, doc=doc)(
        lambda x, c: op(x, c))


_cmp_family("eq", torch.eq, lambda x, c: sympy.Eq(x, c), lambda a, b: a == b, _propose_eq, "x == c", 1.0)
_cmp_family("neq", torch.ne, lambda x, c: sympy.Ne(x, c), lambda a, b: a != b, _propose_neq, "x != c", 1.0)
_cmp_family("lt", torch.lt, lambda x, c: sympy.Lt(x, c), lambda a, b: a < b, _propose_values, "x < c", 1.2)
_cmp_family("leq", torch.le, lambda x, c: sympy.Le(x, c), lambda a, b: a <= b, _propose_values, "x <= c", 1.2)
_cmp_family("gt", torch.gt, lambda x, c: sympy.Gt(x, c), lambda a, b: a > b, _propose_values, "x > c", 1.2)
_cmp_family("geq", torch.ge, lambda x, c: sympy.Ge(x, c), lambda a, b: a >= b, _propose_values, "x >= c", 1.2)


@register.function("not_", 1, cost=0.9, output="bool", symbols=True, sympy=lambda x: sympy.Eq(x, 0),
                   z3=lambda a, p, c: _z3_bool(a[0] == 0), doc="not x (Python truthiness of numbers)")
def _not1(x: Tensor) -> Tensor:
    return x == 0


@register.function("truthy", 1, cost=0.9, output="bool", symbols=True, sympy=lambda x: sympy.Ne(x, 0),
                   z3=lambda a, p, c: _z3_bool(a[0] != 0), doc="bool(x) (Python truthiness of numbers)")
def _truthy1(x: Tensor) -> Tensor:
    return x != 0


@register.function("abs", 1, nan_safe=True, cost=1.0, sympy=lambda x: sympy.Abs(x),
                   z3=lambda a, p, c: z3.If(a[0] >= 0, a[0], -a[0]), doc="|x|")
def _abs1(x: Tensor) -> Tensor:
    return torch.abs(x)


@register.function("sign", 1, nan_safe=True, cost=1.1, sympy=lambda x: sympy.sign(x),
                   z3=lambda a, p, c: z3.If(a[0] > 0, 1, z3.If(a[0] < 0, -1, 0)),
                   doc="sign(x): -1, 0 or 1 (a trained network's threshold on a signed mean)")
def _sign1(x: Tensor) -> Tensor:
    return torch.sign(x)


def _z3_cmp(a: Any, b: Any) -> Any:
    return z3.If(a > b, 1, z3.If(a < b, -1, 0))


@register.function("cmp", 1, ("c",), nan_safe=True, cost=1.2, sympy=lambda x, c: sympy.sign(x - c),
                   z3=lambda a, p, c: _z3_cmp(a[0], c(p[0])), propose=_propose_values,
                   doc="sign(x - c): -1, 0 or 1 (a three-way threshold: a depth's sign read off a fraction)")
def _cmp1(x: Tensor, c: float) -> Tensor:
    return torch.sign(x - c)


@register.function("min", 1, ("c",), cost=1.2, output="same", symbols=True, nan_safe=True,
                   sympy=lambda x, c: sympy.Min(x, c),
                   z3=lambda a, p, c: z3.If(a[0] <= c(p[0]), a[0], c(p[0])), propose=_propose_outputs,
                   doc="min(x, c)")
def _min1(x: Tensor, c: float) -> Tensor:
    return torch.clamp(x, max=c)


@register.function("max", 1, ("c",), cost=1.2, output="same", symbols=True, nan_safe=True,
                   sympy=lambda x, c: sympy.Max(x, c),
                   z3=lambda a, p, c: z3.If(a[0] >= c(p[0]), a[0], c(p[0])), propose=_propose_outputs,
                   doc="max(x, c)")
def _max1(x: Tensor, c: float) -> Tensor:
    return torch.clamp(x, min=c)


# ---------------------------------------------------------------- two arguments


def _nonzero_den(out: Tensor, den: Tensor) -> Tensor:
    # Python raises on division by zero; the DSL makes the result undefined (None).
    return out.masked_fill(den == 0, math.nan)


def _bin(name: str, impl: Callable, sym: Callable | None, z: Callable | None, doc: str, cost: float = 1.5,
         output: str = "number") -> None:
    # Comparisons, min/max and logic are meaningful on symbol codes (ordered like the symbols).
    symbols = output in ("bool", "same")
    nan_safe = name in ("add", "sub", "mul", "div", "floordiv", "mod", "min", "max")
    register.function(name, 2, cost=cost, output=output, sympy=sym, symbols=symbols, nan_safe=nan_safe,
                      z3=(lambda a, p, c: z(a[0], a[1])) if z else None, doc=doc)(impl)


_bin("add", lambda x, y: x + y, lambda x, y: x + y, lambda a, b: a + b, "x + y")
_bin("sub", lambda x, y: x - y, lambda x, y: x - y, lambda a, b: a - b, "x - y")
_bin("mul", lambda x, y: x * y, lambda x, y: x * y, lambda a, b: a * b, "x * y")
_bin("div", lambda x, y: _nonzero_den(x / y, y), lambda x, y: x / y, None, "x / y (None where y == 0)", 2.0)
_bin("floordiv", lambda x, y: _nonzero_den(torch.floor(x / y), y), lambda x, y: sympy.floor(x / y), None,
     "x // y (None where y == 0)", 2.0)
_bin("mod", lambda x, y: _nonzero_den(_remainder(x, y), y), lambda x, y: sympy.Mod(x, y), None,
     "x % y (None where y == 0)", 2.0)
_bin("min", torch.minimum, lambda x, y: sympy.Min(x, y), lambda a, b: z3.If(a <= b, a, b), "min(x, y)",
     output="same")
_bin("max", torch.maximum, lambda x, y: sympy.Max(x, y), lambda a, b: z3.If(a >= b, a, b), "max(x, y)",
     output="same")
_bin("eq", lambda x, y: x == y, lambda x, y: sympy.Eq(x, y), lambda a, b: _z3_bool(a == b), "x == y",
     output="bool")
_bin("neq", lambda x, y: x != y, lambda x, y: sympy.Ne(x, y), lambda a, b: _z3_bool(a != b), "x != y",
     output="bool")
_bin("lt", lambda x, y: x < y, lambda x, y: sympy.Lt(x, y), lambda a, b: _z3_bool(a < b), "x < y",
     output="bool")
_bin("leq", lambda x, y: x <= y, lambda x, y: sympy.Le(x, y), lambda a, b: _z3_bool(a <= b), "x <= y",
     output="bool")
_bin("gt", lambda x, y: x > y, lambda x, y: sympy.Gt(x, y), lambda a, b: _z3_bool(a > b), "x > y",
     output="bool")
_bin("geq", lambda x, y: x >= y, lambda x, y: sympy.Ge(x, y), lambda a, b: _z3_bool(a >= b), "x >= y",
     output="bool")
_bin("cmp", lambda x, y: torch.sign(x - y), lambda x, y: sympy.sign(x - y), _z3_cmp,
     "sign(x - y): -1, 0 or 1 (which of two fractions is larger, or a tie)")
_bin("and_", lambda x, y: torch.where(x != 0, y, x), None,
     lambda a, b: z3.If(_z3_truthy(a), b, a), "x and y (Python: y if x else x)", output="same", cost=1.4)
_bin("or_", lambda x, y: torch.where(x != 0, x, y), None,
     lambda a, b: z3.If(_z3_truthy(a), a, b), "x or y (Python: x if x else y)", output="same", cost=1.4)


# Two-argument functions that read one argument only. As select predicates they
# say "the key (or query) equals c", e.g. select(tokens, tokens, key_eq('a')).
def _propose_side(side: int, want: bool) -> Callable:
    def propose(xs: Sequence, ys: Sequence) -> Iterable[tuple]:
        hits = {x[side] for x, y in zip(xs, ys) if y is want}
        if len(hits) == 1:
            yield (hits.pop(),)
    return propose


for _side, _var in ((0, "key"), (1, "query")):
    for _op, _want, _rel, _zrel in (("eq", True, sympy.Eq, lambda a, b: a == b),
                                    ("neq", False, sympy.Ne, lambda a, b: a != b)):
        register.function(
            f"{_var}_{_op}", 2, ("c",), cost=1.3, output="bool", symbols=True,
            sympy=(lambda s, r: lambda x, y, c: r((x, y)[s], c))(_side, _rel),
            z3=(lambda s, r: lambda a, p, c: _z3_bool(r(a[s], c(p[0]))))(_side, _zrel),
            propose=_propose_side(_side, _want),
            doc=f"{'x' if _side == 0 else 'y'} {'==' if _op == 'eq' else '!='} c (the {_var}, in a select)",
        )((lambda s, t: lambda x, y, c: t(x if s == 0 else y, c))(
            _side, torch.eq if _op == "eq" else torch.ne))


# ---------------------------------------------------------------- lookup tables

_REL_TOL = 1e-9


def _table_output(params: tuple) -> str:
    values = [v for _, v in params[0] if v is not None]
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if all(is_number(v) for v in values):
        return "number"
    return "value"


def _check_table(params: tuple, arity: int) -> None:
    entries = params[0]
    if not isinstance(entries, tuple) or not all(isinstance(e, tuple) and len(e) == 2 for e in entries):
        raise DSLError("table(...) takes a dict literal {key: value, ...}")
    keys = [k for k, _ in entries]
    if arity == 2 and not all(isinstance(k, tuple) and len(k) == 2 for k in keys):
        raise DSLError("a 2-argument table needs (x, y) tuple keys")
    if len(set(keys)) != len(keys):
        raise DSLError("table(...) has a repeated key")


def _sorted_keys(codes: list[float]) -> tuple[Tensor, Tensor]:
    keys = torch.tensor(sorted(set(codes)), dtype=_F64)
    tol = torch.where(keys >= SYMBOL_BASE, torch.zeros_like(keys), _REL_TOL * keys.abs().clamp(min=1.0))
    return keys, tol


def _find(keys: Tensor, tol: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the key matching each element of x (within tolerance), and whether one matched."""
    n = keys.numel()
    hi = torch.searchsorted(keys, x.contiguous()).clamp(max=n - 1)
    lo = (hi - 1).clamp(min=0)
    d_hi = (keys[hi] - x).abs()
    d_lo = (keys[lo] - x).abs()
    idx = torch.where(d_lo < d_hi, lo, hi)
    found = (keys[idx] - x).abs() <= tol[idx]
    return idx, found


_DENSE_LIMIT = 4096


def _encode_table1(params: tuple, codebook: Codebook) -> tuple:
    entries = [(codebook.encode(k), codebook.encode(v)) for k, v in params[0] if k is not None]
    if not entries:
        return (None, torch.zeros(0, dtype=_F64), torch.zeros(0, dtype=_F64), torch.zeros(0, dtype=_F64))
    keys_list = [k for k, _ in entries]
    if all(k == int(k) and 0 <= k < _DENSE_LIMIT for k in keys_list):
        # Small non-negative integer keys (counts, positions, int tokens): a direct
        # index into a dense array, NaN where no entry, beats a sorted search.
        dense = torch.full((int(max(keys_list)) + 2,), math.nan, dtype=_F64)
        dense[torch.tensor(keys_list, dtype=torch.long)] = torch.tensor([v for _, v in entries], dtype=_F64)
        return (dense, None, None, None)
    entries.sort()
    keys, tol = _sorted_keys([k for k, _ in entries])
    values = torch.tensor([v for _, v in entries], dtype=_F64)
    return None, keys, tol, values


def _table1(x: Tensor, dense: Tensor | None, keys: Tensor, tol: Tensor, values: Tensor) -> Tensor:
    if dense is not None:
        n = dense.numel() - 1  # the last slot is NaN: where out-of-range inputs go
        r = torch.round(x)
        idx = r.nan_to_num(nan=n).clamp(0, n).long()
        # Same matching rule as sorted keys: within a relative 1e-9 of an integer key.
        near = (x - r).abs() <= _REL_TOL * r.abs().clamp(min=1.0)
        return dense[idx].masked_fill(~near | (r != idx), math.nan)
    if keys.numel() == 0:
        return torch.full_like(x, math.nan)
    idx, found = _find(keys, tol, x)
    return torch.where(found, values[idx], torch.tensor(math.nan, dtype=_F64))


def _encode_table2(params: tuple, codebook: Codebook) -> tuple:
    entries = [((codebook.encode(a), codebook.encode(b)), codebook.encode(v))
               for (a, b), v in params[0] if a is not None and b is not None]
    if not entries:
        empty = torch.zeros(0, dtype=_F64)
        return empty, empty, empty, empty, torch.zeros(0, 0, dtype=_F64)
    kx, tx = _sorted_keys([a for (a, _), _ in entries])
    ky, ty = _sorted_keys([b for (_, b), _ in entries])
    grid = torch.full((kx.numel(), ky.numel()), math.nan, dtype=_F64)
    ix, _ = _find(kx, tx, torch.tensor([a for (a, _), _ in entries], dtype=_F64))
    iy, _ = _find(ky, ty, torch.tensor([b for (_, b), _ in entries], dtype=_F64))
    grid[ix, iy] = torch.tensor([v for _, v in entries], dtype=_F64)
    return kx, tx, ky, ty, grid


def _table2(x: Tensor, y: Tensor, kx: Tensor, tx: Tensor, ky: Tensor, ty: Tensor, grid: Tensor) -> Tensor:
    if grid.numel() == 0:
        return torch.full(torch.broadcast_shapes(x.shape, y.shape), math.nan, dtype=_F64)
    x, y = torch.broadcast_tensors(x, y)
    ix, fx = _find(kx, tx, x)
    iy, fy = _find(ky, ty, y)
    return torch.where(fx & fy, grid[ix, iy], torch.tensor(math.nan, dtype=_F64))


def _z3_table(arity: int) -> Callable:
    def encode(a: tuple, p: tuple, code: Callable) -> Any:
        # If(x == key, value, ...) plus "defined": the input is one of the keys.
        out: Any = z3.RealVal(0)
        hits = []
        for key, value in reversed(p[0]):
            keys = key if arity == 2 else (key,)
            if value is None or any(k is None for k in keys):
                continue
            cond = z3.And(*[arg == code(k) for arg, k in zip(a, keys)])
            out = z3.If(cond, code(value), out)
            hits.append(cond)
        return out, z3.Or(*hits) if hits else z3.BoolVal(False)

    return encode


def z3_num(v: float) -> Any:
    """An exact z3 real for a float64 (its binary value as a fraction)."""
    f = Fraction(v)
    return z3.RealVal(f.numerator) if f.denominator == 1 else z3.Q(f.numerator, f.denominator)


register.function("table", 1, ("entries",), cost=4.0, symbols=True, nan_safe=True, output=_table_output,
                  encode_params=_encode_table1,
                  check_params=lambda p: _check_table(p, 1), z3=_z3_table(1), fit=False,
                  doc="lookup table {x: value}; None for a key not in the table")(_table1)
register.function("table", 2, ("entries",), cost=5.0, symbols=True, nan_safe=True, output=_table_output,
                  encode_params=_encode_table2,
                  check_params=lambda p: _check_table(p, 2), z3=_z3_table(2), fit=False,
                  doc="lookup table {(x, y): value}; None for a key not in the table")(_table2)


# ---------------------------------------------------------------- sympy expressions


def _is_boolean(expr: Any) -> bool:
    return isinstance(expr, (sympy.logic.boolalg.Boolean, sympy.core.relational.Relational))


def _expr_output(params: tuple) -> str:
    return "bool" if _is_boolean(params[0]) else "number"


def _check_expr(params: tuple, arity: int) -> None:
    expr = params[0]
    if not isinstance(expr, sympy.Basic):
        raise DSLError("an expression function needs a sympy expression")
    allowed = {X} if arity == 1 else {X, Y}
    extra = expr.free_symbols - allowed
    if extra:
        names = ", ".join(sorted(str(s) for s in extra))
        raise DSLError(f"expression uses {names}; a {arity}-argument function may use only "
                       f"{' and '.join(sorted(str(s) for s in allowed))}")
    to_torch(expr)  # raises on unsupported constructs


def to_torch(expr: Any) -> Callable[..., Tensor]:
    """Compile a sympy expression in x (and y) into a torch closure ``f(x[, y])`` (no eval/exec).

    Arguments may have different (broadcastable) shapes; constants stay Python
    scalars inside the expression, so ``q == k + 1`` on ``[B, 1, K]`` keys and
    ``[B, Q, 1]`` queries costs one broadcast comparison.
    """
    f = _compile_expr(expr)

    def run(x: Tensor, y: Tensor | None = None) -> Tensor:
        out = f(x, y)
        if isinstance(out, Tensor):
            return out
        shape = x.shape if y is None else torch.broadcast_shapes(x.shape, y.shape)
        return torch.full(shape, out, dtype=torch.bool if isinstance(out, bool) else _F64)

    return run


def _minimum(a: Any, b: Any) -> Any:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.minimum(a, b)
    return torch.clamp(a, max=b) if isinstance(a, Tensor) else torch.clamp(b, max=a)


def _maximum(a: Any, b: Any) -> Any:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.maximum(a, b)
    return torch.clamp(a, min=b) if isinstance(a, Tensor) else torch.clamp(b, min=a)


def _compile_expr(expr: Any) -> Callable[..., Any]:
    """sympy -> closure over tensors; pure constants evaluate to Python scalars."""
    if isinstance(expr, sympy.Symbol):
        if expr == X:
            return lambda x, y=None: x
        if expr == Y:
            return lambda x, y=None: y
        raise DSLError(f"unknown symbol {expr} in an expression")
    if isinstance(expr, sympy.logic.boolalg.BooleanTrue):
        return lambda x, y=None: True
    if isinstance(expr, sympy.logic.boolalg.BooleanFalse):
        return lambda x, y=None: False
    if expr.is_Number:
        v = float(expr)
        return lambda x, y=None: v
    args = [_compile_expr(a) for a in expr.args]
    if isinstance(expr, sympy.Add):
        def add(x: Tensor, y: Tensor | None = None) -> Any:
            out = args[0](x, y)
            for f in args[1:]:
                out = out + f(x, y)
            return out
        return add
    if isinstance(expr, sympy.Mul):
        # p/q * rest is computed as (p * rest) / q, and x * y**-1 as x / y, so that
        # results match Python's float arithmetic for the common forms (e.g. i / 5).
        num, den = [], []
        coeff = sympy.Integer(1)
        for a in expr.args:
            if a.is_Rational:
                coeff = coeff * a
            elif isinstance(a, sympy.Pow) and a.exp.is_Integer and a.exp < 0:
                den.append(_compile_expr(a.base ** -a.exp))
            else:
                num.append(_compile_expr(a))
        p, q = float(sympy.Rational(coeff).p), float(sympy.Rational(coeff).q)

        def mul(x: Tensor, y: Tensor | None = None) -> Any:
            out = num[0](x, y) if num else 1.0
            for f in num[1:]:
                out = out * f(x, y)
            if p != 1:
                out = p * out
            for f in den:
                out = out / f(x, y)
            return out / q if q != 1 else out
        return mul
    if isinstance(expr, sympy.Pow):
        base, exp = args
        return lambda x, y=None: torch.pow(base(x, y), exp(x, y))
    if isinstance(expr, sympy.Mod):
        a, b = args
        return lambda x, y=None: _remainder(a(x, y), b(x, y))
    unary = {sympy.floor: torch.floor, sympy.ceiling: torch.ceil, sympy.Abs: torch.abs}
    for cls, fn in unary.items():
        if isinstance(expr, cls):
            return lambda x, y=None, f=fn, a=args[0]: f(a(x, y))
    if isinstance(expr, (sympy.Min, sympy.Max)):
        red = _minimum if isinstance(expr, sympy.Min) else _maximum

        def minmax(x: Tensor, y: Tensor | None = None) -> Any:
            out = args[0](x, y)
            for f in args[1:]:
                out = red(out, f(x, y))
            return out
        return minmax
    rel = {sympy.Eq: torch.eq, sympy.Ne: torch.ne, sympy.Lt: torch.lt, sympy.Le: torch.le,
           sympy.Gt: torch.gt, sympy.Ge: torch.ge}
    for cls, fn in rel.items():
        if isinstance(expr, cls):
            return lambda x, y=None, f=fn, a=args[0], b=args[1]: f(a(x, y), b(x, y))
    if isinstance(expr, sympy.Not):
        return lambda x, y=None, a=args[0]: a(x, y) == 0
    if isinstance(expr, (sympy.And, sympy.Or)):
        is_and = isinstance(expr, sympy.And)

        def logic(x: Tensor, y: Tensor | None = None) -> Any:
            out = args[0](x, y) != 0
            for f in args[1:]:
                out = (out & (f(x, y) != 0)) if is_and else (out | (f(x, y) != 0))
            return out
        return logic
    raise DSLError(f"unsupported construct {type(expr).__name__} in an expression")


def to_z3(expr: Any, x: Any, y: Any = None) -> Any:
    """Encode a sympy expression over z3 reals (booleans as 0/1)."""
    def num(e: Any) -> Any:
        return _z3_expr(e, x, y)
    out = num(expr)
    return _z3_bool(out) if z3.is_bool(out) else out


def _z3_expr(e: Any, x: Any, y: Any) -> Any:
    if e == X:
        return x
    if e == Y:
        return y
    if isinstance(e, sympy.logic.boolalg.BooleanTrue):
        return z3.BoolVal(True)
    if isinstance(e, sympy.logic.boolalg.BooleanFalse):
        return z3.BoolVal(False)
    if e.is_Number:
        if e.is_Float:
            return z3_num(float(e))
        r = sympy.Rational(e)
        return z3.RealVal(r.p) if r.q == 1 else z3.Q(r.p, r.q)
    a = [_z3_expr(t, x, y) for t in e.args]
    logical = isinstance(e, (sympy.And, sympy.Or, sympy.Not))
    a = [_z3_bool(t) if z3.is_bool(t) and not logical else t for t in a]
    if isinstance(e, sympy.Add):
        return z3.Sum(*a)
    if isinstance(e, sympy.Mul):
        out = a[0]
        for t in a[1:]:
            out = out * t
        return out
    if isinstance(e, sympy.Pow):
        if e.exp.is_Integer:
            n = int(e.exp)
            base = a[0]
            out = z3.RealVal(1)
            for _ in range(abs(n)):
                out = out * base
            return out if n >= 0 else 1 / out
        raise EvaluationError("z3 cannot encode non-integer powers")
    if isinstance(e, sympy.Mod):
        return a[0] - a[1] * _z3_floor(a[0] / a[1])
    if isinstance(e, sympy.floor):
        return _z3_floor(a[0])
    if isinstance(e, sympy.ceiling):
        return -_z3_floor(-a[0])
    if isinstance(e, sympy.Abs):
        return z3.If(a[0] >= 0, a[0], -a[0])
    if isinstance(e, sympy.Min):
        out = a[0]
        for t in a[1:]:
            out = z3.If(out <= t, out, t)
        return out
    if isinstance(e, sympy.Max):
        out = a[0]
        for t in a[1:]:
            out = z3.If(out >= t, out, t)
        return out
    rel = {sympy.Eq: lambda p, q: p == q, sympy.Ne: lambda p, q: p != q, sympy.Lt: lambda p, q: p < q,
           sympy.Le: lambda p, q: p <= q, sympy.Gt: lambda p, q: p > q, sympy.Ge: lambda p, q: p >= q}
    for cls, fn in rel.items():
        if isinstance(e, cls):
            return fn(a[0], a[1])
    truth = [t if z3.is_bool(t) else t != 0 for t in a]
    if isinstance(e, sympy.Not):
        return z3.Not(truth[0])
    if isinstance(e, sympy.And):
        return z3.And(*truth)
    if isinstance(e, sympy.Or):
        return z3.Or(*truth)
    raise EvaluationError(f"z3 cannot encode {type(e).__name__}")


def _expr_family(arity: int) -> None:
    register.function(
        "expr", arity, ("expr",), cost=2.0, output=_expr_output, nan_safe=True,
        encode_params=lambda p, cb: (to_torch(p[0]),), check_params=lambda p: _check_expr(p, arity),
        sympy=lambda *a: a[-1].xreplace({X: a[0], **({Y: a[1]} if arity == 2 else {})}),
        z3=lambda a, p, c: to_z3(p[0], *a), fit=False,
        doc="an arithmetic/boolean expression in " + ("x" if arity == 1 else "x and y"),
    )(lambda *a: a[-1](*a[:-1]))


_expr_family(1)
_expr_family(2)
