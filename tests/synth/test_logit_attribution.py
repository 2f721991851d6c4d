"""Direct logit attribution: the components' contributions sum to the network's logits."""

import pytest
import torch

from mechsynth.models import load_target
from mechsynth.synth.logit_attribution import BIAS
from mechsynth.synth.observe import observe


@pytest.mark.parametrize("name", ["trained:first_unique", "trained:reverse"])  # final LN / none
def test_parts_sum_to_the_logits(name):
    target = load_target(name)
    obs = observe(target, per_length=8)
    group = obs.groups[-1]
    assert BIAS in group.logit_parts and len(group.logit_parts) > 3
    total = sum(group.logit_parts.values())
    off = target.position_offset
    with torch.no_grad():
        logits = target.model(target.tokens(list(group.inputs)))[:, off : off + group.length].float()
    assert torch.allclose(total, logits, atol=1e-4)
    assert obs.flat_logit_part(BIAS).shape == (obs.n_positions, logits.shape[-1])
