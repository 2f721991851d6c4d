"""Interchange across lengths: a variable of the length alone (tracr:length) gets tested."""

from __future__ import annotations

import pytest

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.check.patching import CheckError
from mechsynth.synth.check.scoring import score

N = 128


@pytest.fixture(scope="module")
def length_target(target_named):
    return target_named("tracr:length")


def test_within_a_length_no_pair_can_test_the_length(length_target):
    s = score(length_target, length_target.ground_truth, n=N, seed=0, lengths="same")
    assert s["iia_n_informative"]["length_2"] == 0 and s["loss_recovered"] != s["loss_recovered"]  # NaN


def test_across_lengths_the_true_location_follows_the_source(length_target):
    s = score(length_target, length_target.ground_truth, n=N, seed=0, lengths="aligned")
    assert s["iia_n_informative"]["length_2"] > N // 2
    assert s["iia_informative_per_variable"]["length_2"] == 1.0 and s["iia_lengths"] == "aligned"


def test_across_lengths_a_wrong_location_fails(length_target):
    h = length_target.ground_truth
    wrong = Hypothesis(h.program, {**dict(h.correspondence),
                                   "length_2": Location.parse("blocks.0.hook_mlp_out[dims=0,1,2,3,4]")})
    assert score(length_target, wrong, n=N, seed=0, lengths="same")["iia"] == 1.0  # within a length: no test
    s = score(length_target, wrong, n=N, seed=0, lengths="aligned")
    assert s["iia_informative_per_variable"]["length_2"] < 0.5 and s["iia"] < 0.5


def test_an_unknown_lengths_option_is_a_one_line_error(length_target):
    with pytest.raises(CheckError, match="lengths must be"):
        score(length_target, length_target.ground_truth, n=N, seed=0, lengths="any")
