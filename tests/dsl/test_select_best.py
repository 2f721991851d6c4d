"""select_best: the best-scoring key among those a selector selects (the sorting head's selector).

The batched interpreter is checked against a plain-Python reference of the definition on
random inputs and random base selectors; printing/parsing, the per-node fast path and the
z3 encoding are checked on random programs that use it; the hand examples pin the
semantics a sorting network needs (the smallest token above the query, ties, None scores,
empty rows).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechsynth import dsl
from mechsynth.dsl.equivalence import check_equivalence, differing
from mechsynth.dsl.errors import ConversionError, ParseError
from mechsynth.dsl.interpret import encode, eval_node, run
from mechsynth.dsl.program import Direction
from mechsynth.dsl.sample import random_program

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(min_value=0, max_value=2**32 - 1)
INPUTS = [[0], [3, 1], [1, 2, 0], [2, 2, 3, 1], [0, 1, 2, 3, 0], [3, 3, 3]]

NEXT_GREATER = """\
above = select(tokens, tokens, GT)
next_up = select_best(above, tokens, ARGMIN)
out = aggregate(next_up, tokens, default=-1)
"""


def reference_select_best(base: list[list[bool]], scores: list, direction: Direction) -> list[list[bool]]:
    """The definition, one query at a time, in plain Python."""
    out = []
    for row in base:
        chosen = [s for hit, s in zip(row, scores) if hit and s is not None]
        if not chosen:
            out.append([False] * len(row))
            continue
        best = min(chosen) if direction is Direction.ARGMIN else max(chosen)
        out.append([hit and s is not None and s == best for hit, s in zip(row, scores)])
    return out


@FAST
@given(
    st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=6), min_size=1, max_size=5),
    st.sampled_from(["EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE"]),
    st.sampled_from(["tokens", "indices"]),
    st.sampled_from(["tokens", "indices", "length"]),
    st.sampled_from(list(Direction)),
    st.booleans(),
)
def test_interpreter_matches_reference(inputs, pred, key, score, direction, none_scores):
    # Scores with Nones: map(table) leaves values it does not list undefined.
    score_text = "map(table({0: 0, 2: 2, 3: 3}), tokens)" if none_scores else score
    text = (f"base = select({key}, tokens, {pred})\n"
            f"best = select_best(base, {score_text}, {direction.name})\n"
            "out = selector_width(best)\n")
    program = dsl.parse(text)
    values = dsl.evaluate_all(program, inputs)
    score_var = program.inputs("best")[1]
    for i in range(len(inputs)):
        want = reference_select_best(values["base"][i], values[score_var][i], direction)
        assert values["best"][i] == want


@FAST
@given(seeds, st.integers(min_value=1, max_value=10))
def test_programs_with_select_best_round_trip_and_run_per_node(seed, size):
    p = random_program(random.Random(seed), size, select_best=True)
    q = dsl.parse(str(p))
    assert q == p and str(q) == str(p)
    batch = encode(INPUTS, symbols=p.literals())
    values = run(p, batch)
    for name, node in p.assignments:
        again = eval_node(node, [values[c] for c in node.inputs], batch)
        assert bool(((again == values[name]) | (again.isnan() & values[name].isnan())).all()), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, seeds, st.integers(min_value=1, max_value=4))
def test_z3_and_exhaustive_agree_with_select_best(seed_a, seed_b, size):
    a = random_program(random.Random(seed_a), size, select_best=True)
    b = random_program(random.Random(seed_b), size, select_best=True) if seed_b % 3 else dsl.canonicalize(a)
    z = check_equivalence(a, b, [0, 1, 2], 3, method="z3")
    e = check_equivalence(a, b, [0, 1, 2], 3, method="exhaustive")
    assert z.equivalent == e.equivalent, (str(a), str(b), z, e)
    if z.counterexample is not None:
        assert differing(a, b, [z.counterexample]) is not None


def test_random_programs_draw_select_best_only_when_asked():
    plain = [random_program(random.Random(s), 8) for s in range(200)]
    assert not any(node.op == "select_best" for p in plain for _, node in p.assignments)
    drawn = [random_program(random.Random(s), 8, select_best=True) for s in range(200)]
    assert any(node.op == "select_best" for p in drawn for _, node in p.assignments)


def test_next_greater_token_ties_and_empty_rows():
    p = dsl.parse(NEXT_GREATER)
    # Each position gets the smallest token above its own; the largest has none (default -1).
    assert dsl.evaluate(p, [[3, 1, 2, 2, 5]]) == [[5, 2, 3, 3, -1]]
    selected = dsl.evaluate_all(p, [[3, 1, 2, 2, 5]])["next_up"][0]
    assert selected[1] == [False, False, True, True, False]  # a tie keeps both 2s


def test_argmax_and_none_scores_are_never_chosen():
    p = dsl.parse("s = select(tokens, tokens, TRUE)\n"
                  "best = select_best(s, map(table({0: 0, 1: 1}), tokens), ARGMAX)\n"
                  "out = aggregate(best, indices)\n")
    # Token 3 has no score (None): the largest scored token is the 1 at index 1.
    assert dsl.evaluate(p, [[0, 1, 3]]) == [[1, 1, 1]]


def test_select_best_of_a_select_with_the_key_as_score_is_not_a_plain_select():
    # The sorting selector is no single select: z3 finds an input where LT-then-ARGMAX and a
    # plain LT aggregate differ, and proves equal a program and its renamed copy.
    best = dsl.parse("s = select(tokens, tokens, LT)\nb = select_best(s, tokens, ARGMAX)\n"
                     "out = aggregate(b, tokens, default=0)\n")
    plain = dsl.parse("s = select(tokens, tokens, LT)\nout = aggregate(s, tokens, default=0)\n")
    r = check_equivalence(best, plain, [0, 1, 2], 3, method="z3")
    assert not r.equivalent and differing(best, plain, [r.counterexample]) is not None
    same = check_equivalence(best, best.rename({"s": "below"}), [0, 1, 2], 3, method="z3")
    assert same.equivalent


@pytest.mark.parametrize("text, needle", [
    ("s = select_best(select(tokens, tokens, GT), tokens, MIN)", "expected a direction"),
    ("s = select_best(select(tokens, tokens, GT), tokens)", "missing direction"),
    ("s = select_best(tokens, tokens, ARGMIN)", "must be a selector"),
    ("ARGMIN = select(tokens, tokens, GT)", "reserved"),
])
def test_bad_select_best_text_is_one_clear_parse_error(text, needle):
    with pytest.raises(ParseError, match=needle):
        dsl.parse(text)


def test_outside_tracr_fragment():
    with pytest.raises(ConversionError, match="outside tracr's RASP fragment"):
        dsl.to_rasp(dsl.parse(NEXT_GREATER))


def test_reference_documents_select_best():
    text = dsl.reference()
    assert "select_best(selector: selector, scores: sop, direction: direction)" in text
    assert "ARGMIN or ARGMAX" in text


SORT_WITH_DUPLICATES = """\
at_most = select(tokens, tokens, LEQ)
rank = selector_width(at_most)
covers = select(rank, indices, GT)
smallest = select_best(covers, tokens, ARGMIN)
sorted_tokens = aggregate(smallest, tokens)
"""


@FAST
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=7), min_size=1, max_size=6))
def test_select_best_sorts_with_duplicates(inputs):
    # Output i is the smallest token whose count of tokens at most it exceeds i: the i-th smallest.
    assert dsl.evaluate(dsl.parse(SORT_WITH_DUPLICATES), inputs) == [sorted(x) for x in inputs]
