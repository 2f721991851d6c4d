"""Outside checkpoints: networks trained elsewhere, read offline, their config given or inferred.

Researchers' trained networks come in two layouts, and mechsynth reads both without a network
connection and without running any code stored in the file:

- **TransformerLens state dicts** (`HookedTransformer.state_dict()`, as course material and
  papers publish them): a `.pt`/`.pth` file written by `torch.save`, or a `.safetensors` file.
  The keys are the classic TransformerLens names with per-head shapes (`embed.W_E`
  [d_vocab, d_model], `blocks.0.attn.W_Q` [n_heads, d_model, d_head], `blocks.0.mlp.W_in`
  [d_model, d_mlp], `unembed.W_U` [d_model, d_vocab_out], `blocks.0.ln1.w`, ...). `.pt` files
  are read with `torch.load(weights_only=True, map_location="cpu")`: `weights_only` refuses
  pickled objects (so no code runs), and `map_location` puts tensors saved from a GPU on the
  CPU (most published checkpoints were saved from CUDA).
- **Hugging Face directories** (`config.json` + `model.safetensors`, as `save_pretrained`
  writes them), booted by `TransformerBridge.boot_transformers` from the local path; or the
  same weights without `config.json`, given an explicit config (`hf_model`).

A TransformerLens state dict often comes without its config. `infer_config` reads every
field the shapes determine (layers, d_model, heads, d_head, d_mlp or attention-only, vocab
sizes, context length, LayerNorm / RMSNorm / none) and fills the two the weights cannot
show with TransformerLens's defaults, saying so (`InferredConfig.describe()`): attention
direction (causal) and the MLP activation (relu). A LayerNorm folded into the weights
(`LNPre`) leaves no tensors, so it reads as no normalisation unless given.

Every tensor is checked against the config before the network is built; a truncated file,
an unknown key, a missing tensor or a wrong shape is a one-line `TargetError` naming the
file and the tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mechsynth.models.target import TargetError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Wrappers some training scripts save around the state dict itself.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Buffers HookedTransformer saves that carry no weights (the causal mask, its fill value).
DROPPED_BUFFERS = (".attn.mask", ".attn.IGNORE")
# Config fields the weights cannot show, and the TransformerLens default assumed for each.
ASSUMED_DEFAULTS = {"attention_dir": "causal", "act_fn": "relu"}

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class InferredConfig:
    """A config with where each field came from: given by the user, read off a weight shape,
    or assumed (a TransformerLens default for something the weights cannot show)."""

    config: dict[str, Any]
    given: tuple[str, ...]
    inferred: tuple[str, ...]
    assumed: tuple[str, ...]

    def describe(self) -> str:
        """One line: what was inferred from the shapes and what was assumed."""
        def fields(names: tuple[str, ...]) -> str:
            return ", ".join(f"{k}={self.config.get(k)!r}" for k in names) or "nothing"

        parts = [f"inferred from weight shapes: {fields(self.inferred)}"]
        if self.assumed:
            parts.append(f"assumed (not in the weights; pass them if wrong): {fields(self.assumed)}")
        if self.given:
            parts.append(f"given: {fields(self.given)}")
        return "; ".join(parts)


# --- reading files ------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pt`/`.pth` (torch.save) or `.safetensors` file, on the CPU, float32."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise TargetError(f"checkpoint {file} does not exist")
    if file.suffix == ".safetensors":
        raw = _read_safetensors(file)
    elif file.suffix in TORCH_SUFFIXES:
        raw = _read_torch(file)
    else:
        raise TargetError(f"checkpoint {file}: expected {', '.join(TORCH_SUFFIXES)} or .safetensors")
    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in raw.items()}


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise TargetError(f"cannot read {file} (truncated or not safetensors?): {_first_line(e)}") from None


def _read_torch(file: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise TargetError(
            f"cannot read {file}: it holds pickled objects, not only tensors (weights_only=True refuses "
            f"them; save model.state_dict()): {_first_line(e)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise TargetError(
            f"cannot read {file} (truncated or not a torch.save file?): {_first_line(e)}"
        ) from None
    if isinstance(obj, Mapping) and not all(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if inner:
            obj = obj[inner[0]]
    if not isinstance(obj, Mapping):
        raise TargetError(f"{file} holds a {type(obj).__name__}, not a state dict")
    bad = next((k for k, v in obj.items() if not torch.is_tensor(v)), None)
    if bad is not None:
        raise TargetError(f"{file}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor")
    return dict(obj)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- TransformerLens layout: shapes and inference -------------------------------------------------
def transformer_lens_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor a HookedTransformer with `config` saves, with its shape (classic layout)."""
    c = {**ASSUMED_DEFAULTS, **config}
    d, h, dh = c["d_model"], c["n_heads"], c["d_head"]
    norm = c.get("normalization_type")
    ln = {"LN": {"w": (d,), "b": (d,)}, "RMS": {"w": (d,)}}.get(norm, {})
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (c["d_vocab"], d)}
    if c.get("positional_embedding_type", "standard") == "standard":
        shapes["pos_embed.W_pos"] = (c["n_ctx"], d)
    for layer in range(c["n_layers"]):
        p = f"blocks.{layer}"
        shapes.update({f"{p}.ln1.{k}": s for k, s in ln.items()})
        for w in "QKV":
            shapes[f"{p}.attn.W_{w}"] = (h, d, dh)
            shapes[f"{p}.attn.b_{w}"] = (h, dh)
        shapes[f"{p}.attn.W_O"], shapes[f"{p}.attn.b_O"] = (h, dh, d), (d,)
        if not c.get("attn_only"):
            shapes.update({f"{p}.ln2.{k}": s for k, s in ln.items()})
            m = c["d_mlp"]
            shapes.update({f"{p}.mlp.W_in": (d, m), f"{p}.mlp.b_in": (m,),
                           f"{p}.mlp.W_out": (m, d), f"{p}.mlp.b_out": (d,)})
    shapes.update({f"ln_final.{k}": s for k, s in ln.items()})
    shapes["unembed.W_U"] = (d, c.get("d_vocab_out") or c["d_vocab"])
    shapes["unembed.b_U"] = (c.get("d_vocab_out") or c["d_vocab"],)
    return shapes


def _weights_only(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict.items() if not k.endswith(DROPPED_BUFFERS)}


def infer_config(state_dict: Mapping[str, torch.Tensor], given: Mapping[str, Any] | None = None,
                 *, source: str = "state dict") -> InferredConfig:
    """The config of a TransformerLens state dict: `given` fields, the rest read off its shapes."""
    given = dict(given or {})
    sd = _weights_only(state_dict)
    for required in ("embed.W_E", "blocks.0.attn.W_Q", "unembed.W_U"):
        if required not in sd:
            bridge_layout = "embed.weight" in sd
            hint = " (a bridge-layout dict: use byo.from_state_dict with its config)" if bridge_layout else ""
            raise TargetError(f"{source}: no tensor {required!r}: not a TransformerLens state dict{hint}")
    read: dict[str, Any] = {}
    for key, rank in (("embed.W_E", 2), ("blocks.0.attn.W_Q", 3), ("unembed.W_U", 2)):
        if sd[key].dim() != rank:
            shape = tuple(sd[key].shape)
            raise TargetError(f"{source}: tensor {key!r} has shape {shape}, expected {rank} dims")
    d_vocab, d_model = sd["embed.W_E"].shape
    n_heads, _, d_head = sd["blocks.0.attn.W_Q"].shape
    read["n_layers"] = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k)))
    read.update(d_model=d_model, n_heads=n_heads, d_head=d_head)
    if "blocks.0.mlp.W_in" in sd:
        read["d_mlp"] = sd["blocks.0.mlp.W_in"].shape[-1]
    else:
        read["attn_only"] = True
    read.update(d_vocab=d_vocab, d_vocab_out=sd["unembed.W_U"].shape[1])
    if "pos_embed.W_pos" in sd:
        read["n_ctx"] = sd["pos_embed.W_pos"].shape[0]
    has_w, has_b = "blocks.0.ln1.w" in sd, "blocks.0.ln1.b" in sd
    read["normalization_type"] = "LN" if has_w and has_b else "RMS" if has_w else None
    config = {**read, **given}
    inferred = tuple(k for k in read if k not in given)
    needed = [k for k in ASSUMED_DEFAULTS if not (k == "act_fn" and config.get("attn_only"))]
    assumed = tuple(k for k in needed if k not in config)
    for k in assumed:
        config[k] = ASSUMED_DEFAULTS[k]
    if "n_ctx" not in config:
        raise TargetError(f"{source}: no pos_embed.W_pos, so the context length is unknown: pass n_ctx")
    return InferredConfig(config=config, given=tuple(given), inferred=inferred, assumed=assumed)


def check_transformer_lens_weights(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                                   *, source: str = "state dict") -> dict[str, torch.Tensor]:
    """The state dict's weights, each checked against `config`; one line naming the first bad tensor."""
    sd = _weights_only(state_dict)
    expected = transformer_lens_shapes(config)
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise TargetError(f"{source}: unknown tensor {unknown[0]!r} (not a parameter of a "
                          "HookedTransformer with this config)")
    missing = [k for k in expected if k not in sd]
    if missing:
        first = missing[0]
        raise TargetError(f"{source}: tensor {first!r} is missing (shape {expected[first]} expected)")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            got = tuple(sd[k].shape)
            raise TargetError(f"{source}: tensor {k!r} has shape {got}, the config needs {shape}")
    return sd


# --- Hugging Face directories ---------------------------------------------------------------------
def hf_model(directory: str | Path, config: Any) -> Any:
    """A Hugging Face causal LM from `directory`'s weights and an explicit `config` (a
    `transformers.PretrainedConfig`, or a dict with `model_type`, e.g. {"model_type": "gpt2", ...});
    for weights saved without their config.json. Strict: every tensor must fit the config."""
    import transformers

    directory = Path(directory).expanduser()
    if isinstance(config, Mapping):
        kw = dict(config)
        model_type = kw.pop("model_type", None)
        if model_type is None:
            raise TargetError("an explicit Hugging Face config needs 'model_type' (e.g. 'gpt2')")
        try:
            config = transformers.AutoConfig.for_model(model_type, **kw)
        except (ValueError, TypeError) as e:
            raise TargetError(f"bad Hugging Face config: {_first_line(e)}") from None
    weights = _hf_weights_file(directory)
    state = read_state_dict(weights)
    with torch.random.fork_rng():
        model = transformers.AutoModelForCausalLM.from_config(config)
    expected = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    # save_pretrained omits tied weights (GPT-2's lm_head is the embedding), and old files carry
    # non-persistent buffers (the causal mask) the current class rebuilds itself.
    tie = getattr(config, "tie_word_embeddings", True)
    tied = {k for k in expected if k.endswith("lm_head.weight")} if tie else set()
    order = {k: i for i, k in enumerate(expected)}
    renamed: dict[str, torch.Tensor] = {}
    # In the model's own order, so the first tensor reported is the first that does not fit.
    for k, v in sorted(state.items(), key=lambda kv: order.get(kv[0], len(order))):
        # A bare GPT2Model's keys lack the LM head's "transformer." prefix.
        name = k if k in expected else next((e for e in expected if e.endswith("." + k)), None)
        if name is None:
            if k in buffers or k.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            raise TargetError(f"{weights}: unknown tensor {k!r} for a {config.model_type} model "
                              "with this config")
        if tuple(v.shape) != tuple(expected[name].shape):
            raise TargetError(f"{weights}: tensor {k!r} has shape {tuple(v.shape)}, the config needs "
                              f"{tuple(expected[name].shape)}")
        renamed[name] = v
    missing = [k for k in expected if k not in renamed and k not in tied and k not in buffers]
    if missing:
        raise TargetError(f"{weights}: tensor {missing[0]!r} is missing")
    model.load_state_dict(renamed, strict=False)
    if tied:
        model.tie_weights()
    return model.eval()


def _hf_weights_file(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    if directory.is_file():
        return directory
    raise TargetError(f"{directory} has no model.safetensors (or pytorch_model.bin)")
