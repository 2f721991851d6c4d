"""Model-guided proposal: read the network layer by layer and explain each component with the DSL.

Searching for a whole program from input/output pairs is hopeless past tiny programs, and
would explain the *task*, not the network. Instead the activations serve as intermediate
specifications. Walking the layers in order, with a set of
*available* variables (those decodable from the residual stream entering the layer):

1. **Heads.** A head's attention pattern is matched by a ``select(keys, queries, pred)``
   over available variables. We do not try every selector: for a pair of variables
   ``(k, q)`` the pattern itself says, for each pair of observed values ``(k=a, q=b)``,
   whether the head attends — if the answer is the same every time the pair occurs, the
   pattern is a function of ``(k, q)`` and the relation it induces is named: a DSL
   comparison (``EQ``, ``LT``, ...) when one agrees on every observed pair, else the
   cheapest two-argument function the DSL can fit. The head's *output* (``hook_z``) is
   then matched with ``aggregate(selector, x)`` for an available ``x``: the aggregate must
   be decodable from the head's output and explain it (see "explains" below). A head whose
   pattern matches but whose output is no aggregate is remembered as a *counting* head:
   its selector is offered to the MLP of the same layer as ``selector_width(selector)``
   (that is how tracr, and plausibly a trained network, counts).
2. **MLPs.** The MLP output is matched with ``map(f, x)``, ``seqmap(g, x, y)`` and
   ``selector_width(s)`` candidates built by the enumerator from available variables and
   the registered function library. An MLP may compute several variables side by side in
   different residual directions, so each candidate claims the output dimensions it
   explains and candidates are chosen to cover every active dimension.
3. **Output.** The network's decoded outputs are a variable of the pool (or a fitted
   relabelling of one, or a function of one or two); failing that, a lookup over the located
   variables that predict them best, a function of whether a local token pattern occurred so
   far, or a vote of the components' logit contributions (:mod:`synth.propose.explain_output`).
   Its dependency closure, with every variable mapped to the component that wrote it, is a
   whole-program hypothesis.

"v explains activation A" means both directions of "A encodes exactly v": v is decodable
from A (nearest-class-mean classification of A recovers v) and A is a function of v (the
class means of A by v explain its variance, R^2). The thresholds are named in
:class:`MatchThresholds`; exactly-compiled (tracr) networks meet them at ~1.0, trained
networks are matched with softer ones and ranked.

Different value labellings of the same information (``length - indices`` vs
``length - indices - 1``) cannot be told apart from one MLP's output, so several labellings
are kept; the downstream components that read them (an ``EQ`` against ``indices``, the
network's output values) decide which one is right.

The walk (this module) visits the layers in order; a head is explained in
:mod:`synth.propose.explain_heads`, an MLP in :mod:`synth.propose.explain_mlps`, with the
statistics of :mod:`synth.propose.match_stats`; what the walk found is a
:class:`~synth.propose.guided_state.GuidedState`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Mapping, Sequence

import torch

from mechsynth.synth.propose.enumerate import MIN_DEFINED, Pool, agreement, encode_outputs, try_add
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.program import PRIMITIVE_VARIABLES
from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.propose.interface import Proposal, ProposalContext, ScoredCandidate, expired

from mechsynth.synth.propose.explain_heads import (
    _shifted_predicate,
    explain_head,
    explain_head_soft,
    explain_layer_soft,
    padded_patterns,
)
from mechsynth.synth.propose.explain_mlps import explain_mlp
from mechsynth.synth.propose.explain_output import (
    OutputKind,
    claimed_at_last_mlp,
    fit_lookup,
    fit_prefix_pattern,
    fit_vote,
    rank,
)
from mechsynth.synth.propose.chains import MANY_VALUES, threshold_args
from mechsynth.synth.propose.guided_state import (
    ComponentExplanation,
    ComponentStatus,
    Exclusion,
    GuidedState,
    Located,
    MatchThresholds,
    TABLE_SUPPORT,
    explanation,
)
from mechsynth.synth.propose.match_stats import bijective, decode_accuracy

if TYPE_CHECKING:
    from mechsynth.synth.observe import Observations


@dataclass
class ModelGuidedProposer:
    """Layer-by-layer proposer (see the module docstring): widening its bars, refining on feedback.

    Round 0 walks with the bars for the target (exact for tracr-compiled networks, soft for
    trained ones); each later round walks again with the next, looser bars of :func:`widening`,
    so a network whose components miss one bar by a little still gets proposals while budget
    remains. Every round also uses what the checks said about its earlier proposals: the
    variable with the worst interchange accuracy below the acceptance bar was the wrong
    explanation of the component it was claimed at, so that explanation is excluded and the
    walk takes the component's next-best one (for a head, its next aggregate; after
    ``SELECTOR_FAILURES`` refuted aggregates through one selector, its next selector). Once the
    bars are spent it keeps refining while feedback brings new exclusions (a walk each), with
    the bars of the walk that made the refuted proposal. The checks and controls decide what
    is accepted. Given ``thresholds``, it widens no further but still refines.
    """

    name: str = "model-guided"
    thresholds: MatchThresholds | None = None
    labellings: int = 3  # value labellings kept per MLP block
    max_candidates: int = 12
    exhaustive: bool = False  # each round walks with looser bars
    last_state: GuidedState | None = None
    best_state: GuidedState | None = None  # the walk that explained the most components
    excluded: set[Exclusion] = field(default_factory=set)  # explanations refuted by the checks
    _claims: dict[str, tuple[dict[str, tuple[Exclusion, ...]], MatchThresholds]] = field(
        default_factory=dict, repr=False
    )  # program text -> (variable -> its exclusions, most specific first; the walk's bars)
    _used: set[str] = field(default_factory=set, repr=False)  # programs whose feedback was taken
    _selector_failures: dict[Exclusion, int] = field(default_factory=dict, repr=False)
    _refine_bars: MatchThresholds | None = None

    def schedule(self, target: Any) -> tuple[MatchThresholds, ...]:
        """The bars of each round, strictest first."""
        if self.thresholds is not None:
            return (self.thresholds,)
        return widening(_is_exact(target))

    def has_more(self, context: ProposalContext) -> bool:
        return context.round < len(self.schedule(context.target)) or bool(self._refutations(context.best))

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        if expired(context.deadline):
            return  # a walk takes minutes on a trained network: none starts after the deadline
        obs = context.observations
        bars = self.schedule(context.target)
        learned = self.learn(context.best)
        if context.round < len(bars):
            thresholds = bars[context.round]
        elif learned and self._refine_bars is not None:
            thresholds = self._refine_bars
        else:
            return
        start = time.monotonic()
        if context.round == 0:
            early = pattern_output(obs, thresholds, excluded=frozenset(self.excluded))
            if early is not None:
                yield from self._proposals(early, obs, thresholds, context.round, start)
        state = walk(
            obs,
            thresholds,
            labellings=self.labellings,
            deadline=context.deadline,
            excluded=frozenset(self.excluded),
        )
        self.last_state = state
        if self.best_state is None or _n_explained(state) > _n_explained(self.best_state):
            self.best_state = state
        yield from self._proposals(state, obs, thresholds, context.round, start)

    def _proposals(
        self, state: GuidedState, obs: Observations, thresholds: MatchThresholds, rnd: int, start: float
    ) -> Iterator[Proposal]:
        """The state's whole-program hypotheses, at most ``max_candidates``, remembered for feedback."""
        for n, (hyp, meta) in enumerate(compose(state, obs)):
            if n >= self.max_candidates:
                return
            self._claims[str(hyp.program)] = (_exclusions_of(state, str(hyp.program)), thresholds)
            meta = {
                **meta,
                "walk_round": rnd,
                "walk_seconds": round(time.monotonic() - start, 3),
                "walk_excluded": len(state.excluded),
            }
            yield Proposal(source=self.name, hypothesis=hyp, meta=meta)

    def learn(self, best: Sequence[ScoredCandidate]) -> int:
        """Exclude the explanations that the checks refuted; returns how many are new."""
        before = len(self.excluded)
        for program, variable in self._refutations(best):
            self._used.add(program)
            claims, bars = self._claims[program]
            own, *selectors = claims[variable]
            self.excluded.add(own)
            for sel in selectors:
                self._selector_failures[sel] = self._selector_failures.get(sel, 0) + 1
                if self._selector_failures[sel] >= SELECTOR_FAILURES:
                    self.excluded.add(sel)
            self._refine_bars = bars
        return len(self.excluded) - before

    def _refutations(self, best: Sequence[ScoredCandidate]) -> list[tuple[str, str]]:
        """(program, its worst variable) for each of our scored, unaccepted proposals not yet used.

        The worst variable is the claimed one with the lowest interchange accuracy, when that is
        below the acceptance bar (``iia[VAR]`` in the scores the loop passes back).
        """
        bar = Thresholds().iia
        out = []
        for cand in best:
            program = str(cand.hypothesis.program)
            ours = cand.source == self.name and program in self._claims
            if not ours or cand.accepted or program in self._used:
                continue
            claims = self._claims[program][0]
            scored = [
                (x, v) for v, x in _iia_by_variable(cand.scores).items() if v in claims and not math.isnan(x)
            ]
            if scored:
                worst, variable = min(scored)
                if worst < bar and claims[variable][0] not in self.excluded:
                    out.append((program, variable))
        return out

    def explanation(self) -> tuple[ComponentExplanation, ...]:
        """The best walk's component-by-component explanation (empty before the first walk)."""
        return explanation(self.best_state) if self.best_state is not None else ()


SELECTOR_FAILURES = 2  # refuted aggregates through one head's selector before the selector is refuted


def _iia_by_variable(scores: Mapping[str, Any]) -> dict[str, float]:
    """Interchange accuracy per variable from the loop's flat scores (``iia[a+b]``: a joint intervention)."""
    out: dict[str, float] = {}
    for key, x in scores.items():
        if key.startswith("iia[") and key.endswith("]") and isinstance(x, float):
            for variable in key[4:-1].split("+"):
                out[variable] = min(x, out.get(variable, x))
    return out


def _exclusions_of(state: GuidedState, program: str) -> dict[str, tuple[Exclusion, ...]]:
    """For each claimed variable of ``program``: its own exclusion, then its selector's (for a head)."""
    pool = state.pool
    out: dict[str, tuple[Exclusion, ...]] = {}
    for variable, name in state.claims.get(program, {}).items():
        loc = state.located[name].location
        keys = [state.exclusion(loc, pool.values[name])]
        node = pool.items[name].node
        if node is not None and node.op == "aggregate" and loc.head is not None:
            keys.append(state.exclusion(loc, pool.values[node.inputs[0]]))
        out[variable] = tuple(keys)
    return out


def widening(exact: bool) -> tuple[MatchThresholds, ...]:
    """The match bars of successive rounds: exact (tracr only), soft, then two looser steps.

    Looser bars let a component that a trained network implements imprecisely (a head that
    puts 40% of its weight elsewhere, an MLP variable with R^2 0.6) be proposed at all. The
    output bar never drops below the prefilter's: a proposal below it would be filtered.
    """
    soft = MatchThresholds.soft()
    wider = dataclasses.replace(soft, selector=0.45, decode=0.8, explain=0.6, conflict=0.1, available=0.8)
    widest = dataclasses.replace(soft, selector=0.3, decode=0.7, explain=0.4, conflict=0.2, available=0.7)
    return ((MatchThresholds(),) if exact else ()) + (soft, wider, widest)


def _n_explained(state: GuidedState) -> int:
    return sum(1 for part in explanation(state) if part.status == ComponentStatus.EXPLAINED)


def _is_exact(target: Any) -> bool:
    info = getattr(target, "info", {}) or {}
    return info.get("kind") == "tracr"


def make_batch(obs: Observations, symbols: Sequence[Any] = ()) -> Any:
    from mechsynth.dsl.interpret import encode

    outs = [v for v in obs.network_outputs() if v is not None]
    return encode(obs.all_inputs(), symbols=list(symbols) + outs)


def walk(
    obs: Observations,
    thresholds: MatchThresholds,
    *,
    labellings: int = 3,
    deadline: float | None = None,
    batch: Any = None,
    excluded: frozenset[Exclusion] = frozenset(),
) -> GuidedState:
    """Explain every component, layer by layer; returns the pool of located variables.

    ``excluded`` are explanations the checks refuted in earlier rounds: each component is
    explained by its best remaining candidate instead.
    """
    batch = batch if batch is not None else make_batch(obs)
    state = _start(batch, thresholds, excluded)
    pool = state.pool
    mask = batch.mask
    width = batch.width
    available_cache: dict[tuple[str, int], bool] = {}

    def available(layer: int, before: float) -> list[str]:
        """Variables written before ``before``, and primitives decodable from resid_pre of ``layer``.

        A component's output is added to the residual stream, so a variable found in one is
        available to every later layer (a scalar in one direction among many is not recovered
        by a class decoder on the whole stream, so the test would wrongly drop numerical
        variables). Primitives are not written by any component: ``tokens`` and ``indices``
        are available where the residual stream encodes them, ``length`` only where some
        component has computed it. A primitive whose values a located variable already has
        is represented by the located variable: the network reads it from where it was written.
        """
        out = []
        resid = obs.flat(act_name("resid_pre", layer))
        located_keys = {
            pool.key(pool.values[n])
            for n, loc in state.located.items()
            if loc.layer >= 0 and loc.layer < before
        }
        for name in list(pool.sops()):
            loc = state.located.get(name)
            if loc is not None and loc.layer >= before:
                continue
            if loc is None and name not in ("length",):
                continue
            if loc is None and pool.key(pool.values[name]) in located_keys:
                continue
            if loc is not None and loc.layer >= 0:
                out.append(name)
                continue
            key = (name, layer)
            if key not in available_cache:
                codes = pool.values[name][mask]
                acc = decode_accuracy(resid, codes)
                available_cache[key] = acc >= thresholds.available
            if available_cache[key]:
                out.append(name)
        return out

    network_out = network_outputs(pool, obs)
    for layer in range(obs.n_layers):
        if expired(deadline):
            state.notes.append(f"deadline reached before layer {layer}")
            break
        avail = available(layer, float(layer))
        patterns, bos = padded_patterns(obs, layer, width)
        counting: list[str] = []
        new_attn: list[str] = []
        for head in range(obs.n_heads):
            if expired(deadline):
                state.notes.append(f"deadline reached before head {layer}.{head}")
                break
            z = obs.flat(act_name("z", layer), head)
            if float(z.double().var(0).sum()) < 1e-8:
                continue
            args = (pool, state, obs, layer, head, z, patterns[:, head], bos[:, head], avail, thresholds)
            if thresholds.conflict > 0:
                info = explain_head_soft(*args, deadline=deadline)
            else:
                info = explain_head(*args)
            state.heads[(layer, head)] = info
            new_attn += info.get("aggregates", [])
            # A head attending to two keys at once writes a function of both values: the pair of
            # operands (pooled, not located) is offered to the MLP that may compute a lookup of it.
            new_attn += [n for n in info.get("operands", []) if n not in new_attn and n not in avail]
            # Every matched selector is also offered to this layer's MLP as selector_width(s):
            # a head that counts (tracr's selector width) writes no aggregate of its own.
            counting += info.get("selectors", [])
        if thresholds.conflict > 0:  # trained heads may split one selection between them
            joint = explain_layer_soft(
                pool, state, obs, layer, patterns, bos, avail, thresholds, deadline=deadline
            )
            if joint is not None:
                state.layers[layer] = joint
                new_attn += joint["aggregates"]
        mlp_avail = avail + new_attn
        if not obs.has(act_name("mlp_out", layer)):
            continue
        act = obs.flat(act_name("mlp_out", layer))
        if float(act.double().var(0).sum()) > 1e-8:
            state.mlps[layer] = explain_mlp(
                pool, state, layer, act, mlp_avail, counting, thresholds, labellings, network_out, deadline
            )
    if expired(deadline):
        state.notes.append("deadline reached before the output was matched")
    else:
        _match_outputs(state, obs, thresholds)
    return state


def _start(batch: Any, thresholds: MatchThresholds, excluded: frozenset[Exclusion]) -> GuidedState:
    """A walk's state before any component: the embeddings hold the tokens and the indices."""
    state = GuidedState(Pool(batch), thresholds=thresholds, excluded=excluded)
    state.located["tokens"] = Located("tokens", Location(act_name("embed")), -1.0)
    state.located["indices"] = Located("indices", Location(act_name("pos_embed")), -1.0)
    return state


def pattern_output(
    obs: Observations, thresholds: MatchThresholds, *, excluded: frozenset[Exclusion] = frozenset()
) -> GuidedState | None:
    """The output as a count of a local token pattern, found before any component is walked.

    :func:`~synth.propose.explain_output.fit_prefix_pattern` reads only the tokens and locates
    its variable by decoding each component's output, so it takes seconds where the walk takes
    minutes on a trained network: a recogniser that answers from how often a local pattern
    occurred so far (``0*1*0*1*``: "1 0 at most once") is proposed even when the walk does not
    finish within the budget. None unless the pattern agrees with the network's outputs at the
    walk's output bar; the walk proposes it again after its other outputs.
    """
    state = _start(make_batch(obs), thresholds, excluded)
    target, read, atol = network_outputs(state.pool, obs)
    fit = fit_prefix_pattern(state, obs, target, read, atol)
    if fit is None or fit.name is None or fit.agreement < thresholds.output:
        return None
    state.outputs.append(fit.name)
    state.output_agreement[fit.name] = fit.agreement
    return state


def network_outputs(pool: Pool, obs: Observations) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The network's decoded outputs as codes, the mask of read positions, and the match tolerance.

    Numerical readouts are float32 logits: they are rounded to 6 decimals so that a function
    fitted to them gets the values the network means (0.6, not 0.6000000238).
    """
    outputs = [list(row) for g in obs.groups for row in g.outputs]
    target, read = encode_outputs(pool.batch, outputs)
    if obs.output_kind == "numerical":
        target = torch.round(target * 1e6) / 1e6
        return target, read, 1e-2
    return target, read, 1e-6


def _match_outputs(state: GuidedState, obs: Observations, th: MatchThresholds) -> None:
    """Located variables that reproduce the network's outputs, best agreement first.

    A variable is an output when it agrees with the network's decoded outputs on at least
    ``th.output`` of the read positions (exactly, for exact networks); failing that, a located
    map/seqmap whose information is the output's is relabelled to the output's values
    (a majority table where the network errs). When nothing qualifies, a note names the
    closest variable and its agreement, so a run that proposes nothing says why.
    """
    pool = state.pool
    target, read, atol = network_outputs(pool, obs)
    located = sorted(state.located.values(), key=lambda v: -v.layer)
    scored = [(agreement(pool.values[loc.name], target, read, atol), loc) for loc in located]
    good = [(a, loc) for a, loc in scored if a >= th.output]
    # Best agreement first; among equals the latest writer (a network outputs what it computes last).
    for a, loc in sorted(good, key=lambda t: (-t[0], -t[1].layer)):
        state.outputs.append(loc.name)
        state.output_agreement[loc.name] = round(a, 6)
    if state.outputs:
        _better_functions(state, located, target, read, atol, th)
        return
    relabelled = _relabel_output(state, located, target, read, atol, th)
    if relabelled is not None:
        return
    if _output_functions(state, located, target, read, atol, th):
        return
    # No variable and no function of one or two of the latest is the output: the output as a
    # lookup over the located variables that predict it best, as a function of whether a local
    # token pattern occurred so far (each also claimed at the last MLP where nothing explains
    # it), and as a vote of the components' logit contributions; ranked, every one at the bar
    # proposed.
    max_keys = max(2, int(read.sum()) // TABLE_SUPPORT)
    fits = [fit_lookup(state, target, read, max_keys, atol)]
    fits.append(fit_prefix_pattern(state, obs, target, read, atol))
    if obs.output_kind == "categorical":
        fits.append(fit_vote(state, obs, target, read, max_keys))
    ranked = rank([f for f in fits if f is not None and f.name is not None])
    # The last MLP can be one lookup only: the best one at the bar (the vote is the logits' sum).
    lookups = [f for f in ranked if f.kind != OutputKind.VOTE and f.agreement >= th.output]
    claimed = claimed_at_last_mlp(state, obs, lookups[0]) if lookups else None
    ranked = rank(ranked + ([claimed] if claimed is not None else []))
    good = [f for f in ranked if f.agreement >= th.output]
    for fit in good[:MAX_OUTPUTS]:
        state.outputs.append(fit.name)
        state.output_agreement[fit.name] = fit.agreement
    if good:
        return
    unbuilt = [f for f in fits if f is not None and f.name is None]  # a prefix pattern below the bar
    for fit in ranked + unbuilt:
        why = f"output: best {fit.describe()} agrees on {fit.agreement:.3f} (bar {th.output:g})"
        if fit.ceiling is not None and fit.ceiling != (round(fit.agreement, 3), fit.entries):
            why += (
                f"; without the bound of {max_keys} entries the greedy lookup over the located variables "
                f"agrees on {fit.ceiling[0]:.3f} ({fit.ceiling[1]} entries)"
            )
        state.notes.append(why)
    if scored:
        a, loc = max(scored, key=lambda t: (t[0], t[1].layer))
        node = pool.items[loc.name].node
        what = f"{loc.name} = {node}" if node is not None else loc.name
        state.notes.append(
            f"output: no located variable agrees with the network's outputs on >= {th.output:g} of "
            f"the read positions; closest {what} (written by {loc.location}) agrees on {a:.3f}"
        )


def _better_functions(
    state: GuidedState,
    located: Sequence[Located],
    target: torch.Tensor,
    read: torch.Tensor,
    atol: float,
    th: MatchThresholds,
) -> None:
    """Output functions that beat every direct output, when none of those reaches the behaviour bar.

    A located variable agreeing with the outputs on 0.97 of the read positions cannot be accepted
    (behaviour >= ``Thresholds().behaviour``), while a function of two earlier variables (the sign
    of the depth and a threshold of a second prefix mean, :mod:`synth.propose.chains`) may agree on
    all of them; such functions are ranked before the direct outputs.
    """
    best = max(state.output_agreement.values())
    if best >= Thresholds().behaviour:
        return
    direct = list(state.outputs)
    state.outputs.clear()
    found = [
        n
        for n in _output_functions(state, located, target, read, atol, th)
        if state.output_agreement[n] > best
    ]
    state.outputs[:] = found + direct


def _relabel_output(
    state: GuidedState,
    located: Sequence[Located],
    target: torch.Tensor,
    read: torch.Tensor,
    atol: float,
    th: MatchThresholds,
) -> str | None:
    """A located map/seqmap whose information equals the output's, given the output's values.

    A relabelling maps the variable's values onto the output's. A variable with many more
    values than the output (a prefix mean: a new value at almost every count and position) is
    not relabelled value by value, which would memorise the batch: past ``MANY_VALUES`` the
    output functions read it through a threshold (:func:`synth.propose.chains.threshold_args`).
    """
    from mechsynth.synth.propose.enumerate import fit_map

    pool = state.pool
    for loc in located:
        item = pool.items[loc.name]
        if item.node is None or item.node.op not in ("map", "seqmap"):
            continue
        codes, tcodes = pool.values[loc.name][read], target[read]
        defined = ~torch.isnan(codes)
        if float(defined.double().mean()) < 0.5:
            continue
        n_values = torch.unique(codes[defined]).numel()
        if n_values > max(MANY_VALUES, torch.unique(tcodes[defined]).numel()):
            continue
        if th.output >= 1.0 and not bijective(codes[defined], tcodes[defined]):
            continue
        where = read & ~torch.isnan(pool.values[loc.name])
        node = fit_map(pool, item.node.inputs, target, where, min_agreement=th.output)
        if node is None:
            continue
        node = type(node)(node.op, node.args, item.node.encoding)
        name = try_add(pool, node, prefix=f"{loc.name}_relabel", dedupe=False)
        if name is None:
            continue
        a = agreement(pool.values[name], target, read, atol)
        if a >= th.output:
            state.located[name] = Located(name, loc.location, loc.layer, loc.score)
            state.outputs.append(name)
            state.output_agreement[name] = round(a, 6)
            return name
    return None


FUNCTION_ARGS = 6  # the latest-written variables an output function may read (pairs among them)
MAX_OUTPUTS = 3


def _output_functions(
    state: GuidedState,
    located: Sequence[Located],
    target: torch.Tensor,
    read: torch.Tensor,
    atol: float,
    th: MatchThresholds,
) -> list[str]:
    """The output as a function of one or two variables that components write.

    Where the components after the last explained one (an MLP no candidate explains, the
    unembedding) turn a located variable into the output (the sign of a prefix mean, a
    vote between two heads), the output is ``map(f, v)`` or ``seqmap(g, v, w)`` with ``f``
    fitted on the observed values (a closed form when one agrees, else a table); the new
    node is claimed nowhere, the variables it reads keep their components. A table must be
    small against the data (at most one entry per ``TABLE_SUPPORT`` read positions), so it
    cannot memorise the outputs (and the checks score it on fresh inputs).
    """
    from mechsynth.synth.propose.enumerate import fit_map

    pool = state.pool
    n_read = int(read.sum())
    max_keys = max(2, n_read // TABLE_SUPPORT)
    written = [loc for loc in located if loc.layer >= 0 and pool.items[loc.name].kind == "sop"]
    written = written[:FUNCTION_ARGS]
    # Pairs read at least one written variable (a primitive alone is the enumerator's job); a
    # primitive may be the other argument, ``length`` included (a count is a mean times length).
    primitives = [name for name in PRIMITIVE_VARIABLES if name in pool.items]
    argsets = (
        [(loc.name,) for loc in written]
        + [(a.name, b.name) for a, b in itertools.combinations(written, 2) if a.location != b.location]
        + [(a.name, p) for a in written for p in primitives]
    )
    found: list[tuple[float, str]] = []
    for args in argsets:
        cols = [pool.values[a] for a in args]
        where = read.clone()
        for c in cols:
            where &= ~torch.isnan(c)
        if float(where.sum()) < MIN_DEFINED * n_read:
            continue
        keys = torch.unique(torch.stack([torch.round(c[where] * 1e6) for c in cols], 1), dim=0)
        if keys.shape[0] > max_keys:
            # A many-valued mean is read through a threshold (synth.propose.chains).
            args = threshold_args(pool, args, target, where)
            if args is None:
                continue
            cols = [pool.values[a] for a in args]
            keys = torch.unique(torch.stack([torch.round(c[where] * 1e6) for c in cols], 1), dim=0)
            if keys.shape[0] > max_keys:
                continue
        node = fit_map(pool, list(args), target, where, min_agreement=th.output)
        if node is None:
            continue
        name = try_add(pool, node, prefix="out_fn", dedupe=False)
        if name is None:
            continue
        a = agreement(pool.values[name], target, read, atol)
        if a >= th.output:
            found.append((a, name))
    found.sort(key=lambda t: -t[0])
    for a, name in found[:MAX_OUTPUTS]:
        state.outputs.append(name)
        state.output_agreement[name] = round(a, 6)
    return [name for _, name in found[:MAX_OUTPUTS]]


def compose(state: GuidedState, obs: Observations) -> Iterator[tuple[Hypothesis, dict[str, Any]]]:
    """Whole-program hypotheses: each output variable's closure, variables mapped to their writers."""
    pool = state.pool
    for out in state.outputs:
        names = pool.closure(out)
        rename = _readable_names(state, names)
        program = pool.program(out, rename=rename.get)
        corr = {}
        taken: set[Location] = set()
        shared = _split_shared_blocks(state, obs, [n for n in names if rename.get(n, n) in program.variables])
        for n in reversed(names):
            loc = state.located.get(n)
            if loc is None:
                continue
            new = rename.get(n, n)
            location = shared.get(n, loc.location)
            # Two variables of one program cannot both be what one component writes (two
            # labellings of one MLP block): the later reader keeps the claim, the other one
            # is left unclaimed.
            if new in program.variables and location not in taken:
                corr[new] = location
                taken.add(location)
        inverse = {rename.get(n, n): n for n in names}
        corr = _claim_redundant_heads(state, corr, inverse)
        meta = {"output": out, "notes": list(state.notes)}
        state.claims[str(program)] = {v: inverse[v] for v in corr}
        yield Hypothesis(program, corr), meta
        final = _final_map_claim(state, program, corr)
        if final is not None:
            yield Hypothesis(program, final), {**meta, "output_claim": "dropped"}


def _final_map_claim(
    state: GuidedState, program: Any, corr: Mapping[str, Location]
) -> dict[str, Location] | None:
    """The correspondence without the output's claim, when the output is a map claimed at an MLP.

    The last MLP decodes a map of an earlier variable (``eq(1)`` of a head's mean) because the
    residual stream carries that variable to it; whether the MLP computes the map, or the map is
    only how the unembedding reads the earlier variable, the MLP's output cannot say. Claimed at
    the MLP, its interchange fails where the network reads the earlier variable by another path
    (a palindrome network: claimed at layer 1's ``hook_mlp_out``, loss recovered 0.87 -> 0.81 and
    IIA 1.0 -> 0.87). Both readings are proposed, the claimed one first; the checks and
    controls decide. None when no other non-primitive claim would remain.
    """
    out = program.output
    loc = corr.get(out)
    node = dict(program.assignments).get(out)
    if loc is None or loc.component != "mlp" or node is None or node.op not in ("map", "seqmap"):
        return None
    rest = {v: where for v, where in corr.items() if v != out}
    if not any(v not in PRIMITIVE_VARIABLES for v in rest):
        return None
    return rest


def _claim_redundant_heads(
    state: GuidedState, corr: dict[str, Location], pooled: Mapping[str, str]
) -> dict[str, Location]:
    """A variable that every active head of its layer writes is claimed at the layer's whole ``hook_z``.

    Trained networks often compute one quantity in several heads at once (both heads of a
    counter averaging the same indicator). Claimed at one head, its interchange fails: the
    other heads still carry the base input's value. When the heads writing identical values
    are all of the layer's active heads, and no other variable of the program is claimed
    there, the claim is the layer's attention output.
    """
    pool = state.pool
    out = dict(corr)
    for variable, loc in corr.items():
        if loc.component != "attn" or loc.head is None:
            continue
        key = pool.key(pool.values[pooled[variable]])
        writers = {
            other.location.head
            for other in state.located.values()
            if other.location.hook == loc.hook
            and other.location.head is not None
            and pool.key(pool.values[other.name]) == key
        }
        active = {head for (layer, head) in state.heads if layer == loc.layer}
        shared = any(v != variable and c.hook == loc.hook for v, c in corr.items())
        if len(writers) > 1 and writers >= active and not shared:
            out[variable] = Location(loc.hook)
    return out


def _split_shared_blocks(state: GuidedState, obs: Observations, names: Sequence[str]) -> dict[str, Location]:
    """Disjoint dims for program variables that were found in the same MLP block.

    Two numerical variables that carry the same information (``tokens == "("`` and
    ``tokens == ")"`` over a two-token vocabulary) explain the same block equally well; a
    numerical encoding is the value times a direction, so each gets the dims whose
    activation rises with its value. Returns new locations only when that splits the block
    into disjoint, non-empty parts.
    """
    pool = state.pool
    mask = pool.batch.mask
    by_location: dict[Location, list[str]] = {}
    for n in names:
        loc = state.located.get(n)
        if loc is not None and loc.location.component == "mlp" and loc.location.dims:
            by_location.setdefault(loc.location, []).append(n)
    out: dict[str, Location] = {}
    for location, group in by_location.items():
        if len(group) < 2:
            continue
        act = obs.flat(location.hook).double()
        parts = {}
        for n in group:
            v = pool.values[n][mask]
            if bool(torch.isnan(v).any()) or float(v.std()) == 0:
                break
            dims = []
            for d in location.dims:
                a = act[:, d]
                if float(a.std()) > 0 and float(torch.corrcoef(torch.stack([v, a]))[0, 1]) > 0.99:
                    dims.append(d)
            parts[n] = tuple(dims)
        else:
            chosen = list(parts.values())
            flat = [d for p in chosen for d in p]
            if all(chosen) and len(flat) == len(set(flat)):
                for n, dims in parts.items():
                    out[n] = Location(location.hook, dims=dims)
    return out


def _readable_names(state: GuidedState, names: Sequence[str]) -> dict[str, str]:
    """Program names for pooled variables: the role its values show, else its component.

    A variable whose values are a quantity a person would name (the sequence length, the
    mirror index ``length - indices - 1``, "is the token c"), or that its proposer named
    (``meta["role"]``: ``prev_token``, ``seen_000``), gets that name; otherwise it is
    named for the component that writes it (``attn1_h0``, ``mlp2``) or ``sel``/``v``.
    """
    roles = _roles(state.pool)
    out: dict[str, str] = {}
    used: set[str] = set(PRIMITIVE_VARIABLES)
    for n in names:
        item = state.pool.items[n]
        if item.node is None:
            continue
        loc = state.located.get(n)
        role = item.meta.get("role") or roles.get(state.pool.key(state.pool.values[n]))
        if role is not None:
            base = role
        elif item.kind == "selector":
            base = "sel"
        elif loc is not None and loc.location.component == "attn":
            head = loc.location.head
            base = f"attn{loc.location.layer}" + ("" if head is None else f"_h{head}")
        elif loc is not None and loc.location.component == "mlp":
            base = f"mlp{loc.location.layer}"
        else:
            base = "v"
        name = base
        i = 1
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        out[n] = name
    return out


ROLE_TOKENS = 16  # "is_c" names are derived for at most this many token values
ROLE_OFFSETS = (1, 2, -1, -2)  # "token_2_back" names are derived for these position offsets


def _roles(pool: Pool) -> dict[str, str]:
    """Value hash -> role name, for the quantities a person names (computed on the pool's batch)."""
    from mechsynth.dsl.program import Node

    memo = pool.fn_memo.get(("roles",))
    if memo is not None:
        return memo[0]
    length, indices, tokens = (pool.values[n] for n in ("length", "indices", "tokens"))
    sops = {
        "seq_length": length,
        "opp_index": length - indices - 1,
        "prev_index": indices - 1,
        "next_index": indices + 1,
    }
    same = (tokens[:, :, None] == tokens[:, None, :]) & pool.sel_mask  # symmetric: orientation moot
    sops["token_count"] = same.sum(-1).double()
    codes = torch.unique(tokens[pool.batch.mask]).tolist()
    if len(codes) <= ROLE_TOKENS:
        for code in codes:
            word = _token_word(pool.batch.codebook.decode(code, "value"))
            if word is not None:
                hit = tokens == code
                sops[f"is_{word}"] = hit
                sops[f"is_{word}_num"] = hit.double()
    # The token a fixed number of positions back or ahead (a split head's operands).
    for c in ROLE_OFFSETS:
        shifted = torch.full_like(tokens, float("nan"))
        if c > 0:
            shifted[:, c:] = tokens[:, :-c]
        else:
            shifted[:, :c] = tokens[:, -c:]
        shifted = torch.where(indices - c < length, shifted, torch.full_like(shifted, float("nan")))
        sops[f"token_{c}_back" if c > 0 else f"token_{-c}_ahead"] = shifted
    roles = {pool.key(values): name.removesuffix("_num") for name, values in sops.items()}
    selectors = [
        ("all_positions", Node("select", ("tokens", "tokens", "TRUE"), None)),
        ("same_token", Node("select", ("tokens", "tokens", "EQ"), None)),
        ("prefix", Node("select", ("indices", "indices", "LEQ"), None)),
    ]
    for c in ROLE_OFFSETS:
        offset = Node("select", ("indices", "indices", _shifted_predicate(torch.eq, c)), None)
        selectors.append((f"back_{c}" if c > 0 else f"ahead_{-c}", offset))
    for name, node in selectors:
        roles.setdefault(pool.key(pool.evaluate(node)), name)
    pool.fn_memo[("roles",)] = [roles]
    return roles


_BRACKETS = {"(": "open", ")": "close", "[": "open_sq", "]": "close_sq", "{": "open_cb", "}": "close_cb"}


def _token_word(value: Any) -> str | None:
    """A token value as part of a name: ``a`` -> ``a``, ``(`` -> ``open``, ``3`` -> ``3``."""
    if isinstance(value, str) and value.isidentifier():
        return value
    if isinstance(value, str):
        return _BRACKETS.get(value)
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= value < 100:
        return str(int(value))
    return None
