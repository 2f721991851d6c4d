"""Multilabel (BCE-head) targets: set decoding, set agreement, per-label binary KL, trained:dyck1_next."""

from __future__ import annotations

import math

import torch

from mechsynth import dsl
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.models import load_target
from mechsynth.models.target import format_output, outputs_equal
from mechsynth.models.tasks import dyck1_next_label
from mechsynth.synth.check.patching import binary_kl, readout_loss
from mechsynth.synth.check.scoring import score

GROUND_TRUTH_SHAPED = dsl.parse(
    "opens = map(eq('('), tokens)\n"
    "prev = select(indices, indices, k <= q)\n"
    "frac = aggregate(prev, opens)\n"
    "deep = map(gt(0.5), frac)\n"
    "out = map(table({True: ('(', ')'), False: ('(', 'END')}), deep)"
)


def test_sets_compare_as_sets_and_print_as_sets() -> None:
    assert outputs_equal(("(", ")"), (")", "("), "multilabel")
    assert not outputs_equal(("(", ")"), ("(",), "multilabel")
    assert format_output(("(", ")"), "multilabel") == "{'(', ')'}"
    assert format_output((), "multilabel") == "set()"


def test_binary_kl_is_zero_on_itself_and_positive_elsewhere() -> None:
    clean = torch.tensor([[[3.0, -2.0, 40.0]]])
    assert readout_loss(clean, clean, [0], None, multilabel=True).item() == 0.0
    flipped = -clean
    loss = readout_loss(flipped, clean, [0], None, multilabel=True).item()
    expected = binary_kl(clean.double(), flipped.double()).sum().item()
    assert loss > 1.0 and math.isclose(loss, expected)
    assert math.isfinite(loss)  # logit 40: log-sigmoids, no log(0)


def test_dyck1_next_labels() -> None:
    assert dyck1_next_label(["(", ")", "("]) == [("(", ")"), ("(", "END"), ("(", ")")]


def test_trained_dyck1_next_decodes_label_sets() -> None:
    t = load_target("trained:dyck1_next")
    assert t.task.output_kind == "multilabel"
    assert t.info["accuracy"] >= 0.99
    inputs = t.task.sample(64, seed=3)
    assert t.accuracy(inputs) >= 0.99
    out = t.predict([["(", ")"]])[0]
    assert [set(v) for v in out] == [{"(", ")"}, {"(", "END"}]


def test_ground_truth_shaped_hypothesis_scores_with_defined_loss_recovered() -> None:
    t = load_target("trained:dyck1_next")
    h = Hypothesis(GROUND_TRUTH_SHAPED, {
        "tokens": Location.parse("hook_embed"), "frac": Location.parse("blocks.0.hook_attn_out"),
        "out": Location.parse("blocks.1.hook_resid_post"),
    })
    s = score(t, h, n=64, n_broader=8)
    assert s["behaviour"] == 1.0
    assert set(s["behaviour_per_label"]) == {"(", ")", "END"}
    assert all(v == 1.0 for v in s["behaviour_per_label"].values())
    assert math.isfinite(s["loss_recovered"]) and s["loss_resampled"] > 0.1
    assert s["loss_clean"] == 0.0


def test_a_wrong_set_program_is_caught_per_label() -> None:
    t = load_target("trained:dyck1_next")
    wrong = dsl.parse("out = map(table({'(': ('(', ')'), ')': ('(', 'END')}), tokens)")
    s = score(t, Hypothesis(wrong, {"tokens": Location.parse("hook_embed")}), n=64, n_broader=8)
    assert s["behaviour"] < 0.95
    assert s["behaviour_per_label"]["("] == 1.0 and s["behaviour_per_label"][")"] < 0.95
