"""Scoring: every check on one hypothesis, as one mapping of named numbers.

`score(target, hypothesis)` runs, on the same seeded sample of inputs:

* behaviour (synth.check.behaviour): program output vs the network's output, on fresh inputs
  and on a broader set (every length; the task's broader distribution);
* causal scrubbing (synth.check.scrub): loss recovered
  ``(L_resampled - L_scrubbed) / (L_resampled - L_clean)`` where every loss is measured
  against the clean network's own output (KL for categorical readouts, squared error
  for numerical ones, so ``L_clean = 0``), the same ratio for accuracy (agreement of
  the decoded output with the clean network), the per-input losses, and
  ``frac_changed``, the fraction of inputs whose scrubbed prediction differs from the
  clean one at some readout position (a good average can hide cancellation);
* the node-level resample-ablation pre-filter (claimed nodes kept / ablated);
* interchange intervention accuracy (synth.check.interchange), per variable and jointly.
  ``iia`` is the *weakest* intervention's accuracy (every claimed variable must behave
  as the program says); ``iia_mean`` the average.

A hypothesis with a learned subspace (synth.das) is scored only on inputs outside its
training split (synth.check.split; ``heldout_only`` says so): its numbers are out of sample.

Everything is deterministic in ``seed``: the inputs come from ``task.sample(n, seed)``
and every resampling draw from one ``torch.Generator`` seeded with it. The cost is a
fixed number of batched forward passes per length group, independent of ``n``:
the clean pass, one per level of the hypothesis graph plus one for the readout
(scrubbing), two or three for the node-level ablations and one for all interchange
interventions (reported as ``forward_passes``; behaviour adds ``target.predict`` on the
fresh and broader inputs). `cost_ratio` measures the whole of `score` in wall-clock time
against one clean batched forward pass on the same inputs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Mapping, Sequence

import torch

from mechsynth.synth.check.behaviour import behaviour, broader_inputs
from mechsynth.synth.check.claims import Claims, Group, group_by_length, prepare_groups, resolve_claims
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.check.batching import Batching, CleanRun, run_blocks
from mechsynth.synth.check.interchange import (
    aligned_iia_results,
    iia_results,
    plan_iia,
    plan_iia_across_lengths,
)
from mechsynth.synth.check import split
from mechsynth.synth.check.patching import CheckError, PassCounter
from mechsynth.synth.check.scrub import (
    ABLATIONS,
    GroupLosses,
    Judge,
    ablation_losses,
    plan_ablations,
    plan_scrub,
    scrub_across_lengths,
    scrub_losses,
)

if TYPE_CHECKING:
    from mechsynth.models import Target

__all__ = ["CheckError", "Scores", "cost_ratio", "format_scores", "resample_ablation_score", "score"]

# Below this whole-input resampled loss (per read position: nats of KL, or squared readout
# units) loss recovered is a ratio of noise: resampling is degenerate. Within a length it
# makes ``lengths="auto"`` resample across lengths; across lengths too, loss recovered is
# undefined (``loss_recovered_undefined`` gives the reason) and acceptance decides on
# behaviour and interchange alone (synth.accept).
MIN_RESAMPLED_LOSS = 1e-4
LENGTHS = ("auto", "same", "aligned")

HEADLINE = (
    "behaviour", "behaviour_exact", "behaviour_broader", "behaviour_broader_exact", "behaviour_defined",
    "loss_recovered", "accuracy_recovered", "frac_changed", "loss_clean", "loss_scrubbed", "loss_resampled",
    "accuracy_scrubbed", "accuracy_resampled", "ablation_loss_recovered", "ablation_accuracy_recovered",
    "necessity_loss_fraction", "iia", "iia_mean", "iia_informative",
)


@dataclass(frozen=True)
class Scores(Mapping[str, Any]):
    """Named scores of one hypothesis on one target (a read-only mapping; `to_json` for output).

    Scalars sit at the top level; ``iia_per_variable`` and friends map an intervention
    name ("x" or "x+y" for a joint one) to a number; ``per_input`` holds the per-input
    arrays behind the numbers.
    """

    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def to_json(self) -> dict[str, Any]:
        """Every number, JSON-safe (NaN becomes null)."""
        return _jsonable(dict(self.values))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _ratio(resampled: float, patched: float, clean: float) -> float:
    denom = resampled - clean
    return (resampled - patched) / denom if abs(denom) > 1e-12 else float("nan")


def _row_means(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-row mean over the valid entries (NaN for a row that reads nothing)."""
    if bool(valid.all()):
        return values.mean(1)
    return torch.where(valid, values, 0.0).sum(1) / valid.sum(1)


def _summarise_losses(parts: list[GroupLosses], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pooled numbers over (input, readout position) and the per-input arrays behind them."""
    if not parts:
        nan = float("nan")
        return {f"{prefix}loss_recovered": nan, f"{prefix}accuracy_recovered": nan}, {}
    # Pooled over the positions each input reads (all of [n, R] when every input reads R).
    loss = torch.cat([p.loss[p.valid] for p in parts])
    loss_r = torch.cat([p.loss_resampled[p.valid] for p in parts])
    same = torch.cat([p.same[p.valid] for p in parts]).double()
    same_r = torch.cat([p.same_resampled[p.valid] for p in parts]).double()
    l_s, l_r, a_s, a_r = loss.mean().item(), loss_r.mean().item(), same.mean().item(), same_r.mean().item()
    per_input_loss = torch.cat([_row_means(p.loss, p.valid) for p in parts])
    per_input_loss_r = torch.cat([_row_means(p.loss_resampled, p.valid) for p in parts])
    changed = torch.cat([(~p.same & p.valid).any(1) for p in parts])
    numbers = {
        f"{prefix}loss_scrubbed" if not prefix else f"{prefix}loss": l_s,
        f"{prefix}loss_resampled": l_r,
        f"{prefix}loss_recovered": _ratio(l_r, l_s, 0.0),  # L_clean = 0: see _clean_loss
        f"{prefix}accuracy_scrubbed" if not prefix else f"{prefix}accuracy": a_s,
        f"{prefix}accuracy_resampled": a_r,
        f"{prefix}accuracy_recovered": _ratio(1.0 - a_r, 1.0 - a_s, 0.0),
        f"{prefix}frac_changed": changed.double().mean().item(),
    }
    arrays = {
        f"{prefix}loss_scrubbed" if not prefix else f"{prefix}loss": per_input_loss.tolist(),
        f"{prefix}loss_resampled": per_input_loss_r.tolist(),
        f"{prefix}changed": changed.tolist(),
    }
    return numbers, arrays


def _degenerate(numbers: Mapping[str, Any]) -> bool:
    """Whether the whole-input resampling barely changes the network's output (or nothing was read)."""
    resampled = numbers.get("loss_resampled", float("nan"))
    return not resampled >= MIN_RESAMPLED_LOSS


def _undefined_reason(numbers: Mapping[str, Any], ablation: str, used: str, n_groups: int) -> str | None:
    """Why loss recovered is undefined, in words (None when it is defined)."""
    if not _degenerate(numbers):
        return None
    resampled = numbers.get("loss_resampled", float("nan"))
    if math.isnan(resampled):
        return "no read position is shared by the reference and resampled inputs"
    where = "within a length"
    if used == "aligned":
        where = "even across lengths"
    elif ablation != "resample":
        where = f"under {ablation} ablation within a length (only resampling crosses lengths)"
    elif n_groups < 2:
        where = "within a length, and the sample has a single length"
    return (f"resampling the whole input {where} changes the network's output by a loss of {resampled:.2g} "
            f"< MIN_RESAMPLED_LOSS {MIN_RESAMPLED_LOSS:g} per read position, so the ratio is 0/0")


def _necessity(dropped: list[GroupLosses], single: Mapping[str, list[GroupLosses]]) -> dict[str, Any]:
    """Share of the whole-input resampling loss caused by resampling the claimed nodes (all; each)."""
    numbers, _ = _summarise_losses(dropped, "necessity_")
    per_var = {}
    for name, parts in single.items():
        recovered, _ = _summarise_losses(parts, "n_")
        per_var[name] = 1.0 - recovered["n_loss_recovered"]
    return {
        "necessity_loss_fraction": 1.0 - numbers["necessity_loss_recovered"],
        "necessity_per_variable": per_var,
    }


def _clean_loss(target: Target, groups: list) -> float:
    """The loss of the clean run against itself (0 by construction of the loss; computed, not assumed)."""
    from mechsynth.synth.check.patching import readout_loss
    from mechsynth.synth.check.scrub import is_multilabel, numeric_column

    losses = [
        readout_loss(g.clean_logits, g.clean_logits, g.readout, numeric_column(target),
                     multilabel=is_multilabel(target))[g.readout.valid]
        for g in groups
    ]
    return torch.cat(losses).mean().item()


def _network_outputs(target: Target, inputs: Sequence[Sequence[Any]], groups: Sequence[Group]) -> list[list]:
    """The network's decoded outputs on the sampled inputs, reusing the groups' clean passes.

    A target fed in same-length groups is run by `Target.predict` on exactly these batches
    (the inputs of one length, in order), so decoding the clean logits gives its outputs
    without another pass; a padded target's predict batch mixes lengths, so it is asked.
    """
    if target.padded:
        return target.predict(inputs)
    rows: dict[int, list[list]] = {
        g.length: target.decode(g.clean_logits, [list(x) for x in g.inputs]) for g in groups
    }
    left = [list(x) for x in inputs if len(x) not in rows]  # lengths too rare to form a group
    rest = iter(target.predict(left)) if left else iter(())
    taken = {length: iter(out) for length, out in rows.items()}
    return [next(taken[len(x)]) if len(x) in taken else next(rest) for x in inputs]


def _inputs(target: Target, hypothesis: Hypothesis, n: int, seed: int) -> list[list]:
    """The scored inputs: the seeded sample, or, for a fitted hypothesis, held-out inputs only
    (synth.check.split), so its numbers are out of sample."""
    if hypothesis.has_subspace:
        return split.draw(target.task.sample, n, seed, train=False)
    return target.task.sample(n, seed)


def _check_options(n: int, ablation: str) -> None:
    if ablation not in ABLATIONS:
        raise CheckError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    if n < 2:
        raise CheckError(f"need at least 2 inputs to resample from, got n={n}")


def score(
    target: Target,
    hypothesis: Hypothesis,
    *,
    n: int = 256,
    seed: int = 0,
    ablation: str = "resample",
    n_broader: int = 64,
    claims: Claims | None = None,
    lengths: str = "auto",
    batching: Batching = Batching.FUSED,
) -> Scores:
    """Every check of `hypothesis` on `target` (see the module docstring for each number).

    ``lengths="same"`` keeps every resampled input and interchange source within the
    reference's length; ``"aligned"`` takes interchange sources of any length, aligned at
    the positions both inputs have (synth.check.interchange), so that a variable of the
    length alone is tested. Under ``"aligned"`` and under the default, ``"auto"``, when
    within-length resampling is degenerate (the whole-input resampled loss is below
    ``MIN_RESAMPLED_LOSS``: every input of a length gives the same output), scrubbing also
    resamples across lengths (synth.check.scrub.scrub_across_lengths) and "auto" switches
    interchange to aligned sources; otherwise "auto" is "same". ``iia_lengths`` says which
    ran (``scrub_fallback_fraction`` is present when scrubbing crossed lengths). When even
    across lengths the resampled loss is below the floor, ``loss_recovered`` is NaN and
    ``loss_recovered_undefined`` says why in words. ``batching`` only changes how the
    patched runs are grouped into forward passes (synth.check.batching), not the numbers.
    """
    _check_options(n, ablation)
    if lengths not in LENGTHS:
        raise CheckError(f"lengths must be one of {', '.join(LENGTHS)}, got {lengths!r}")
    program = hypothesis.program
    if program.kind(program.output) == "selector":  # it has no value at a position: nothing to compare
        raise CheckError(f"the program's output {program.output!r} is a selector; a hypothesis outputs a "
                         "sequence (e.g. aggregate(selector, tokens) or selector_width(selector))")
    claims = claims or resolve_claims(target, hypothesis)
    heldout = hypothesis.has_subspace
    inputs = _inputs(target, hypothesis, n, seed)
    gen = torch.Generator().manual_seed(seed)
    counter = PassCounter()
    groups = prepare_groups(target, claims, inputs, counter)
    if not groups:
        raise CheckError(f"no length has two or more of the {n} sampled inputs; raise n")

    fresh = behaviour(target, program, inputs, _network_outputs(target, inputs, groups))
    broad = behaviour(target, program, broader_inputs(target, n_broader, seed))

    # Every random draw first, group by group in the checks' order; then one pass per group.
    plans = []
    for group in groups:
        scrub = plan_scrub(claims, group, ablation, gen)
        ablate = plan_ablations(claims, group, ablation, gen)
        same = plan_iia(claims, group, gen) if lengths != "aligned" else None
        plans.append((scrub, ablate, same))
    aligned = plan_iia_across_lengths(claims, groups, gen) if lengths == "aligned" else None
    logits = []
    for gi, (group, (scrub, ablate, same)) in enumerate(zip(groups, plans)):
        blocks = scrub.blocks + ablate.blocks + (same.blocks if same else aligned.blocks[gi])
        logits.append(run_blocks(target.model, blocks, counter, batching, CleanRun.of_group(group, claims)))

    scrubs, kept, dropped, single = [], [], [], {}
    iia: dict[tuple[str, ...], list] = {}
    for group, (scrub, ablate, same), out in zip(groups, plans, logits):
        judge = Judge(target, group)  # one loss call over the group's patched logits
        judge.want([out[b.name] for b in scrub.blocks + ablate.blocks if b.logits])
        scrubs.append(scrub_losses(target, group, scrub, out, judge))
        k, d, one = ablation_losses(target, group, ablate, out, judge)
        kept.append(k)
        dropped.append(d)
        for name, losses in one.items():
            single.setdefault(name, []).append(losses)
        if same is not None:
            for key, res in iia_results(target, claims, group, same, out).items():
                iia.setdefault(key, []).append(res)
    if aligned is not None:
        iia = aligned_iia_results(target, groups, aligned, logits)

    values: dict[str, Any] = {
        "heldout_only": heldout,  # a learned subspace: every input is outside its training split
        "behaviour": fresh.positions, "behaviour_exact": fresh.exact,
        "behaviour_broader": broad.positions, "behaviour_broader_exact": broad.exact,
        "behaviour_defined": fresh.defined,
        "loss_clean": _clean_loss(target, groups),
    }
    if fresh.per_label is not None:
        values["behaviour_per_label"] = dict(fresh.per_label)
    per_input: dict[str, Any] = {
        "behaviour": list(fresh.per_input), "behaviour_broader": list(broad.per_input),
        # The scrubbing and interchange arrays follow this order (inputs grouped by length).
        "inputs": [list(x) for g in groups for x in g.inputs],
    }
    numbers, arrays = _summarise_losses(scrubs, "")
    used = "same" if lengths == "auto" else lengths
    if lengths != "same" and _degenerate(numbers) and ablation == "resample" and len(groups) > 1:
        # Resampling within a length changes nothing: every resampled input and interchange
        # source from any length, at the positions both inputs have.
        if used == "same":
            used = "aligned"
            aligned = plan_iia_across_lengths(claims, groups, gen)
            logits = [run_blocks(target.model, blocks, counter, batching) for blocks in aligned.blocks]
            iia = aligned_iia_results(target, groups, aligned, logits)
        across = scrub_across_lengths(target, claims, groups, gen, counter)
        numbers, arrays = _summarise_losses(list(across.losses), "")
        values["scrub_fallback_fraction"] = across.fallback
    reason = _undefined_reason(numbers, ablation, used, len(groups))
    if reason:
        numbers["loss_recovered"] = numbers["accuracy_recovered"] = float("nan")
        values["loss_recovered_undefined"] = reason
    values.update(numbers)
    per_input.update(arrays)
    numbers, _ = _summarise_losses(kept, "ablation_")
    values["ablation_loss_recovered"] = numbers["ablation_loss_recovered"]
    values["ablation_accuracy_recovered"] = numbers["ablation_accuracy_recovered"]
    values.update(_necessity(dropped, single))

    per_var, per_var_inf, n_inf, iia_arrays = {}, {}, {}, {}
    for key, parts in iia.items():
        name = "+".join(key)
        defined = torch.cat([p.defined for p in parts])
        match = torch.cat([p.match for p in parts])[defined]
        informative = torch.cat([p.informative for p in parts])[defined]
        per_var[name] = match.double().mean().item() if len(match) else float("nan")
        n_inf[name] = int(informative.sum())
        per_var_inf[name] = match[informative].double().mean().item() if n_inf[name] else float("nan")
        iia_arrays[name] = match.tolist()
    scored = [v for v in per_var.values() if not math.isnan(v)]
    values["iia"] = min(scored) if scored else float("nan")
    values["iia_mean"] = sum(scored) / len(scored) if scored else float("nan")
    informative_values = [v for v in per_var_inf.values() if not math.isnan(v)]
    values["iia_informative"] = min(informative_values) if informative_values else float("nan")
    values["iia_per_variable"] = per_var
    values["iia_informative_per_variable"] = per_var_inf
    values["iia_n_informative"] = n_inf
    per_input["iia"] = iia_arrays
    values["per_input"] = per_input
    values.update(
        n=n, n_scored=sum(g.size for g in groups), lengths=[g.length for g in groups], seed=seed,
        ablation=ablation, iia_lengths=used, claimed=list(claims.claims), forward_passes=counter.passes,
        hypothesis=hypothesis.to_json(), target=target.name,
    )
    return Scores(values)


def resample_ablation_score(
    target: Target, hypothesis: Hypothesis, *, n: int = 256, seed: int = 0, ablation: str = "resample"
) -> Scores:
    """Fast node-level pre-filter (NOT causal scrubbing; see synth.check.scrub for the exact passes).

    ``ablation_loss_recovered``: loss recovered when the locations the readout is claimed
    to read keep the reference input's own activation and everything else is resampled
    (or mean/zero ablated). It checks that those locations carry what the output needs,
    not that they carry the claimed *values*; scrubbing cannot do better than this by
    much, so a low number rules a hypothesis out cheaply.
    ``necessity_loss_fraction``: the share of the whole-input resampling damage caused by
    resampling only the claimed locations; ``necessity_per_variable``: the same for each
    claimed location alone (a location the network does not use scores ~0).
    """
    _check_options(n, ablation)
    claims = resolve_claims(target, hypothesis)
    gen = torch.Generator().manual_seed(seed)
    counter = PassCounter()
    groups = prepare_groups(target, claims, _inputs(target, hypothesis, n, seed), counter)
    kept, dropped, single = [], [], {}
    plans = [plan_ablations(claims, group, ablation, gen) for group in groups]
    for group, plan in zip(groups, plans):
        k, d, one = ablation_losses(target, group, plan, run_blocks(target.model, plan.blocks, counter))
        kept.append(k)
        dropped.append(d)
        for name, losses in one.items():
            single.setdefault(name, []).append(losses)
    numbers, arrays = _summarise_losses(kept, "ablation_")
    numbers.update(_necessity(dropped, single))
    numbers.update(per_input=arrays, n=n, seed=seed, ablation=ablation, forward_passes=counter.passes)
    return Scores(numbers)


def format_scores(scores: Mapping[str, Any]) -> str:
    """A plain-text table of the headline numbers and per-variable IIA (for `mechsynth score`)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    rows = [(k, fmt(scores[k])) for k in HEADLINE if k in scores]
    width = max([len(k) for k, _ in rows] + [10])
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if scores.get("loss_recovered_undefined"):
        lines.append(f"loss recovered undefined: {scores['loss_recovered_undefined']}")
    if "iia_lengths" in scores:  # which resampling ran: within a length, or across lengths
        lines.append(f"{'iia_lengths':<{width}}  {scores['iia_lengths']}")
    per_var = scores.get("iia_per_variable") or {}
    if per_var:
        inf = scores.get("iia_informative_per_variable", {})
        n_inf = scores.get("iia_n_informative", {})
        lines.append("")
        lines.append(f"{'intervention':<{width}}  iia     iia_informative (pairs)")
        for name, v in per_var.items():
            informative = fmt(inf.get(name, float("nan")))
            lines.append(f"{name:<{width}}  {fmt(v)}  {informative} ({n_inf.get(name, 0)})")
    meta_keys = ("target", "n", "n_scored", "lengths", "seed", "ablation", "forward_passes")
    meta = [k for k in meta_keys if k in scores]
    if meta:
        lines.append("")
        lines += [f"{k:<{width}}  {scores[k]}" for k in meta]
    return "\n".join(lines)


def cost_ratio(
    target: Target, hypothesis: Hypothesis, *, n: int = 256, seed: int = 0, repeats: int = 3, **options: Any
) -> dict[str, float]:
    """Wall-clock cost of `score` as a multiple of one clean batched forward pass on the same inputs.

    The clean pass is what any check must pay at least once: the model on the same
    ``n`` inputs, grouped by length. Each is timed as the best of ``repeats`` runs, taken in
    turns (clean, score, cold score, clean, ...) so that a change in the machine's load hits all.
    ``ratio`` is a score as every score of a run after its first one runs: the network's outputs on
    the broader inputs, which no hypothesis changes, already known (synth.check.behaviour);
    ``cold_ratio`` a score that pays for them too. The same ratios in process CPU time
    (``cpu_ratio``, ``cold_cpu_ratio``) are reported next to them: on a shared machine the wall
    clock also counts the time other processes held the cores, the CPU time much less so.
    """
    from mechsynth.synth.check.behaviour import forget_network_outputs

    inputs = target.task.sample(n, seed)
    batches = [target.tokens([list(x) for x in xs]) for xs in group_by_length(inputs).values()]

    def clean() -> None:
        with torch.no_grad():
            for tokens in batches:
                target.model(tokens)

    def scored() -> Scores:
        return score(target, hypothesis, n=n, seed=seed, **options)

    def cold() -> Scores:
        forget_network_outputs()
        return scored()

    clean()
    result = scored()  # warm-up: first calls pay for lazy initialisation and memoised probes
    runs = {"clean": clean, "score": scored, "cold": cold}
    best = {name: (math.inf, math.inf) for name in runs}
    for _ in range(max(1, repeats)):
        for name, fn in runs.items():
            wall, cpu = _timed_once(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    (t_clean, c_clean), (t_score, c_score), (t_cold, c_cold) = best["clean"], best["score"], best["cold"]

    def per_clean(x: float, unit: float) -> float:
        return x / unit if unit > 0 else math.nan

    return {
        "clean_s": t_clean, "score_s": t_score, "ratio": per_clean(t_score, t_clean),
        "cold_score_s": t_cold, "cold_ratio": per_clean(t_cold, t_clean),
        "clean_cpu_s": c_clean, "score_cpu_s": c_score, "cpu_ratio": per_clean(c_score, c_clean),
        "cold_cpu_ratio": per_clean(c_cold, c_clean),
        "forward_passes": float(result["forward_passes"]), "clean_passes": float(len(batches)),
    }


def _timed_once(fn: Any) -> tuple[float, float]:
    """(wall-clock seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu
