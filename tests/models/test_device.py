"""models.device: naming a device, refusing one the machine lacks, moving a target."""

from __future__ import annotations

import pytest
import torch

from mechsynth.models import device as dev
from mechsynth.models import load_target
from mechsynth.models.device import DEVICE_ENV, DeviceError, resolve_device


def test_auto_is_cuda_only_where_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(" AUTO ") == torch.device("cuda")


def test_the_environment_says_what_auto_means(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")  # an explicit name wins


def test_the_suite_runs_on_the_cpu() -> None:
    assert resolve_device("auto") == torch.device("cpu")  # tests/conftest.py


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "", "xla"])
def test_unknown_names_are_one_line(name: str) -> None:
    with pytest.raises(DeviceError) as e:
        resolve_device(name)
    assert "\n" not in str(e.value) and "unknown device" in str(e.value)


def test_a_missing_gpu_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match="not available here"):
            resolve_device(name)


def test_a_gpu_index_past_the_last_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="2 CUDA device"):
        resolve_device("cuda:2")


def test_a_target_knows_its_device_and_on_the_same_device_is_itself(target_named) -> None:
    target = target_named("tracr:reverse")
    assert target.device == torch.device("cpu")
    assert target.on("cpu") is target and target.on("auto") is target
    x = target.task.sample(3, seed=0, length=3)
    assert target.tokens(x).device == target.device


def test_load_target_checks_the_device_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    built = []
    import mechsynth.models.registry as registry

    monkeypatch.setattr(registry, "_load", lambda spec: built.append(spec))
    with pytest.raises(DeviceError):
        load_target("tracr:reverse", device="cuda")
    assert built == []


def test_controls_stay_on_the_device_of_the_real_network(target_named) -> None:
    from mechsynth.models import reinitialized, shuffled

    target = target_named("trained:reverse")
    for copy in (reinitialized(target, 0), shuffled(target, 0)):
        assert copy.device == target.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_cuda_scores_agree(target_named) -> None:
    from mechsynth.synth.check.scoring import score

    for spec in ("tracr:reverse", "trained:reverse"):
        cpu = target_named(spec)
        hypothesis = cpu.ground_truth
        if hypothesis is None:
            from mechsynth.synth.bench.perf import chain_probe_hypothesis

            hypothesis = chain_probe_hypothesis(int(cpu.model.cfg.n_layers))
        gpu = cpu.on("cuda")
        assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
        a = score(cpu, hypothesis, n=128, seed=0)
        b = score(gpu, hypothesis, n=128, seed=0)
        numbers = [k for k, v in a.items() if isinstance(v, float)]
        assert numbers
        for key in numbers:
            assert b[key] == pytest.approx(a[key], abs=1e-4, nan_ok=True), key
