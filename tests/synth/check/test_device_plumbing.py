"""Every tensor the checks make names its device: the target's (network side) or the CPU
(the interpreter's values, seeded draws), never torch's default by accident.

CI has no GPU, so a forgotten ``device=`` would pass every CPU test and fail on the first
CUDA run. This test watches every tensor factory called from the check code (and the
target's encoding) during whole scores, on a tracr and a trained target, in every ablation
and in the fused and reference batching, and fails on any that relies on the default
device. Random draws from a seeded generator are exempt: they are made on the CPU on
purpose (the same rows on every device) and moved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import mechsynth.models.target as target_module
import mechsynth.synth.check as check_package

FACTORIES = {
    torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.arange,
    torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm, torch.linspace,
}
WATCHED = (str(Path(check_package.__file__).parent), str(Path(target_module.__file__)))


class _Factories(TorchFunctionMode):
    """Records (file:line, device given) for each factory call made from a watched file."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            frame = sys._getframe(1)
            while frame is not None and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            where = frame.f_code.co_filename if frame is not None else ""
            if where.startswith(WATCHED) and "generator" not in kwargs:
                self.calls.append((f"{Path(where).name}:{frame.f_lineno}", kwargs.get("device")))
        return func(*args, **kwargs)


@pytest.mark.parametrize("spec", ["tracr:reverse", "trained:reverse"])
def test_every_tensor_a_score_makes_names_its_device(target_named, spec: str) -> None:
    from mechsynth.synth.bench.perf import chain_probe_hypothesis
    from mechsynth.synth.check.batching import Batching
    from mechsynth.synth.check.scoring import score

    target = target_named(spec)
    hypothesis = target.ground_truth or chain_probe_hypothesis(int(target.model.cfg.n_layers))
    watch = _Factories()
    with watch:
        for ablation in ("resample", "mean", "zero"):
            score(target, hypothesis, n=48, seed=1, ablation=ablation)
        score(target, hypothesis, n=48, seed=1, batching=Batching.REFERENCE)
    assert watch.calls, "the watch saw no factory call: it is not watching the check code"
    defaulted = sorted({where for where, device in watch.calls if device is None})
    assert not defaulted, f"tensors made on torch's default device at {defaulted}"
    devices = {torch.device(d) for _, d in watch.calls}
    assert devices <= {target.device, torch.device("cpu")}
