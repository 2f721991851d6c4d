"""Control networks keep the architecture and weight statistics but destroy the behaviour."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mechsynth import models

TARGETS = ["trained:reverse", "trained:sort", "trained:hist", "trained:prefix_count", "trained:induction",
           "trained:modadd", "tracr:reverse", "tracr:sort"]


def _chance(target: models.Target, inputs: list[list]) -> float:
    """Accuracy of the best constant guess (the most frequent label) on these inputs."""
    labels = [v for row in target.task.label(inputs) for v in row if v is not None]
    return Counter(labels).most_common(1)[0][1] / len(labels)


@pytest.mark.parametrize("spec", TARGETS)
@pytest.mark.parametrize("control", [models.reinitialized, models.shuffled])
def test_controls_destroy_behaviour_but_keep_shapes(spec: str, control) -> None:
    target = models.load_target(spec)
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    null = control(target, 0)
    inputs = target.task.sample(300, seed=11)
    assert target.accuracy(inputs) >= 0.99
    assert null.accuracy(inputs) <= _chance(target, inputs) + 0.15
    after = null.model.state_dict()
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert any(not torch.equal(after[k], before[k]) for k in before)
    # the original network is untouched
    assert all(torch.equal(target.model.state_dict()[k], before[k]) for k in before)
    assert null.ground_truth is None and null.info["of"] == target.name and null.task == target.task
    assert null.model.training is False


def test_shuffled_keeps_each_tensors_values() -> None:
    target = models.load_target("trained:sort")
    null = models.shuffled(target, 3)
    for k, v in target.model.state_dict().items():
        w = null.model.state_dict()[k]
        assert torch.equal(torch.sort(v.reshape(-1)).values, torch.sort(w.reshape(-1)).values), k


def test_controls_are_deterministic_in_the_seed() -> None:
    target = models.load_target("trained:hist")
    for control in (models.reinitialized, models.shuffled):
        a, b, c = control(target, 1), control(target, 1), control(target, 2)
        sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_reinitialized_without_config_redraws_matrices(tmp_path) -> None:
    # Networks not built from a config (e.g. hub models) take the generic re-initialisation path.
    import dataclasses

    target = models.load_target("trained:hist")
    bare = dataclasses.replace(target, info={k: v for k, v in target.info.items() if k != "config"})
    null = models.reinitialized(bare, 0)
    for k, v in null.model.state_dict().items():
        if v.ndim >= 2:
            assert not torch.equal(v, target.model.state_dict()[k])
        else:
            assert bool((v == 0).all()), k  # no LayerNorm here: every vector is a bias
    assert null.accuracy(target.task.sample(200, seed=0)) < 0.6
