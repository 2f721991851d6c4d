"""Limits on untrusted text: bounded work for every expression a file, an LLM or a store hands us.

Program text is data, never code, but data can still be hostile. Thirty bytes,
``map(x + 9**9**9, tokens)``, ask sympy for an integer of 370 million digits (hours of
work inside one C call that no signal interrupts); ``x ** 99999999999`` sends the z3
encoder round a loop that many times; a 3,000-term ``x+x+...`` overflows Python's
recursion limit; ``1e308 * 10`` is infinity. None of these is a program anyone means.

So reading a program is bounded *before* any costly step, by the shape of the text:

* :data:`MAX_PROGRAM_CHARS` characters of text and :data:`MAX_SYNTAX_DEPTH` levels of
  syntax nesting (checked on the parsed tree, before anything recurses over it);
* :data:`MAX_EXPRESSION_NODES` syntax nodes in one function expression;
* every number, written or folded from constants, at most :data:`MAX_MAGNITUDE` in size
  (2**53: beyond it float64, the interpreter's number type, no longer holds integers
  exactly, so no meaningful DSL constant is larger);
* an exponent must be a number of size at most :data:`MAX_EXPONENT` (or the base a
  number, ``2**x``), and the polynomial degree of an expression, as sympy would expand
  it, at most :data:`MAX_DEGREE` (this also bounds the composition of nested maps).

Each exceeded limit is a :class:`~dsl.errors.LimitError` (a ``ParseError``): one line
naming the limit. Behind these structural bounds, :func:`time_limit` puts a wall-clock
ceiling on a third-party call (sympy's simplification) that could still be slow: in the
main thread it interrupts Python code after the given seconds; elsewhere it cannot
(signals reach the main thread only) and the structural bounds alone hold.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sympy

from mechsynth.dsl.errors import LimitError

MAX_PROGRAM_CHARS = 200_000
MAX_SYNTAX_DEPTH = 100
MAX_EXPRESSION_NODES = 400
MAX_MAGNITUDE = 2**53
MAX_EXPONENT = 16
MAX_DEGREE = 64
READ_SECONDS = 3.0  # wall-clock ceiling on reading one program (sympy included)


def syntax_depth(tree: Any) -> int:
    """The nesting depth of an ``ast`` tree, computed without recursion (a deep tree is the threat)."""
    import ast

    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SYNTAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def check_number(value: Any, where: str = "") -> None:
    """Refuse a number (Python or sympy) that is not finite or larger than MAX_MAGNITUDE."""
    if isinstance(value, bool):
        return
    if isinstance(value, sympy.Rational):
        parts = (value.p, value.q)
    elif isinstance(value, sympy.Number):
        if value.is_finite is False or value in (sympy.nan, sympy.zoo):
            raise LimitError(f"{where}number {value} is not finite")
        parts = (abs(float(value)) if abs(value) <= MAX_MAGNITUDE else MAX_MAGNITUDE + 1,)
    elif isinstance(value, int):
        parts = (value,)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise LimitError(f"{where}number {value} is not finite")
        parts = (value,)
    else:
        return
    if any(abs(p) > MAX_MAGNITUDE for p in parts):
        raise LimitError(f"{where}number {_short(value)} is too large (the DSL's limit is 2**53)")


def check_expression(expr: Any, where: str = "") -> None:
    """Refuse a sympy expression with an oversized number or a polynomial degree above MAX_DEGREE."""
    if not isinstance(expr, sympy.Basic):
        check_number(expr, where)
        return
    for atom in expr.atoms(sympy.Number):
        check_number(atom, where)
    degree = polynomial_degree(expr)
    if degree > MAX_DEGREE:
        raise LimitError(f"{where}expression of degree {degree} is too large (the DSL's limit is "
                         f"{MAX_DEGREE})")


def polynomial_degree(expr: Any) -> int:
    """An upper bound on the degree sympy's ``expand`` would produce (the cost of expanding)."""
    if not isinstance(expr, sympy.Basic) or not expr.args:
        return 1 if isinstance(expr, sympy.Symbol) else 0
    if isinstance(expr, sympy.Mul):
        return sum(polynomial_degree(a) for a in expr.args)
    if isinstance(expr, sympy.Pow) and expr.exp.is_Number:
        return polynomial_degree(expr.base) * int(min(abs(expr.exp), MAX_MAGNITUDE) + 0.999)
    return max(polynomial_degree(a) for a in expr.args)


def check_power(base: Any, exponent: Any, where: str = "") -> None:
    """A power is read only with a small numeric exponent, or a numeric base (``2**x``)."""
    if isinstance(exponent, sympy.Number):
        if abs(exponent) > MAX_EXPONENT:
            raise LimitError(f"{where}exponent {_short(exponent)} is too large (the DSL's limit is "
                             f"{MAX_EXPONENT})")
        return
    if isinstance(base, sympy.Number):
        return
    raise LimitError(f"{where}an exponent must be a number (at most {MAX_EXPONENT}) or the base a number")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


class _Expired(BaseException):
    """Raised inside the guarded call when its time is up (a BaseException: not swallowed by
    a third-party ``except Exception``)."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise LimitError when the block runs longer than ``seconds`` (main thread; see module doc).

    The alarm repeats every 0.1 s after the first, so a handler swallowed once fires again.
    An alarm someone else set (an outer guard, a test runner) is left alone: then this
    guard does nothing and theirs governs.
    """
    usable = (threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
              and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))
    if not usable:
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
    except _Expired:
        raise LimitError(f"{what} took longer than {seconds:g} s (the DSL's time limit)") from None
    finally:
        signal.signal(signal.SIGALRM, previous)
