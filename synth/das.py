"""Distributed alignment search (DAS): locate a program variable in a learned subspace.

A compiled network gives each variable its own residual dimensions; a trained one often
stores it along a few *directions* mixed with everything else at the same hook, so no set
of basis dimensions (nor the whole hook) passes interchange. DAS (Geiger, Wu, Potts, Icard
& Goodman 2023, "Finding alignments between interpretable causal variables and
distributed neural representations") learns the directions: an orthonormal ``R_k``
(``d x k``, the first k columns of a rotation of the hook's last axis) such that the
interchange intervention ``x_base + R_k R_k^T (x_src - x_base)`` at every input position
makes the network output what the program outputs when the variable takes the source's
value (`synth.check.interchange.counterfactual_output`).

Fitting (:func:`fit_location`): ``R_k = QR(W)`` of a free ``d x k`` matrix ``W``,
initialised from a seeded normal draw and trained with Adam for an explicit number of
steps on cross-entropy (categorical readouts; squared error for numerical ones) between
the patched network's logits and the counterfactual outputs, at the read positions where
the program defines them. Sources are fixed seeded draws within each length group. Only
TRAIN inputs of `synth.check.split` are used; the checks score the fitted hypothesis on
held-out inputs only, so the IIA and scrubbing numbers are out of sample. The network's
weights are never changed (gradients are taken with respect to ``W`` alone).

Fitting is *anytime*: the steps are grouped in cycles of ``n_sources`` (one pass over the
source draws); before each cycle the fit asks its deadline (a ``time.monotonic()`` value, the
run's budget as the loop hands it to proposers) and, once it has passed, stops and returns the
best rotation so far with ``cut_short`` set. "Best" is the rotation after the cycle with the
lowest mean training loss (a cycle sees every source draw once, so cycle means compare; a final
partial cycle counts with its own mean), the same rule whether or not the fit is cut short.
The `Subspace` records the steps actually run, so a refit on a null (below) replays exactly
the procedure that produced the real rotation, never a longer one and never a cut one.

**One forward per step on a causal network.** Inputs of different lengths are grouped by
length (the network's positions must line up), so a step is one patched forward and backward
per length: on trained:dyck1 (16 lengths) 2,400 small passes per fit, 42 s under load, and the
controls refit the subspace on every null (six random networks: 342 s of its 404 s of
controls). A causal network's position ``i`` reads positions ``<= i`` only, so right-padding the
groups to the longest and stacking them changes nothing at a row's own positions: the training
steps then run as one forward of the stacked batch (:func:`_stacked`), with the same objective
(each length group's mean, averaged over the groups). A bidirectional network, or a task with
its own padding (and attention mask), keeps one pass per group. The final training IIA is
computed per group either way.

The interchange itself is `synth.check.patching.Site.write` with an explicit ``basis``: the
one definition shared by the checks (which score the stored subspace) and by this fit.

A learned subspace is a powerful fitter: with k close to d any variable can be "found".
The frivolous-circuit controls therefore refit it (:func:`refit`, same k, training inputs,
steps and seed, as recorded in the `Subspace`) on every null they score: a re-initialised
network, a random placement, a random program. A hypothesis passes only when its fitted
subspace beats the nulls' fitted subspaces.

Why not pyvene: pyvene 0.1.8 (``pip install pyvene``, tried first) builds an
``IntervenableModel`` from a HuggingFace model's ``model.config`` and its table of module
names per model type; a transformer_lens 4.x ``TransformerBridge`` has no ``config``
(``AttributeError: 'TransformerBridge' object has no attribute 'config'`` in
``IntervenableModel.__init__``), and wrapping the bridge's inner HF model instead would
address modules by HF names, not by our hook names (the bridge's ``hook_z`` is an alias of
``attn.o.hook_in``, before ``W_O``). The intervention is a few lines of torch on the
bridge's own hooks, so it is implemented here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location, Subspace
from mechsynth.synth.check import split
from mechsynth.synth.check.claims import group_by_length
from mechsynth.synth.check.patching import CheckError, Site, probe, resolve, run

if TYPE_CHECKING:
    from mechsynth.models import Target


@dataclass(frozen=True)
class DASConfig:
    """How a subspace is fitted: its size, the training inputs, the step budget, the seed."""

    k: int = 1
    n_train: int = 256
    steps: int = 150
    seed: int = 0
    lr: float = 0.05
    n_sources: int = 8  # seeded source draws per length group, cycled over the steps

    @classmethod
    def of(cls, subspace: Subspace) -> DASConfig:
        """The procedure that fitted ``subspace`` (to refit it on a null the same way)."""
        return cls(k=subspace.k, n_train=subspace.n_train, steps=subspace.steps, seed=subspace.seed)


@dataclass(frozen=True)
class DASFit:
    """A fitted location and its training numbers (the checks report the held-out ones)."""

    location: Location
    train_iia: float  # interchange accuracy on the training pairs after fitting
    train_loss: float  # the mean objective over the cycle whose rotation was kept
    n_train: int
    steps_run: int  # gradient steps taken (the config's steps unless cut short)
    cut_short: bool = False  # the deadline passed before the config's steps were run


@dataclass(frozen=True)
class _Group:
    tokens: torch.Tensor  # [n, T]
    source_acts: torch.Tensor  # [n, P, d] the site's clean values at the input positions
    positions: slice
    sources: tuple[torch.Tensor, ...]  # per draw: [n] source rows
    targets: tuple[torch.Tensor, ...]  # per draw: [n, T] class ids (or values), NaN/-1 where undefined
    masks: tuple[torch.Tensor, ...]  # per draw: [n, T] bool, a read position with a defined output


def _groups(target: Target, program: Any, variable: str, site: Site, cfg: DASConfig,
            inputs: list[list]) -> list[_Group]:
    from mechsynth.dsl import interpret
    from mechsynth.synth.check.interchange import counterfactual_output

    off = target.position_offset
    categorical = target.task.output_kind == "categorical"
    column = {v: j for j, v in enumerate(target.output_values)}
    gen = torch.Generator().manual_seed(cfg.seed)
    out = []
    for length, xs in group_by_length(inputs).items():
        if len(xs) < 2:
            continue
        rows = [list(x) for x in xs]
        tokens = target.tokens(rows)
        _, acts = run(target.model, tokens, capture=[site], need_logits=False)
        positions = slice(off, off + length)
        batch = interpret.encode(rows, symbols=program.literals())
        base_values = interpret.run(program, batch)
        sources, targets, masks = [], [], []
        for _ in range(cfg.n_sources):
            src = torch.randint(len(rows), (len(rows),), generator=gen)
            cf = counterfactual_output(program, None, [variable], src, base_values, batch=batch)
            tgt = torch.full(tuple(tokens.shape), -1 if categorical else float("nan"),
                             dtype=torch.long if categorical else torch.float64)
            mask = torch.zeros(tuple(tokens.shape), dtype=torch.bool)
            for b, (x, y) in enumerate(zip(rows, cf)):
                for i in target.read_positions(x):
                    v = y[i]
                    if v is None or (categorical and v not in column):
                        continue
                    tgt[b, i + off] = column[v] if categorical else float(v)
                    mask[b, i + off] = True
            dev = tokens.device  # seeded draws are made on the CPU and moved (models.device)
            sources.append(src.to(dev))
            targets.append(tgt.to(dev))
            masks.append(mask.to(dev))
        out.append(_Group(tokens, acts[site][:, positions], positions, tuple(sources), tuple(targets),
                          tuple(masks)))
    return out


@dataclass(frozen=True)
class _Stacked:
    """Every length group right-padded and stacked (a causal network only; module docstring)."""

    tokens: torch.Tensor  # [N, T_max]
    source_acts: torch.Tensor  # [N, P_max, d]
    positions: slice
    sources: tuple[torch.Tensor, ...]  # per draw: [N] source rows (global; the same length group)
    targets: tuple[torch.Tensor, ...]  # per draw: [N, T_max]
    masks: tuple[torch.Tensor, ...]  # per draw: [N, T_max] bool (False on the padding)
    group: torch.Tensor  # [N] index of each row's length group
    n_groups: int


def _causal(target: Target) -> bool:
    return getattr(target.model.cfg, "attention_dir", None) == "causal" and not target.padded


def _stacked(target: Target, site: Site, groups: list[_Group], n_sources: int) -> _Stacked:
    width = max(int(g.tokens.shape[1]) for g in groups)
    off = target.position_offset
    tokens, targets, masks, rows = [], [[] for _ in range(n_sources)], [[] for _ in range(n_sources)], []
    sources: list[list[torch.Tensor]] = [[] for _ in range(n_sources)]
    start = 0
    for i, g in enumerate(groups):
        n, t = g.tokens.shape
        pad = width - t
        # Any valid token id pads: a causal network's own positions never read the ones after them.
        tokens.append(torch.cat([g.tokens, g.tokens[:, :1].expand(n, pad)], 1) if pad else g.tokens)
        for d in range(n_sources):
            sources[d].append(g.sources[d] + start)
            fill = -1 if g.targets[d].dtype == torch.long else float("nan")
            tgt = torch.full((n, width), fill, dtype=g.targets[d].dtype, device=g.targets[d].device)
            tgt[:, :t] = g.targets[d]
            m = torch.zeros((n, width), dtype=torch.bool, device=g.masks[d].device)
            m[:, :t] = g.masks[d]
            targets[d].append(tgt)
            masks[d].append(m)
        rows.append(torch.full((n,), i, dtype=torch.long))
        start += n
    stacked = torch.cat(tokens)
    _, acts = run(target.model, stacked, capture=[site], need_logits=False)
    positions = slice(off, width)
    return _Stacked(stacked, acts[site][:, positions], positions, tuple(torch.cat(x) for x in sources),
                    tuple(torch.cat(x) for x in targets), tuple(torch.cat(x) for x in masks),
                    torch.cat(rows).to(stacked.device), len(groups))


def _stacked_loss(target: Target, logits: torch.Tensor, st: _Stacked, draw: int) -> torch.Tensor | None:
    """The mean over the length groups of each group's mean objective (as the per-group steps)."""
    tgt, mask = st.targets[draw], st.masks[draw]
    if not bool(mask.any()):
        return None
    if target.task.output_kind == "categorical":
        each = torch.nn.functional.cross_entropy(logits[mask].float(), tgt[mask], reduction="none").double()
    else:
        each = (logits[..., target.numeric_column][mask].double() - tgt[mask]) ** 2
    gid = st.group[:, None].expand_as(mask)[mask]
    total = torch.zeros(st.n_groups, dtype=torch.float64, device=each.device).index_add(0, gid, each)
    count = torch.bincount(gid, minlength=st.n_groups)
    used = count > 0
    return (total[used] / count[used]).mean()


def _patched_logits(target: Target, site: Site, group: _Group | _Stacked, src: torch.Tensor,
                    basis: torch.Tensor):
    """The network's logits with ``site``'s ``basis`` component swapped in from the source rows ``src``
    at every input position (`Site.write`), differentiable in ``basis``."""
    def fn(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        x_src = group.source_acts[src].to(act.dtype)
        site.write(act, x_src @ basis.to(act.dtype), group.positions, basis=basis)
        return act

    with target.model.hooks(fwd_hooks=[(site.hook, fn)]):
        return target.model(group.tokens)


def _loss(target: Target, logits: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if target.task.output_kind == "categorical":
        return torch.nn.functional.cross_entropy(logits[mask].float(), tgt[mask])
    col = logits[..., target.numeric_column]
    return ((col[mask].double() - tgt[mask]) ** 2).mean()


def _agreement(target: Target, logits: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[n] bool: every defined read position agrees with the counterfactual (rows with none: True)."""
    if target.task.output_kind == "categorical":
        ok = logits.argmax(-1) == tgt
    else:
        from mechsynth.models.target import outputs_equal

        col = logits[..., target.numeric_column].double()
        ok = torch.tensor([[outputs_equal(a, b, "numerical") for a, b in zip(r1, r2)]
                           for r1, r2 in zip(col.tolist(), tgt.tolist())])
    return (ok | ~mask).all(1)


_clock = time.monotonic  # what a deadline is compared with (tests replace it by a step counter)


def fit_location(target: Target, program: Any, variable: str, location: Location,
                 config: DASConfig | None = None, *, deadline: float | None = None) -> DASFit:
    """Fit a k-dim subspace of ``location``'s hook (and head) holding ``variable`` (see module docstring).

    ``deadline`` (a ``time.monotonic()`` value) is asked before every cycle of ``n_sources`` steps;
    past it the fit stops and returns its best rotation so far with ``cut_short`` set.
    CheckError when the location cannot hold a subspace or no training input can be drawn.
    """
    cfg = config or DASConfig()
    if cfg.k < 1 or cfg.steps < 0 or cfg.n_train < 2 or cfg.n_sources < 1:
        raise CheckError(f"DAS needs k >= 1, steps >= 0, n_train >= 2 and n_sources >= 1, got {cfg}")
    if variable not in program.variables:
        raise CheckError(f"DAS: {variable!r} is not a variable of the program")
    whole = location.without_subspace()
    if whole.dims is not None:
        whole = Location(whole.hook, whole.head)
    site = resolve(target.model, whole, probe(target.model))
    if len(site.shape) != (2 if site.head is not None else 1):
        raise CheckError(f"DAS: location {whole} has no single vector per position")
    d = int(site.shape[-1])
    if cfg.k > d:
        raise CheckError(f"DAS: k={cfg.k} exceeds the {d} dims of {whole}")
    inputs = split.draw(target.task.sample, cfg.n_train, cfg.seed, train=True)
    groups = _groups(target, program, variable, site, cfg, inputs)
    if not groups:
        raise CheckError("DAS: no length has two or more training inputs; raise n_train")
    stacked = _stacked(target, site, groups, cfg.n_sources) if _causal(target) and len(groups) > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    weight = torch.randn(d, cfg.k, generator=gen, dtype=torch.float32).to(target.device)
    weight.requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=cfg.lr)
    best_weight, best_loss = weight.detach().clone(), float("inf")
    cycle: list[float] = []  # the losses of the current cycle's steps
    steps_run, cut_short = 0, False
    with torch.enable_grad():
        for step in range(cfg.steps):
            if step % cfg.n_sources == 0 and deadline is not None and _clock() > deadline:
                cut_short = True
                break
            opt.zero_grad()
            basis = torch.linalg.qr(weight).Q
            draw = step % cfg.n_sources
            if stacked is not None:
                logits = _patched_logits(target, site, stacked, stacked.sources[draw], basis)
                loss = _stacked_loss(target, logits, stacked, draw)
                if loss is None:
                    break
            else:
                total = torch.zeros((), dtype=torch.float64, device=weight.device)
                used = 0
                for g in groups:
                    if not bool(g.masks[draw].any()):
                        continue
                    logits = _patched_logits(target, site, g, g.sources[draw], basis)
                    total = total + _loss(target, logits, g.targets[draw], g.masks[draw]).double()
                    used += 1
                if not used:
                    break
                loss = total / used
            (grad,) = torch.autograd.grad(loss, [weight])
            weight.grad = grad
            opt.step()
            steps_run += 1
            cycle.append(float(loss.detach()))
            if len(cycle) == cfg.n_sources or step == cfg.steps - 1:
                mean = sum(cycle) / len(cycle)
                if mean < best_loss:
                    best_weight, best_loss = weight.detach().clone(), mean
                cycle = []
    if cycle:  # a cycle cut by a break (no draw had a read position): it counts like a final one
        mean = sum(cycle) / len(cycle)
        if mean < best_loss:
            best_weight, best_loss = weight.detach().clone(), mean
    with torch.no_grad():
        basis = torch.linalg.qr(best_weight).Q
        agree, count = 0, 0
        for g in groups:
            for draw in range(cfg.n_sources):
                logits = _patched_logits(target, site, g, g.sources[draw], basis)
                ok = _agreement(target, logits, g.targets[draw], g.masks[draw])
                has = g.masks[draw].any(1)
                agree += int((ok & has).sum())
                count += int(has.sum())
    columns = tuple(tuple(col) for col in basis.T.cpu().tolist())
    subspace = Subspace(columns, n_train=len(inputs), steps=steps_run, seed=cfg.seed)
    located = Location(whole.hook, whole.head, subspace=subspace)
    return DASFit(located, agree / count if count else float("nan"),
                  best_loss if steps_run else float("nan"), len(inputs), steps_run, cut_short)


def with_das(target: Target, hypothesis: Hypothesis, variable: str, config: DASConfig | None = None,
             location: Location | None = None, *, deadline: float | None = None) -> tuple[Hypothesis, DASFit]:
    """``hypothesis`` with ``variable`` moved to a DAS subspace of its location's hook (or ``location``)."""
    where = location or hypothesis.correspondence.get(variable)
    if where is None:
        raise CheckError(f"DAS: {variable!r} has no location to fit a subspace in")
    fit = fit_location(target, hypothesis.program, variable, where, config, deadline=deadline)
    corr = dict(hypothesis.correspondence)
    corr[variable] = fit.location
    return hypothesis.with_correspondence(corr), fit


def refit(target: Target, hypothesis: Hypothesis) -> Hypothesis:
    """Every learned subspace of ``hypothesis`` refitted on ``target`` by its recorded procedure.

    What the controls score on a null: the null network (or placement, or program) gets DAS
    fitted exactly as the real hypothesis did, so a rotation cannot make it pass for free.
    A refit has no deadline: it runs the recorded steps (the real fit's, cut short or not), since
    a null fitted less than the real hypothesis would be an unfair null.
    """
    corr = dict(hypothesis.correspondence)
    for name, loc in hypothesis.correspondence.items():
        if loc.subspace is not None and name in hypothesis.program.variables:
            fit = fit_location(target, hypothesis.program, name, loc, DASConfig.of(loc.subspace))
            corr[name] = fit.location
    return hypothesis.with_correspondence(corr)
