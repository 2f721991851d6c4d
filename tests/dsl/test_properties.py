"""Property tests on random well-typed programs (hypothesis drives the seeds and sizes).

Printing and parsing round-trip; a re-parsed program evaluates identically; the
per-node fast path reproduces whole-program evaluation; and z3 and exhaustive
enumeration reach the same equivalence verdicts.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechsynth import dsl
from mechsynth.dsl.equivalence import check_equivalence, differing
from mechsynth.dsl.interpret import encode, eval_node, run
from mechsynth.dsl.sample import random_program

seeds = st.integers(min_value=0, max_value=2**32 - 1)
INPUTS = [[0], [3, 1], [1, 2, 0], [2, 2, 3, 1], [0, 1, 2, 3, 0], [3, 3, 3]]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_values(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a))) if not isinstance(a, str) else a == b


@FAST
@given(seeds, st.integers(min_value=1, max_value=10))
def test_print_parse_round_trip(seed, size):
    p = random_program(random.Random(seed), size)
    text = str(p)
    q = dsl.parse(text)
    assert q == p and str(q) == text and hash(q) == hash(p)


@FAST
@given(seeds, st.integers(min_value=1, max_value=10))
def test_reparsed_program_evaluates_identically(seed, size):
    p = random_program(random.Random(seed), size)
    q = dsl.parse(str(p))
    a, b = dsl.evaluate_all(p, INPUTS), dsl.evaluate_all(q, INPUTS)
    assert a.keys() == b.keys()
    for name in a:
        assert same_values(a[name], b[name]), name


@FAST
@given(seeds, st.integers(min_value=1, max_value=10))
def test_fast_path_matches_run(seed, size):
    p = random_program(random.Random(seed), size)
    batch = encode(INPUTS, symbols=p.literals())
    values = run(p, batch)
    for name, node in p.assignments:
        again = eval_node(node, [values[c] for c in node.inputs], batch)
        assert again.shape == values[name].shape
        assert bool(((again == values[name]) | (again.isnan() & values[name].isnan())).all()), name


@FAST
@given(seeds, st.integers(min_value=1, max_value=10))
def test_canonicalize_preserves_meaning(seed, size):
    p = random_program(random.Random(seed), size)
    c = dsl.canonicalize(p)
    assert c.size <= p.size
    assert same_values(dsl.evaluate(p, INPUTS), dsl.evaluate(c, INPUTS))
    assert dsl.parse(str(c)) == c


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, seeds, st.integers(min_value=1, max_value=4))
def test_z3_and_exhaustive_agree(seed_a, seed_b, size):
    a = random_program(random.Random(seed_a), size)
    b = random_program(random.Random(seed_b), size) if seed_b % 3 else dsl.canonicalize(a)
    vocab, n = [0, 1, 2], 3
    z = check_equivalence(a, b, vocab, n, method="z3")
    e = check_equivalence(a, b, vocab, n, method="exhaustive")
    assert z.equivalent == e.equivalent, (str(a), str(b), z, e)
    if z.counterexample is not None:
        assert differing(a, b, [z.counterexample]) is not None
        assert len(z.counterexample) == len(e.counterexample)
