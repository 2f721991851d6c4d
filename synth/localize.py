"""Localize: choose where in the network each variable of a program lives.

A program from any proposer (the I/O enumerator, an LLM, a person) says *what* is
computed; a hypothesis must also say *where*. For each variable, in topological order,
we score every component that could have written it and keep the best one above the
match thresholds:

* an ``aggregate`` is looked for in attention heads: the head's pattern must agree with
  the aggregate's selector (:func:`~synth.propose.match_stats.selector_agreement`) and the
  aggregate's values must be decodable from, and explain, the head's output ``hook_z``;
* any other SOp (``map``, ``seqmap``, ``selector_width``, ...) is looked for in MLP
  outputs, restricted to the residual dimensions it explains (an MLP may write several
  variables side by side);
* ``tokens`` and ``indices`` live in the embeddings.

Layer order is respected: a variable's location must come after the locations of the
variables it is computed from (a head of layer L reads what layers < L wrote; the MLP of
layer L also reads layer L's heads). A variable no component explains is left out of the
correspondence (the checks then treat its path as unclaimed). The causal confirmation —
interchange interventions on the chosen locations — is the checks' IIA, run by the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.propose.explain_heads import padded_patterns
from mechsynth.synth.propose.guided_state import MatchThresholds
from mechsynth.synth.propose.match_stats import decode_accuracy, explain_stats, explains, selector_agreement
from mechsynth.synth.propose.model_guided import make_batch

if TYPE_CHECKING:
    from mechsynth.dsl import Program
    from mechsynth.models import Target
    from mechsynth.synth.observe import Observations


@dataclass(frozen=True)
class Placement:
    """The chosen location of one variable and how well it matched."""

    variable: str
    location: Location
    score: float


def localize(
    program: Program,
    observations: Observations,
    thresholds: MatchThresholds | None = None,
) -> tuple[Hypothesis, tuple[Placement, ...]]:
    """The best layer-order-respecting correspondence for ``program`` (see the module docstring)."""
    from mechsynth.dsl.interpret import run

    th = thresholds or MatchThresholds()
    obs = observations
    batch = make_batch(obs, symbols=program.literals())
    values = run(program, batch)
    mask = batch.mask
    corr: dict[str, Location] = {}
    placements: list[Placement] = []
    order: dict[str, float] = {}
    patterns = {layer: padded_patterns(obs, layer, batch.width) for layer in range(obs.n_layers)}
    used_heads: set[tuple[int, int]] = set()
    for name in program.variables:
        if name in ("tokens", "indices") and name not in dict(program.assignments):
            loc = Location(act_name("embed") if name == "tokens" else act_name("pos_embed"))
            corr[name] = loc
            order[name] = -1.0
            continue
        if name == "length" and name not in dict(program.assignments):
            order[name] = -1.0
            continue
        node = program.node(name)
        parents = node.inputs
        after = max((order.get(p, -1.0) for p in parents), default=-1.0)
        if program.kind(name) == "selector":
            order[name] = after
            continue
        codes = values[name][mask]
        if bool(torch.isnan(codes).all()):
            order[name] = after
            continue
        best: tuple[float, Location] | None = None
        if node.op == "aggregate":
            sel = values[node.inputs[0]]
            for layer in range(obs.n_layers):
                if layer <= after:
                    continue
                pattern, bos = patterns[layer]
                for head in range(obs.n_heads):
                    if (layer, head) in used_heads:
                        continue
                    z = obs.flat(act_name("z", layer), head)
                    if float(z.double().var(0).sum()) < 1e-10:
                        continue
                    agreement = selector_agreement(sel, pattern[:, head], bos[:, head], mask)
                    if agreement < th.selector:
                        continue
                    acc, r2 = explains(z, codes)
                    score = min(agreement, acc, r2)
                    if score >= min(th.decode, th.explain) and (best is None or score > best[0] + 1e-9):
                        best = (score, Location(act_name("z", layer), head=head))
        else:
            for layer in range(obs.n_layers):
                if layer + 0.5 <= after:
                    continue
                if not obs.has(act_name("mlp_out", layer)):
                    continue
                act = obs.flat(act_name("mlp_out", layer)).double()
                var = act.var(0)
                active = (var > max(1e-8, 1e-6 * float(var.max()))).nonzero().reshape(-1)
                if active.numel() == 0:
                    continue
                _, r2, _ = explain_stats(act[:, active], codes)
                dims = active[r2 >= th.explain]
                if dims.numel() == 0:
                    continue
                acc = decode_accuracy(act[:, dims], codes)
                if acc < th.decode:
                    continue
                score = acc
                exact_dims = tuple(int(d) for d in dims.tolist())
                loc = Location(
                    act_name("mlp_out", layer),
                    dims=exact_dims if len(exact_dims) < act.shape[1] else None,
                )
                if best is None or score > best[0] + 1e-9:
                    best = (score, loc)
        if best is None:
            order[name] = after
            continue
        corr[name] = best[1]
        order[name] = best[1].order if best[1].order is not None else -1.0
        if best[1].head is not None:
            used_heads.add((best[1].layer or 0, best[1].head))
        placements.append(Placement(name, best[1], best[0]))
    return Hypothesis(program, corr), tuple(placements)


class Localizer:
    """``localizer(target, program) -> Hypothesis | None`` with observations cached per target.

    This is the signature the control stage uses to re-localise programs (on random
    networks and for null programs), so it localises exactly as the loop does.
    """

    def __init__(
        self, *, per_length: int = 128, seed: int = 0, thresholds: MatchThresholds | None = None
    ) -> None:
        self.per_length = per_length
        self.seed = seed
        self.thresholds = thresholds
        self._obs: dict[int, tuple[Any, Observations]] = {}

    def observations(self, target: Target) -> Observations:
        from mechsynth.synth.observe import observe

        key = id(target)
        if key not in self._obs:
            self._obs[key] = (target, observe(target, per_length=self.per_length, seed=self.seed))
        return self._obs[key][1]

    def __call__(self, target: Target, program: Program) -> Hypothesis | None:
        obs = self.observations(target)
        th = self.thresholds or default_thresholds(target)
        hypothesis, placements = localize(program, obs, th)
        if not placements:
            return None
        return hypothesis


def default_thresholds(target: Target) -> MatchThresholds:
    """Exact matching for compiled (tracr) networks, soft matching for trained ones."""
    info = getattr(target, "info", {}) or {}
    return MatchThresholds() if info.get("kind") == "tracr" else MatchThresholds.soft()
