"""Ground truth: the DSL agrees with tracr's rasp.evaluate on every tracr.compiler.lib example.

For each example the RASP program is converted with ``dsl.from_rasp`` and both are
evaluated on EVERY input over the example's vocabulary of every length
1..max_seq_len (5). The DSL interpreter is batched; RASP runs input by input.
"""

from __future__ import annotations

import itertools
import math

import pytest
from tracr.rasp import rasp

import dsl
from dsl.rasp_bridge import LIB_EXAMPLES


def agree(a, b) -> bool:
    """Same value: both None, numbers equal to 1e-9 (bools count as numbers), else ==."""
    if a is None or b is None:
        return a is None and b is None
    num = (int, float, bool)
    if isinstance(a, num) and isinstance(b, num):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def all_inputs(vocab, max_len):
    return [list(x) for n in range(1, max_len + 1) for x in itertools.product(vocab, repeat=n)]


def test_lib_examples_cover_all_fifteen():
    assert set(LIB_EXAMPLES) == {
        "length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs", "pair_balance",
        "shuffle_dyck", "shuffle_dyck2", "shift_by", "detect_pattern", "count_less_freq", "count",
        "nary_sequencemap",
    }


@pytest.mark.parametrize("name", sorted(LIB_EXAMPLES))
def test_from_rasp_agrees_exhaustively(name):
    build, vocab, max_len, _ = LIB_EXAMPLES[name]
    expr = build()
    program = dsl.from_rasp(expr, vocab, max_len)
    inputs = all_inputs(vocab, max_len)
    got = dsl.evaluate(program, inputs)
    for x, g in zip(inputs, got):
        want = rasp.evaluate(expr, x)
        assert len(g) == len(want)
        assert all(agree(a, b) for a, b in zip(g, want)), f"{name} on {x}: dsl {g} != rasp {want}"


@pytest.mark.parametrize("name", sorted(LIB_EXAMPLES))
def test_from_rasp_names_variables_after_labels_and_round_trips(name):
    build, vocab, max_len, _ = LIB_EXAMPLES[name]
    expr = build()
    program = dsl.from_rasp(expr, vocab, max_len)
    assert program.output == dsl.rasp_variable_name(expr)
    assert dsl.parse(str(program)) == program


@pytest.mark.parametrize("name", sorted(LIB_EXAMPLES))
def test_intermediate_variables_agree(name):
    """Every DSL variable equals its RASP expression (what the correspondence relies on)."""
    build, vocab, max_len, _ = LIB_EXAMPLES[name]
    expr = build()
    program = dsl.from_rasp(expr, vocab, max_len)
    by_name = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        by_name[dsl.rasp_variable_name(e)] = e
        stack.extend(e.children)
    inputs = all_inputs(vocab, 3)
    values = dsl.evaluate_all(program, inputs)
    for var in program.variables:
        e = by_name[var]
        for x, got in zip(inputs, values[var]):
            want = rasp.evaluate(e, x)
            if program.kind(var) == "selector":
                assert got == [list(map(bool, row)) for row in want], f"{var} on {x}"
            else:
                assert all(agree(a, b) for a, b in zip(got, want)), f"{var} on {x}: {got} != {want}"


def test_numerical_encoding_is_kept():
    build, vocab, max_len, _ = LIB_EXAMPLES["frac_prevs"]
    program = dsl.from_rasp(build(), vocab, max_len)
    assert program.kind(program.output) == "numerical"
    assert "numerical(aggregate(" in str(program)
