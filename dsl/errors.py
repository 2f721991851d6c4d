"""Typed errors of the DSL.

Every failure the DSL can report is a :class:`DSLError` (a ``ValueError``) with a
one-line message, so a command-line front end can print it and exit without a
traceback. Parse errors also carry the 1-based line and 0-based column of the
offending text, in the same convention as Python's own ``SyntaxError``.
"""

from __future__ import annotations


class DSLError(ValueError):
    """Base class of every error raised by the DSL."""


class ParseError(DSLError):
    """Program text that does not parse or does not type-check.

    ``line`` is 1-based and ``col`` 0-based (Python's convention); both are None
    when the error concerns the program as a whole (e.g. empty text).
    """

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        self.line = line
        self.col = col
        self.detail = message
        where = f"line {line}, column {col}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class RegistryError(DSLError):
    """A bad registration, or a lookup of a name that is not registered."""


class EvaluationError(DSLError):
    """A program that cannot be evaluated on the given inputs."""


class ConversionError(DSLError):
    """A RASP expression that cannot be converted to the DSL, or vice versa."""


class EquivalenceError(DSLError):
    """Two programs whose equivalence cannot be decided with the available methods."""


class HypothesisError(ValueError):
    """A hypothesis or location that cannot be read or does not fit the program."""


class LimitError(ParseError):
    """Text that exceeds a limit on untrusted input (``dsl.limits``): too large, too deep, too slow."""
