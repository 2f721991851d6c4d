"""models.preflight (what `mechsynth check` shows): the encoding of an example, accuracy that
agrees with the target's own, and mistakes that are the network's real mistakes."""

from __future__ import annotations

import json

import pytest

from mechsynth import models
from mechsynth.models import preflight as pf
from mechsynth.models.target import outputs_equal


def test_example_shows_tokens_ids_and_read_positions(target_named) -> None:
    t = target_named("trained:modadd")
    e = pf.example(t, [3, 4, "="])
    assert e.tokens == (3, 4, "=") and e.ids == tuple(t.tokens([[3, 4, "="]])[0].tolist())
    assert e.read == (2,) and e.labels == (7,) and e.outputs == tuple(t.predict([[3, 4, "="]])[0][2:])
    with_bos = pf.example(target_named("trained:induction"), [5, 7, 9, 1, 2, 3, 4, 6, 8, 10, 11, 5])
    assert with_bos.tokens[0] == "BOS" and with_bos.read == (12,)  # model position = input position + 1


def test_accuracy_agrees_with_the_target_and_mistakes_are_real(target_named) -> None:
    good = target_named("trained:reverse")
    xs = good.task.sample(200, seed=4)
    assert pf.accuracy(good, xs, "task").accuracy == pytest.approx(good.accuracy(xs))
    broken = models.reinitialized(good, 0)  # a network that implements nothing
    acc = pf.accuracy(broken, xs, "task", n_wrong=3)
    assert acc.accuracy == pytest.approx(broken.accuracy(xs)) and acc.accuracy < 0.5
    assert len(acc.wrong) == 3
    for m in acc.wrong:
        pred, gold = broken.predict([list(m.input)])[0], broken.task.label([list(m.input)])[0]
        assert m.expected == tuple(gold[i] for i in m.positions)
        assert m.predicted == tuple(pred[i] for i in m.positions)
        assert not any(outputs_equal(a, b) for a, b in zip(m.predicted, m.expected))


def test_preflight_report_text_and_json(target_named) -> None:
    t = target_named("trained:induction")
    report = pf.preflight(t, n=200, seed=1)
    assert report.broader is not None and report.broader.accuracy < report.accuracy.accuracy
    assert report.architecture["n_layers"] == 2 and report.architecture["attn_only"] is True
    text = pf.format_preflight(report)
    for needle in ("architecture: 2 layer(s)", "token ", "BOS", "read at model positions [12]",
                   "accuracy on the task distribution (200 fresh inputs", "broader distribution", "wrong: "):
        assert needle in text, needle
    data = json.loads(json.dumps(report.to_json()))
    assert data["example"]["read"] == [12] and data["recorded"]["accuracy"] >= 0.99


def test_preflight_needs_inputs(target_named) -> None:
    with pytest.raises(models.TargetError, match="at least one input"):
        pf.preflight(target_named("trained:modadd"), n=0)


SOME_TARGETS = ["tracr:length", "tracr:sort", "trained:modadd", "trained:palindrome", "trained:unique_copy"]


@pytest.mark.parametrize("spec", SOME_TARGETS)
def test_preflight_works_on_targets_of_every_kind(spec: str, target_named) -> None:
    report = pf.preflight(target_named(spec), n=100)
    assert report.accuracy.accuracy >= 0.99 and report.example.read


@pytest.mark.slow
def test_preflight_works_on_every_target(target_named) -> None:
    from mechsynth.models.registry import known_specs

    for spec in known_specs():
        report = pf.preflight(target_named(spec), n=200)
        assert report.accuracy.n_read > 0, spec
