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
from dataclasses import dataclass
from enum import IntEnum
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
#
# Rows can also join *inside* a block (a `Stage`): a row whose first patch in block l is at the
# attention's ``hook_z`` does not need block l's attention pattern, only its clean z there; a row
# whose first patch is at ``hook_mlp_out`` needs neither the attention nor the MLP's hidden layer,
# only their clean values. Such rows enter block l with its clean residual (the skip connections
# need it), are left out of the attention's input (and, for `Stage.MLP_OUT`, of the MLP's input)
# and are put back, with their clean value, at the input of the attention's output projection
# (and of the MLP's output projection). These are module pre-hooks on the bridge's own components,
# so every TransformerLens hook from that point on fires on every row, as in an ordinary forward.
# `max_stage` checks, like `can_stage`, that each stage reproduces the model's own logits.


class Stage(IntEnum):
    """Where inside a block rows join the batch (later stages skip more of the block)."""

    BLOCK = 0  # at the block's input, with the clean residual stream
    ATTN_OUT = 1  # at the attention's output projection, with the clean z (``hook_z``)
    MLP_OUT = 2  # and at the MLP's output projection, with the clean hidden activation (``hook_post``)


@dataclass(frozen=True, eq=False)
class Entering:
    """Rows that skip blocks ``0..layer-1`` (and, with a later `stage`, part of block ``layer``):
    the clean residual stream entering block ``layer`` ``[k, pos, d_model]``, and for the later stages
    the clean ``hook_z`` ``[k, pos, heads, d_head]`` and ``hook_post`` ``[k, pos, d_mlp]`` of that block."""

    layer: int
    resid: torch.Tensor
    stage: Stage = Stage.BLOCK
    z: torch.Tensor | None = None
    post: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return int(self.resid.shape[0])


_STAGEABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_STAGE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HOOK_STAGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _components(model: TransformerBridge) -> tuple[Any, ...] | None:
    names = ("embed", "pos_embed", "blocks", "ln_final", "unembed")
    parts = tuple(getattr(model, name, None) for name in names)
    return None if any(p is None for p in parts) else parts


def _split_modules(block: Any) -> tuple[Any, Any, Any, Any] | None:
    """(attention, its output projection, the MLP's input norm, the MLP's output projection) of a
    block, None where a block lacks one (each missing piece lowers `max_stage`)."""
    attn = getattr(block, "attn", None)
    o = getattr(attn, "o", None)
    ln2, mlp = getattr(block, "ln2", None), getattr(block, "mlp", None)
    out = getattr(mlp, "out", None)
    return attn, o, ln2, out


def _hook_names(module: Any) -> set[str]:
    from transformer_lens.hook_points import HookPoint

    return {m.name for m in module.modules() if isinstance(m, HookPoint) and m.name}


def _first_row_hook(fn: Any) -> Any:
    """A forward pre-hook (with kwargs) that maps the module's first tensor argument through ``fn``."""
    def hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (fn(args[0]),) + tuple(args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = fn(kwargs["hidden_states"])
        return args, kwargs

    return hook


def _spliced_block(block: Any, total: int, z: torch.Tensor | None, post: torch.Tensor | None) -> list[Any]:
    """Pre-hooks that leave the last ``len(z)`` rows out of the attention (from its input norm on)
    and put them back with their clean ``z`` at its output projection; likewise the last
    ``len(post)`` rows for the MLP.
    Returns the handles (to remove after the block ran). At least one row always enters the
    attention and the MLP (a module on zero rows can fail to reshape); its extra output is dropped."""
    attn, o, ln2, out = _split_modules(block)
    ln1 = getattr(block, "ln1", None)  # feeds only the attention: left out with it
    handles = []
    for skipped, rejoin, values in ((ln1 if ln1 is not None else attn, o, z), (ln2, out, post)):
        if values is None or not int(values.shape[0]):
            continue
        keep = total - int(values.shape[0])
        handles.append(skipped.register_forward_pre_hook(_first_row_hook(_leave_out(keep)), with_kwargs=True))
        put_back = _first_row_hook(_put_back(keep, values))
        handles.append(rejoin.register_forward_pre_hook(put_back, with_kwargs=True))
    return handles


def _leave_out(keep: int) -> Any:
    return lambda h: h[: max(keep, 1)]


def _put_back(keep: int, values: torch.Tensor) -> Any:
    # The projection's input may be flat over heads ([k, pos, heads * d_head]) where the hook is not.
    return lambda h: torch.cat([h[:keep], values.reshape(*values.shape[:2], *h.shape[2:]).to(h.dtype)])


def _loop(model: TransformerBridge, tokens: torch.Tensor, entering: Sequence[Entering]) -> torch.Tensor:
    embed, pos_embed, blocks, ln_final, unembed = _components(model)  # type: ignore[misc]
    seq = int(tokens.shape[1])
    x = None
    if tokens.shape[0]:
        positions = torch.arange(seq, device=tokens.device)[None, :].expand(tokens.shape[0], -1)
        x = embed(tokens) + pos_embed(positions)
    for layer, block in enumerate(blocks):
        here = [e for e in entering if e.layer == layer]  # in stage order: later stages at the end
        for e in here:
            x = e.resid if x is None else torch.cat([x, e.resid.to(x.dtype)])
        if x is None:
            continue
        z = [e.z for e in here if e.stage >= Stage.ATTN_OUT]
        post = [e.post for e in here if e.stage >= Stage.MLP_OUT]
        handles = _spliced_block(block, int(x.shape[0]), torch.cat(z) if z else None,
                                 torch.cat(post) if post else None)
        try:
            positions = torch.arange(seq, device=x.device)[None, :].expand(x.shape[0], -1)
            out = block(x, attention_mask=None, position_ids=positions)
        finally:
            for handle in handles:
                handle.remove()
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
            ok = _probe_stage(model, Stage.BLOCK)
        except Exception:  # noqa: BLE001 - any failure of the loop means: run the model's own forward
            ok = False
    _STAGEABLE[model] = ok
    return ok


def max_stage(model: TransformerBridge) -> Stage | None:
    """The latest `Stage` at which rows can join a block of ``model`` with the same logits (checked
    once per model on a probe batch, each stage in turn); None where `can_stage` fails."""
    if model in _MAX_STAGE:
        return _MAX_STAGE[model]
    best = None
    if can_stage(model):
        best = Stage.BLOCK
        blocks = _components(model)[2]  # type: ignore[index]
        for stage in (Stage.ATTN_OUT, Stage.MLP_OUT):
            parts = [_split_modules(b) for b in blocks]
            needed = parts and all(p[0] is not None and p[1] is not None for p in parts)
            if stage is Stage.MLP_OUT:
                needed = needed and all(p[2] is not None and p[3] is not None for p in parts)
            try:
                ok = bool(needed) and _probe_stage(model, stage)
            except Exception:  # noqa: BLE001 - a stage the probe cannot run is not used
                ok = False
            if not ok:
                break
            best = stage
    _MAX_STAGE[model] = best
    return best


def join_stage(model: TransformerBridge, layer: int, hook: str) -> Stage:
    """The latest stage at which a row whose first patched (or read) hook in block ``layer`` is
    ``hook`` (a canonical hook name) can join: it must be present, with its own values, at ``hook``.
    A hook after the last block (the final norm, the unembedding) counts as the last block's end."""
    top = max_stage(model)
    if top is None:
        return Stage.BLOCK
    tables = _HOOK_STAGES.get(model)
    if tables is None:
        tables = _HOOK_STAGES[model] = [_block_hook_stages(b) for b in _components(model)[2]]  # type: ignore[index]
    inside = set().union(*(t[1] for t in tables))
    if hook not in inside:  # after the last block (before the first is the embeddings: not a block)
        return top
    return min(tables[layer][0].get(hook, Stage.BLOCK), top)


def _block_hook_stages(block: Any) -> tuple[dict[str, Stage], set[str]]:
    """({hook: latest join stage at which rows are present there}, every hook of the block)."""
    attn, o, ln2, out = _split_modules(block)
    stages: dict[str, Stage] = {}
    if o is not None:
        for name in _hook_names(o) | {attn.hook_out.name}:
            stages[name] = Stage.ATTN_OUT
        for part in (ln2, getattr(block, "mlp", None)):
            for name in _hook_names(part) if part is not None else ():
                stages[name] = Stage.ATTN_OUT
        mlp_in = getattr(block, "hook_mlp_in", None)
        if mlp_in is not None:
            stages[mlp_in.name] = Stage.ATTN_OUT
        if out is not None:
            for name in _hook_names(out) | {block.mlp.hook_out.name, block.hook_out.name}:
                stages[name] = Stage.MLP_OUT
        else:
            stages[block.hook_out.name] = Stage.ATTN_OUT
    return stages, _hook_names(block)


def _probe_stage(model: TransformerBridge, stage: Stage) -> bool:
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
        last = n_layers - 1
        store: dict[str, torch.Tensor] = {}
        names = {"resid": act_name("resid_pre", last)}
        if stage >= Stage.ATTN_OUT:
            names["z"] = act_name("z", last)
        if stage >= Stage.MLP_OUT:
            names["post"] = act_name("post", last)
        with model.hooks(fwd_hooks=[(name, _keeper(store, key)) for key, name in names.items()]):
            model(tokens)
        joined = Entering(last, store["resid"][2:], stage, store["z"][2:] if "z" in store else None,
                          store["post"][2:] if "post" in store else None)
        staged = _loop(model, tokens[:2], [joined])
        if not _same(staged, reference):
            return False
        if stage > Stage.BLOCK:  # every row joining inside the block (no row computes its attention)
            whole = Entering(last, store["resid"], stage, store.get("z"), store.get("post"))
            if not _same(_loop(model, tokens[:0], [whole]), reference):
                return False
    return True


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the float rounding of a different batch width (1e-5 of the logits' scale)."""
    scale = max(1.0, float(b.abs().max()))
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-5 * scale


def _keeper(store: dict, key: Any) -> Any:
    def keep(act: torch.Tensor, hook: object) -> torch.Tensor:
        store[key] = act.detach().clone()
        return act

    return keep


def staged_forward(
    model: TransformerBridge, tokens: torch.Tensor,
    entering: Sequence[Entering | tuple[int, torch.Tensor]] = (),
) -> torch.Tensor:
    """Logits of a batch whose rows enter the network at different blocks (and stages).

    ``tokens`` are the ids of the rows that start at the embeddings; ``entering`` lists, in
    increasing (layer, stage) order, the `Entering` rows (a ``(layer, residual)`` pair: rows that
    join at the block's input). Rows are appended in that order, so the logits' rows are
    ``tokens``' rows, then each entering set's. Hooks registered on the model (``model.hooks``) fire
    on the rows present at each hook. Only for a model where `can_stage` holds (and, for a stage
    past `Stage.BLOCK`, `max_stage` reaches it).
    """
    entries = [e if isinstance(e, Entering) else Entering(int(e[0]), e[1]) for e in entering]
    keys = [(e.layer, int(e.stage)) for e in entries]
    if keys != sorted(set(keys)):
        raise ValueError(f"entering layers must increase: {keys}")
    return _loop(model, tokens, entries)
