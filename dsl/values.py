"""Values and their tensor encoding.

RASP values are Python scalars: ints, floats, bools, strings, ``None``, and (in
``make_nary_sequencemap``) tuples. The interpreter works on float64 tensors, so
every value is given a *code*, one float64 number:

* a number (int, float, bool) is its own code (``True`` is 1.0, as in Python
  where ``True == 1``);
* ``None`` is NaN, so "undefined" propagates through arithmetic for free;
* any other hashable value (a *symbol*: a string, a tuple, ...) is coded as
  ``SYMBOL_BASE + rank`` where ``rank`` is its position in a sorted
  :class:`Codebook`. Symbol codes are far above any number a program uses, and
  because the codebook is sorted, comparing codes of two strings compares the
  strings, as Python does.

A codebook is immutable and is built once per batch from the input vocabulary and
the literals of the programs to run (see ``interpret.encode``). Decoding needs to
know whether a number is a bool: every node carries a *dtype* that says so
(``"bool"``, ``"number"`` or ``"value"``, the last meaning "anything").
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mechsynth.dsl.errors import EvaluationError

SYMBOL_BASE = float(2**40)
"""Codes at or above this are symbols; numbers used by programs must stay below it."""

Value = Any  # None | bool | int | float | str | tuple | any hashable

DTYPES = ("bool", "number", "value")


def is_number(value: Value) -> bool:
    """Whether ``value`` is coded as itself (bool, int, float; numpy scalars included)."""
    return isinstance(value, (bool, int, float)) or (
        hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "shape", None) == ()
    )


def is_symbol(value: Value) -> bool:
    """Whether ``value`` needs a codebook entry (not None and not a number)."""
    return value is not None and not is_number(value)


def _sort_key(value: Value) -> tuple:
    # Python orders strings and same-shaped tuples; across types we order by type
    # name so that the codebook is deterministic for any mix of symbols.
    if isinstance(value, tuple):
        return ("tuple", tuple(_sort_key(v) for v in value))
    if value is None:
        return ("NoneType", 0)
    if is_number(value):
        return ("0number", float(value))
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Codebook:
    """A sorted tuple of symbols; symbol ``s`` has code ``SYMBOL_BASE + symbols.index(s)``."""

    symbols: tuple = ()
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for i, s in enumerate(self.symbols):
            self._index[s] = i

    @staticmethod
    def of(values: Iterable[Value]) -> Codebook:
        """The codebook holding every symbol among ``values`` (numbers and None are ignored)."""
        symbols = {v for v in values if is_symbol(v)}
        return Codebook(tuple(sorted(symbols, key=_sort_key)))

    def extended(self, values: Iterable[Value]) -> Codebook:
        """A codebook with the symbols of ``values`` added (a new object; codes may shift)."""
        new = {v for v in values if is_symbol(v)} - set(self.symbols)
        if not new:
            return self
        return Codebook.of((*self.symbols, *new))

    def __contains__(self, value: Hashable) -> bool:
        return value in self._index

    def encode(self, value: Value) -> float:
        """The float64 code of one value."""
        if value is None:
            return math.nan
        if is_number(value):
            x = float(value)
            if abs(x) >= SYMBOL_BASE:
                raise EvaluationError(f"number {value!r} is too large for the DSL (limit 2**40)")
            return x
        try:
            return SYMBOL_BASE + self._index[value]
        except KeyError:
            raise EvaluationError(
                f"value {value!r} is not in the batch codebook; encode the batch with it as an extra symbol"
            ) from None
        except TypeError:
            raise EvaluationError(f"value {value!r} is not hashable") from None

    def decode(self, code: float, dtype: str = "value") -> Value:
        """The value of one code, read as ``dtype`` ("bool", "number" or "value")."""
        if code != code:  # NaN
            return None
        if code >= SYMBOL_BASE:
            rank = int(code - SYMBOL_BASE)
            if rank == code - SYMBOL_BASE and 0 <= rank < len(self.symbols):
                return self.symbols[rank]
            return None  # a mean of different symbols: undefined
        if dtype == "bool" and code in (0.0, 1.0):
            return code == 1.0
        if code == int(code) and abs(code) < 2**53:
            return int(code)
        return float(code)
