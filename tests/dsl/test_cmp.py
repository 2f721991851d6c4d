"""The three-way threshold ``cmp`` (one and two arguments) and 0/1 tables fitted as predicates."""

from __future__ import annotations

from mechsynth import dsl
from mechsynth.dsl.equivalence import check_equivalence
from mechsynth.dsl.fit import fit_table

P = dsl.parse


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def test_cmp_round_trips_and_matches_python() -> None:
    prog = P(
        "frac = numerical(aggregate(select(indices, indices, LEQ), map(eq(1), tokens)))\n"
        "depth_sign = map(cmp(0.5), frac)\n"
        "which = seqmap(cmp, tokens, indices)"
    )
    assert str(P(str(prog))) == str(prog)
    inputs = [[1, 0, 0, 1, 1, 0], [0, 3, 1]]
    got = dsl.evaluate(prog, inputs)
    want = [[_sign(x[i] - i) for i in range(len(x))] for x in inputs]
    assert got == want
    depth = P(str(prog).rsplit("\n", 1)[0])  # without the last line: depth_sign is the output
    want_depth = []
    for x in inputs:
        row, ones = [], 0
        for i, v in enumerate(x):
            ones += v == 1
            row.append(_sign(ones / (i + 1) - 0.5))
        want_depth.append(row)
    assert dsl.evaluate(depth, inputs) == want_depth


def test_cmp_is_the_sign_of_a_shift_by_z3_and_exhaustively() -> None:
    fused = P("out = map(cmp(0.5), tokens)")
    composed = P("c = map(x - 0.5, tokens)\nout = map(sign, c)")
    two = P("out = seqmap(cmp, tokens, indices)")
    two_composed = P("d = seqmap(sub, tokens, indices)\nout = map(sign, d)")
    for method in ("z3", "exhaustive"):
        assert check_equivalence(fused, composed, vocab=[0, 0.5, 1, 2], max_len=3, method=method).equivalent
        assert check_equivalence(two, two_composed, vocab=[0, 1, 2, 3], max_len=3, method=method).equivalent
        # Not a plain sign: tokens 0.25 and 0 differ (cmp(0.5) is -1 on both, sign is 1 and 0).
        plain = P("out = map(sign, tokens)")
        assert not check_equivalence(fused, plain, vocab=[0, 0.25], max_len=2, method=method).equivalent


def test_fitted_cmp_reads_the_threshold_off_examples() -> None:
    fn = fit_table([(0.25,), (0.5,), (0.75,)], [-1, 0, 1], 1, arg_dtypes=["number"])
    assert str(fn) == "cmp(0.5)"


def _apply(fn, xs):
    prog = P(f"out = map({fn}, tokens)")
    return [v[0] for v in dsl.evaluate(prog, [[x] for x in xs])]


def test_zero_one_tables_become_predicates_only_when_one_fits() -> None:
    # A binary readout's labels 0/1 on a many-valued argument: "equals 0", not a 4-entry table.
    xs = [0, 0.5, -1, 2]
    fn = fit_table([(x,) for x in xs], [1, 0, 0, 0], 1, arg_dtypes=["number"])
    assert fn.name != "table" and _apply(fn, xs) == [1, 0, 0, 0]
    xs = [0, 0.5, 1, 2]
    fn = fit_table([(x,) for x in xs], [0, 0, 1, 1], 1, arg_dtypes=["number"])
    assert fn.name in ("gt", "geq") and _apply(fn, xs) == [0, 0, 1, 1]
    # Labels no predicate reproduces stay a table; labels that are numbers stay numbers.
    xs = [0, 1, 2, 5]
    assert fit_table([(x,) for x in xs], [1, 0, 0, 1], 1, arg_dtypes=["number"]).name == "table"
    assert fit_table([(x,) for x in xs], [0, 1, 2, 5], 1, arg_dtypes=["number"]).name == "identity"
