"""Outside checkpoints (models.outside via models.byo): TransformerLens state dict files saved
from a GPU, config inference from weight shapes, Hugging Face directories offline, and
one-line errors naming the bad tensor."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import pytest
import torch
from outside_files import classic_state_dict, saved_from_cuda

from mechsynth import models
from mechsynth.models import byo, outside
from mechsynth.models.bridge import build_bridge
from mechsynth.models.tracr_targets import compiled_example, tracr_state_dict, tracr_target

TASK = models.Task("copy", vocab=tuple(range(7)), min_len=1, max_len=9, labeller=list,
                   output_vocab=tuple(range(5)))


GPT2_STYLE = dict(n_layers=2, d_model=16, d_head=8, n_heads=2, d_mlp=32, d_vocab=7, d_vocab_out=5, n_ctx=10,
                  act_fn="gelu", normalization_type="LN", attention_dir="bidirectional", seed=3)


@pytest.fixture(scope="module")
def gpt2_style() -> torch.nn.Module:
    return build_bridge(GPT2_STYLE)


def test_transformer_lens_pt_saved_from_cuda_loads_on_cpu(tmp_path, gpt2_style) -> None:
    path = tmp_path / "model.pt"
    with saved_from_cuda():
        torch.save(classic_state_dict(gpt2_style), path)
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really is a GPU checkpoint
        torch.load(path, weights_only=True)
    t = byo.from_transformer_lens(path, TASK, {"attention_dir": "bidirectional", "act_fn": "gelu"})
    tokens = torch.randint(0, 7, (4, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(t.model(tokens), gpt2_style(tokens), atol=1e-5)
    shape_fields = ("n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx",
                    "normalization_type")
    assert {k: t.info["config"][k] for k in shape_fields} == {k: GPT2_STYLE[k] for k in shape_fields}
    assert "inferred from weight shapes: n_layers=2" in t.info["config_source"]
    assert "given: attention_dir='bidirectional', act_fn='gelu'" in t.info["config_source"]
    assert "assumed" not in t.info["config_source"]


def test_attention_only_safetensors_with_assumed_fields_said(tmp_path) -> None:
    from safetensors.torch import save_file

    config = dict(n_layers=3, d_model=24, d_head=6, n_heads=4, d_vocab=7, d_vocab_out=5, n_ctx=9,
                  attn_only=True, normalization_type="RMS", attention_dir="causal", seed=1)
    source = build_bridge(config)
    path = tmp_path / "attn_only.safetensors"
    save_file({k: v.contiguous() for k, v in classic_state_dict(source).items()}, str(path))
    t = byo.from_transformer_lens(path, TASK)
    tokens = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(t.model(tokens), source(tokens), atol=1e-5)
    assert t.info["config"]["attn_only"] is True and t.info["config"]["normalization_type"] == "RMS"
    said = t.info["config_source"]
    assert "assumed (not in the weights; pass them if wrong): attention_dir='causal'" in said
    from mechsynth.models.preflight import format_preflight, preflight

    assert f"config from: {said}" in format_preflight(preflight(t, n=10))  # mechsynth check shows it
    assert "act_fn" not in t.info["config_source"]  # no MLP, nothing to assume


def test_inference_matches_an_independently_built_classic_dict(tmp_path) -> None:
    # tracr's weights converted to the classic layout by other code (models.tracr_targets).
    ref = tracr_target("hist")
    config, sd = tracr_state_dict(compiled_example("hist").assembled)
    path = tmp_path / "hist.pth"
    torch.save({"state_dict": {k: torch.as_tensor(v) for k, v in sd.items()}}, path)  # a wrapped dict
    t = byo.from_transformer_lens(path, ref.task, {"attention_dir": config["attention_dir"]},
                                  input_ids=ref.input_ids, output_values=ref.output_values)
    assert {k: t.info["config"][k] for k in config} == config
    xs = list(ref.task.enumerate())
    assert t.predict(xs) == ref.predict(xs)


def _one_line_error(path, match: str, config=None) -> str:
    with pytest.raises(models.TargetError, match=match) as e:
        byo.from_transformer_lens(path, TASK, config)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_truncated_files_are_one_line(tmp_path, gpt2_style) -> None:
    from safetensors.torch import save_file

    sd = classic_state_dict(gpt2_style)
    pt, st = tmp_path / "m.pt", tmp_path / "m.safetensors"
    torch.save(sd, pt)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    for path in (pt, st):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        assert str(path) in _one_line_error(path, "truncated")


def test_wrong_shape_unknown_and_missing_tensors_are_named(tmp_path, gpt2_style) -> None:
    sd = classic_state_dict(gpt2_style)
    cases = {
        "wrong_shape": ({**sd, "blocks.1.attn.W_K": torch.zeros(2, 16, 4)},
                        r"'blocks\.1\.attn\.W_K' has shape \(2, 16, 4\), the config needs \(2, 16, 8\)"),
        "unknown": ({**sd, "blocks.0.attn.W_X": torch.zeros(2)}, r"unknown tensor 'blocks\.0\.attn\.W_X'"),
        "missing": ({k: v for k, v in sd.items() if k != "blocks.1.mlp.b_out"},
                    r"'blocks\.1\.mlp\.b_out' is missing"),
    }
    for name, (state, match) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(state, path)
        _one_line_error(path, match, {"attention_dir": "bidirectional"})
    # a given config that disagrees with the weights names the first tensor that does not fit
    path = tmp_path / "ok.pt"
    torch.save(sd, path)
    _one_line_error(path, r"'embed\.W_E' has shape \(7, 16\), the config needs \(7, 32\)",
                    {"d_model": 32, "d_head": 16})


def test_pickled_objects_are_refused_not_run(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not a state dict
    _one_line_error(path, "weights_only=True refuses")
    _one_line_error(tmp_path / "nothing.pt", "does not exist")
    other = tmp_path / "m.npz"
    other.write_bytes(b"x")
    _one_line_error(other, "expected .pt")


# --- Hugging Face directories --------------------------------------------------------------------
@contextmanager
def no_network(monkeypatch):
    """Any connection attempt is recorded and refused."""
    attempts: list = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=20, n_positions=16)
    hf = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    hf.save_pretrained(directory)
    return hf, directory


HUB_TASK = models.Task("copy", vocab=tuple(range(1, 20)), min_len=1, max_len=8, bos=0, labeller=list,
                       output_vocab=tuple(range(20)))


def test_hf_directory_boots_offline(tiny_gpt2, monkeypatch) -> None:
    hf, directory = tiny_gpt2
    with no_network(monkeypatch) as attempts:
        t = byo.from_hub(str(directory), HUB_TASK)
    assert attempts == []
    xs = HUB_TASK.sample(3, seed=0, length=6)
    with torch.no_grad():
        assert torch.allclose(t.logits(xs), hf(t.tokens(xs)).logits, atol=1e-4)


def test_hf_weights_without_config_json_given_a_config(tiny_gpt2, tmp_path, monkeypatch) -> None:
    hf, directory = tiny_gpt2
    bare = tmp_path / "weights-only"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    with pytest.raises(models.TargetError, match="has no config.json: pass config="):
        byo.from_hub(str(bare), HUB_TASK)
    config = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 20,
              "n_positions": 16}
    with no_network(monkeypatch) as attempts:
        t = byo.from_hub(str(bare), HUB_TASK, config=config)
    assert attempts == []
    assert t.info["config_source"] == "given (config=)"
    xs = HUB_TASK.sample(3, seed=1, length=5)
    with torch.no_grad():
        assert torch.allclose(t.logits(xs), hf(t.tokens(xs)).logits, atol=1e-4)
    wrong = r"tensor 'transformer\.wte\.weight' has shape \(20, 32\), the config needs \(20, 64\)"
    with pytest.raises(models.TargetError, match=wrong) as e:
        byo.from_hub(str(bare), HUB_TASK, config={**config, "n_embd": 64})
    assert "\n" not in str(e.value)
    with pytest.raises(models.TargetError, match=r"tensor 'transformer\.h\.2\.ln_1\.weight' is missing"):
        byo.from_hub(str(bare), HUB_TASK, config={**config, "n_layer": 3})
    with pytest.raises(models.TargetError, match="needs 'model_type'"):
        byo.from_hub(str(bare), HUB_TASK, config={"n_layer": 2})


def test_outside_shapes_cover_every_bridge_parameter() -> None:
    # the classic shape table and the bridge agree on how many tensors a config has
    for norm in (None, "LN", "RMS"):
        config = {**GPT2_STYLE, "normalization_type": norm}
        bridge_keys = build_bridge(config).state_dict()
        assert len(outside.transformer_lens_shapes(config)) == len(bridge_keys)
