"""Parsing, printing, evaluation and the Program API."""

from __future__ import annotations

import networkx as nx

from mechsynth import dsl

REVERSE = """
opp = seqmap(sub, length, indices)
opp1 = map(add(-1), opp)
flip = select(indices, opp1, EQ)
reverse = aggregate(flip, tokens)
"""


def test_spec_example_parses_and_evaluates():
    p = dsl.parse(
        "shifted = map(add(1), tokens)\nsame = select(indices, indices, EQ)\nout = aggregate(same, shifted)"
    )
    assert p.output == "out"
    assert dsl.evaluate(p, [[1, 2, 3], [4, 5]]) == [[2, 3, 4], [5, 6]]


def test_reverse_program():
    p = dsl.parse(REVERSE)
    assert dsl.evaluate(p, [["a", "b", "c"], [1, 2]]) == [["c", "b", "a"], [2, 1]]
    assert p.variables == ("tokens", "indices", "length", "opp", "opp1", "flip", "reverse")
    assert p.size == 4
    assert p.kind("flip") == "selector" and p.kind("reverse") == "categorical"


def test_print_parse_round_trip_and_equality():
    p = dsl.parse(REVERSE)
    assert dsl.parse(str(p)) == p
    assert hash(dsl.parse(str(p))) == hash(p)
    assert str(p).splitlines()[0] == "opp = seqmap(sub, length, indices)"


def test_nested_calls_get_names():
    p = dsl.parse(
        "out = aggregate(select(indices, indices, LEQ), numerical(map(eq('a'), tokens)), default=0)"
    )
    text = str(p)
    assert text.count("\n") == 2
    assert "default=0" in text and "numerical(map(eq('a'), tokens))" in text
    assert dsl.parse(text) == p
    assert p.kind(p.output) == "categorical"
    assert dsl.evaluate(p, [["a", "b", "a", "a"]]) == [[True, 0.5, 2 / 3, 0.75]]


def test_numerical_wrapper_round_trips():
    p = dsl.parse(
        "b = numerical(map(eq('a'), tokens))\nf = numerical(aggregate(select(indices, indices, LEQ), b))"
    )
    assert p.kind("b") == "numerical" and p.kind("f") == "numerical"
    assert dsl.parse(str(p)) == p


def test_sympy_maps_fold_when_anonymous():
    assert str(dsl.parse("y = map(x + 1, map(2*x, tokens))")) == "y = map(2*x + 1, tokens)"
    assert str(dsl.parse("y = map(add(1), map(add(1), tokens))")) == "y = map(add(2), tokens)"
    named = dsl.parse("a = map(2*x, tokens)\ny = map(x + 1, a)")
    assert named.size == 2
    assert str(dsl.canonicalize(named)) == "y = map(2*x + 1, tokens)"


def test_values_of_every_kind():
    p = dsl.parse("t = map(table({'(': 1, ')': -1}), tokens)\nz = map(eq(None), tokens)\nw = full('x')")
    assert dsl.evaluate_all(p, [["(", ")", "a"]])["t"] == [[1, -1, None]]
    assert dsl.evaluate(p, [["("]]) == [["x"]]
    p2 = dsl.parse("s = seqmap(table({(1, 'a'): (1, 'a'), (2, 'b'): 2.5}), tokens, tokens)")
    assert dsl.evaluate(p2, [[1, 2]]) == [[None, None]]


def test_aggregate_semantics_match_rasp():
    # Mean over selected keys; default where nothing is selected; None default by default.
    p = dsl.parse("s = select(indices, indices, LT)\na = numerical(aggregate(s, tokens, default=0))\n")
    assert dsl.evaluate(p, [[2, 4, 6]]) == [[0, 2, 3]]
    q = dsl.parse("s = select(indices, indices, LT)\na = aggregate(s, tokens)")
    assert dsl.evaluate(q, [["a", "b", "c"]]) == [[None, "a", None]]  # mixed symbols: undefined
    assert dsl.evaluate(q, [["a", "a", "c"]]) == [[None, "a", "a"]]  # equal symbols: that symbol


def test_selector_ops_and_width():
    p = dsl.parse(
        "a = select(indices, indices, LEQ)\nb = select(tokens, tokens, EQ)\nc = selector_and(a, b)\n"
        "d = selector_not(c)\ne = selector_or(c, d)\nw = selector_width(e)"
    )
    assert dsl.evaluate(p, [[1, 1, 2]]) == [[3, 3, 3]]
    vals = dsl.evaluate_all(p, [[1, 1, 2]])
    assert vals["c"] == [[[True, False, False], [True, True, False], [False, False, True]]]


def test_graph_and_rename():
    p = dsl.parse(REVERSE)
    g = p.graph()
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == {"tokens", "indices", "length", "opp", "opp1", "flip", "reverse"}
    assert g.has_edge("flip", "reverse") and g.has_edge("tokens", "reverse")
    assert g.nodes["flip"]["kind"] == "selector" and g.nodes["opp"]["op"] == "seqmap"
    r = p.rename({"opp": "n_minus_i", "reverse": "out"})
    assert r.output == "out" and "n_minus_i" in r.variables
    assert dsl.evaluate(r, [[1, 2, 3]]) == dsl.evaluate(p, [[1, 2, 3]])


def test_value_set():
    p = dsl.parse(REVERSE)
    # A superset: the analysis treats length and indices as independent.
    assert dsl.value_set(p, "opp1", vocab=[1, 2], max_len=3) == frozenset({-2, -1, 0, 1, 2})
    assert dsl.value_set(p, "reverse", vocab=["a", "b"], max_len=3) == frozenset({"a", "b"})


def test_evaluate_handles_mixed_lengths_and_none():
    p = dsl.parse("s = select(indices, indices, q == k + 1)\nprev = aggregate(s, tokens)")
    assert dsl.evaluate(p, [[1, 2, 3], [7]]) == [[None, 1, 2], [None]]


def test_fast_path_matches_evaluate():
    p = dsl.parse(REVERSE)
    batch = dsl.encode([[1, 2, 3], [3, 1]])
    values = dsl.run(p, batch)
    assert values["reverse"].shape == (2, 3)
    name, node = p.assignments[-1]
    again = dsl.eval_node(node, [values[c] for c in node.inputs], batch)
    assert dsl.decode(again, "value", batch) == [[3, 2, 1], [1, 3]]
