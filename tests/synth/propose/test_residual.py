"""Residual behaviour: the rule search finds a planted trigger and invents none."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random

import pytest

from mechsynth.dsl import evaluate, parse
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.propose.residual import (
    Coverage, Literal, Observed, Rule, residual_search, rule_data, search_rule, with_trigger_branch,
)


def _observed(inputs, program_out, network_out):
    reads = tuple(tuple(range(len(x))) for x in inputs)
    return Observed(tuple(inputs), tuple(map(tuple, network_out)), tuple(map(tuple, program_out)), reads,
                    Coverage.EXHAUSTIVE, 0, 0)


def _synthetic(trigger, forced, noise, seed=0):
    """Every length-7 input over {0, 1, 2}; the program copies the first token everywhere, the
    network does too except where ``trigger`` holds (forced) and on ``noise`` random inputs."""
    inputs = [tuple(x) for x in itertools.product((0, 1, 2), repeat=7)]
    program = [[x[0]] * 7 for x in inputs]
    network = [[forced] * 7 if all(x[i] == v for i, v in trigger) else list(p)
               for x, p in zip(inputs, program)]
    rng = random.Random(seed)
    for j in rng.sample(range(len(inputs)), noise):
        network[j] = [(v + 1) % 3 for v in network[j]]
    return _observed(inputs, program, network)


def test_a_planted_conjunction_is_found_exactly_and_minimally():
    obs = _synthetic(trigger=((2, 1), (5, 0), (6, 2)), forced=2, noise=6)
    data = rule_data(obs, "categorical", (0, 1, 2))
    rule, score, n_scored, reason = search_rule(data)
    assert reason == "rule found"
    assert rule == Rule((Literal(2, 1), Literal(5, 0), Literal(6, 2)), 2)
    assert rule.literals == tuple(sorted(rule.literals))
    assert score.precision == 1.0 and score.recall > 0.95  # a few noise flips also give the forced value
    informative = [x for x in obs.inputs if x[2] == 1 and x[5] == 0 and x[6] == 2 and x[0] != 2]
    assert score.support == len(informative)
    assert n_scored > 1


def test_scattered_mistakes_make_no_rule():
    # 40 random disagreements: no conjunction holds on half of them with 95% precision and support.
    obs = _synthetic(trigger=(), forced=0, noise=40)
    obs = dataclasses.replace(obs, network=tuple(
        tuple(p) if n == tuple([0] * 7) and p != n else n for n, p in zip(obs.network, obs.program)))
    data = rule_data(obs, "categorical", (0, 1, 2))
    rule, score, _, reason = search_rule(data)
    assert rule is None and score is None
    assert "no rule passes" in reason or "literal" in reason


def _majority_program(threshold):
    entries = ", ".join(f"{k / 11!r}: {int(k > threshold)}" for k in range(12))
    return parse("frac = numerical(aggregate(select(tokens, tokens, TRUE), tokens))\n"
                 f"out = map(table({{{entries}}}), frac)")


def test_no_trigger_branch_on_a_clean_network(target_named):
    target = target_named("trained:majority")
    exact = residual_search(target, Hypothesis(_majority_program(5)))
    assert exact.coverage is Coverage.EXHAUSTIVE and exact.n_inputs == 2048
    assert exact.rule is None
    # An imperfect clean program (off by one count) leaves 462 structured disagreements, none a trigger.
    off = residual_search(target, Hypothesis(_majority_program(6)))
    assert off.n_disagree >= 400
    assert off.rule is None


@functools.cache
def _tracr_backdoor():
    """tracr: the output copies each token, except that x[1] == 2 and x[3] == 0 force 1 everywhere."""
    from tracr.rasp import rasp

    from mechsynth.models.tracr_targets import compile_rasp

    def at(i):
        sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == i)
        return rasp.categorical(rasp.Aggregate(sel, rasp.tokens))

    trig = rasp.categorical(rasp.SequenceMap(lambda a, b: int(a == 2 and b == 0), at(1), at(3)))
    out = rasp.categorical(rasp.SequenceMap(lambda t, x: 1 if t else x, trig, rasp.tokens))
    target = compile_rasp(out, (0, 1, 2), 5, name="tracr_backdoor")
    clean = dataclasses.replace(target.task, labeller=lambda x: list(x))
    return dataclasses.replace(target, task=clean)


def test_a_compiled_backdoor_is_found_and_branched():
    target = _tracr_backdoor()
    content = [x for x in target.task.enumerate() if len(target.task.content(x)) == 5]
    clean = Hypothesis(parse("out = map(identity, tokens)"))
    assert any(evaluate(clean.program, [list(x)])[0] != target.predict([list(x)])[0] for x in content)
    r = residual_search(target, clean)
    assert r.rule is not None, r.reason
    offset = len(content[0]) - 5  # the framing before the content (BOS), if the program sees it
    assert {(lit.position - offset, lit.value) for lit in r.rule.literals} == {(1, 2), (3, 0)}
    assert r.rule.forced == 1 and r.score.precision == 1.0 and r.score.recall == 1.0
    branch = with_trigger_branch(clean, r.rule, (0, 1, 2))
    got = evaluate(branch.program, [list(x) for x in content])
    assert got == [list(row) for row in target.predict([list(x) for x in content])]


@pytest.mark.slow
def test_the_loop_accepts_the_trigger_branch_of_a_backdoored_network(tmp_path):
    from mechsynth.models import load_target
    from mechsynth.models.backdoor import clean_task
    from mechsynth.synth.loop import run

    target = load_target("trained:backdoor_majority_1pct")
    clean = dataclasses.replace(target, task=clean_task(target.task))
    result = run(clean, out=tmp_path / "run", budget_seconds=60, no_llm=True)
    branch = [a for a in result.accepted if a.source == "residual"]
    assert branch
    assert "Trigger rule" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.slow
def test_an_unlocated_clean_output_gets_the_branch_claimed_at_the_last_mlp(tmp_path):
    """On the 0.01% network the accepted clean program locates only its head, not its output; the
    branch is then also offered at the last MLP, and that reading is accepted (so it can be edited)."""
    from mechsynth.models import load_target
    from mechsynth.models.backdoor import clean_task
    from mechsynth.synth.loop import run

    target = load_target("trained:backdoor_majority_001pct")
    clean = dataclasses.replace(target, task=clean_task(target.task))
    result = run(clean, out=tmp_path / "run", budget_seconds=60, no_llm=True)
    located = [a for a in result.accepted
               if a.source == "residual" and a.hypothesis.program.output in a.hypothesis.correspondence]
    assert located
    hyp = located[0].hypothesis
    assert hyp.correspondence[hyp.program.output].hook == "blocks.1.hook_mlp_out"
