"""Bad program text gets a ParseError naming the line, column and what was expected."""

from __future__ import annotations

import pytest

from mechsynth import dsl
from mechsynth.dsl.errors import DSLError, ParseError


def error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        dsl.parse(text)
    return info.value


@pytest.mark.parametrize(
    "text, line, col, words",
    [
        ("a = map(add(1), tokens\n", 1, None, ["invalid syntax"]),
        ("a = map(add(1), tokens)\nb = frobnicate(a)", 2, 4, ["unknown primitive", "frobnicate", "expected"]),
        ("a = map(add(1), tokns)", 1, 16, ["unknown variable", "tokns"]),
        ("a = map(add(1), b)\nb = map(add(1), tokens)", 1, 16, ["assigned later"]),
        ("a = map(add(1), tokens, indices)", 1, 4, ["map() takes", "3 positional"]),
        ("a = select(tokens, tokens)", 1, 4, ["missing predicate"]),
        ("s = select(tokens, tokens, EQ)\nb = aggregate(s, s)", 2, 17,
         ["must be a sequence", "'s' is a selector"]),
        ("a = aggregate(tokens, tokens)", 1, 14, ["must be a selector", "'tokens' is a sequence"]),
        ("a = map(frob(1), tokens)", 1, 8, ["unknown function", "frob"]),
        ("a = map(sub, tokens)", 1, 8, ["'sub' is a 2-argument function"]),
        ("a = map(x + y, tokens)", 1, 12, ["unknown name 'y'", "expression in x"]),
        ("a = map(add(1, 2), tokens)", 1, 8, ["add() takes 1 parameter"]),
        ("a = map(add(tokens), tokens)", 1, 12, ["expected a literal value"]),
        ("a = full(tokens)", 1, 9, ["expected a literal value"]),
        ("a = map(add(1), tokens)\na = map(add(2), tokens)", 2, 0, ["already assigned"]),
        ("tokens = map(add(1), tokens)", 1, 0, ["primitive variable"]),
        ("a = tokens", 1, 4, ["expected a primitive call"]),
        ("map(add(1), tokens)", 1, 0, ["expected an assignment"]),
        ("a = map(table({1: 2, 1: 3}), tokens)", 1, 8, ["repeated key"]),
        ("a = aggregate(select(indices, indices, EQ), tokens, dflt=0)", 1, 52, ["no parameter 'dflt'"]),
        ("a = numerical(select(indices, indices, EQ))", 1, 4, ["not selectors"]),
        ("a = map(add, tokens)", 1, 8, ["add() takes 1 parameter"]),
        ("a = select(indices, indices, SAME)", 1, 29, ["unknown name 'SAME'"]),
    ],
)
def test_bad_programs_name_line_column_and_expectation(text, line, col, words):
    e = error(text)
    assert e.line == line
    if col is not None:
        assert e.col == col
    message = str(e)
    assert message.startswith(f"line {line}, column ")
    for w in words:
        assert w in message, message
    assert "\n" not in message


def test_empty_program():
    e = error("# nothing here\n")
    assert "empty program" in str(e) and e.line is None


def test_errors_are_value_errors():
    assert issubclass(ParseError, DSLError) and issubclass(DSLError, ValueError)


def test_non_text_is_rejected():
    with pytest.raises(ParseError):
        dsl.parse(None)  # type: ignore[arg-type]


def test_never_evaluates_code():
    # Anything that is not a literal, a registered name or arithmetic is refused, not run.
    attempts = ["a = map(__import__('os').getpid(), tokens)", "a = full(open('x'))",
                "a = map(lambda v: v, tokens)"]
    for text in attempts:
        with pytest.raises(ParseError):
            dsl.parse(text)
