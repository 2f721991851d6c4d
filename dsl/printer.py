"""Printing: programs to canonical text.

The text form is a restricted Python subset that :func:`dsl.parse` reads back
exactly (``parse(str(p)) == p``). One assignment per line, each a single
primitive call whose arguments are variable names, functions and literals::

    opp = seqmap(sub, length, indices)
    opp_1 = map(add(-1), opp)
    flip = select(indices, opp_1, EQ)
    reverse = aggregate(flip, tokens)

Conventions:

* ``numerical(...)`` around a call marks a numerically encoded SOp (categorical is
  the default and is not written);
* optional primitive parameters are written as keywords, and only when they differ
  from their default (``aggregate(s, x, default=0)``);
* functions are written ``name`` (no parameters), ``name(p, ...)``,
  ``table({key: value, ...})`` (keys of 2-argument tables are ``(x, y)`` tuples), or
  as an arithmetic/boolean expression in ``x`` (map), ``x, y`` (seqmap) or ``k, q``
  (select predicates: key and query), e.g. ``2*x + 1``, ``q == k + 1``;
* floats print with ``repr`` so they read back bit-for-bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import sympy
from sympy.printing.str import StrPrinter

if TYPE_CHECKING:
    from mechsynth.dsl.program import Fn, Node, Program

X, Y = sympy.symbols("x y")
K, Q = sympy.symbols("k q")


def format_value(value: Any) -> str:
    """A literal as text the parser reads back to an equal value of the same type."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value!r} cannot be written in the DSL")
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / torch scalars
        return format_value(value.item())
    raise ValueError(f"{value!r} of type {type(value).__name__} cannot be written in the DSL")


class _ExprPrinter(StrPrinter):
    """sympy's str printer with exact floats and Python operators for logic."""

    def _print_Float(self, expr: Any) -> str:
        return repr(float(expr))

    def _print_Relational(self, expr: Any) -> str:
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        return f"{self._print(expr.lhs)} {ops[expr.rel_op]} {self._print(expr.rhs)}"

    def _print_BooleanTrue(self, expr: Any) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: Any) -> str:
        return "False"

    def _print_Not(self, expr: Any) -> str:
        return f"~({self._print(expr.args[0])})"

    def _logic(self, expr: Any, op: str) -> str:
        args = sorted(expr.args, key=sympy.default_sort_key)
        return f" {op} ".join(f"({self._print(a)})" for a in args)

    def _print_And(self, expr: Any) -> str:
        return self._logic(expr, "&")

    def _print_Or(self, expr: Any) -> str:
        return self._logic(expr, "|")


_PRINTER = _ExprPrinter({"order": "lex"})


def format_expr(expr: Any, predicate: bool = False) -> str:
    """A sympy expression in ``x, y`` as DSL text (``k, q`` for predicates)."""
    if predicate:
        expr = expr.xreplace({X: K, Y: Q})
    return _PRINTER.doprint(expr)


def format_fn(fn: Fn, predicate: bool = False) -> str:
    if fn.name == "expr":
        return format_expr(fn.params[0], predicate)
    if fn.name == "table":
        items = ", ".join(f"{format_value(k)}: {format_value(v)}" for k, v in fn.params[0])
        return f"table({{{items}}})"
    if not fn.params:
        return fn.name
    return f"{fn.name}({', '.join(format_value(p) for p in fn.params)})"


def format_node(node: Node) -> str:
    parts = []
    for a, p in zip(node.args, node.primitive.signature):
        if p.kind in ("sop", "selector"):
            text = a
        elif p.kind == "pred" and isinstance(a, str):
            text = a  # a comparison name
        elif p.kind == "direction":
            text = a.name  # ARGMIN / ARGMAX
        elif p.kind in ("fn1", "fn2", "pred"):
            text = format_fn(a, predicate=p.kind == "pred")
        else:
            text = format_value(a)
        if p.optional:
            if a == p.default and type(a) is type(p.default):
                continue
            text = f"{p.name}={text}"
        parts.append(text)
    call = f"{node.op}({', '.join(parts)})"
    return f"numerical({call})" if node.encoding == "numerical" else call


def format_program(program: Program) -> str:
    return "\n".join(f"{name} = {format_node(node)}" for name, node in program.assignments)
