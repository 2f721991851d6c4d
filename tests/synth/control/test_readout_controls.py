"""The controls' behaviour oracle and the edge-popup mimic read only where the task reads."""

from __future__ import annotations

import torch
from readout_targets import FIRST, first_token

from mechsynth.synth.control.context import BehaviourOracle
from mechsynth.synth.control.edge_popup import _mimic_loss


def test_the_behaviour_oracle_compares_only_read_positions():
    assert BehaviourOracle(first_token(), n_per_length=20, seed=0).bound(FIRST) == 1.0
    assert BehaviourOracle(first_token("all"), n_per_length=20, seed=0).bound(FIRST) < 0.7


def test_the_edge_popup_mimic_loss_ignores_unread_positions():
    t = first_token()
    xs = t.task.sample(8, seed=0, length=4)
    teacher = t.logits(xs)
    student = teacher.clone()
    student[:, 1:] = torch.randn(student[:, 1:].shape)  # wrong only where nothing is read
    assert _mimic_loss(t, student, teacher, xs) < _mimic_loss(first_token("all"), student, teacher, xs)
    assert _mimic_loss(t, student, teacher, xs) == _mimic_loss(t, teacher, teacher, xs)
