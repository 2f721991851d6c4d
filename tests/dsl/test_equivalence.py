"""Bounded equivalence with z3, and the exhaustive fallback."""

from __future__ import annotations

import pytest

from mechsynth import dsl
from mechsynth.dsl import registry
from mechsynth.dsl.equivalence import check_equivalence
from mechsynth.dsl.errors import EquivalenceError
from mechsynth.dsl.rasp_bridge import LIB_EXAMPLES

P = dsl.parse


def test_z3_proves_add_one_twice_is_add_two():
    a = P("a = map(add(1), tokens)\nb = map(add(1), a)")
    b = P("b = map(add(2), tokens)")
    result = check_equivalence(a, b, vocab=[1, 2, 3], max_len=5)
    assert result.equivalent and result.method == "z3"
    assert dsl.equivalent(a, b, [1, 2, 3], 5) is None
    # The same with expressions (a nested anonymous map folds already at parse time).
    nested, direct = P("y = map(x + 1, map(x + 1, tokens))"), P("y = map(x + 2, tokens)")
    assert dsl.equivalent(nested, direct, [0, 5], 4) is None


def test_z3_finds_counterexample_that_only_exists_at_length_four():
    base = P("out = map(identity, tokens)")
    odd = P("at4 = map(eq(4), length)\nout = seqmap(x + y, tokens, at4)")  # adds 1 only when n == 4
    result = check_equivalence(base, odd, vocab=[0, 1, 2], max_len=5)
    assert result.method == "z3"
    assert result.counterexample is not None and len(result.counterexample) == 4
    assert dsl.evaluate(base, [result.counterexample]) != dsl.evaluate(odd, [result.counterexample])
    assert check_equivalence(base, odd, vocab=[0, 1, 2], max_len=3).equivalent


def test_z3_proves_selector_width_length_equals_length_primitive():
    a = dsl.from_rasp(LIB_EXAMPLES["length"].build(), (1, 2, 3), 5)
    b = P("out = map(identity, length)")
    assert check_equivalence(a, b, (1, 2, 3), 5).equivalent


def test_z3_agrees_with_exhaustive_on_lib_pairs():
    vocab, n = (1, 2, 3), 4
    sort = dsl.from_rasp(LIB_EXAMPLES["sort"].build(), vocab, 5)
    sort_unique = dsl.from_rasp(LIB_EXAMPLES["sort_unique"].build(), vocab, 5)
    z = check_equivalence(sort, sort_unique, vocab, n, method="z3")
    e = check_equivalence(sort, sort_unique, vocab, n, method="exhaustive")
    assert z.method == "z3" and e.method == "exhaustive"
    assert z.counterexample is not None and e.counterexample is not None
    assert len(z.counterexample) == len(e.counterexample)  # both search shortest lengths first


def test_symbols_in_z3():
    a = P("o = map(eq('('), tokens)")
    b = P("o = map(neq(')'), tokens)")
    assert dsl.equivalent(a, b, ["(", ")"], 4) is None
    cex = dsl.equivalent(a, b, ["(", ")", "a"], 4)
    assert cex == ["a"]


def test_fallback_to_exhaustive_names_the_reason():
    with registry.scope():
        @dsl.register.function("opaque_inc", 1, cost=1.0)
        def _inc(x):
            return x + 1

        a = P("a = map(opaque_inc, tokens)")
        b = P("a = map(add(1), tokens)")
        result = check_equivalence(a, b, [1, 2], 3)
        assert result.equivalent and result.method == "exhaustive"
        assert "opaque_inc" in result.detail
        with pytest.raises(EquivalenceError):
            check_equivalence(a, b, [1, 2], 3, method="z3")
        with pytest.raises(EquivalenceError):
            check_equivalence(a, b, list(range(10)), 6, exhaustive_limit=1000)


def test_sign_is_a_clip_on_integers_and_z3_and_exhaustive_agree():
    sign = P("out = map(sign, tokens)")
    clipped = P("c = map(min(1), tokens)\nout = map(max(-1), c)")
    vocab = [-3, -1, 0, 2, 5]
    for method in ("z3", "exhaustive"):
        result = check_equivalence(sign, clipped, vocab=vocab, max_len=3, method=method)
        assert result.equivalent and result.method == method
    # Not a clip of fractions: a counterexample, found by both methods.
    halves = [-0.5, 0.0, 0.5]
    for method in ("z3", "exhaustive"):
        assert not check_equivalence(sign, clipped, vocab=halves, max_len=2, method=method).equivalent
    assert str(P(str(sign))) == str(sign)
    inputs = [[-2.5, 0, 0.1], [3, -7]]
    want = [[(v > 0) - (v < 0) for v in x] for x in inputs]  # the reference: Python's sign
    assert dsl.evaluate(sign, inputs) == want
