"""DAS (synth.das): a planted rotated variable is recovered out of sample; a random network is not."""

from __future__ import annotations

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth import das
from mechsynth.synth.check import split
from mechsynth.synth.check.scoring import score

from tiny_targets import COPY, copy_target, tiny_target

MLP0 = "blocks.0.hook_mlp_out"
CFG = das.DASConfig(k=2, n_train=128, steps=120, seed=0)


def rotated_copy_target():
    """copy_target with MLP 0's write (and the unembedding's read) rotated inside residual dims 3..11.

    The token then lives in a 3-dim subspace of ``blocks.0.hook_mlp_out`` that is no set of basis
    dims: the embedding's dims 0..2 stay as they are, so the readout still reads only MLP 0.
    """
    target = copy_target()
    gen = torch.Generator().manual_seed(5)
    q = torch.eye(12)
    q[3:, 3:] = torch.linalg.qr(torch.randn(9, 9, generator=gen)).Q
    params = dict(target.model.named_parameters())
    with torch.no_grad():
        fc_out = params[
            "layers.0._original_component.mlp._original_component.fc_out._original_component.weight"
        ]
        fc_out.copy_(q @ fc_out)
        head = params["head._original_component.weight"]
        head.copy_(head @ q.T)
    return target


def test_planted_rotated_variable_recovered_held_out():
    target = rotated_copy_target()
    basis_dims = score(target, Hypothesis(COPY, {"out": MLP0 + "[dims=3,4,5]"}), n=128)
    assert basis_dims["iia"] < 0.5  # the planted variable is in no basis dims
    hypothesis, fit = das.with_das(target, Hypothesis(COPY, {"out": MLP0}), "out", CFG)
    loc = hypothesis.correspondence["out"]
    assert loc.subspace is not None and loc.subspace.k == 2 and loc.subspace.n_train == fit.n_train
    scores = score(target, hypothesis, n=128)
    assert scores["heldout_only"] is True
    assert not any(split.in_train_split(x) for x in scores["per_input"]["inputs"])
    assert fit.train_iia > 0.95
    assert scores["iia"] > 0.95  # out of sample


def test_das_on_random_network_does_not_pass():
    real, _ = das.with_das(rotated_copy_target(), Hypothesis(COPY, {"out": MLP0}), "out", CFG)
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
