"""The controls refit a learned (DAS) subspace on every null, so a rotation cannot pass a random network."""

from __future__ import annotations

from tiny_targets import COPY, EMBED, rotated_copy_target

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth import das
from mechsynth.synth.control.config import ControlConfig
from mechsynth.synth.control.context import ControlContext
from mechsynth.synth.control.nulls import RandomNetworks
from mechsynth.synth.control.stage import ControlStage

MLP0 = "blocks.0.hook_mlp_out"
CFG = das.DASConfig(k=3, n_train=128, steps=120, seed=0)


def test_random_networks_get_das_refitted_and_the_real_subspace_beats_them():
    target = rotated_copy_target()
    real, _ = das.with_das(target, Hypothesis(COPY, {"tokens": EMBED, "out": MLP0}), "out", CFG)
    config = ControlConfig(network_seeds=(0,), network_kinds=("reinitialized",))
    stage = ControlStage(config, controls=(RandomNetworks(),), n_inputs=128)
    ctx = ControlContext(stage, target, real)
    assert ctx.fitted(target, real) is real  # the real hypothesis keeps its own fit
    result = RandomNetworks().run(ctx)
    copy = stage._network(target, "reinitialized", 0)
    refitted = ctx.fitted(copy, real)
    assert refitted.correspondence["out"] != real.correspondence["out"]  # fitted on the null itself
    assert refitted.correspondence["out"].subspace.n_train == real.correspondence["out"].subspace.n_train
    assert ctx.real > 0.5
    assert result.passed, result.detail
    assert result.numbers["copies"]["reinitialized[0]"]["as_claimed"] < 0.5
