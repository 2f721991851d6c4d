"""The output as a vote: argmax over labels of the components' summed direct logit contributions.

Where no single located variable agrees with the network's outputs, a trained network often
computes the output as a sum: each head and MLP adds a score per label to the logits (its
direct logit attribution, :mod:`synth.logit_attribution`), and the unembedding takes the
argmax. If component ``c`` holds variable ``v_c``, its contribution is, to the extent ``v_c``
explains it, a function ``S_c[v_c]`` of that variable: the class mean of its contribution at
each value. The output explanation is then

    output = argmax_label  bias + sum_c S_c[v_c]

with ``bias`` the mean of everything not claimed as a voter. That is the DSL's ``voteK``
node (``dsl/primitives.py``: additive in the voters, so its table grows as the sum of their
value sets, not the product a ``seqmap`` table would need). Voters are chosen greedily, each
time the (component, variable) whose scores raise the agreement with the network's outputs
the most, and only while they do: a vote names as few components as it needs. The table
must be small against the data (``max_keys`` entries in all) so it cannot memorise, and it is
scored like every output candidate — by ``enumerate.agreement`` here, by the checks after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mechsynth.dsl.primitives import MAX_VOTERS
from mechsynth.synth.logit_attribution import BIAS, component_keys
from mechsynth.synth.propose.enumerate import MIN_DEFINED, agreement, try_add

if TYPE_CHECKING:
    from mechsynth.synth.observe import Observations
    from mechsynth.synth.propose.guided_state import GuidedState

MIN_GAIN = 0.005  # agreement a voter must add to be kept
SCORE_DECIMALS = 3  # scores are written rounded (the text form stays short and exact)


@dataclass(frozen=True)
class Voter:
    """One component's vote: the variable it holds and its class-mean contribution per value."""

    component: tuple[str, int | None]
    variable: str
    r2: float  # variance of the contribution its class means explain (read positions)


@dataclass(frozen=True)
class VoteFit:
    """The best vote found: its pooled node name (None when it is not an output) and agreement."""

    name: str | None
    agreement: float
    voters: tuple[Voter, ...]


def fit_vote(
    state: GuidedState, obs: Observations, target: torch.Tensor, read: torch.Tensor, max_keys: int
) -> VoteFit | None:
    """The greedy vote over the components' located variables (see the module docstring)."""
    pool = state.pool
    mask = pool.batch.mask
    parts = {k: obs.flat_logit_part(k) for k in component_keys(obs.n_layers, obs.n_heads) + [BIAS]}
    parts = {k: v.double() for k, v in parts.items() if v is not None}
    if BIAS not in parts or len(parts) < 3:
        return None
    r = read[mask]
    labels = target[mask][r]
    codes = torch.unique(labels)
    if codes.numel() < 2 or not bool(r.any()):
        return None
    n_labels = next(iter(parts.values())).shape[1]
    if n_labels < int(codes.numel()):
        return None
    label_codes = _label_codes(state, obs, n_labels)
    if label_codes is None:
        return None
    options: list[tuple] = []  # (voter, its keys, class means, centred fit per position, its mean)
    for key, part in parts.items():
        if key == BIAS:
            continue
        best = None
        for loc in state.located.values():
            here = (loc.location.hook, loc.location.head) == key
            if not here or pool.items[loc.name].kind != "sop":
                continue
            v = pool.values[loc.name][mask][r]
            defined = ~torch.isnan(v)
            if float(defined.double().mean()) < MIN_DEFINED:
                continue
            keys = torch.unique(v[defined])
            if keys.numel() > max_keys or keys.numel() < 2:
                continue
            p = part[r]
            onehot = (v[:, None] == keys[None, :]).double()
            means = (onehot.T @ p) / onehot.sum(0)[:, None]
            fitted = onehot @ means + (~defined).double()[:, None] * p.mean(0)
            resid = float(((p - fitted) ** 2).sum())
            total = float(((p - p.mean(0)) ** 2).sum()) or 1.0
            r2 = 1.0 - resid / total
            if best is None or r2 > best[0].r2:
                best = (Voter(key, loc.name, round(r2, 4)), keys, means, fitted, p.mean(0))
        if best is not None:
            voter, keys, means, fitted, pmean = best
            options.append((voter, keys, means, fitted - pmean, pmean))
    if len(options) < 2:
        return None
    base = sum(part[r] for part in parts.values()).mean(0)  # every contribution's mean
    chosen: list[int] = []
    current = base.expand(int(r.sum()), -1).clone()
    score = _agree(current, label_codes, labels)
    n_keys = 0
    while len(chosen) < MAX_VOTERS:
        best_i, best_a = None, score
        for i, (_, keys, _, centred, _) in enumerate(options):
            if i in chosen or n_keys + keys.numel() > max_keys:
                continue
            a = _agree(current + centred, label_codes, labels)
            if a > best_a + MIN_GAIN and (best_i is None or a > best_a):
                best_i, best_a = i, a
        if best_i is None:
            break
        chosen.append(best_i)
        n_keys += options[best_i][1].numel()
        current = current + options[best_i][3]
        score = best_a
    if len(chosen) < 2:
        return None
    chosen.sort(key=lambda i: list(parts).index(options[i][0].component))
    node = _vote_node(state, [options[i] for i in chosen], base, label_codes)
    name = try_add(pool, node, prefix="out_vote", dedupe=False)
    if name is None:
        return None
    a = agreement(pool.values[name], target, read, 1e-6)
    return VoteFit(name, round(a, 6), tuple(options[i][0] for i in chosen))


def _agree(scores: torch.Tensor, label_codes: torch.Tensor, labels: torch.Tensor) -> float:
    return float((label_codes[scores.argmax(-1)] == labels).double().mean())


def _label_codes(state: GuidedState, obs: Observations, n_labels: int) -> torch.Tensor | None:
    """The code of each logit column's label (the network's outputs name them), or None."""
    values = getattr(obs, "output_values", ())
    if len(values) != n_labels:
        return None
    book = state.pool.batch.codebook
    try:
        return torch.tensor([book.encode(v) for v in values], dtype=torch.float64)
    except (KeyError, ValueError, TypeError):
        return None


def _vote_node(state: GuidedState, chosen: list, base: torch.Tensor, label_codes: torch.Tensor):
    """The ``voteK`` node of the chosen voters: ``bias`` is every contribution's mean, each
    voter's table its class means less its own mean (so the node's sum is the fitted one)."""
    from mechsynth.dsl.program import Node

    book = state.pool.batch.codebook

    def rnd(x: torch.Tensor) -> tuple[float, ...]:
        return tuple(round(float(s), SCORE_DECIMALS) + 0.0 for s in x)

    labels = tuple(book.decode(float(c)) for c in label_codes)
    tables = tuple(
        tuple((book.decode(float(k)), rnd(m - pmean)) for k, m in zip(keys, means))
        for _, keys, means, _, pmean in chosen
    )
    args = tuple(o[0].variable for o in chosen) + ((labels, rnd(base)) + tables,)
    return Node(f"vote{len(chosen)}", args, "categorical")
