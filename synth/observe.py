"""Observe: run the target on sampled inputs and keep what the proposers need to look at.

The synthesiser never reads weights. It reads what the network *does* on a batch of
inputs: each head's attention pattern and output (``hook_z``), each MLP's output, and
the residual stream entering each block. Those activations are the intermediate
specifications the model-guided proposer matches candidate variables against
(DESIGN.md, "Propose").

Inputs are grouped by length because targets take same-length batches (tracr models
have no padding mask). Where every sequence of a length fits in the per-length budget
we take all of them — an exhaustive batch makes "this variable matches this head" a
statement about every input of that length, not a sample — otherwise we draw a seeded
sample from the task's own sampler.

Positions: everything here is indexed by *input* position. A BOS position, when the
target has one, is cut from activations and kept separately for attention patterns
(attention to BOS is how tracr heads express "attend nowhere" and how its
selector-width heads count). Flattened views stack (group, input, position) in a
fixed order, the same order in which the enumerator lays out variable values.

Devices: the network runs on the target's device; what is kept is moved to the CPU
(``models.device.PROGRAM_DEVICE``), where the proposers compare it with the interpreter's
values of candidate variables.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from mechsynth.dsl.location import act_name
from mechsynth.synth.logit_attribution import LogitParts, Unembedding
from mechsynth.models.device import PROGRAM_DEVICE

if TYPE_CHECKING:
    from mechsynth.models import Target

    from mechsynth.dsl.location import Location


class ObserveError(ValueError):
    """The target could not be observed (no inputs, model failure)."""


@dataclass(frozen=True)
class LengthGroup:
    """Same-length inputs, the network's decoded outputs on them, and their activations.

    ``acts`` maps a hook name to a tensor with the model's positions already cut to the
    input positions: ``[batch, length, ...]``. ``patterns[layer]`` is ``[batch, head,
    query, key]`` over input positions and ``bos[layer]`` is ``[batch, head, query]``
    (the weight on BOS; zeros when the target has no BOS).
    """

    length: int
    inputs: tuple[tuple[Any, ...], ...]
    outputs: tuple[tuple[Any, ...], ...]
    acts: Mapping[str, torch.Tensor]
    patterns: tuple[torch.Tensor, ...]
    bos: tuple[torch.Tensor, ...]
    # (hook, head) -> [batch, length, n_labels]: each component's direct logit contribution
    # (synth.logit_attribution); empty for non-categorical readouts.
    logit_parts: Mapping[tuple[str, int | None], torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class Observations:
    """The observe stage's result: length groups plus the model's shape."""

    target_name: str
    groups: tuple[LengthGroup, ...]
    n_layers: int
    n_heads: int
    d_model: int
    readout: str  # "all", "last" or the task's readout function's name
    output_kind: str
    output_values: tuple = ()  # the label of each logit column (categorical readouts)

    @property
    def n_inputs(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def n_positions(self) -> int:
        return sum(g.size * g.length for g in self.groups)

    def flat(self, hook: str, head: int | None = None, dims: Sequence[int] | None = None) -> torch.Tensor:
        """``[n_positions, features]`` for one hook (optionally one head / some dims)."""
        parts = []
        for g in self.groups:
            a = g.acts[hook]
            if head is not None:
                a = a[:, :, head]
            a = a.reshape(g.size * g.length, -1)
            if dims is not None:
                a = a[:, list(dims)]
            parts.append(a)
        return torch.cat(parts, 0)

    def has(self, hook: str) -> bool:
        return bool(self.groups) and hook in self.groups[0].acts

    def flat_logit_part(self, key: tuple[str, int | None]) -> torch.Tensor | None:
        """``[n_positions, n_labels]``: one component's direct logit contribution (None if not kept)."""
        if not self.groups or key not in self.groups[0].logit_parts:
            return None
        return torch.cat([g.logit_parts[key].reshape(g.size * g.length, -1) for g in self.groups], 0)

    def at(self, location: Location) -> torch.Tensor:
        return self.flat(location.hook, location.head, location.dims)

    def network_outputs(self) -> list[Any]:
        """The network's decoded output at every input position, flattened (None where not read)."""
        return [v for g in self.groups for row in g.outputs for v in row]

    def all_inputs(self) -> list[tuple[Any, ...]]:
        return [x for g in self.groups for x in g.inputs]


def hook_names(n_layers: int) -> list[str]:
    names = [act_name("embed"), act_name("pos_embed")]
    for layer in range(n_layers):
        names += [
            act_name("resid_pre", layer),
            act_name("z", layer),
            act_name("pattern", layer),
            act_name("mlp_out", layer),
        ]
    names.append(act_name("resid_post", n_layers - 1))
    names.append(act_name("ln_final_scale"))
    return names


def sample_inputs(target: Target, *, per_length: int, seed: int) -> list[list[Any]]:
    """Every input of a length when there are at most ``per_length`` of them, else a seeded sample."""
    task = target.task
    vocab = list(task.vocab)
    inputs: list[list[Any]] = []
    for length in range(max(task.min_len, 1), task.max_len + 1):
        if len(vocab) ** length <= per_length:
            every = (list(x) for x in itertools.product(vocab, repeat=length))
            inputs += [task.frame(x) for x in every if task.domain is None or task.domain(x)]
            continue
        seen: set[tuple[Any, ...]] = set()
        for x in task.sample(per_length, seed + 7919 * length, length=length):
            if tuple(x) not in seen:
                seen.add(tuple(x))
                inputs.append(list(x))
    if not inputs:
        raise ObserveError(f"target {target.name} produced no inputs to observe")
    return inputs


def observe(target: Target, *, per_length: int = 256, seed: int = 0) -> Observations:
    """Run the target on inputs of every length and cache activations and attention patterns."""
    model = target.model
    cfg = model.cfg
    n_layers, n_heads, d_model = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model)
    offset = int(getattr(target, "position_offset", 0))
    names = hook_names(n_layers)
    by_length: dict[int, list[list[Any]]] = {}
    for x in sample_inputs(target, per_length=per_length, seed=seed):
        by_length.setdefault(len(x), []).append(x)
    groups = []
    categorical = getattr(target.task, "output_kind", "categorical") == "categorical"
    unembedding = Unembedding.of(model) if categorical else None
    with torch.no_grad():
        for length in sorted(by_length):
            inputs = by_length[length]
            tokens = target.tokens(inputs)
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            outputs = target.decode(logits, inputs)
            sl = slice(offset, offset + length)
            acts = {}
            for name in names:
                if name.endswith("hook_pattern"):
                    continue
                try:
                    a = cache[name].to(PROGRAM_DEVICE).float()
                except KeyError:  # attention-only models have no MLP hooks
                    continue
                if name == act_name("embed") or name == act_name("pos_embed") or a.dim() >= 3:
                    a = a[:, sl] if a.dim() >= 2 and a.shape[1] >= offset + length else a
                if name == act_name("pos_embed") and a.shape[0] != len(inputs):
                    a = a.expand(len(inputs), *a.shape[1:])
                acts[name] = a.contiguous()
            # Computed from these activations when the output step reads them (not stored).
            parts = LogitParts(unembedding, acts, length) if unembedding is not None else {}
            patterns, bos = [], []
            for layer in range(n_layers):
                p = cache[act_name("pattern", layer)].to(PROGRAM_DEVICE).float()  # [batch, head, q, k]
                patterns.append(p[:, :, sl, sl].contiguous())
                bos.append(p[:, :, sl, 0].contiguous() if offset else torch.zeros_like(p[:, :, sl, 0]))
            groups.append(
                LengthGroup(
                    length=length,
                    inputs=tuple(tuple(x) for x in inputs),
                    outputs=tuple(tuple(o) for o in outputs),
                    acts=acts,
                    patterns=tuple(patterns),
                    bos=tuple(bos),
                    logit_parts=parts,
                )
            )
    task = target.task
    return Observations(
        target_name=target.name,
        groups=tuple(groups),
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        readout=task.readout_name,
        output_kind=getattr(task, "output_kind", "categorical"),
        output_values=tuple(getattr(target, "output_values", ())),
    )
