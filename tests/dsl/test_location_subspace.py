"""A learned-subspace location (dsl.location.Subspace): text/JSON round-trips, readable form, bad input."""

from __future__ import annotations

import math

import pytest

from mechsynth import dsl
from mechsynth.dsl.errors import HypothesisError
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location, Subspace

R = 1 / math.sqrt(2)
SUB = Subspace(((R, R, 0.0), (0.0, 0.0, 1.0)), n_train=64, steps=100, seed=3)


def test_round_trips_through_text_json_and_the_hypothesis_file():
    loc = Location("blocks.0.attn.hook_z", 1, subspace=SUB)
    assert Location.parse(str(loc)) == loc
    assert Location.from_json(loc.to_json()) == loc
    hyp = Hypothesis(dsl.parse("out = map(identity, tokens)"), {"out": loc})
    text = str(hyp)
    assert "subspace k=2, learned by DAS on 64 inputs" in text  # the readable note
    assert Hypothesis.parse(text) == hyp
    assert Hypothesis.parse(Hypothesis.from_json(hyp.to_json()).__str__()) == hyp
    assert hash(Hypothesis.parse(text)) == hash(hyp)


def test_describe_is_readable():
    loc = Location("blocks.1.hook_resid_mid", subspace=SUB)
    assert loc.describe() == "blocks.1.hook_resid_mid subspace k=2, learned by DAS on 64 inputs"
    assert Location("blocks.1.hook_resid_mid").describe() == "blocks.1.hook_resid_mid"


@pytest.mark.parametrize("text", [
    "blocks.0.hook_resid_post[das k=2 n=5 steps=1 seed=0 basis=1,0]",  # says 2 columns, gives 1
    "blocks.0.hook_resid_post[das k=1 n=5 steps=1 seed=0 basis=1,x]",
    "blocks.0.hook_resid_post[das k=1 n=5 basis=1,0]",
    "blocks.0.hook_resid_post[dims=1, das k=1 n=5 steps=1 seed=0 basis=1,0]",
    "blocks.0.hook_resid_post[das k=1 n=5 steps=1 seed=0 basis=1,0|0]",
    "blocks.0.hook_resid_post[das k=1 n=5 steps=1 seed=0 basis=nan,0]",
])
def test_bad_subspace_text_is_one_clear_error(text):
    with pytest.raises(HypothesisError):
        Location.parse(text)
