"""Scrubbing across lengths: when resampling within a length changes nothing (tracr:length),
``score(lengths="auto")`` resamples across lengths and loss recovered is defined; when even
that changes nothing, loss recovered is undefined with the reason in words."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.check.scoring import MIN_RESAMPLED_LOSS, score
from mechsynth.synth.check.scrub import matching_rows

N = 128


@pytest.fixture(scope="module")
def length_target(target_named):
    return target_named("tracr:length")


@pytest.fixture(scope="module")
def truth_scores(length_target):
    return score(length_target, length_target.ground_truth, n=N, seed=0)


def test_a_length_degenerate_task_scrubs_across_lengths_with_a_defined_loss_recovered(truth_scores):
    s = truth_scores
    assert s["iia_lengths"] == "aligned"
    assert s["loss_resampled"] >= MIN_RESAMPLED_LOSS and "loss_recovered_undefined" not in s
    assert s["loss_recovered"] == pytest.approx(1.0, abs=1e-6) and s["iia_informative"] == 1.0
    assert s["scrub_fallback_fraction"] == 0.0


def test_within_a_length_the_same_task_says_why_loss_recovered_is_undefined(length_target):
    s = score(length_target, length_target.ground_truth, n=N, seed=0, lengths="same")
    assert math.isnan(s["loss_recovered"]) and s["iia_lengths"] == "same"
    assert "within a length" in s["loss_recovered_undefined"]
    assert "MIN_RESAMPLED_LOSS" in s["loss_recovered_undefined"]


def test_across_lengths_a_wrong_location_loses_the_loss(length_target):
    h = length_target.ground_truth
    wrong = Hypothesis(h.program, {**dict(h.correspondence),
                                   "length_2": Location.parse("blocks.0.hook_mlp_out[dims=0,1,2,3,4]")})
    s = score(length_target, wrong, n=N, seed=0)
    assert s["iia_lengths"] == "aligned" and s["loss_recovered"] < 0.2 and s["iia"] < 0.5


def test_a_task_that_is_not_degenerate_keeps_resampling_within_a_length(target_named):
    t = target_named("tracr:reverse")
    auto = score(t, t.ground_truth, n=64, seed=0)
    same = score(t, t.ground_truth, n=64, seed=0, lengths="same")
    assert auto["iia_lengths"] == "same"
    assert auto["loss_recovered"] == same["loss_recovered"] and auto["iia"] == same["iia"]


def test_a_network_whose_output_never_changes_has_loss_recovered_undefined_in_words(length_target):
    model = copy.deepcopy(length_target.model)
    with torch.no_grad():
        for name, p in [*model.named_parameters(), *model.named_buffers()]:
            if name.startswith(("head.", "unembed.")):
                p.zero_()  # every input gives the same (all-zero) logits
    flat = dataclasses.replace(length_target, name="tracr:length#flat", model=model, ground_truth=None)
    s = score(flat, length_target.ground_truth, n=N, seed=0)
    assert s["iia_lengths"] == "aligned" and math.isnan(s["loss_recovered"])
    assert "even across lengths" in s["loss_recovered_undefined"]


def test_matching_rows_picks_only_rows_that_agree_and_have_the_position():
    query = torch.tensor([[1.0, 2.0], [1.0, 3.0], [5.0, 2.0]])
    keys = torch.tensor([[1.0, 2.0], [1.0, float("inf")], [float("inf"), 2.0]])
    rows = matching_rows(query, keys, torch.Generator().manual_seed(0))
    assert rows[0, 0] in (0, 1) and rows[0, 1] in (0, 2) and rows[1, 1] == -1 and rows[2, 0] == -1
