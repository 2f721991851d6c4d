"""Checkpoint files: a network's weights plus everything needed to use it as a target.

A checkpoint is two files with the same stem:

    <stem>.safetensors   the weights (the TransformerBridge's own state dict, float32)
    <stem>.json          {"format": "mechsynth-checkpoint/1",
                          "name": ..., "config": {...bridge config...},
                          "task": {"kind": ..., "params": {...}},      (models.tasks)
                          "input_vocab": [...],     token id i encodes input_vocab[i] (BOS included)
                          "output_values": [...],   logit column j decodes to output_values[j]
                          "metrics": {...}, "training": {...}}

safetensors holds only tensors (no pickled code), so loading a checkpoint never runs code.
Everything that can go wrong when reading one (missing file, bad JSON, missing field,
corrupt tensor file, weights that do not fit the config) is a `TargetError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Target, TargetError

FORMAT = "mechsynth-checkpoint/1"
REQUIRED = ("name", "config", "task", "input_vocab", "output_values")


def paths(stem: str | Path) -> tuple[Path, Path]:
    """(json path, weights path) of a checkpoint given either file or the bare stem."""
    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def read_metadata(stem: str | Path) -> dict[str, Any]:
    """The JSON half of a checkpoint, validated."""
    meta_path, _ = paths(stem)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise TargetError(f"checkpoint metadata {meta_path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError(f"cannot read checkpoint metadata {meta_path}: {e}") from None
    except json.JSONDecodeError as e:
        raise TargetError(f"checkpoint metadata {meta_path} is not JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TargetError(f"{meta_path} is not a {FORMAT} file")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise TargetError(f"checkpoint metadata {meta_path} lacks {missing[0]!r}")
    return meta


def read_weights(stem: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _, weights_path = paths(stem)
    if not weights_path.exists():
        raise TargetError(f"checkpoint weights {weights_path} do not exist")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise TargetError(f"cannot read checkpoint weights {weights_path}: {e}") from None


def write(stem: str | Path, model: torch.nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write weights and metadata; returns the JSON path."""
    from safetensors.torch import save_file

    meta_path, weights_path = paths(stem)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    meta_path.write_text(json.dumps({"format": FORMAT, **meta}, indent=1) + "\n")
    return meta_path


def load(stem: str | Path, name: str | None = None, kind: str = "file") -> Target:
    """A target from a checkpoint (its task is rebuilt from the recorded task kind and params)."""
    from mechsynth.models.tasks import make_task

    meta = read_metadata(stem)
    task_rec = meta["task"]
    if not isinstance(task_rec, dict) or "kind" not in task_rec:
        raise TargetError(f"checkpoint {paths(stem)[0]}: 'task' must be {{'kind': ..., 'params': ...}}")
    name = name or meta["name"]
    task = make_task(task_rec["kind"], dict(task_rec.get("params", {})), name=name)
    model = build_bridge(meta["config"], read_weights(stem))
    input_vocab = meta["input_vocab"]
    if len(input_vocab) != model.cfg.d_vocab:
        raise TargetError(f"checkpoint {name}: {len(input_vocab)} input values, d_vocab={model.cfg.d_vocab}")
    info = {"kind": kind, "config": dict(meta["config"]), "path": str(paths(stem)[0]),
            **meta.get("metrics", {}), "training": meta.get("training", {})}
    return Target(name=name, model=model, task=task, input_ids={v: i for i, v in enumerate(input_vocab)},
                  output_values=tuple(meta["output_values"]), info=info)
