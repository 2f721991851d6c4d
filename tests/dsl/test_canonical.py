"""sympy canonicalisation, value sets, the generated reference and the throughput helper."""

from __future__ import annotations

from mechsynth import dsl
from mechsynth.dsl.benchmark import interpreter_throughput
from mechsynth.dsl.canonicalize import compose, simplify_fn
from mechsynth.dsl.program import Fn


def test_compose_prefers_named_families():
    assert compose(Fn("add", 1, (1,)), Fn("add", 1, (1,))) == Fn("add", 1, (2,))
    assert compose(Fn("mul", 1, (2,)), Fn("mul", 1, (3,))) == Fn("mul", 1, (6,))
    assert compose(Fn("add", 1, (-1,)), Fn("add", 1, (1,))) == Fn("identity", 1, ())
    assert str(compose(Fn("add", 1, (1,)), Fn("mul", 1, (2,)))) == "2*x + 1"
    assert compose(Fn("table", 1, (((1, 2),),)), Fn("add", 1, (1,))) is None  # no sympy form


def test_simplify_fn():
    import sympy

    x = sympy.Symbol("x")
    assert simplify_fn(Fn("expr", 1, (x + 0 + 3,))) == Fn("add", 1, (3,))
    assert simplify_fn(Fn("expr", 1, (sympy.Mod(x, 3),))) == Fn("mod", 1, (3,))


def test_canonicalize_folds_single_use_chains_only():
    p = dsl.parse("a = map(add(1), tokens)\nb = map(mul(2), a)\nc = map(add(1), b)")
    assert str(dsl.canonicalize(p)) == "c = map(2*x + 3, tokens)"
    shared = dsl.parse("a = map(add(1), tokens)\nb = map(mul(2), a)\nc = seqmap(add, a, b)")
    assert dsl.canonicalize(shared).size == 3  # a is read twice: kept


def test_canonical_text_deduplicates():
    a = dsl.canonicalize(dsl.parse("u = map(x + 1, tokens)\nv = map(x + 1, u)"))
    b = dsl.canonicalize(dsl.parse("v = map(add(2), tokens)"))
    assert a == b and hash(a) == hash(b)


def test_reference_lists_everything_registered():
    text = dsl.reference()
    for word in ("map(f: fn1, x: sop) -> sop", "aggregate(selector: selector, x: sop, default: value = None)",
                 "- add(k): x + k", "- table(entries)", "numerical(...)", "EQ LT LEQ GT GEQ NEQ TRUE FALSE"):
        assert word in text


def test_throughput_helper_reports_figures():
    out = interpreter_throughput(n=64, max_len=8, seconds=0.05)
    assert out["batch"] == [64, 8]
    assert all(s >= 8 for s in out["program_sizes"])
    assert out["programs_per_s"] > 0 and out["fast_path_node_evals_per_s"] > 0
