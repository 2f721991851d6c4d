"""DAS (synth.das): a planted rotated variable is recovered out of sample; a random network is not."""

from __future__ import annotations

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth import das
from mechsynth.synth.check import split
from mechsynth.synth.check.scoring import score

from tiny_targets import COPY, EMBED, rotated_copy_target, tiny_target

MLP0 = "blocks.0.hook_mlp_out"
CFG = das.DASConfig(k=3, n_train=128, steps=120, seed=0)


def test_planted_rotated_variable_recovered_held_out():
    target = rotated_copy_target()
    basis_dims = score(target, Hypothesis(COPY, {"out": MLP0 + "[dims=3,4,5]"}), n=128)
    assert basis_dims["iia"] < 0.5  # the planted variable is in no basis dims
    hypothesis, fit = das.with_das(target, Hypothesis(COPY, {"tokens": EMBED, "out": MLP0}), "out", CFG)
    loc = hypothesis.correspondence["out"]
    assert loc.subspace is not None and loc.subspace.k == 3 and loc.subspace.n_train == fit.n_train
    scores = score(target, hypothesis, n=128)
    assert scores["heldout_only"] is True
    assert not any(split.in_train_split(x) for x in scores["per_input"]["inputs"])
    assert fit.train_iia > 0.95
    assert scores["iia"] > 0.95  # out of sample
    assert scores["loss_recovered"] > 0.9


def test_das_on_random_network_does_not_pass():
    real, _ = das.with_das(rotated_copy_target(), Hypothesis(COPY, {"tokens": EMBED, "out": MLP0}), "out",
                           CFG)
    for seed in (1, 2):
        random_target = tiny_target(seed)
        refitted = das.refit(random_target, real)
        assert refitted.correspondence["out"] != real.correspondence["out"]  # fitted anew, same procedure
        scores = score(random_target, refitted, n=128)
        assert scores["iia"] < 0.5


def test_fit_is_deterministic_in_seed():
    target = rotated_copy_target()
    cfg = das.DASConfig(k=1, n_train=32, steps=5, seed=3)
    a = das.fit_location(target, COPY, "out", Location(MLP0), cfg).location
    b = das.fit_location(target, COPY, "out", Location(MLP0), cfg).location
    assert a == b
