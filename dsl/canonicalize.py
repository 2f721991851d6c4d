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
"""

from __future__ import annotations

from typing import Any

import sympy

from dsl import registry
from dsl.printer import X, Y
from dsl.program import Fn, Node, Program


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


def _as_family(expr: Any, arity: int) -> Fn:
    """The cheapest registered family whose sympy form equals ``expr``, else an ``expr`` function.

    Parameters are guessed with each family's ``propose`` from the values of ``expr`` at a
    few sample points, then the match is confirmed symbolically.
    """
    expr = sympy.simplify(expr) if expr.free_symbols else expr
    if arity == 1 and expr == X:
        return Fn("identity", 1, ())
    if arity == 1 and not _is_boolean(expr):
        xs = [0, 1, 2, 3, 5, -1, -2, 7]
        ys = []
        for v in xs:
            y = expr.subs(X, v)
            ys.append(int(y) if y.is_Integer else (float(y) if y.is_number and y.is_finite else None))
        pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    else:
        xs, ys = [], []
    candidates = []
    for fam in registry.functions(arity):
        if fam.sympy is None or fam.name in ("expr", "identity"):
            continue
        guesses = [()] if not fam.params else (list(fam.propose(xs, ys)) if fam.propose and xs else [])
        for params in guesses:
            if not all(_is_sympy_param(p) for p in params):
                continue
            form = fam.sympy(*((X,) if arity == 1 else (X, Y)), *params)
            if _is_boolean(form) != _is_boolean(expr):
                continue
            same = form == expr if _is_boolean(form) else sympy.simplify(form - expr) == 0
            if same:
                candidates.append((fam.cost, fam.name, tuple(params)))
    if candidates:
        _, name, params = min(candidates, key=lambda t: (t[0], t[1]))
        return Fn(name, arity, params)
    return Fn("expr", arity, (expr,))


def _is_boolean(expr: Any) -> bool:
    return isinstance(expr, (sympy.logic.boolalg.Boolean, sympy.core.relational.Relational))


def compose(outer: Fn, inner: Fn) -> Fn | None:
    """``outer`` after ``inner`` (both 1-argument) as one function, or None when either lacks a sympy form."""
    if outer.arity != 1 or inner.arity != 1:
        return None
    f, g = sympy_form(outer), sympy_form(inner)
    if f is None or g is None:
        return None
    if _is_boolean(g) and not _is_boolean(f):
        return None  # a bool fed to arithmetic: keep the two steps readable
    return _as_family(f.xreplace({X: g}), 1)


def simplify_fn(fn: Fn) -> Fn:
    """The simplest equal form of ``fn`` (a named family when one matches its sympy form)."""
    form = sympy_form(fn)
    if form is None:
        return fn
    return _as_family(form, fn.arity)


def canonicalize(program: Program) -> Program:
    """Fold single-use map chains and simplify map functions (see the module docstring)."""
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
