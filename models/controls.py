"""Control networks: the same architecture with the learned structure destroyed.

Frivolous-circuit controls (Ramanujan et al. 2020 found task-solving subnetworks inside
*random* networks) need networks that implement nothing but look like the real one:

- `reinitialized(target, seed)`: a fresh initialisation of the same architecture
  (TransformerLens' own init for networks built from a config; otherwise each weight
  matrix redrawn from N(0, std of the original matrix), vectors reset to their init
  values: zeros for biases, ones for LayerNorm scales);
- `shuffled(target, seed)`: the entries of every weight tensor permuted independently.
  Each tensor keeps its exact multiset of values (same norms, same statistics), but no
  learned structure survives. This is deliberately *not* a symmetry-preserving
  permutation (permuting heads or neurons consistently), which would keep the function.

Both return a new `Target` with the same task and encoding, no ground truth, and
`info["control"]` saying what was done; the original network is untouched. The copy is on
the original's device, and its random draws come from seeded CPU generators, so a seed
gives the same copy on every device.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from mechsynth.models.bridge import build_bridge
from mechsynth.models.device import module_device, same_device
from mechsynth.models.target import Target


def _control(target: Target, model: torch.nn.Module, what: str) -> Target:
    if not same_device(module_device(model), target.device):  # a rebuilt network starts on the CPU
        model.to(target.device)
    model.eval()
    info = {**target.info, "kind": "control", "control": what, "of": target.name, "accuracy": None}
    name = f"{target.name}#{what}"
    return dataclasses.replace(target, name=name, model=model, ground_truth=None, info=info)


def _generator(seed: int, index: int) -> torch.Generator:
    # One stream per tensor, so a tensor's fate does not depend on how many came before it.
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def reinitialized(target: Target, seed: int) -> Target:
    """The same architecture, freshly initialised from `seed`."""
    config = target.info.get("config")
    if config is not None:
        model = build_bridge({**config, "seed": seed, "init_weights": True})
    else:
        model = copy.deepcopy(target.model)
        norm_scales = {
            id(m.weight) for m in model.modules()
            if "norm" in type(m).__name__.lower() and isinstance(getattr(m, "weight", None), torch.Tensor)
        }
        with torch.no_grad():
            for i, (_, p) in enumerate(sorted(model.named_parameters())):
                if p.ndim >= 2:
                    std = float(p.std()) or 0.02
                    p.copy_(torch.randn(p.shape, generator=_generator(seed, i)) * std)
                else:
                    p.fill_(1.0 if id(p) in norm_scales else 0.0)
    return _control(target, model, f"reinitialized(seed={seed})")


def shuffled(target: Target, seed: int) -> Target:
    """Every weight tensor's entries permuted independently (same values, no structure)."""
    model = copy.deepcopy(target.model)
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(model.named_parameters())):
            flat = p.reshape(-1)
            p.copy_(flat[torch.randperm(flat.numel(), generator=_generator(seed, i))].reshape(p.shape))
    return _control(target, model, f"shuffled(seed={seed})")
