"""Canonicalisation: arithmetic in maps, folded and simplified with sympy.

Two programs that compute the same thing through different chains of
position-wise arithmetic should print the same, so the synthesizer does not
score both and a reader sees the simplest form. Every function family that has
a sympy form (``add(k)`` is ``x + k``, ``mod(k)`` is ``Mod(x, k)``, ...) can take
part:

* :func:`compose` turns ``f`` after ``g`` into one function: the sympy form of
  ``f`` with ``x`` replaced by the form of ``g``, simplified, and written back as a
  named family when one matches exactly (``add(1)`` after ``add(1)`` is
  ``add(2)``), else as an expression (``x + 1`` after ``2*x`` is ``2*x + 1``);
* :func:`canonicalize` folds every chain ``map(f, map(g, t))`` whose intermediate
  variable is read only by the outer map (and is not the output), and rewrites
  each map's function into its simplest form.

Folding removes intermediate variables, so it is not applied to programs whose
variables carry a correspondence (e.g. ground truth from ``dsl.from_rasp``); the
parser applies :func:`compose` only to *anonymous* nested maps, which nothing
else can refer to.

Composition multiplies degrees (``x**16`` after ``x**16`` is ``x**256``) and sympy's
simplification of a large expression can take minutes, so a composition over the limits
of ``dsl.limits`` is not made (the two maps stay two), and :func:`canonicalize` as a
whole runs under a wall-clock limit, past which the program is returned unchanged.
"""

from __future__ import annotations

from typing import Any

import sympy
import torch

from mechsynth.dsl import limits, registry
from mechsynth.dsl.errors import DSLError, LimitError
from mechsynth.dsl.functions import to_torch
from mechsynth.dsl.interpret import compile_fn
from mechsynth.dsl.printer import X, Y
from mechsynth.dsl.program import Fn, Node, Program
from mechsynth.dsl.values import Codebook


def sympy_form(fn: Fn) -> Any | None:
    """The sympy expression of ``fn`` in x (and y), or None when the family has none."""
    fam = fn.family
    if fam.sympy is None:
        return None
    args = (X,) if fn.arity == 1 else (X, Y)
    if any(not _is_sympy_param(p) for p in fn.params):
        return None
    try:
        return fam.sympy(*args, *fn.params)
    except (TypeError, ValueError):
        return None


def _is_sympy_param(p: Any) -> bool:
    return isinstance(p, sympy.Basic) or (isinstance(p, (int, float)) and not isinstance(p, bool))


_SAMPLES = (0.0, 1.0, 2.0, 3.0, 5.0, -1.0, -2.0, 7.0, 0.5)


def normal_form(expr: Any) -> Any:
    """sympy's expanded form for arithmetic (so 2*(x + 1) and 2*x + 2 print alike)."""
    return expr if _is_boolean(expr) else sympy.expand(expr)


def _samples(arity: int) -> list[torch.Tensor]:
    if arity == 1:
        return [torch.tensor(_SAMPLES, dtype=torch.float64)]
    grid = [(a, b) for a in _SAMPLES for b in _SAMPLES[:5]]
    return [torch.tensor([a for a, _ in grid], dtype=torch.float64),
            torch.tensor([b for _, b in grid], dtype=torch.float64)]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((torch.isclose(a, b, rtol=1e-9, atol=1e-9) | (a.isnan() & b.isnan())).all())


def _as_family(expr: Any, arity: int) -> Fn:
    """The cheapest registered family whose sympy form equals ``expr``, else an ``expr`` function.

    Candidates (with parameters guessed by each family's ``propose`` from sample values of
    ``expr``) are first compared numerically on sample points with their torch
    implementations, and only the survivors are confirmed symbolically.
    """
    expr = normal_form(expr)
    if arity == 1 and expr == X:
        return Fn("identity", 1, ())
    args = _samples(arity)
    try:
        target = to_torch(expr)(*args).to(torch.float64)
    except DSLError:
        return Fn("expr", arity, (expr,))
    xs = [_exact(v) for v in args[0].tolist()] if arity == 1 else []
    ys = [None if v != v else _exact(v) for v in target.tolist()] if arity == 1 else []
    pairs = [(a, b) for a, b in zip(xs, ys) if b is not None]
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    symbols = (X,) if arity == 1 else (X, Y)
    candidates = []
    for fam in sorted(registry.functions(arity), key=lambda f: f.cost):
        if fam.sympy is None or fam.name in ("expr", "identity"):
            continue
        guesses = [()] if not fam.params else (list(fam.propose(xs, ys)) if fam.propose and xs else [])
        for params in guesses:
            if not all(_is_sympy_param(p) for p in params):
                continue
            fn = Fn(fam.name, arity, tuple(params))
            try:
                if fam.check_params is not None:
                    fam.check_params(fn.params)
                if not _close(compile_fn(fn, Codebook())(*args).to(torch.float64), target):
                    continue
            except (DSLError, RuntimeError):
                continue
            form = normal_form(fam.sympy(*symbols, *params))
            if _is_boolean(form) != _is_boolean(expr):
                continue
            if form == expr or (not _is_boolean(form) and sympy.expand(form - expr) == 0):
                candidates.append((fam.cost, fam.name, fn))
    if candidates:
        return min(candidates, key=lambda t: (t[0], t[1]))[2]
    return Fn("expr", arity, (expr,))


def _exact(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def _is_boolean(expr: Any) -> bool:
    return isinstance(expr, (sympy.logic.boolalg.Boolean, sympy.core.relational.Relational))


def compose(outer: Fn, inner: Fn) -> Fn | None:
    """``outer`` after ``inner`` (both 1-argument) as one function, or None when either lacks a sympy form."""
    if outer.arity != 1 or inner.arity != 1:
        return None
    f, g = sympy_form(outer), sympy_form(inner)
    if f is None or g is None:
        return None
    if _is_boolean(g):
        return None  # a bool fed on (to arithmetic or a comparison): keep the two steps readable
    try:
        composed = f.xreplace({X: g})
        limits.check_expression(composed)
        return _as_family(composed, 1)
    except LimitError:  # too large to simplify: keep the two steps
        return None
    except (TypeError, ValueError):  # sympy refuses some compositions (e.g. a comparison of a bool)
        return None


def simplify_fn(fn: Fn) -> Fn:
    """The simplest equal form of ``fn`` (a named family when one matches its sympy form)."""
    form = sympy_form(fn)
    if form is None:
        return fn
    return _as_family(form, fn.arity)


def canonicalize(program: Program) -> Program:
    """Fold single-use map chains and simplify map functions (see the module docstring)."""
    try:
        with limits.time_limit(limits.READ_SECONDS, "canonicalising the program"):
            return _canonicalize(program)
    except LimitError:
        return program  # a correct, only unsimplified, program


def _canonicalize(program: Program) -> Program:
    nodes: dict[str, Node] = dict(program.assignments)
    order = [n for n, _ in program.assignments]
    changed = True
    while changed:
        changed = False
        for name in order:
            node = nodes[name]
            if node.op != "map":
                continue
            inner_name = node.args[1]
            inner = nodes.get(inner_name)
            if inner is None or inner.op != "map" or inner_name == program.output:
                continue
            readers = [n for n in order if inner_name in nodes[n].inputs]
            if readers != [name] or inner.encoding != node.encoding:
                continue
            composed = compose(node.args[0], inner.args[0])
            if composed is None:
                continue
            nodes[name] = Node("map", (composed, inner.args[1]), node.encoding)
            order.remove(inner_name)
            del nodes[inner_name]
            changed = True
            break
    out = []
    for name in order:
        node = nodes[name]
        if node.op in ("map", "seqmap") and isinstance(node.args[0], Fn):
            node = Node(node.op, (simplify_fn(node.args[0]), *node.args[1:]), node.encoding)
        out.append((name, node))
    return Program(tuple(out), program.output)
