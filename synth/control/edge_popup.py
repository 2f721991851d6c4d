"""Edge-popup: a subnetwork of a *random* network trained to mimic the target (a control).

Ramanujan et al. (2020, "What's hidden in a randomly weighted neural network?")
showed that a sufficiently wide randomly initialised network contains subnetworks
that perform a task well, found without ever changing a weight: every weight gets a
learned *score*, the forward pass uses only the top-k fraction of weights by score
in each layer, and the scores are trained by straight-through gradients
("edge-popup"). For interpretability this is a warning: performance-guided search
can find task behaviour where no trained mechanism exists. So a hypothesis that
"explains" the target should *not* explain such a masked random network equally
well — if it does, the checks are measuring the task, not the mechanism.

This module builds that control network. Given the target and a randomly
initialised network of the same architecture (``models.reinitialized``), it

1. freezes every weight of the random network and gives each weight matrix a score
   tensor (the paper's kaiming-uniform initialisation);
2. in the forward pass replaces ``W`` by ``W * mask`` where ``mask`` keeps the top
   ``keep_fraction`` of ``|score|`` in each tensor (the paper's per-layer top-k,
   k = 50% by default); the mask's gradient is passed straight through to the
   scores (``dL/ds = dL/d(W*mask) * W``);
3. trains the scores so the masked network reproduces the *target's* outputs (cross
   entropy to the target's argmax for categorical outputs, squared error on the
   read column for numerical outputs) at the positions the task reads;
4. returns a new :class:`~models.Target` whose network is the masked random
   network (weights ``W * mask``, frozen), plus how closely it mimics the target on
   fresh inputs.

Only weight matrices are masked (biases and, following the paper, nothing else is
learned). Everything is seeded; the cost is ``steps`` forward/backward passes of
a ``batch_size`` batch, which is why the control sits behind ``--edge-popup``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils import parametrize

if TYPE_CHECKING:
    from mechsynth.models import Target


class EdgePopupError(ValueError):
    """The edge-popup control cannot be built for this target (one-line message)."""


@dataclass(frozen=True)
class EdgePopupConfig:
    """How hard to search for a mimicking subnetwork (defaults: small and quick)."""

    keep_fraction: float = 0.5  # top-k fraction of each weight tensor kept (paper: k = 50%)
    steps: int = 300
    lr: float = 0.05  # Adam on the scores (see fit_edge_popup for why not the paper's SGD)
    batch_size: int = 128
    n_eval: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.keep_fraction <= 1:
            raise EdgePopupError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if self.steps < 0 or self.batch_size < 1 or self.n_eval < 1:
            raise EdgePopupError("steps must be >= 0 and batch_size, n_eval >= 1")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EdgePopupResult:
    """The masked random network as a target, and how well it mimics the real target."""

    target: Target
    agreement: float  # fraction of read outputs equal to the real target's, on fresh inputs
    agreement_unmasked: float  # the same for the random network before masking
    final_loss: float
    n_masked_weights: int
    n_kept_weights: int
    config: EdgePopupConfig

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.target.name,
            "agreement": self.agreement,
            "agreement_unmasked": self.agreement_unmasked,
            "final_loss": self.final_loss,
            "n_masked_weights": self.n_masked_weights,
            "n_kept_weights": self.n_kept_weights,
            "config": self.config.to_json(),
        }


class _Mask(torch.nn.Module):
    """Parametrization ``W -> W * topk_mask(scores)`` with learnable scores."""

    def __init__(self, scores: torch.Tensor, k: int) -> None:
        super().__init__()
        self.scores = torch.nn.Parameter(scores)
        self.k = k

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # |s| inside autograd, as in the paper's code: the gradient reaches s through abs.
        return weight * _TopK.apply(self.scores.abs(), self.k)


class _TopK(torch.autograd.Function):
    """Mask of the k largest (non-negative) scores; gradient passed straight through."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, k: int) -> torch.Tensor:
        flat = scores.flatten()
        mask = torch.zeros_like(flat)
        mask[flat.topk(k).indices] = 1.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def maskable_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weight tensors edge-popup masks: every parameter with two or more axes."""
    return {name: p for name, p in model.named_parameters() if p.dim() >= 2}


def fit_edge_popup(
    target: Target, random_target: Target, config: EdgePopupConfig | None = None
) -> EdgePopupResult:
    """Learn a top-k weight mask on ``random_target``'s frozen network so it mimics ``target``.

    ``random_target`` must have the same architecture and task as ``target`` (e.g.
    ``models.reinitialized(target, seed)``); it is not modified.
    """
    config = config or EdgePopupConfig()
    # Work on a copy made before any masked forward pass (tensors produced inside a
    # functional_call cannot be deep-copied), so random_target is left untouched.
    base = copy.deepcopy(random_target.model)
    if _shapes(base) != _shapes(target.model):
        raise EdgePopupError(f"{random_target.name} does not have the architecture of {target.name}")
    weights = {name: p.detach().clone() for name, p in maskable_parameters(base).items()}
    if not weights:
        raise EdgePopupError(f"{random_target.name} has no weight matrices to mask")
    gen = torch.Generator().manual_seed(config.seed)
    masks: dict[str, _Mask] = {}
    for name, w in weights.items():
        fan_in = w.shape[-1]  # torch Linear/Embedding layouts: the last axis is the input
        bound = 1.0 / math.sqrt(max(1, fan_in))  # kaiming-uniform scale, as in the paper
        # A CPU draw, moved: the same scores on any device.
        scores = ((torch.rand(w.shape, generator=gen) * 2 - 1) * bound).to(w.device)
        masks[name] = _Mask(scores, max(1, round(config.keep_fraction * w.numel())))
        module_path, attr = name.rsplit(".", 1)
        # The mask is a parametrization: the module's forward sees W * mask(scores), and
        # the frozen W is the parametrization's "original".
        parametrize.register_parametrization(base.get_submodule(module_path), attr, masks[name])
    for p in base.parameters():
        p.requires_grad_(False)
    score_params = [m.scores for m in masks.values()]
    for sp in score_params:
        sp.requires_grad_(True)
    # Adam rather than the paper's SGD: TransformerLens initialises weights at a small
    # scale, so the straight-through gradient dL/dW' * W is tiny and SGD barely moves.
    opt = torch.optim.Adam(score_params, lr=config.lr)

    lengths = list(range(target.task.min_len, target.task.max_len + 1))
    loss_value = float("nan")
    base.eval()  # no dropout; the scores are what is trained
    for step in range(config.steps):
        # A fresh equal-length batch per step (the model is fed one length at a time).
        inputs = target.task.sample(
            config.batch_size, seed=config.seed * 100_003 + step, length=lengths[step % len(lengths)]
        )
        tokens = target.tokens(inputs)
        with torch.no_grad():
            teacher = target.model(tokens)
        loss = _mimic_loss(target, base(tokens), teacher, inputs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())

    # Bake W * mask into plain frozen weights.
    for name in weights:
        module_path, attr = name.rsplit(".", 1)
        parametrize.remove_parametrizations(base.get_submodule(module_path), attr, leave_parametrized=True)
    model = base
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    ks = {name: m.k for name, m in masks.items()}
    masked_target = dataclasses.replace(
        random_target,
        model=model,
        name=f"{random_target.name}+edge-popup[seed={config.seed}]",
        ground_truth=None,
        info={**dict(random_target.info), "control": "edge_popup", "mimics": target.name},
    )
    eval_inputs = target.task.sample(config.n_eval, seed=config.seed + 7919)
    return EdgePopupResult(
        target=masked_target,
        agreement=output_agreement(target, masked_target, eval_inputs),
        agreement_unmasked=output_agreement(target, random_target, eval_inputs),
        final_loss=loss_value,
        n_masked_weights=sum(w.numel() for w in weights.values()),
        n_kept_weights=sum(ks.values()),
        config=config,
    )


def output_agreement(a: Target, b: Target, inputs: Sequence[Sequence[Any]]) -> float:
    """Fraction of read positions where two networks' decoded outputs agree."""
    from mechsynth.models.target import outputs_equal

    same = total = 0
    for ra, rb in zip(a.predict(inputs), b.predict(inputs)):
        for x, y in zip(ra, rb):
            if x is None and y is None:
                continue
            total += 1
            same += outputs_equal(x, y, a.task.output_kind)
    return same / total if total else float("nan")


def _mimic_loss(
    target: Target, student: torch.Tensor, teacher: torch.Tensor, inputs: Sequence[Sequence[Any]]
) -> torch.Tensor:
    from mechsynth.synth.check.patching import ReadIndex

    read = ReadIndex.of_rows([[i + target.position_offset for i in target.read_positions(x)] for x in inputs])
    s, t = read.take(student)[read.valid], read.take(teacher)[read.valid]  # [positions read, d_vocab_out]
    if target.task.output_kind == "numerical":
        col = target.numeric_column
        return torch.nn.functional.mse_loss(s[..., col], t[..., col])
    if target.task.output_kind == "multilabel":  # a BCE head: match the teacher's label set
        return torch.nn.functional.binary_cross_entropy_with_logits(s, (t > 0).to(s.dtype))
    return torch.nn.functional.cross_entropy(s.reshape(-1, s.shape[-1]), t.argmax(-1).reshape(-1))


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}
