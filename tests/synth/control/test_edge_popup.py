"""Edge-popup (Ramanujan et al. 2020): a masked random network that mimics the target."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_targets import COPY, EMBED, MLP0, copy_target, tiny_target

from mechsynth.synth.control.config import ControlConfig
from mechsynth.synth.control.nulls import EdgePopup
from mechsynth.synth.control.stage import ControlStage
from mechsynth.synth.control.edge_popup import (
    EdgePopupConfig,
    EdgePopupError,
    fit_edge_popup,
    maskable_parameters,
)
from mechsynth.dsl.hypothesis import Hypothesis

FAST = EdgePopupConfig(steps=40, batch_size=32, n_eval=64, seed=3)


def test_mask_keeps_top_k_of_frozen_random_weights():
    target, random_net = copy_target(), tiny_target(5, name="random")
    before = {k: v.clone() for k, v in random_net.model.state_dict().items()}
    result = fit_edge_popup(target, random_net, FAST)
    # The random network itself is untouched.
    after = random_net.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    masked = dict(maskable_parameters(result.target.model))
    original = dict(maskable_parameters(random_net.model))
    kept = 0
    for name, w in masked.items():
        w0 = original[name]
        # Every weight is either the random network's own value (frozen) or removed.
        assert torch.all((w == 0) | (w == w0))
        kept += int((w == w0).sum()) - int(((w == 0) & (w0 == 0)).sum())
        assert int((w != 0).sum()) <= round(0.5 * w.numel())
    assert result.n_kept_weights == sum(round(0.5 * w.numel()) for w in masked.values())
    assert 0 < kept <= result.n_kept_weights
    assert "edge-popup" in result.target.name and result.target.ground_truth is None
    json.dumps(result.to_json())


def test_bad_config_is_a_typed_error():
    with pytest.raises(EdgePopupError):
        EdgePopupConfig(keep_fraction=0)


@pytest.mark.slow
def test_masked_random_network_mimics_the_target_but_is_not_explained_by_its_mechanism():
    """The Ramanujan warning, measured: behaviour is reproduced, the mechanism is not."""
    target = copy_target()
    hyp = Hypothesis(COPY, {"tokens": EMBED, "out": MLP0})
    config = ControlConfig(edge_popup=True, edge_popup_config=EdgePopupConfig(steps=300, batch_size=64))
    stage = ControlStage(
        config,
        networks={"reinitialized": lambda t, s: tiny_target(s, name="random")},
        controls=[EdgePopup()],
        n_inputs=32,
    )
    cc = stage.run(target, hyp, n_tested=1)
    res = cc.result("edge_popup")
    assert res.numbers["agreement"] > 0.9 > res.numbers["agreement_unmasked"]  # it mimics the outputs
    assert res.passed and res.numbers["gap"] >= 0.3  # but the hypothesis does not explain it
