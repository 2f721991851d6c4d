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

import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

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



# --- running rows from a later layer -------------------------------------------------------------
#
# `TransformerBridge.forward(start_at_layer=k)` still executes blocks 0..k-1 and discards their
# output, so it saves nothing. `staged_forward` is a layer loop of our own over the bridge's own
# components (embeddings, blocks, final norm, unembedding: the modules whose hooks the checks use),
# in which rows can *join* the batch at the block they enter, carrying the residual stream that
# enters that block. `can_stage` checks once per model that this loop reproduces the model's own
# forward pass; where it does not (an architecture whose forward does more than that loop), the
# rows run from the embeddings as usual.

_STAGEABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _components(model: TransformerBridge) -> tuple[Any, ...] | None:
    names = ("embed", "pos_embed", "blocks", "ln_final", "unembed")
    parts = tuple(getattr(model, name, None) for name in names)
    return None if any(p is None for p in parts) else parts


def _loop(
    model: TransformerBridge, tokens: torch.Tensor, entering: Sequence[tuple[int, torch.Tensor]]
) -> torch.Tensor:
    embed, pos_embed, blocks, ln_final, unembed = _components(model)  # type: ignore[misc]
    seq = int(tokens.shape[1])
    joining = dict(entering)
    x = None
    if tokens.shape[0]:
        positions = torch.arange(seq, device=tokens.device)[None, :].expand(tokens.shape[0], -1)
        x = embed(tokens) + pos_embed(positions)
    for layer, block in enumerate(blocks):
        if layer in joining:
            x = joining[layer] if x is None else torch.cat([x, joining[layer].to(x.dtype)])
        if x is None:
            continue
        positions = torch.arange(seq, device=x.device)[None, :].expand(x.shape[0], -1)
        out = block(x, attention_mask=None, position_ids=positions)
        x = out[0] if isinstance(out, tuple) else out
    return unembed(ln_final(x))


def can_stage(model: TransformerBridge) -> bool:
    """Whether `staged_forward` runs ``model`` exactly as its own forward pass does (checked once per
    model object on a probe batch: same logits, and a row that joins at a later block from the
    residual captured there gets its own logits)."""
    known = _STAGEABLE.get(model)
    if known is not None:
        return known
    ok = False
    standard = getattr(model.cfg, "positional_embedding_type", "standard") == "standard"
    if _components(model) is not None and standard:
        try:
            ok = _probe_stage(model)
        except Exception:  # noqa: BLE001 - any failure of the loop means: run the model's own forward
            ok = False
    _STAGEABLE[model] = ok
    return ok


def _probe_stage(model: TransformerBridge) -> bool:
    from mechsynth.dsl.location import act_name
    from mechsynth.models.device import module_device

    n_layers, seq = int(model.cfg.n_layers), min(3, int(model.cfg.n_ctx))
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(int(model.cfg.d_vocab), (4, seq), generator=gen).to(module_device(model))
    with torch.no_grad():
        reference = model(tokens)
        own = _loop(model, tokens, ())
        if not _same(own, reference):
            return False
        resid: dict[int, torch.Tensor] = {}
        hooks = [(act_name("resid_pre", layer), _keeper(resid, layer)) for layer in range(n_layers)]
        with model.hooks(fwd_hooks=hooks):
            model(tokens)
        last = n_layers - 1
        staged = _loop(model, tokens[:2], [(last, resid[last][2:])])
    return _same(staged, reference)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the float rounding of a different batch width (1e-5 of the logits' scale)."""
    scale = max(1.0, float(b.abs().max()))
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-5 * scale


def _keeper(store: dict[int, torch.Tensor], layer: int) -> Any:
    def keep(act: torch.Tensor, hook: object) -> torch.Tensor:
        store[layer] = act.detach().clone()
        return act

    return keep


def staged_forward(
    model: TransformerBridge, tokens: torch.Tensor, entering: Sequence[tuple[int, torch.Tensor]] = ()
) -> torch.Tensor:
    """Logits of a batch whose rows enter the network at different blocks.

    ``tokens`` are the ids of the rows that start at the embeddings; ``entering`` lists, in
    increasing layer order, ``(layer, residual)``: rows that skip blocks ``0..layer-1``, given the
    residual stream ``[k, pos, d_model]`` entering block ``layer``. Rows are appended in that
    order, so the logits' rows are ``tokens``' rows, then each entering set's. Hooks registered on
    the model (``model.hooks``) fire on the rows present at each hook. Only for a model where
    `can_stage` holds.
    """
    layers = [layer for layer, _ in entering]
    if layers != sorted(set(layers)):
        raise ValueError(f"entering layers must increase: {layers}")
    return _loop(model, tokens, entering)
