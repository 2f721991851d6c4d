"""A primitive and a function family registered only inside the test work everywhere."""

from __future__ import annotations

import pytest
import sympy
import torch
import z3

from mechsynth import dsl
from mechsynth.dsl import registry
from mechsynth.dsl.errors import ParseError


@pytest.fixture
def extended():
    with registry.scope():
        @dsl.register.primitive(
            "prefix_sum", "x: sop", cost=2.0, dtype="number",
            value_set=lambda args, sets, ctx: frozenset(
                {a * b for a in sets[0] for b in range(1, ctx.max_len + 1)} | set(sets[0])
            ),
            z3=lambda z, args, kids: [
                (z3.Sum([v for v, _ in kids[0][: i + 1]]), z3.And(*[d for _, d in kids[0][: i + 1]]))
                for i in range(z.n)
            ],
            doc="Running sum of x up to and including each position.",
            example="prefix_sum(tokens)",
        )
        def _prefix_sum(batch, x):
            return torch.cumsum(x.masked_fill(~batch.mask, 0.0), dim=1).masked_fill(~batch.mask, float("nan"))

        @dsl.register.function("square", 1, cost=1.0, sympy=lambda x: x**2, z3=lambda a, p, c: a[0] * a[0],
                               doc="x * x")
        def _square(x):
            return x * x

        yield


def test_parser_printer_interpreter(extended):
    p = dsl.parse("s = prefix_sum(map(square, tokens))")
    assert str(p) == "map_1 = map(square, tokens)\ns = prefix_sum(map_1)"
    assert dsl.parse(str(p)) == p
    assert dsl.evaluate(p, [[1, 2, 3], [2]]) == [[1, 5, 14], [4]]


def test_z3_check(extended):
    a = dsl.parse("s = prefix_sum(map(square, tokens))")
    b = dsl.parse("s = prefix_sum(seqmap(mul, tokens, tokens))")
    result = dsl.check_equivalence(a, b, [0, 1, 2], 4)
    assert result.equivalent and result.method == "z3"
    c = dsl.parse("s = prefix_sum(tokens)")
    assert dsl.check_equivalence(a, c, [0, 1, 2], 4).counterexample == [2]


def test_reference_and_canonical_forms(extended):
    text = dsl.reference()
    assert "prefix_sum(x: sop) -> sop" in text and "Running sum" in text
    assert "- square: x * x" in text
    # the sympy form takes part in canonicalisation
    assert str(dsl.parse("y = map(x + 1, map(square, tokens))")) == "y = map(x**2 + 1, tokens)"
    assert sympy.Symbol("x") ** 2 == sympy.sympify("x**2")


def test_value_sets_use_the_rule(extended):
    p = dsl.parse("s = prefix_sum(tokens)")
    assert dsl.value_set(p, "s", [1], 3) == frozenset({1, 2, 3})


def test_unregistered_after_scope():
    with pytest.raises(ParseError, match="unknown primitive 'prefix_sum'"):
        dsl.parse("s = prefix_sum(tokens)")
    assert "prefix_sum" not in dsl.reference()


def test_registration_errors():
    with registry.scope():
        with pytest.raises(dsl.RegistryError):
            dsl.register.function("add", 1, ("k",))(lambda x, k: x)
        with pytest.raises(dsl.RegistryError):
            dsl.register.function("x", 1)(lambda x: x)
        with pytest.raises(dsl.RegistryError):
            dsl.register.primitive("bad", "x: nonsense")(lambda b, x: x)
