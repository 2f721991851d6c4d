"""synth.check.scrub: the one loss call over a group's patched logits (`Judge`) against one call each."""

from __future__ import annotations

import pytest
import torch

from mechsynth.models import load_target
from mechsynth.synth.bench.perf import chain_probe_hypothesis
from mechsynth.synth.check.claims import prepare_groups, resolve_claims
from mechsynth.synth.check.patching import PassCounter, readout_loss
from mechsynth.synth.check.scrub import Judge, is_multilabel, numeric_column, predictions_agree


@pytest.mark.parametrize("spec", ["tracr:reverse", "trained:palindrome"])
def test_judge_gives_each_logits_what_one_call_each_gives(spec):
    target = load_target(spec)
    hypothesis = target.ground_truth or chain_probe_hypothesis(int(target.model.cfg.n_layers))
    claims = resolve_claims(target, hypothesis)
    group = prepare_groups(target, claims, target.task.sample(48, 0), PassCounter())[-1]
    gen = torch.Generator().manual_seed(0)
    clean = group.clean_logits
    # Perturbed copies, one equal to the clean run, one with exact ties at the top (tracr's all-zero output).
    many = [clean + torch.randn(clean.shape, generator=gen) * s for s in (0.1, 1.0, 5.0)]
    many += [clean.clone(), torch.zeros_like(clean)]
    judge = Judge(target, group)
    judge.want(many[:3])  # the other two are asked about without being announced
    numeric, multi = numeric_column(target), is_multilabel(target)
    for logits in many:
        loss, same = judge(logits)
        expected = readout_loss(logits, clean, group.readout, numeric, multilabel=multi)
        torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
        assert torch.equal(same, predictions_agree(logits, clean, group.readout, numeric, multilabel=multi))
    assert float(judge(many[3])[0].abs().max()) < 1e-12
