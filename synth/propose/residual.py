"""Residual behaviour: what the best hypothesis does not explain, turned into a trigger rule.

A hypothesis can agree with the network on 98.9% of inputs and still miss the one thing that
matters: a backdoor changes the output on a small, structured set of inputs (a trigger), far
below the behaviour threshold's slack. This stage treats the residual disagreement between a
program and the network as something to explain, not as noise:

1. **Observe broadly** (`disagreements`): run the program and the network on every input of
   the (widened) task when the input space is small enough (``EXHAUSTIVE_MAX``), else on a
   large sample of the broad input families of ``synth.use.inputs`` (every length the network
   has positions for, other token mixtures, the broader and the task's distribution) plus
   every one-token mutation of each disagreeing input (a trigger's neighbourhood is where its
   boundary is). The *disagreement set* D holds the inputs where the network's output differs
   from the program's at a read position.
2. **Forced output**: the network's value at those positions, taken by majority over D; the
   rule explains the disagreements where the network gives it.
3. **Rule search** (`search_rule`): rules are conjunctions of *literals* ``token == v at
   position i`` (a prefix is one, a token at a position is one, so is any rare combination
   of a few positions), up to ``MAX_LITERALS``. Only literals holding on at least
   ``MIN_RECALL`` of D can be part of a rule that covers that much of it; their conjunctions
   are enumerated exhaustively when few, else by a beam. Each rule is scored on the observed
   inputs where it holds and where the program's output is not already the forced one (the
   *informative* inputs): **precision** = fraction of those where the network gives the
   forced output, **recall** = fraction of D the rule covers with the forced output.
4. **Significance** (no false positives): under the null that the rule is unrelated to the
   disagreement, each informative input is a disagreement with the base rate ``p0`` (forced
   outputs among all inputs where the program says otherwise); the binomial tail of the
   rule's hits, times the number of rules of the whole search space (a Bonferroni bound that
   does not depend on which rules the beam happened to score), must be below ``ALPHA``.
   Precision must reach ``MIN_PRECISION`` and the rule must hold on ``MIN_SUPPORT``
   informative inputs, so a few scattered mistakes of a clean network never make a rule.
5. **Shrink**: literals are dropped while precision and recall do not fall, so the rule is
   minimal. When the inputs were enumerated exhaustively, precision and recall are exact
   (an exhaustive check over the input space, not a sample).

`with_trigger_branch` writes ``out = rule ? forced : clean`` as a DSL program (the rule as a
``selector_width`` of literal selectors, the branch as a two-argument ``table``) whose clean
part and correspondence are the original hypothesis'; the loop scores it with the normal
checks and controls (``synth.loop``), so an accepted program contains the trigger branch only
when the network's activations back it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.program import Program
    from mechsynth.models import Target

# The rules of the residual search, each defined once.
EXHAUSTIVE_MAX = 1 << 13  # enumerate the whole input space up to this many inputs
N_SAMPLE = 4000  # broad inputs drawn otherwise
MAX_MUTATED = 400  # disagreeing inputs whose one-token mutations are added (sampled spaces)
MAX_LITERALS = 6  # literals per conjunction
MIN_RECALL = 0.5  # a rule covers at least this share of the disagreements it explains
MIN_PRECISION = 0.95  # the network gives the forced output on this share of the rule's informative inputs
MIN_SUPPORT = 5  # informative inputs the rule must hold on
ALPHA = 0.01  # family-wise error over every rule of the search space
BEAM = 64  # rules kept per size when the conjunctions are too many to enumerate
EXHAUSTIVE_RULES = 50_000  # enumerate every conjunction of the candidate literals up to this many
BRANCH_PREFIX = "bd_"  # names of the variables the trigger branch adds


class Coverage(StrEnum):
    """How the inputs the residual was measured on were produced."""

    EXHAUSTIVE = "every input of the task"
    SAMPLED = "broad sample plus one-token mutations of disagreeing inputs"


@dataclass(frozen=True, order=True)
class Literal:
    """``token == value at position`` (position in the framed input)."""

    position: int
    value: Any = field(compare=False)

    def holds(self, x: Sequence[Any]) -> bool:
        return self.position < len(x) and x[self.position] == self.value

    def __str__(self) -> str:
        return f"x[{self.position}] == {self.value!r}"


@dataclass(frozen=True)
class Rule:
    """A conjunction of literals at distinct positions, forcing ``forced`` where it holds."""

    literals: tuple[Literal, ...]
    forced: Any

    def holds(self, x: Sequence[Any]) -> bool:
        return all(lit.holds(x) for lit in self.literals)

    def __str__(self) -> str:
        return " and ".join(str(lit) for lit in self.literals) + f"  ->  {self.forced!r}"


@dataclass(frozen=True)
class RuleScore:
    """A rule's numbers on the observed inputs (see the module docstring, step 3-4)."""

    precision: float
    recall: float
    support: int  # informative inputs where the rule holds
    hits: int  # of those, where the network gives the forced output
    log10_p: float  # log10 of the Bonferroni-corrected binomial p-value


@dataclass(frozen=True)
class Observed:
    """The inputs of step 1 with the network's and the program's outputs."""

    inputs: tuple[tuple, ...]
    network: tuple[tuple, ...]
    program: tuple[tuple, ...]
    reads: tuple[tuple[int, ...], ...]
    coverage: Coverage
    n_task_sample: int  # inputs of the task's own distribution checked the same way
    n_task_disagree: int  # disagreements among them

    def disagree(self, kind: str) -> list[bool]:
        from mechsynth.models.target import outputs_equal

        return [any(p[i] is not None and not outputs_equal(n[i], p[i], kind) for i in r)
                for n, p, r in zip(self.network, self.program, self.reads)]


@dataclass(frozen=True)
class Residual:
    """The residual search's result: the disagreement and the rule that explains it (or why none)."""

    n_inputs: int
    coverage: Coverage
    n_disagree: int
    forced: Any
    rule: Rule | None
    score: RuleScore | None
    n_rules_scored: int
    log10_rule_space: float
    reason: str
    examples: tuple[tuple, ...] = ()  # a few disagreeing inputs
    n_task_sample: int = 0
    n_task_disagree: int = 0

    def found_by(self) -> str:
        """How the disagreement was found: the broad generator, and what the task's own sample showed."""
        return (f"{self.n_disagree} disagreements among {self.n_inputs} inputs ({self.coverage.value}); "
                f"the clean task's own sample showed {self.n_task_disagree} among {self.n_task_sample}")

    def to_json(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs, "coverage": self.coverage.value, "n_disagree": self.n_disagree,
            "forced": self.forced, "rule": str(self.rule) if self.rule else None,
            "literals": [[lit.position, lit.value] for lit in self.rule.literals] if self.rule else None,
            "precision": self.score.precision if self.score else None,
            "recall": self.score.recall if self.score else None,
            "support": self.score.support if self.score else None,
            "log10_p": self.score.log10_p if self.score else None,
            "n_rules_scored": self.n_rules_scored, "log10_rule_space": self.log10_rule_space,
            "reason": self.reason, "found_by": self.found_by(),
            "examples": [list(x) for x in self.examples],
        }


# --- step 1: observe broadly ----------------------------------------------------------------------
def _mutants(task: Any, x: tuple) -> list[tuple]:
    content = task.content(x)
    out = []
    for i, old in enumerate(content):
        for v in task.vocab:
            if v != old:
                out.append(tuple(task.frame(content[:i] + [v] + content[i + 1:])))
    return out


def observe_broadly(target: Target, program: Program, *, n_sample: int = N_SAMPLE, seed: int = 0) -> Observed:
    """The program's and the network's outputs on every input, or a broad sample plus mutations."""
    from mechsynth.synth.use.inputs import is_task_input, search_inputs, widened
    from mechsynth.synth.use.predict import program_outputs

    wide = widened(target)
    task = wide.task
    every = task.every_input(EXHAUSTIVE_MAX)
    if every is not None:
        xs = [tuple(x) for x in every]
        coverage = Coverage.EXHAUSTIVE
    else:
        xs = [c.input for c in search_inputs(target, n_sample, seed)]
        coverage = Coverage.SAMPLED
    xs = [x for x in xs if is_task_input(wide, x)]
    net = [tuple(r) for r in wide.predict([list(x) for x in xs])]
    prog = [tuple(r) for r in program_outputs(program, xs)]
    reads = [tuple(wide.read_positions(list(x))) for x in xs]
    obs = Observed(tuple(xs), tuple(net), tuple(prog), tuple(reads), coverage, 0, 0)
    if coverage is Coverage.SAMPLED:
        flags = obs.disagree(task.output_kind)
        seen = set(xs)
        rng = random.Random(seed + 1)
        bad = [x for x, f in zip(xs, flags) if f]
        rng.shuffle(bad)
        extra = []
        for x in bad[:MAX_MUTATED]:
            for y in _mutants(task, x):
                if y not in seen and is_task_input(wide, y):
                    seen.add(y)
                    extra.append(y)
        if extra:
            net += [tuple(r) for r in wide.predict([list(x) for x in extra])]
            prog += [tuple(r) for r in program_outputs(program, extra)]
            reads += [tuple(wide.read_positions(list(x))) for x in extra]
            xs += extra
    own = [tuple(x) for x in target.task.sample(1000, seed + 2)]
    own_obs = Observed(tuple(own), tuple(tuple(r) for r in target.predict([list(x) for x in own])),
                       tuple(tuple(r) for r in program_outputs(program, own)),
                       tuple(tuple(target.read_positions(list(x))) for x in own), coverage, 0, 0)
    n_own = sum(own_obs.disagree(target.task.output_kind))
    return Observed(tuple(xs), tuple(net), tuple(prog), tuple(reads), coverage, len(own), n_own)


# --- steps 2-5: the rule ----------------------------------------------------------------------------
def _log10_binom_tail(k: int, n: int, p: float) -> float:
    """log10 P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 0.0
    if p <= 0:
        return -math.inf
    if p >= 1:
        return 0.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(terms)
    return (top + math.log(sum(math.exp(t - top) for t in terms))) / math.log(10)


def _log10_space(n_positions: int, n_values: int, max_literals: int) -> float:
    total = sum(math.comb(n_positions, k) * n_values**k for k in range(1, max_literals + 1))
    return math.log10(max(total, 1))


@dataclass(frozen=True)
class RuleData:
    """What the rule search needs: per input, is the program's output not already forced
    (informative), and does the network give the forced output there (hit)."""

    inputs: tuple[tuple, ...]
    informative: tuple[bool, ...]
    hit: tuple[bool, ...]
    forced: Any
    log10_space: float

    @property
    def n_hits(self) -> int:
        return sum(self.hit)


def rule_data(
    obs: Observed, kind: str, vocab: Sequence[Any], max_literals: int = MAX_LITERALS
) -> RuleData | None:
    """The forced output (majority of the network's values where it disagrees) and per-input flags;
    None when nothing disagrees."""
    from collections import Counter

    from mechsynth.models.target import outputs_equal

    values: Counter = Counter()
    for n, p, r in zip(obs.network, obs.program, obs.reads):
        for i in r:
            if p[i] is not None and not outputs_equal(n[i], p[i], kind):
                values[n[i]] += 1
    if not values:
        return None
    forced = values.most_common(1)[0][0]
    informative, hit = [], []
    for n, p, r in zip(obs.network, obs.program, obs.reads):
        at = [i for i in r if p[i] is not None and not outputs_equal(p[i], forced, kind)]
        informative.append(bool(at))
        hit.append(bool(at) and all(n[i] is not None and outputs_equal(n[i], forced, kind) for i in at))
    longest = max((len(x) for x in obs.inputs), default=0)
    return RuleData(obs.inputs, tuple(informative), tuple(hit), forced,
                    _log10_space(longest, len(vocab), max_literals))


def score_rule(literals: Sequence[Literal], data: RuleData) -> RuleScore:
    """Precision, recall, support and corrected significance of a conjunction on ``data``."""
    support = hits = 0
    for x, inf, h in zip(data.inputs, data.informative, data.hit):
        if inf and all(lit.holds(x) for lit in literals):
            support += 1
            hits += h
    n_inf = sum(data.informative)
    p0 = data.n_hits / n_inf if n_inf else 0.0
    log_p = _log10_binom_tail(hits, support, p0) + data.log10_space
    return RuleScore(precision=hits / support if support else 0.0,
                     recall=hits / data.n_hits if data.n_hits else 0.0, support=support, hits=hits,
                     log10_p=min(0.0, log_p))


def _passes(s: RuleScore) -> bool:
    return (s.precision >= MIN_PRECISION and s.recall >= MIN_RECALL and s.support >= MIN_SUPPORT
            and s.log10_p < math.log10(ALPHA))


def candidate_literals(data: RuleData) -> list[Literal]:
    """Literals holding on at least ``MIN_RECALL`` of the disagreements with the forced output."""
    from collections import Counter

    counts: Counter = Counter()
    for x, h in zip(data.inputs, data.hit):
        if h:
            counts.update(enumerate(x))
    need = MIN_RECALL * data.n_hits
    return sorted(Literal(i, v) for (i, v), c in counts.items() if c >= need)


def _conjunctions(pool: Sequence[Literal], data: RuleData, max_literals: int) -> tuple[list, int]:
    """(every scored (literals, score), how many were scored): exhaustive when few, else a beam."""
    sizes = [math.comb(len(pool), k) for k in range(1, max_literals + 1)]
    scored: list[tuple[tuple[Literal, ...], RuleScore]] = []
    if sum(sizes) <= EXHAUSTIVE_RULES:
        for k in range(1, max_literals + 1):
            for combo in itertools.combinations(pool, k):
                if len({lit.position for lit in combo}) == k:
                    scored.append((combo, score_rule(combo, data)))
        return scored, len(scored)
    beam: list[tuple[Literal, ...]] = [()]
    for _ in range(max_literals):
        grown = {}
        for rule in beam:
            used = {lit.position for lit in rule}
            for lit in pool:
                if lit.position not in used and (not rule or lit > rule[-1]):
                    combo = (*rule, lit)
                    grown[combo] = score_rule(combo, data)
        if not grown:
            break
        scored += grown.items()
        ranked = sorted(grown.items(), key=lambda kv: (-(kv[1].precision * kv[1].recall), -kv[1].recall))
        beam = [c for c, s in ranked[:BEAM] if s.recall >= MIN_RECALL]
    return scored, len(scored)


def shrink(literals: Sequence[Literal], data: RuleData) -> tuple[tuple[Literal, ...], RuleScore]:
    """Drop literals while the rule still passes with no lower recall (a minimal rule)."""
    best = tuple(literals)
    score = score_rule(best, data)
    changed = True
    while changed and len(best) > 1:
        changed = False
        for lit in best:
            rest = tuple(x for x in best if x != lit)
            s = score_rule(rest, data)
            if _passes(s) and s.recall >= score.recall:
                best, score, changed = rest, s, True
                break
    return best, score


def search_rule(
    data: RuleData, max_literals: int = MAX_LITERALS
) -> tuple[Rule | None, RuleScore | None, int, str]:
    """The best passing rule on ``data`` (highest recall, then precision, then fewest literals)."""
    if data.n_hits < MIN_SUPPORT:
        return None, None, 0, (f"only {data.n_hits} disagreements with the forced output "
                               f"{data.forced!r} (a rule needs {MIN_SUPPORT})")
    pool = candidate_literals(data)
    if not pool:
        return None, None, 0, f"no literal holds on {MIN_RECALL:.0%} of the disagreements"
    scored, n = _conjunctions(pool, data, max_literals)
    passing = [(c, s) for c, s in scored if _passes(s)]
    if not passing:
        top = max(scored, key=lambda cs: (cs[1].precision * cs[1].recall, -len(cs[0])))
        c, s = top
        return None, None, n, (f"no rule passes; best {' and '.join(map(str, c))}: "
                               f"precision {s.precision:.3f}, "
                               f"recall {s.recall:.3f}, support {s.support}, log10 p {s.log10_p:.1f}")
    combo, _ = max(passing, key=lambda cs: (cs[1].recall, cs[1].precision, -len(cs[0])))
    combo, s = shrink(combo, data)
    return Rule(tuple(sorted(combo)), data.forced), s, n, "rule found"


def residual_search(target: Target, hypothesis: Hypothesis, *, n_sample: int = N_SAMPLE, seed: int = 0,
                    max_literals: int = MAX_LITERALS) -> Residual:
    """Steps 1-5 of the module docstring for ``hypothesis`` on ``target``."""
    from mechsynth.synth.use.inputs import widened

    wide = widened(target)
    obs = observe_broadly(target, hypothesis.program, n_sample=n_sample, seed=seed)
    kind = wide.task.output_kind
    flags = obs.disagree(kind)
    examples = tuple(x for x, f in zip(obs.inputs, flags) if f)[:8]
    common = dict(n_inputs=len(obs.inputs), coverage=obs.coverage, n_disagree=sum(flags), examples=examples,
                  n_task_sample=obs.n_task_sample, n_task_disagree=obs.n_task_disagree)
    data = rule_data(obs, kind, wide.task.vocab, max_literals)
    if data is None:
        return Residual(forced=None, rule=None, score=None, n_rules_scored=0, log10_rule_space=0.0,
                        reason="the program agrees with the network on every input observed", **common)
    rule, score, n, reason = search_rule(data, max_literals)
    return Residual(forced=data.forced, rule=rule, score=score, n_rules_scored=n,
                    log10_rule_space=data.log10_space, reason=reason, **common)


# --- the branch -------------------------------------------------------------------------------------
def _fresh(program: Program, stem: str) -> str:
    name, k = BRANCH_PREFIX + stem, 1
    while name in program.variables:
        k += 1
        name = f"{BRANCH_PREFIX}{stem}{k}"
    return name


def branch_lines(program: Program, rule: Rule, output_values: Sequence[Any]) -> tuple[list[str], str]:
    """The DSL lines of ``out = rule ? forced : clean`` and the new output variable's name."""
    lines, lits = [], []
    for j, lit in enumerate(rule.literals):
        at, tok, both = (_fresh(program, f"{s}{j}") for s in ("at", "tok", "lit"))
        lines += [f"{at} = select(indices, indices, key_eq({lit.position!r}))",
                  f"{tok} = select(tokens, tokens, key_eq({lit.value!r}))",
                  f"{both} = selector_and({at}, {tok})"]
        lits.append(both)
    union = lits[0]
    for j, other in enumerate(lits[1:]):
        name = _fresh(program, f"any{j}")
        lines.append(f"{name} = selector_or({union}, {other})")
        union = name
    hits, cond, out = _fresh(program, "hits"), _fresh(program, "trigger"), _fresh(program, "out")
    lines += [f"{hits} = selector_width({union})", f"{cond} = map(eq({len(rule.literals)}), {hits})"]
    values = list(dict.fromkeys([*output_values, rule.forced]))
    entries = ", ".join([f"({True!r}, {v!r}): {rule.forced!r}" for v in values]
                        + [f"({False!r}, {v!r}): {v!r}" for v in values])
    lines.append(f"{out} = seqmap(table({{{entries}}}), {cond}, {program.output})")
    return lines, out


def with_trigger_branch(hypothesis: Hypothesis, rule: Rule, output_values: Sequence[Any]) -> Hypothesis:
    """The hypothesis with ``out = rule ? forced : clean`` appended (clean correspondence kept)."""
    from mechsynth.dsl import parse
    from mechsynth.dsl.hypothesis import Hypothesis

    lines, _ = branch_lines(hypothesis.program, rule, output_values)
    program = parse(str(hypothesis.program) + "\n" + "\n".join(lines))
    return Hypothesis(program, dict(hypothesis.correspondence))
