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

The output as a lookup: where the output is a function of several located variables that no
single one determines (an answer digit of the two operand digits and a carry), it is

    output = seqmap(table, x, y)    (or map(table, x); seqmap(table, seqmap(pair, x, y), z))

with the table the network's most frequent output at each observed argument tuple (a closed
form when the DSL's fitter finds one that agrees). Its arguments are chosen by the same greedy
selection as the voters (:func:`_greedy`): each time the located variable (or pair of them:
a sum digit depends on two operand digits, neither of which alone says anything) whose joint
table raises the agreement with the network's outputs the most, only while it does, at most
``MAX_LOOKUP_ARGS``, with the same bound on the table's entries. Where the last MLP is not
explained by anything, the lookup is also offered *claimed at that MLP* (one level back: the
MLP is the lookup from the variables it reads to the output), so the checks test that claim
too. When no lookup reaches the bar, the same greedy without the bound says how much of the
output the located variables hold at all (:attr:`OutputFit.ceiling`) — the reason a run that
stops at the output step reports.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

import torch

from mechsynth.dsl.primitives import MAX_VOTERS
from mechsynth.synth.logit_attribution import BIAS, component_keys
from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.propose.enumerate import MIN_DEFINED, agreement, fit_map, try_add
from mechsynth.synth.propose.explain_heads import JOINT_ORDER

if TYPE_CHECKING:
    from mechsynth.synth.observe import Observations
    from mechsynth.synth.propose.guided_state import GuidedState

MIN_GAIN = 0.005  # agreement a voter (or a lookup argument) must add to be kept
MAX_LOOKUP_ARGS = 3  # located variables one output lookup may read
SCORE_DECIMALS = 3  # scores are written rounded (the text form stays short and exact)


@dataclass(frozen=True)
class Voter:
    """One component's vote: the variable it holds and its class-mean contribution per value."""

    component: tuple[str, int | None]
    variable: str
    r2: float  # variance of the contribution its class means explain (read positions)


class OutputKind(enum.Enum):
    """How an output fit combines the located variables it reads."""

    VOTE = "vote"  # argmax of summed class-mean logit contributions
    LOOKUP = "lookup"  # a table (or closed form) over the joint values
    PATTERN = "pattern"  # a function of whether a local token pattern occurred so far


@dataclass(frozen=True)
class OutputFit:
    """One output explanation: its pooled node, agreement with the network's outputs, what it reads.

    ``entries`` is its table size (a vote: the voters' table entries; a lookup: the observed
    argument tuples). ``ceiling`` (a lookup below the bar) is the agreement of the best lookup
    without the bound on entries, with that many entries: how much of the output the located
    variables hold at all.
    """

    kind: OutputKind
    name: str | None
    agreement: float
    reads: tuple[str, ...]
    entries: int
    voters: tuple[Voter, ...] = ()
    location: Location | None = None  # where the fit is claimed (the last MLP), None: claimed nowhere
    ceiling: tuple[float, int] | None = None

    def describe(self) -> str:
        if self.kind == OutputKind.VOTE:
            parts = ", ".join(f"{v.variable} (R^2 {v.r2:.2f})" for v in self.voters)
            return f"vote of direct logit contributions ({parts})"
        where = f", claimed at {self.location}" if self.location is not None else ""
        if self.kind == OutputKind.PATTERN:
            return f"function of whether a token pattern occurred so far ({', '.join(self.reads)}{where})"
        return f"lookup over {', '.join(self.reads)} ({self.entries} entries{where})"


def rank(fits: Sequence[OutputFit]) -> list[OutputFit]:
    """Best agreement first; among equals the smaller table, then a claim before no claim."""
    return sorted(fits, key=lambda f: (-f.agreement, f.entries, f.location is None))


def _greedy(
    n_options: int,
    score_of: Callable[[list[int]], float],
    size_of: Callable[[list[int]], int],
    start: float,
    max_pick: int,
    max_size: int | None,
    step: int = 1,
) -> tuple[list[int], float]:
    """Options picked a few at a time, each time the ones that raise ``score_of`` the most (by more
    than ``MIN_GAIN`` per option added), while the picked set's size stays within ``max_size``
    (None: no bound). The voters and the lookup arguments are both chosen by this one rule.

    ``step`` 1 adds one option at a time (a voter's scores add up, so each one's gain shows
    alone); ``step`` 2 also tries two at once, for what only a pair determines (a sum digit
    of two operand digits, of which neither alone says anything).
    """
    chosen: list[int] = []
    score = start
    while len(chosen) < max_pick:
        best, best_a = None, score
        rest = [i for i in range(n_options) if i not in chosen]
        adds = [(i,) for i in rest]
        if step >= 2 and len(chosen) + 2 <= max_pick:
            adds += list(itertools.combinations(rest, 2))
        for add in adds:
            picked = chosen + list(add)
            if max_size is not None and size_of(picked) > max_size:
                continue
            a = score_of(picked)
            if a > best_a + MIN_GAIN * len(add) and (best is None or a > best_a):
                best, best_a = add, a
        if best is None:
            break
        chosen += list(best)
        score = best_a
    return chosen, score


def fit_vote(
    state: GuidedState, obs: Observations, target: torch.Tensor, read: torch.Tensor, max_keys: int
) -> OutputFit | None:
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
    start = base.expand(int(r.sum()), -1)

    def score_of(picked: list[int]) -> float:
        return _agree(start + sum(options[i][3] for i in picked), label_codes, labels)

    def size_of(picked: list[int]) -> int:
        return sum(int(options[i][1].numel()) for i in picked)

    chosen, _ = _greedy(len(options), score_of, size_of, score_of([]), MAX_VOTERS, max_keys)
    if len(chosen) < 2:
        return None
    chosen.sort(key=lambda i: list(parts).index(options[i][0].component))
    node = _vote_node(state, [options[i] for i in chosen], base, label_codes)
    name = try_add(pool, node, prefix="out_vote", dedupe=False)
    if name is None:
        return None
    a = agreement(pool.values[name], target, read, 1e-6)
    voters = tuple(options[i][0] for i in chosen)
    return OutputFit(
        OutputKind.VOTE, name, round(a, 6), tuple(v.variable for v in voters), size_of(chosen), voters=voters
    )


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


LOOKUP_CANDIDATES = 24  # located variables a lookup may read (one per value vector, latest writer first)


def lookup_arguments(state: GuidedState) -> list[str]:
    """The variables a lookup may read: located ones and ``length``, one per value vector.

    Latest writer first (a network's output reads what it computed last), so among variables
    with the same values the one a later component writes is kept.
    """
    pool = state.pool
    located = sorted(state.located.values(), key=lambda loc: -loc.layer)
    names = [loc.name for loc in located if pool.items[loc.name].kind == "sop"]
    if "length" in pool.items and "length" not in names:
        names.append("length")
    out, seen = [], set()
    for n in names:
        key = pool.key(pool.values[n])
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out[:LOOKUP_CANDIDATES]


class _JointTable:
    """Majority agreement of a lookup over some columns at the read positions, memoised."""

    def __init__(self, cols: Sequence[torch.Tensor], labels: torch.Tensor) -> None:
        self.cols = [torch.round(c.double() * 1e6) for c in cols]
        self.labels = torch.unique(torch.round(labels * 1e6), return_inverse=True)[1]
        self.n_labels = int(self.labels.max()) + 1 if self.labels.numel() else 0
        self._memo: dict[tuple[int, ...], tuple[float, int]] = {}

    def fit(self, picked: Sequence[int]) -> tuple[float, int]:
        """(agreement of the most frequent label per argument tuple, number of tuples)."""
        key = tuple(sorted(picked))
        if key in self._memo:
            return self._memo[key]
        n = self.labels.numel()
        if not key:
            counts = torch.bincount(self.labels, minlength=self.n_labels)
            out = (float(counts.max()) / n if n else 0.0, 1)
        else:
            stacked = torch.stack([self.cols[i] for i in key], 1)
            defined = ~torch.isnan(stacked).any(1)
            if not n or float(defined.double().mean()) < MIN_DEFINED:
                out = (0.0, 0)
            else:
                tuples, inverse = torch.unique(stacked[defined], dim=0, return_inverse=True)
                joint = inverse * self.n_labels + self.labels[defined]
                counts = torch.bincount(joint, minlength=tuples.shape[0] * self.n_labels)
                best = counts.view(tuples.shape[0], self.n_labels).max(1).values
                out = (float(best.sum()) / int(defined.sum()), int(tuples.shape[0]))
        self._memo[key] = out
        return out


def fit_lookup(
    state: GuidedState, target: torch.Tensor, read: torch.Tensor, max_keys: int, atol: float
) -> OutputFit | None:
    """The output as a lookup over the located variables that best predict it (module docstring).

    Returns the pooled lookup node (a closed form where the DSL's fitter finds one) and its
    agreement, or None when no argument raises the agreement above the constant's. A fit
    below the bar carries the unbounded greedy lookup's agreement as its ``ceiling``.
    """
    pool = state.pool
    names = lookup_arguments(state)
    if not names or not bool(read.any()):
        return None
    table = _JointTable([pool.values[n][read] for n in names], target[read])

    def score_of(picked: list[int]) -> float:
        return table.fit(picked)[0]

    def size_of(picked: list[int]) -> int:
        return table.fit(picked)[1]

    chosen, _ = _greedy(len(names), score_of, size_of, score_of([]), MAX_LOOKUP_ARGS, max_keys, step=2)
    if not chosen:
        return None
    args = [names[i] for i in chosen]
    name = _lookup_node(state, args, target, read)
    if name is None:
        return None
    a = round(agreement(pool.values[name], target, read, atol), 6)
    ceiling = None
    if a < state.thresholds.output:
        free, top = _greedy(len(names), score_of, size_of, score_of([]), MAX_LOOKUP_ARGS, None, step=2)
        ceiling = (round(top, 3), size_of(free))
    return OutputFit(OutputKind.LOOKUP, name, a, tuple(args), size_of(chosen), ceiling=ceiling)


def _lookup_node(
    state: GuidedState, args: Sequence[str], target: torch.Tensor, read: torch.Tensor
) -> str | None:
    """``map``/``seqmap`` of the majority table over ``args``; three arguments read a pair code."""
    pool = state.pool
    where = read.clone()
    for a in args:
        where &= ~torch.isnan(pool.values[a])
    args = list(args)
    if len(args) == 3:
        pair = _pair_code(state, args[0], args[1], where)
        if pair is None:
            return None
        args = [pair, args[2]]
    node = fit_map(pool, args, target, where, min_agreement=0.0)
    if node is None:
        return None
    return try_add(pool, node, prefix="out_lookup", dedupe=False)


def _pair_code(state: GuidedState, x: str, y: str, where: torch.Tensor) -> str | None:
    """``seqmap(g, x, y)`` naming each observed (x, y) pair by its own number: ``x * m + y`` for
    integer-valued x and y (the DSL's fitter writes it as that closed form), else a table of ids."""
    from mechsynth.dsl.program import Node
    from mechsynth.synth.propose.enumerate import fit_function

    pool = state.pool
    cx, cy = pool.values[x][where], pool.values[y][where]
    pairs = sorted(set(zip(cx.tolist(), cy.tolist())))
    integer = all(float(v).is_integer() and abs(v) < 1e6 for p in pairs for v in p)
    numbers = pool.items[x].dtype == pool.items[y].dtype == "number"
    if integer and numbers:
        lo = min(p[1] for p in pairs)
        m = int(max(p[1] for p in pairs) - lo) + 1
        table = {p: float(p[0] * m + p[1] - lo) for p in pairs}
    else:
        table = {p: float(i) for i, p in enumerate(pairs)}
    fn = fit_function(pool, [x, y], table)
    if fn is None:
        return None
    return try_add(pool, Node("seqmap", (fn, x, y), "categorical"), prefix="out_pair", dedupe=False)


def claimed_at_last_mlp(state: GuidedState, obs: Observations, fit: OutputFit) -> OutputFit | None:
    """``fit`` claimed at the last MLP when nothing explains that MLP and it reads only earlier
    variables: the hypothesis that the last MLP is the lookup (its output, resampled from an input
    with the same lookup value, leaves the network's output as it is)."""
    from mechsynth.synth.propose.guided_state import Located

    if fit.name is None:
        return None
    last = obs.n_layers - 1
    hook = act_name("mlp_out", last)
    if not obs.has(hook) or any(loc.location.hook == hook for loc in state.located.values()):
        return None
    order = last + 0.5
    reads = state.pool.closure(fit.name)
    if any(n in state.located and state.located[n].layer >= order for n in reads):
        return None
    pool = state.pool
    item = pool.items[fit.name]
    name = pool.add(item.node, prefix="out_mlp", values=pool.values[fit.name], dedupe=False)
    if name is None:
        return None
    location = Location(hook)
    state.located[name] = Located(name, location, order, fit.agreement)
    return OutputFit(fit.kind, name, fit.agreement, fit.reads, fit.entries, fit.voters, location, fit.ceiling)


PATTERN_WIDTH = 3  # longest window of consecutive tokens a prefix pattern reads
PATTERN_VOCAB = 4  # window patterns are tried for token vocabularies up to this size
PATTERN_COUNTS = 3  # a pattern is read as "occurred more than k times so far" for k below this
SHIFT_DEFAULT = -1  # the token value before the input's start (no input token has it)
FIRST_WRITER = 0.005  # decode accuracy within this of the best counts as written there already


def fit_prefix_pattern(
    state: GuidedState, obs: Observations, target: torch.Tensor, read: torch.Tensor, atol: float
) -> OutputFit | None:
    """The output as a function of how often a local token pattern occurred at or before each position.

    Regular-language recognisers (is each prefix free of ``000``) answer from a prefix
    aggregate of a local pattern: ``seen = map(gt(0), numerical(aggregate(select(indices,
    indices, LEQ), is_p)))`` with ``is_p`` "the window of the last ``w`` tokens is ``p``"
    (shifted copies of the tokens, ``aggregate(select(indices, indices, k + s == q), tokens)``).
    Others allow a pattern a few times: ``0*1*0*1*`` (Tomita 7) is "``10`` occurred at most
    once", a bounded-changes language is "at most ``k`` changes". A mean cannot say that
    without the length, so the pattern's prefix *count* is read through a threshold:
    ``over = map(gt(k), selector_width(selector_and(select(indices, indices, LEQ),
    select(is_p, is_p, key_eq(1)))))`` for ``k`` below ``PATTERN_COUNTS`` (``k = 0`` is
    ``seen``, built from the mean as above).
    Every window of up to ``PATTERN_WIDTH`` tokens over a vocabulary of at most
    ``PATTERN_VOCAB``, with every ``k``, is scored by the agreement of the output's majority
    function of ``over`` (two entries: it cannot memorise); a larger ``k`` (a later window)
    must beat the best so far by ``MIN_GAIN``. The best one's ``over`` is located where it is
    first written: the earliest component output that decodes it within ``FIRST_WRITER`` of
    the best decoder; the pattern and its count are claimed nowhere (the checks resample what
    computes them). A pattern below the bar is returned unbuilt (``name`` None) for the run's
    note.
    """
    pool = state.pool
    mask = pool.batch.mask
    tokens = pool.values["tokens"]
    codes = sorted(torch.unique(tokens[mask]).tolist())
    if not 2 <= len(codes) <= PATTERN_VOCAB or not bool(read.any()):
        return None
    shifted = [tokens]
    for s in range(1, PATTERN_WIDTH):
        prev = torch.full_like(tokens, float(SHIFT_DEFAULT))
        prev[:, s:] = tokens[:, :-s]
        shifted.append(prev)
    # A pattern must say more than the constant output does (a network that always answers the
    # same is no recogniser of anything).
    constant = _JointTable([], target[read]).fit([])[0]
    best: tuple[float, tuple] | None = None
    for w in range(1, PATTERN_WIDTH + 1):
        for window in itertools.product(codes, repeat=w):  # window[j]: the token j positions back
            hit = mask.clone()
            for j, c in enumerate(window):
                hit &= shifted[j] == c
            count = torch.cumsum(hit.long(), 1)
            for times in range(PATTERN_COUNTS):
                over = count > times
                a = _JointTable([over[read].double()], target[read]).fit([0])[0]
                if a > (constant if best is None else best[0]) + MIN_GAIN:
                    best = (a, window, times)
    if best is None:
        return None
    a, window, times = best
    if a < state.thresholds.output:
        return OutputFit(OutputKind.PATTERN, None, round(a, 6), (_window_name(pool, window, times),), 2)
    built = _prefix_pattern_nodes(state, obs, window, times, target, read)
    if built is None:
        return None
    name, seen = built
    a = round(agreement(pool.values[name], target, read, atol), 6)
    return OutputFit(OutputKind.PATTERN, name, a, (seen,), 2)


def _window_name(pool: Any, window: tuple, times: int = 0) -> str:
    """``seen(0 0 0)`` (``times`` 0), ``count(1 0) > 1``: the window oldest token first, for notes."""
    book = pool.batch.codebook
    tokens = " ".join(str(book.decode(c, "value")) for c in reversed(window))
    return f"seen({tokens})" if times == 0 else f"count({tokens}) > {times}"


def _pattern_word(pool: Any, window: tuple) -> str:
    """The window as part of a variable name, oldest token first: ``000``, ``ab``, else ``p1_2``."""
    book = pool.batch.codebook
    parts = [str(book.decode(c, "value")) for c in reversed(window)]
    if all(len(p) == 1 and p.isalnum() for p in parts):
        return "".join(parts)
    return "p" + "_".join(str(int(c)) for c in reversed(window))


def _prefix_pattern_nodes(
    state: GuidedState, obs: Observations, window: tuple, times: int, target: torch.Tensor, read: torch.Tensor
) -> tuple[str, str] | None:
    """Pool ``is_p``, its prefix ``over`` (``times`` 0: ``seen``; located where first written) and
    the output map of it."""
    import sympy

    from mechsynth.dsl.printer import X, Y
    from mechsynth.dsl.program import Fn, Node
    from mechsynth.synth.propose.guided_state import Located

    pool = state.pool
    book = pool.batch.codebook

    def pooled(node: Node, prefix: str, role: str | None = None) -> str | None:
        try:
            values = pool.evaluate(node)
        except (ValueError, TypeError, RuntimeError):
            return None
        meta = {"role": role} if role else None
        return pool.lookup(values) or pool.add(node, prefix=prefix, values=values, meta=meta)

    word = _pattern_word(pool, window)
    term = None
    for j, code in enumerate(window):
        src = "tokens"
        if j > 0:
            shift = Fn("expr", 2, (sympy.Eq(X + j, Y),))  # the key j positions before the query
            sel = pooled(Node("select", ("indices", "indices", shift), None), "shift")
            if sel is None:
                return None
            node = Node("aggregate", (sel, "tokens", SHIFT_DEFAULT), "categorical")
            src = pooled(node, f"prev{j}_", "prev_token" if j == 1 else f"prev{j}_token")
        if src is None:
            return None
        eq = pooled(Node("map", (Fn("eq", 1, (book.decode(code, "value"),)), src), "categorical"), "is_")
        if eq is None:
            return None
        if term is not None:
            last = j == len(window) - 1
            eq = pooled(
                Node("seqmap", (Fn("and_", 2, ()), term, eq), "categorical"),
                "win",
                f"ends_{word}" if last else None,
            )
        term = eq
        if term is None:
            return None
    prefix = pooled(Node("select", ("indices", "indices", "LEQ"), None), "prefix")
    if prefix is None:
        return None
    if times == 0:
        frac = pooled(Node("aggregate", (prefix, term, 0), "numerical"), "frac", f"frac_{word}")
        if frac is None:
            return None
        seen_node = Node("map", (Fn("gt", 1, (0,)), frac), "categorical")
        seen = try_add(pool, seen_node, prefix="seen", dedupe=False, meta={"role": f"seen_{word}"})
    else:
        occurs = pooled(Node("select", (term, term, Fn("key_eq", 2, (1,))), None), "occurs")
        if occurs is None:
            return None
        earlier = pooled(Node("selector_and", (prefix, occurs), None), "occurs")
        if earlier is None:
            return None
        count = pooled(Node("selector_width", (earlier,), "categorical"), "count", f"count_{word}")
        if count is None:
            return None
        over_node = Node("map", (Fn("gt", 1, (times,)), count), "categorical")
        role = f"count_{word}_over_{times}"
        seen = try_add(pool, over_node, prefix="over", dedupe=False, meta={"role": role})
    if seen is None:
        return None
    location = _first_writer(state, obs, pool.values[seen])
    if location is not None:
        state.located[seen] = Located(seen, location[0], location[1], location[2])
    node = fit_map(pool, [seen], target, read & ~torch.isnan(pool.values[seen]), min_agreement=0.0)
    name = try_add(pool, node, prefix="out_seen", dedupe=False) if node is not None else None
    return (name, seen) if name is not None else None


def _first_writer(
    state: GuidedState, obs: Observations, values: torch.Tensor
) -> tuple[Location, float, float] | None:
    """(location, layer order, decode accuracy) of the earliest sublayer whose output decodes
    ``values`` within ``FIRST_WRITER`` of the best one, if that reaches the walk's decode bar.

    Within that sublayer the best decoder is taken: the whole attention output where the
    heads share the variable (one head's claim would leave the other holding it)."""
    from mechsynth.synth.propose.match_stats import decode_accuracy

    mask = state.pool.batch.mask
    codes = values[mask]
    if bool(torch.isnan(codes).any()):
        return None
    found = []  # (accuracy, sublayer, walk order, location)
    for layer in range(obs.n_layers):
        heads = [(act_name("z", layer), None, layer + JOINT_ORDER)]
        heads += [(act_name("z", layer), h, float(layer)) for h in range(obs.n_heads)]
        for stage, (hook, head, order) in [(2 * layer, h) for h in heads] + [
            (2 * layer + 1, (act_name("mlp_out", layer), None, layer + 0.5))
        ]:
            if obs.has(hook):
                acc = decode_accuracy(obs.flat(hook, head), codes)
                found.append((acc, stage, order, Location(hook, head=head)))
    if not found:
        return None
    top = max(f[0] for f in found)
    if top < state.thresholds.decode:
        return None
    near = [f for f in found if f[0] >= top - FIRST_WRITER]
    acc, _, order, location = min(near, key=lambda f: (f[1], -f[0]))
    return location, order, round(acc, 4)
