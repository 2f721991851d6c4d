"""Bring-your-own targets (file:, state dicts, checkpoints, boot_transformers) and bad input."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from mechsynth import models
from mechsynth.models import byo, checkpoint, zoo
from mechsynth.models.tracr_targets import compiled_example, tracr_state_dict, tracr_target


def _write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def test_from_state_dict_in_transformer_lens_layout() -> None:
    # The classic TransformerLens layout (W_Q [heads, d_model, d_head], ...) as produced from tracr.
    ref = tracr_target("hist")
    config, sd = tracr_state_dict(compiled_example("hist").assembled)
    t = byo.from_state_dict("mine", ref.task, config, sd, input_ids=ref.input_ids,
                            output_values=ref.output_values)
    xs = list(ref.task.enumerate())
    assert t.predict(xs) == ref.predict(xs)
    assert t.kind == "file"


def test_config_weights_mismatch_is_one_clear_line() -> None:
    ref = tracr_target("hist")
    config, sd = tracr_state_dict(compiled_example("hist").assembled)
    with pytest.raises(models.TargetError, match="do not fit the config") as e:
        byo.from_state_dict("bad", ref.task, {**config, "d_model": config["d_model"] + 1}, sd)
    assert "\n" not in str(e.value)
    missing = {k: v for k, v in sd.items() if k != "blocks.0.mlp.W_in"}
    with pytest.raises(models.TargetError, match="do not fit the config"):
        byo.from_state_dict("bad", ref.task, config, missing)
    with pytest.raises(models.TargetError, match="unknown model config field"):
        byo.from_state_dict("bad", ref.task, {**config, "d_modle": 3}, sd)


def _copy_checkpoint(tmp_path, name: str = "hist"):
    src_json, src_w = checkpoint.paths(zoo.checkpoint_stem(name))
    dst_json, dst_w = tmp_path / f"{name}.json", tmp_path / f"{name}.safetensors"
    dst_json.write_text(src_json.read_text())
    dst_w.write_bytes(src_w.read_bytes())
    return dst_json, dst_w


def test_checkpoint_round_trip(tmp_path) -> None:
    meta_path, _ = _copy_checkpoint(tmp_path)
    t = byo.from_checkpoint(meta_path)
    ref = models.load_target("trained:hist")
    xs = ref.task.sample(50, seed=0)
    assert t.predict(xs) == ref.predict(xs)


def test_corrupt_and_unreadable_checkpoints(tmp_path) -> None:
    meta_path, weights_path = _copy_checkpoint(tmp_path)
    weights_path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(models.TargetError, match="cannot read checkpoint weights"):
        byo.from_checkpoint(meta_path)
    meta_path, weights_path = _copy_checkpoint(tmp_path)
    meta_path.write_text("{not json")
    with pytest.raises(models.TargetError, match="not JSON"):
        byo.from_checkpoint(meta_path)
    meta_path, _ = _copy_checkpoint(tmp_path)
    meta = json.loads(meta_path.read_text())
    del meta["config"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(models.TargetError, match="lacks 'config'"):
        byo.from_checkpoint(meta_path)
    meta_path, _ = _copy_checkpoint(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["config"]["d_mlp"] = meta["config"]["d_mlp"] * 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(models.TargetError, match="do not fit the config"):
        byo.from_checkpoint(meta_path)
    with pytest.raises(models.TargetError, match="does not exist"):
        byo.from_checkpoint(tmp_path / "nothing.json")


def test_file_target(tmp_path) -> None:
    meta_path, _ = _copy_checkpoint(tmp_path)
    path = _write(tmp_path / "mine.py", f"""
        from mechsynth.models import byo

        def target():
            return byo.from_checkpoint({str(meta_path)!r}, name="my-hist")
    """)
    t = models.load_target(f"file:{path}")
    assert t.name == "my-hist"
    xs = t.task.sample(20, seed=0)
    assert t.accuracy(xs) >= 0.99


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", r"defines no function target\(\)"),
        ("def target():\n    return 42\n", "returned int, not a models.Target"),
        ("def target():\n    raise RuntimeError('boom')\n", r"target\(\) failed: RuntimeError: boom"),
        ("import no_such_module_xyz\n", "importing .* failed: ModuleNotFoundError"),
    ],
)
def test_bad_target_files(tmp_path, body: str, message: str) -> None:
    path = _write(tmp_path / "t.py", body)
    with pytest.raises(models.TargetError, match=message) as e:
        models.load_target(f"file:{path}")
    assert "\n" not in str(e.value)


def test_missing_or_non_python_target_file(tmp_path) -> None:
    with pytest.raises(models.TargetError, match="does not exist"):
        models.load_target(f"file:{tmp_path / 'nope.py'}")
    other = _write(tmp_path / "t.txt", "hello")
    with pytest.raises(models.TargetError, match="not a .py module"):
        models.load_target(f"file:{other}")


def test_tiny_gpt2_through_boot_transformers(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=20, n_positions=16,
                                     bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "tiny-gpt2")
    path = _write(tmp_path / "gpt2_target.py", f"""
        from mechsynth.models import Task, byo

        def target():
            task = Task("copy", vocab=tuple(range(1, 20)), min_len=1, max_len=8, bos=0,
                        labeller=lambda x: list(x), output_vocab=tuple(range(20)))
            return byo.from_hub({str(tmp_path / "tiny-gpt2")!r}, task)
    """)
    t = models.load_target(f"file:{path}")
    assert t.model.cfg.n_layers == 2 and t.model.cfg.d_model == 32 and t.model.training is False
    xs = t.task.sample(4, seed=0, length=5)
    tokens = t.tokens(xs)
    assert tokens[:, 0].tolist() == [0] * 4
    with torch.no_grad():
        expected = hf(tokens).logits
    assert torch.allclose(t.logits(xs), expected, atol=1e-4)
    _, cache = t.model.run_with_cache(tokens)
    assert "blocks.1.attn.hook_z" in cache and "blocks.0.hook_mlp_out" in cache
    preds = t.predict(xs)
    assert all(len(p) == 5 and all(v in range(20) for v in p) for p in preds)
    # controls work on hub models too (no native config: generic re-initialisation)
    null = models.reinitialized(t, 0)
    assert null.logits(xs).shape == expected.shape


def test_from_hub_bad_path(tmp_path) -> None:
    task = models.Task("x", vocab=(1, 2), min_len=1, max_len=2, labeller=list, output_vocab=(1, 2))
    with pytest.raises(models.TargetError, match="boot_transformers cannot load"):
        byo.from_hub(str(tmp_path / "missing-model"), task)


def _bce_head_dir(tmp_path):
    """A tiny GPT-2 saved offline whose config names a non-LM head (as a BCE next-token network's
    custom class would: same GPT-2 weights layout, head read as independent labels)."""
    import json

    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=4, n_positions=8)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(tmp_path / "bce")
    cfg_path = tmp_path / "bce" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architectures"] = ["GPT2ForMultiLabelNextToken"]
    cfg_path.write_text(json.dumps(cfg))
    task = models.Task("next", vocab=(0, 1), min_len=1, max_len=4, labeller=lambda x: [(0,)] * len(x),
                       output_vocab=(0, 1, 2, 3))
    return tmp_path / "bce", task


def test_hub_bce_head_loads_with_explicit_multilabel_readout(tmp_path, recwarn) -> None:
    path, task = _bce_head_dir(tmp_path)
    t = byo.from_hub(str(path), task, output_kind="multilabel")
    assert not [w for w in recwarn if issubclass(w.category, byo.HeadWarning)]
    assert t.task.output_kind == "multilabel"
    xs = [[0, 1, 1]]
    logits = t.logits(xs)[0]
    expected = [tuple(j for j in range(4) if logits[i, j] > 0) for i in range(3)]
    assert t.predict(xs)[0] == expected


def test_hub_non_lm_head_without_readout_warns_in_one_line(tmp_path) -> None:
    path, task = _bce_head_dir(tmp_path)
    with pytest.warns(byo.HeadWarning, match="GPT2ForMultiLabelNextToken.*not a plain softmax LM head") as w:
        t = byo.from_hub(str(path), task)
    assert "\n" not in str(w[0].message)
    assert t.task.output_kind == "categorical"
    with pytest.raises(models.TargetError, match="output_kind must be one of"):
        byo.from_hub(str(path), task, output_kind="bce")
