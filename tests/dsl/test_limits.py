"""Bounded reading of untrusted program text (dsl.limits): hostile expressions are one-line errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechsynth import dsl
from mechsynth.dsl import limits
from mechsynth.dsl.canonicalize import compose
from mechsynth.dsl.errors import LimitError, ParseError
from mechsynth.dsl.program import Fn


def _one_line_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        dsl.parse(text)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("text, fragment", [
    ("out = map(x + 9**9**9, tokens)", "exponent 387420489 is too large"),  # issue 18 item 1
    ("out = map(x ** 99999999999, tokens)", "exponent 99999999999 is too large"),
    ("out = map(x * 1e308 * 10, tokens)", "too large"),
    ("out = map(x == 1e400, tokens)", "not finite"),
    ("out = map(add(1e400), tokens)", "not finite"),
    ("out = map(add(" + "9" * 5000 + "), tokens)", "digits"),
    ("out = map(" + "+".join(["x"] * 3000) + ", tokens)", "nests too deeply"),
    ("out = map(((x + 1)**16 + 1)**16, tokens)", "degree 256"),
    ("out = seqmap(x ** y, tokens, indices)", "an exponent must be a number"),
])
def test_hostile_expressions_are_one_line_errors(text: str, fragment: str) -> None:
    assert fragment in str(_one_line_error(text))


def test_the_limits_are_limit_errors() -> None:
    assert isinstance(_one_line_error("out = map(x + 9**9**9, tokens)"), LimitError)
    assert isinstance(_one_line_error("y = map(x, tokens)\n" * (limits.MAX_PROGRAM_CHARS // 10)), LimitError)


def test_a_comparison_of_a_comparison_is_a_parse_error() -> None:
    # found by the fuzz test below: sympy's own TypeError escaped the parser.
    assert "cannot read this expression" in str(_one_line_error("out = map(((x < x) < x), tokens)"))


def test_arithmetic_on_a_comparison_is_a_parse_error_not_a_type_error() -> None:
    # issue 18 item 9: sympy's TypeError on Relational - Relational escaped the parser.
    error = _one_line_error("y = map((x > 0) - (x < 0), tokens)")
    assert "arithmetic on a comparison" in str(error)


def test_min_and_max_inside_an_expression_read_as_sympy_min_max() -> None:
    # issue 18 item 10: min( was always read as the min(c) family.
    program = dsl.parse("y = map(min(max(20*x, -1), 1), tokens)")
    assert "Min(1, Max(-1, 20*x))" in str(program)
    assert str(dsl.parse("y = map(min(3), tokens)")) == "y = map(min(3), tokens)"


def test_values_inside_the_limits_still_read() -> None:
    assert "x**16" in str(dsl.parse("y = map(x**16, tokens)"))
    assert "2**x" in str(dsl.parse("y = map(2**x, tokens)"))
    assert "90*x" in str(dsl.parse("y = map(" + "+".join(["x"] * 90) + ", tokens)"))


def test_composition_over_the_degree_limit_keeps_both_maps() -> None:
    inner = dsl.parse("y = map(x**16, tokens)").assignments[0][1].args[0]
    assert isinstance(inner, Fn)
    assert compose(inner, inner) is None
    program = dsl.parse("y = map(x**16, map(x**16, tokens))")
    assert len(program.assignments) == 2


def test_time_limit_interrupts_python_code() -> None:
    with pytest.raises(LimitError, match="took longer than"):
        with limits.time_limit(0.05, "spinning"):
            while True:
                pass


# --- fuzz: random expression text never hangs and never escapes as anything but a DSLError ----------

_TOKENS = ["x", "y", "k", "q", "1", "9", "0", "2.5", "1e308", "99999999999", "+", "-", "*", "/", "//",
           "**", "%", "(", ")", ",", "<", ">", "==", "&", "|", "~", "not ", " and ", "min(", "max(",
           "Mod(", "floor(", "abs(", "add(", "table({", "})", ":", "True", "'a'", "__import__", "lambda",
           ".", "[", "]", "\u00e9", "\ufeff", "\n", " "]


@st.composite
def _expression(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 4 or draw(st.booleans()):
        return draw(st.sampled_from(["x", "y", "1", "9", "0.5", "1e308", "2**53", "99999999999", "-7"]))
    a, b = draw(_expression(depth + 1)), draw(_expression(depth + 1))
    form = draw(st.sampled_from(["({a} + {b})", "({a} * {b})", "({a} ** {b})", "({a} - {b})", "({a} / {b})",
                                 "({a} % {b})", "min({a}, {b})", "max({a}, {b})", "({a} < {b})",
                                 "Mod({a}, {b})", "floor({a})", "({a} ** 16)"]))
    return form.format(a=a, b=b)


def _read(text: str) -> None:
    try:
        dsl.parse(text)
    except dsl.DSLError as e:
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join))
def test_fuzz_token_soup(expression: str) -> None:
    _read(f"out = map({expression}, tokens)")
    _read(f"out = seqmap({expression}, tokens, indices)")
    _read(expression)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expression())
def test_fuzz_nested_arithmetic(expression: str) -> None:
    one_argument = expression.replace("y", "x")
    _read(f"out = map({one_argument}, tokens)")
    _read(f"out = seqmap({expression}, tokens, indices)")
    _read(f"inner = map({one_argument}, tokens)\nout = map({one_argument}, inner)")
