"""Building TransformerLens 4.x networks from a config and a TransformerLens-format state dict.

Every target network in mechsynth is a `TransformerBridge` (hook names such as
`blocks.0.attn.hook_z`). Networks we construct ourselves (tracr-compiled, trained here,
or a user's TransformerLens checkpoint) are described by the small set of config
fields below plus a state dict in the classic TransformerLens layout
(`embed.W_E`, `blocks.0.attn.W_Q` [n_heads, d_model, d_head], `blocks.0.mlp.W_in`, ...).
`TransformerBridge.boot_native` builds the module tree and `convert_tl_checkpoint`
maps the classic names onto the bridge's parameters. A state dict already in the
bridge's own layout (`model.state_dict()`, as our checkpoints store it) loads as is.

The config is kept as a plain JSON-able dict so it can be stored next to a checkpoint
and used to rebuild the same architecture (e.g. for re-initialised controls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

import numpy as np
import torch

from mechsynth.models.target import TargetError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

# The config fields a mechsynth network may set; anything else is rejected so that a
# typo in a checkpoint's config is an error rather than a silently ignored setting.
CONFIG_FIELDS = (
    "n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx",
    "act_fn", "normalization_type", "attention_dir", "attn_only", "positional_embedding_type",
    "seed", "init_weights",
)


def native_config(config: Mapping[str, Any]) -> Any:
    """A `TransformerBridgeConfig` from a plain dict of the fields in CONFIG_FIELDS."""
    from transformer_lens.config import TransformerBridgeConfig

    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise TargetError(f"unknown model config field {unknown[0]!r} (known: {', '.join(CONFIG_FIELDS)})")
    missing = [k for k in ("n_layers", "d_model", "d_head", "n_heads", "d_vocab", "n_ctx") if k not in config]
    if missing:
        raise TargetError(f"model config lacks {missing[0]!r}")
    kw = dict(config)
    if kw.get("attn_only"):
        kw.setdefault("d_mlp", None)
    try:
        return TransformerBridgeConfig(**kw)
    except (TypeError, ValueError, AssertionError) as e:
        raise TargetError(f"bad model config: {e}") from None


def build_bridge(config: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> TransformerBridge:
    """A float32 CPU `TransformerBridge` in eval mode.

    With `state_dict` (TransformerLens layout), the weights are loaded strictly: every
    parameter must be present with the right shape, and nothing else. Without it, the
    network is freshly initialised from `config["seed"]` (TransformerLens' own init).
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    config = dict(config)
    if state_dict is not None:
        config["init_weights"] = False
    cfg = native_config(config)
    # Seeded init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng():
        if state_dict is None and cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        model = TransformerBridge.boot_native(cfg)
    if state_dict is not None:
        sd = {k: _as_tensor(k, v) for k, v in state_dict.items()}
        expected = model.state_dict()
        if set(sd) == set(expected):  # already in the bridge's own layout (our checkpoints)
            converted = sd
        else:
            try:
                converted = convert_tl_checkpoint(sd, cfg)
            except Exception as e:  # the converter raises assorted errors on malformed dicts
                raise TargetError(f"weights do not fit the config: {type(e).__name__}: {e}") from None
        unexpected = sorted(set(converted) - set(expected))
        missing = sorted(set(expected) - set(converted))
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise TargetError(f"weights do not fit the config: {what}")
        for k, v in converted.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise TargetError(
                    f"weights do not fit the config: {k} has shape {tuple(v.shape)}, "
                    f"the config needs {tuple(expected[k].shape)}"
                )
        model.load_state_dict(converted, strict=True)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model.to(torch.float32)
    model.eval()
    return model


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float32) if not torch.is_tensor(value) else value,
                               dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise TargetError(f"weight {name} is not a numeric array: {e}") from None

