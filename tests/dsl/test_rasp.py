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

from mechsynth import dsl
from mechsynth.dsl.rasp_bridge import LIB_EXAMPLES


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


@pytest.mark.parametrize("name", sorted(LIB_EXAMPLES))
def test_to_rasp_agrees_with_dsl(name):
    build, vocab, max_len, _ = LIB_EXAMPLES[name]
    program = dsl.from_rasp(build(), vocab, max_len)
    expr = dsl.to_rasp(program)
    assert expr.name == program.output
    inputs = all_inputs(vocab, 4)
    for x, want in zip(inputs, dsl.evaluate(program, inputs)):
        got = rasp.evaluate(expr, x)
        assert all(agree(a, b) for a, b in zip(got, want)), f"{name} on {x}: rasp {got} != dsl {want}"
    if program.kind(program.output) == "numerical":
        assert rasp.is_numerical(expr)


@pytest.mark.slow  # tracr's compiler imports and jits jax: ~10-30 s
def test_to_rasp_of_hand_written_program_compiles_with_tracr():
    from tracr.compiler import compiling

    program = dsl.parse(
        "opp = seqmap(sub, length, indices)\nopp1 = map(add(-1), opp)\n"
        "flip = select(indices, opp1, EQ)\nreverse = aggregate(flip, tokens)"
    )
    model = compiling.compile_rasp_to_model(dsl.to_rasp(program), vocab={1, 2, 3}, max_seq_len=4,
                                            compiler_bos="BOS")
    for x in ([1, 2, 3], [3, 1, 1, 2], [2]):
        assert model.apply(["BOS", *x]).decoded[1:] == dsl.evaluate(program, [x])[0]


def test_rasp_variable_name_sanitises_labels():
    e = rasp.Map(lambda x: x + 1, rasp.tokens).named("opp_idx-1")
    name = dsl.rasp_variable_name(e)
    assert name.startswith("opp_idx_1_") and name.isidentifier()
    assert dsl.rasp_variable_name(rasp.tokens) == "tokens"
    assert dsl.rasp_variable_name(rasp.Map(lambda x: x, rasp.tokens).named("3d")).startswith("v_3d_")


def test_constants_round_trip_through_rasp():
    sel = rasp.ConstantSelector([[True, False, False], [True, True, False], [False, True, True]])
    full = rasp.Full(2)
    const = rasp.ConstantSOp([1, 0, 5])
    expr = rasp.numerical(rasp.Aggregate(sel, rasp.SequenceMap(lambda a, b: a * b, full, const), default=0))
    vocab = (1, 2)
    program = dsl.from_rasp(expr, vocab, 3)
    matrix = "((True, False, False), (True, True, False), (False, True, True))"
    assert f"constant_selector({matrix})" in str(program)
    assert dsl.parse(str(program)) == program
    for x in all_inputs(vocab, 3)[-8:]:
        assert all(agree(a, b) for a, b in zip(dsl.evaluate(program, [x])[0], rasp.evaluate(expr, x)))
    back = dsl.to_rasp(program)
    assert rasp.evaluate(back, [1, 1, 1]) == rasp.evaluate(expr, [1, 1, 1])
    band = dsl.parse(str(program).replace(f"constant_selector({matrix})",
                                          "select(indices, indices, (k <= q) & (k >= q - 1))"))
    assert dsl.check_equivalence(program, band, vocab, 3).equivalent
    assert len(dsl.equivalent(program, band, vocab, 4)) == 4  # the constant ends at position 3
