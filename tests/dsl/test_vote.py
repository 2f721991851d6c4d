"""The vote primitives: argmax over labels of bias + the voters' summed label scores."""

import random

import pytest

from mechsynth import dsl
from mechsynth.dsl.errors import DSLError, EvaluationError
from mechsynth.dsl.interpret import evaluate
from mechsynth.dsl.primitives import MAX_VOTERS


def _reference(inputs, labels, bias, tables, voters):
    out = []
    for x in inputs:
        row = []
        for i in range(len(x)):
            total = list(bias)
            for name, table in zip(voters, tables):
                v = x[i] if name == "tokens" else i
                for key, s in table:
                    if key == v:
                        total = [a + b for a, b in zip(total, s)]
            row.append(labels[max(range(len(labels)), key=lambda j: (total[j], -j))])
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_vote_matches_a_python_reference_and_round_trips(seed):
    rng = random.Random(seed)
    labels = (0, 1, 2)
    bias = tuple(round(rng.uniform(-1, 1), 3) for _ in labels)
    voters = ("tokens", "indices")
    tables = tuple(
        tuple(
            (v, tuple(round(rng.uniform(-2, 2), 3) for _ in labels))
            for v in range(4)
            if rng.random() < 0.8
        )
        for _ in voters
    )
    text = f"v = vote2(tokens, indices, {(labels, bias) + tables!r})"
    program = dsl.parse(text)
    assert dsl.parse(str(program)) == program
    inputs = [[rng.randrange(4) for _ in range(rng.randint(1, 4))] for _ in range(20)]
    assert evaluate(program, inputs) == _reference(inputs, labels, bias, tables, voters)


def test_vote_of_every_arity_is_registered_and_undefined_where_a_voter_is():
    for k in range(2, MAX_VOTERS + 1):
        args = ", ".join(["tokens"] * (k - 1) + ["s"])
        tables = ", ((1, (0.0, 1.0)),)" * k
        text = f"s = map(table({{0: None, 1: 1}}), tokens)\nv = vote{k}({args}, ((0, 1), (0.5, 0.0){tables}))"
        program = dsl.parse(text)
        assert evaluate(program, [[0, 1]]) == [[None, 1]]


def test_malformed_scores_are_one_clear_error():
    program = dsl.parse("v = vote2(tokens, indices, ((0, 1), (0.0,), (), ()))")
    with pytest.raises(EvaluationError, match="labels and bias"):
        evaluate(program, [[0, 1]])
    with pytest.raises(DSLError):
        dsl.parse("v = vote2(tokens, ((0, 1), (0.0, 0.0), ()))")
