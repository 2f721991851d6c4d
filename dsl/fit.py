"""Fitting: an arbitrary function on a finite domain, recognised as a DSL function.

RASP programs hold Python lambdas, which the DSL cannot (and must not) read as
source. Instead a lambda is *tabulated* on the finite set of values its inputs
take (``dsl.value_sets``), and the table is then explained by the simplest DSL
function that reproduces it exactly on that domain:

1. every registered family offered for fitting, cheapest first, with parameters
   guessed by the family's ``propose`` from the data (``add(k)``: ``k = y - x``);
2. closed forms found by solving for coefficients: ``a*x + b`` and
   ``a*x + b*y + c`` with exact rational coefficients; modular forms
   ``Mod(a*x + c, m)`` and ``Mod(a*x + b*y + c, m)`` with small integer
   coefficients and the modulus read off the outputs (``m`` = largest output + 1:
   what a network trained on modular arithmetic computes); and the predicates
   ``x OP c``, ``y OP c`` and ``y == x + c`` for two-argument boolean functions;
3. otherwise the lookup table itself.

"Exactly" means equal values of the same kind (a bool for a bool, a non-bool
number for a number, equal symbols), with floats equal to a relative 1e-9 (the
float rounding of a different but equal formula). Points where the function
raised are "don't care".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import sympy

from mechsynth.dsl import registry
from mechsynth.dsl.errors import DSLError, EvaluationError
from mechsynth.dsl.printer import X, Y
from mechsynth.dsl.program import Fn
from mechsynth.dsl.value_sets import apply
from mechsynth.dsl.values import Codebook, is_number

_TOL = 1e-9
_MISSING = object()  # the function raised: any value is acceptable


def tabulate(f: Callable[..., Any], domain: Sequence[tuple]) -> list:
    """``f(*args)`` for each argument tuple; ``_MISSING`` where it raises (as RASP would at run time)."""
    out = []
    for args in domain:
        try:
            out.append(f(*args))
        except Exception:  # noqa: BLE001 - a user lambda may raise anything on a value it never sees
            out.append(_MISSING)
    return out


def same_value(got: Any, want: Any) -> bool:
    """Equal as the DSL promises: same kind (bool / number / other) and equal (floats to 1e-9)."""
    if want is _MISSING:
        return True
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and want == got
    if is_number(want) and is_number(got):
        return math.isclose(float(got), float(want), rel_tol=_TOL, abs_tol=_TOL)
    return type(got) is type(want) and got == want


def fits(fn: Fn, domain: Sequence[tuple], outputs: Sequence[Any], codebook: Codebook,
         arg_dtypes: Sequence[str] = ()) -> bool:
    """Whether ``fn`` reproduces ``outputs`` on ``domain``."""
    got = _outputs_of(fn, domain, codebook, arg_dtypes)
    return got is not None and all(same_value(g, w) for g, w in zip(got, outputs))


def _outputs_of(fn: Fn, domain: Sequence[tuple], codebook: Codebook,
                arg_dtypes: Sequence[str]) -> list | None:
    """``fn``'s values on the ``domain`` points, None where it does not evaluate on them."""
    try:
        return apply(fn, list(zip(*domain)), codebook, arg_dtypes)
    except (DSLError, EvaluationError, RuntimeError, TypeError, ValueError):
        return None


def fit_function(f: Callable[..., Any], domains: Sequence[Iterable[Any]], *, arg_dtypes: Sequence[str] = (),
                 table_only: bool = False) -> Fn:
    """The simplest DSL function equal to python function ``f`` on the product of ``domains``."""
    arity = len(domains)
    domain = list(itertools.product(*[sorted(set(d) - {None}, key=_key) for d in domains]))
    outputs = tabulate(f, domain)
    return fit_table(domain, outputs, arity, arg_dtypes=arg_dtypes, table_only=table_only)


def agreement_on(fn: Fn, domain: Sequence[tuple], outputs: Sequence[Any], codebook: Codebook,
                 arg_dtypes: Sequence[str] = ()) -> float:
    """The share of ``domain`` points (don't-cares aside) on which ``fn`` gives the output."""
    got = _outputs_of(fn, domain, codebook, arg_dtypes)
    if got is None:
        return 0.0
    scored = [same_value(g, w) for g, w in zip(got, outputs) if w is not _MISSING]
    return sum(scored) / len(scored) if scored else 0.0


def fit_table(domain: Sequence[tuple], outputs: Sequence[Any], arity: int, *, arg_dtypes: Sequence[str] = (),
              table_only: bool = False, min_agreement: float = 1.0) -> Fn:
    """The simplest DSL function mapping each ``domain`` tuple to its output (``_MISSING`` = don't care).

    With ``min_agreement`` below 1 the outputs are a trained network's, which errs on a few
    points: a closed form agreeing with at least that share of the points is returned
    instead of the table (a modular form's offset is then the majority one).
    """
    known = [(d, o) for d, o in zip(domain, outputs) if o is not _MISSING]
    values = [v for d, o in known for v in (*d, o)]
    codebook = Codebook.of(values)
    if not table_only and known:
        for fn in _candidates(known, arity):
            if fits(fn, domain, outputs, codebook, arg_dtypes):
                return fn
        if {type(o) for _, o in known} == {int} and {o for _, o in known} <= {0, 1}:
            # 0/1 outputs (a binary readout's labels) that a predicate reproduces are that
            # predicate: every check compares True with 1 and False with 0 as equal.
            flags = [o if o is _MISSING else bool(o) for o in outputs]
            as_bool = [(d, bool(o)) for d, o in known]
            bool_codebook = Codebook.of([v for d, o in as_bool for v in (*d, o)])
            for fn in _candidates(as_bool, arity):
                if fits(fn, domain, flags, bool_codebook, arg_dtypes):
                    return fn
        if min_agreement < 1.0:
            for fn in _modular_forms(known, arity, min_agreement):
                if agreement_on(fn, domain, outputs, codebook, arg_dtypes) >= min_agreement:
                    return fn
    entries = tuple((d[0] if arity == 1 else d, o) for d, o in known)
    entries = tuple(sorted(entries, key=lambda e: _key(e[0])))
    return Fn("table", arity, (entries,))


def _key(v: Any) -> tuple:
    from mechsynth.dsl.values import _sort_key

    return _sort_key(v)


def _candidates(known: Sequence[tuple], arity: int) -> Iterable[Fn]:
    xs = [d[0] if arity == 1 else d for d, _ in known]
    ys = [o for _, o in known]
    families = sorted((f for f in registry.functions(arity) if f.fit), key=lambda f: f.cost)
    for fam in families:
        if not fam.params:
            yield Fn(fam.name, arity, ())
            continue
        if fam.propose is None:
            continue
        seen = set()
        for params in fam.propose(xs, ys):
            params = tuple(params)
            if params in seen:
                continue
            seen.add(params)
            try:
                if fam.check_params is not None:
                    fam.check_params(params)
            except DSLError:
                continue
            yield Fn(fam.name, arity, params)
    yield from _closed_forms(known, arity)


def _rational(v: float) -> sympy.Rational:
    # The simplest fraction within float precision: 0.2 -> 1/5 (so x/5 is computed as Python does).
    return sympy.Rational(Fraction(v).limit_denominator(10**6))


def _closed_forms(known: Sequence[tuple], arity: int) -> Iterable[Fn]:
    nums = [(d, o) for d, o in known if all(is_number(v) and not isinstance(v, bool) for v in d)]
    if len(nums) != len(known) or not nums:
        return
    outs = [o for _, o in nums]
    if all(isinstance(o, bool) for o in outs):
        if arity == 2:
            yield from _predicates(nums)
        return
    if not all(is_number(o) and not isinstance(o, bool) for o in outs):
        return
    if arity == 1:
        pts = sorted({(float(d[0]), float(o)) for d, o in nums})
        if len(pts) >= 2 and pts[0][0] != pts[-1][0]:
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            a = _rational((y1 - y0) / (x1 - x0))
            b = _rational(y0 - float(a) * x0)
            yield Fn("expr", 1, (a * X + b,))
    else:
        import numpy as np

        rows = np.array([[float(d[0]), float(d[1]), 1.0] for d, _ in nums])
        rhs = np.array([float(o) for o in outs])
        if np.linalg.matrix_rank(rows) == 3:
            coef, *_ = np.linalg.lstsq(rows, rhs, rcond=None)
            a, b, c = (_rational(float(v)) for v in coef)
            yield Fn("expr", 2, (a * X + b * Y + c,))
    yield from _modular_forms(nums, arity)


MOD_COEFFICIENTS = (1, -1, 2, -2, 3, -3)  # the coefficients of x (and y) a modular closed form may have


def _modular_forms(nums: Sequence[tuple], arity: int, min_agreement: float = 1.0) -> Iterable[Fn]:
    """``Mod(a*x + c, m)`` / ``Mod(a*x + b*y + c, m)`` agreeing with integer data, smallest ``|a|+|b|`` first.

    The modulus is the largest output + 1 (the outputs of a modular function cover its
    residues on any sizeable domain); for each coefficient choice the offset ``c`` is the
    most frequent ``out - a*x - b*y`` mod ``m``, and the form is yielded when it agrees with
    at least ``min_agreement`` of the points (every point, by default; the caller checks).
    """
    if not nums or not all(is_number(v) and float(v) == int(v) for d, o in nums for v in (*d, o)):
        return
    outs = [int(o) for _, o in nums]
    if min(outs) < 0 or len(set(outs)) < 3:
        return
    m = max(outs) + 1
    points = [[int(v) for v in d] for d, _ in nums]
    pairs = [(a,) for a in MOD_COEFFICIENTS] if arity == 1 else sorted(
        itertools.product(MOD_COEFFICIENTS, repeat=2),
        key=lambda ab: (abs(ab[0]) + abs(ab[1]), ab[0] < 0, ab[1] < 0),
    )
    for coefs in pairs:
        offsets: dict[int, int] = {}
        for point, out in zip(points, outs):
            c = (out - sum(k * v for k, v in zip(coefs, point))) % m
            offsets[c] = offsets.get(c, 0) + 1
        c, hits = max(offsets.items(), key=lambda t: (t[1], -t[0]))
        if hits >= min_agreement * len(outs):
            linear = sum(k * s for k, s in zip(coefs, (X, Y)[:arity])) + c
            yield Fn("expr", arity, (sympy.Mod(linear, m),))
            return


def _predicates(nums: Sequence[tuple]) -> Iterable[Fn]:
    xs = sorted({d[0] for d, _ in nums})
    ys = sorted({d[1] for d, _ in nums})
    rels = (sympy.Eq, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge, sympy.Ne)
    for var, values in ((X, xs), (Y, ys)):
        for rel in rels:
            for c in values:
                yield Fn("expr", 2, (rel(var, _rational(float(c))),))
    diffs = sorted({d[1] - d[0] for d, o in nums if o is True})
    for c in diffs[:1] if len(diffs) == 1 else []:
        yield Fn("expr", 2, (sympy.Eq(Y, X + _rational(float(c))),))
