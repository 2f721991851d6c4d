"""What the controls share about one target: cached behaviour, the location space, random nulls.

A :class:`ControlContext` is built once per target and candidate: it caches the inputs and
the network's outputs on which a program's behaviour is computed (:class:`BehaviourOracle`),
knows every location of the model a variable could be placed at (:class:`LocationSpace`),
and draws the nulls the controls compare against: random correspondences of the same
shape, in layer order (:func:`random_correspondence`), and random programs of the same
size and node types (:func:`random_program_like`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mechsynth.dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location, hook_in_layer

from mechsynth.synth.accept import ControlError, number
from mechsynth.synth.accept import statistic as min_of_scores
from mechsynth.synth.control.results import ControlResult

if TYPE_CHECKING:
    from mechsynth.synth.control.stage import ControlStage
    from mechsynth.dsl import Program
    from mechsynth.models import Target


# The checks' interchange accuracy over the pairs whose counterfactual output differs from the
# base output (synth.check.scoring); the network gates judge copies on it (network_statistic).
INFORMATIVE_IIA = "iia_informative"


class ControlContext:
    """What a control may use: the target, the hypothesis, memoised scoring and the nulls.

    Scores are memoised per (network, hypothesis), so the effect-size gates and the
    p-value's draws share work, and a finite null space is never scored twice.
    """

    def __init__(self, stage: ControlStage, target: Target, hypothesis: Hypothesis) -> None:
        self.stage = stage
        self.config = stage.config
        self.thresholds = stage.config.thresholds
        self.target = target
        self.hypothesis = hypothesis
        self._key = zlib.crc32(str(hypothesis).encode())
        self._draws: dict[tuple[str, int], Hypothesis | None] = {}
        self._programs: dict[tuple[str, int], Program | None] = {}
        self.n_redrawn = 0  # program draws excluded as computing the candidate's function
        self.checked: set[int] = set()  # program draws that needed the full checks
        self._testable: tuple[str, ...] | None = None
        self.space = LocationSpace.of(target)
        self._refits: dict[tuple[int, Hypothesis], Hypothesis] = {}
        self.real_scores = self.score(target, hypothesis)
        self.real = self.statistic(self.real_scores)

    # scoring
    def score(self, target: Target, hypothesis: Hypothesis) -> Mapping[str, Any]:
        """The checks' scores; a null holding a learned subspace gets it refitted first (`fitted`)."""
        try:
            fitted = self.fitted(target, hypothesis)
        except ValueError as e:  # CheckError: DAS cannot be fitted there, so the null cannot be scored
            return {"error": f"{type(e).__name__}: {e}"}
        return self.stage._score(target, fitted)

    def fitted(self, target: Target, hypothesis: Hypothesis) -> Hypothesis:
        """``hypothesis`` as the checks score it on ``target``.

        A learned (DAS) subspace is part of what was fitted to the real network, so on every
        null (another network, placement or program) it is refitted by the same procedure
        (synth.das.refit: same k, training inputs, steps and seed): a rotation fitted to the
        real network would be an unfair null, and a null that cannot be fitted as well as the
        real one is what the gates need to see. The real hypothesis on the real target is kept.
        """
        if not hypothesis.has_subspace or (target is self.target and hypothesis == self.hypothesis):
            return hypothesis
        from mechsynth.synth import das

        key = (id(target), hypothesis)
        if key not in self._refits:
            self.stage._keep.append(target)
            self._refits[key] = das.refit(target, hypothesis)
        return self._refits[key]

    def statistic(self, scores: Mapping[str, Any] | None) -> float:
        return min_of_scores(scores, self.thresholds.statistic)

    def network_statistic(self, scores: Mapping[str, Any] | None) -> float:
        """The statistic the network gates (random networks, edge-popup) compare: the gates'
        statistic, and at most the IIA on informative pairs (``iia_informative``: those where the
        program's counterfactual output differs from its base output) where any pair was.

        A copy whose output barely depends on its input (a shuffled tracr:detect_pattern: resampling
        the whole input changes nothing, loss recovered 0/0) follows the program's counterfactual
        whenever the program predicts no change, so its plain IIA is the share of pairs on which
        nothing was predicted (0.92 there) and measures the output's constancy, not a mechanism.
        Where the program predicts a change, that copy follows it half the time. The same rule
        is applied to the real hypothesis, so both sides are judged on the same interventions.

        The cap applies only where the real hypothesis has informative pairs on the real
        network. The pairs are the program's, but which pairs are drawn can differ between
        networks (the checks interchange across lengths where resampling within a length changes
        nothing), so without this a real hypothesis tested on no informative pair would keep its
        plain IIA while its copies were capped: an uncapped side against a capped one, which
        could only make a gate pass more easily. A copy with no informative pair keeps its plain
        statistic (nothing tells it apart from a constant), which can only make it harder.
        """
        value = self.statistic(scores)
        if not self.informative_defined:
            return value
        informative = number(scores.get(INFORMATIVE_IIA)) if scores else math.nan
        return min(value, informative) if math.isfinite(informative) and not math.isnan(value) else value

    @property
    def informative_defined(self) -> bool:
        """Whether the real hypothesis has an IIA on informative pairs on the real network."""
        return math.isfinite(number(self.real_scores.get(INFORMATIVE_IIA)))

    def network_statistic_of(self, target: Target, hypothesis: Hypothesis | None) -> float:
        """:meth:`network_statistic` of a hypothesis on a network; -inf as in :meth:`statistic_of`."""
        if hypothesis is None:
            return -math.inf
        scores = self.score(target, hypothesis)
        return -math.inf if "error" in scores else self.network_statistic(scores)

    @property
    def network_real(self) -> float:
        """The real hypothesis' :meth:`network_statistic` on the real target."""
        return self.network_statistic(self.real_scores)

    def statistic_of(self, target: Target, hypothesis: Hypothesis | None) -> float:
        """The statistic of a hypothesis; -inf when there is none or the checks refuse it.

        A hypothesis the checks reject outright (a CheckError: e.g. a variable read before
        the layer that writes it) is what the loop would store as an error, not as an
        explanation, so it never beats the real one. Undefined numbers stay NaN and count
        against the real hypothesis.
        """
        if hypothesis is None:
            return -math.inf
        scores = self.score(target, hypothesis)
        if "error" in scores:
            return -math.inf
        return self.statistic(scores)

    @property
    def behaviour(self) -> BehaviourOracle:
        return self.stage._oracle(self.target)

    def significance_real(self) -> float:
        """The p-value's statistic of the real hypothesis: min(behaviour, checks statistic)."""
        bound = self.behaviour.bound(self.hypothesis.program, self.hypothesis.program)
        if math.isnan(bound):
            return math.nan
        return min(bound, self.statistic_of(self.target, self.hypothesis))

    def significance_of_draw(
        self, index: int, real: float, cutoff: float | None = None
    ) -> tuple[float, bool]:
        """The p-value's statistic of program draw ``index``, and whether the full checks ran.

        The cheap bound (behaviour on the cached inputs) comes first: the statistic is a
        minimum that includes it, so a bound below ``cutoff`` (default ``real``: then it cannot
        be an exceedance) is returned as is (localisation and checks skipped). Otherwise the
        program is localised (or, without a localiser, placed at the real hypothesis'
        locations) and the full statistic is returned.
        """
        cutoff = real if cutoff is None else cutoff
        draw = self.null_program_draw(index)
        if draw is None:
            return math.nan, False  # no program other than the real one: counts against it
        bound = self.behaviour.bound(draw, self.hypothesis.program)
        if math.isnan(bound):
            return math.nan, False
        if bound < cutoff:
            return bound, False
        self.checked.add(index)
        return min(bound, self.statistic_of(self.target, self.place(draw))), True

    def place(self, program: Program) -> Hypothesis | None:
        """A null program's placement: the localiser's, or the real claims' when there is no localiser."""
        if self.stage.localize_fn is not None:
            return self.localize(self.target, program)
        corr = {v: loc for v, loc in self.hypothesis.correspondence.items() if v in program.variables}
        return Hypothesis(program, corr)

    def localize(self, target: Target, program: Program) -> Hypothesis | None:
        if self.stage.localize_fn is None:
            return None
        return self.stage._localize(target, program)

    def network(self, kind: str, seed: int) -> Target:
        return self.stage._network(self.target, kind, seed)

    # null draws (deterministic in the stage seed, the hypothesis, the family and the index)
    def rng(self, family: str, index: int) -> np.random.Generator:
        fam = zlib.crc32(family.encode())
        return np.random.default_rng([self.config.seed, self._key, fam, index])

    def null_correspondence(self, index: int, testable_only: bool = False) -> Hypothesis | None:
        """The program at a random placement (of every claim, or only of the testable ones)."""
        key = ("correspondence-testable" if testable_only else "correspondence", index)
        if key not in self._draws:
            movable = self.testable if testable_only else self.located
            self._draws[key] = random_correspondence(self.hypothesis, self.space, self.rng(*key), movable)
        return self._draws[key]

    def null_program_draw(self, index: int) -> Program | None:
        """Random same-shape program ``index`` that computes something else than the candidate.

        Drawn from :func:`random_program_like` by rejection: a draw that computes the
        candidate's function (:meth:`BehaviourOracle.same_as` over the output and the located
        variables: the identical text, a query the predicate ignores, or other primitives
        that give the same values) is the candidate itself to every check, not a rival, so it
        is excluded (counted in ``n_redrawn``) and another is drawn. None when
        ``max_redraws`` draws in a row were all the candidate (the None counts against it).
        """
        key = ("program", index)
        if key not in self._programs:
            rng = self.rng(*key)
            found = None
            for _ in range(self.config.max_redraws):
                try:
                    program = random_program_like(self.hypothesis.program, rng)
                except ControlError:
                    break
                if not self.computes_the_candidate(program):
                    found = program
                    break
                self.n_redrawn += 1
            self._programs[key] = found
        return self._programs[key]

    def computes_the_candidate(self, program: Program) -> bool:
        """Whether a null draw computes the candidate's function where the candidate makes claims."""
        return self.behaviour.same_as(program, self.hypothesis.program, tuple(self.hypothesis.correspondence))

    def null_program(self, index: int) -> Hypothesis | None:
        """Program draw ``index``, placed like the real one (None if it cannot be)."""
        program = self.null_program_draw(index)
        return None if program is None else self.place(program)

    @property
    def located(self) -> tuple[str, ...]:
        """Located variables that are claims (not primitive inputs)."""
        return tuple(v for v in self.hypothesis.correspondence if v not in PRIMITIVES)

    @property
    def testable(self) -> tuple[str, ...]:
        """Located variables that resampling can change.

        The checks resample between inputs of the same length (the networks take no
        padding), so a variable that is a function of length and position only (tracr's
        ``length``, ``opp_index``, ...) has the same value in the source and the base
        input: resampling it is a no-op and the causal checks cannot test its claim.
        """
        if self._testable is None:
            oracle = self.behaviour
            values = oracle.values(self.hypothesis.program)
            lengths = [len(x) for x in oracle.inputs]
            self._testable = tuple(v for v in self.located if _varies_within_length(values.get(v), lengths))
        return self._testable

    def ablation_for(self, variables: Sequence[str]) -> str:
        """Resample ablation, unless none of ``variables`` can be changed by resampling (then zero)."""
        return "resample" if any(v in self.testable for v in variables) else "zero"


class Control(Protocol):
    """A control stage: ``run`` returns a verdict with its numbers."""

    name: str

    def run(self, ctx: ControlContext) -> ControlResult: ...


class BehaviourOracle:
    """The p-value's cheap part: program output vs the network's output on cached inputs.

    ``n_per_length`` inputs of every length and the network's decoded predictions on
    them are computed once per target; after that a program's behaviour costs one run of
    the DSL interpreter and no forward pass. ``bound(program)`` is the fraction of
    readout positions where the program's output equals the network's; a position where
    the program outputs None counts as a disagreement (a program cannot score by saying
    nothing), and a program that does not evaluate gets -inf (the checks would refuse
    it). It depends on the program only, never on a placement, and it is one of the terms
    of the minimum that is the p-value's statistic, so it is an upper bound of it.
    """

    def __init__(self, target: Target, n_per_length: int, seed: int) -> None:
        task = target.task
        self.target = target
        self.inputs: list[list] = []
        for length in range(task.min_len, task.max_len + 1):
            self.inputs += [list(x) for x in task.sample(n_per_length, seed + length, length=length)]
        self.network = target.predict(self.inputs)
        self.readout = [target.read_positions(x) for x in self.inputs]
        self._values: dict[str, dict[str, list] | None] = {}
        self._outputs: dict[str, list | None] = {}
        self._batches: dict[tuple[str, ...], Any] = {}  # encoded inputs per set of program literals
        self._bounds: dict[tuple[str, str], float] = {}

    def values(self, program: Program) -> dict[str, list]:
        """Every non-selector variable's values, flattened over inputs and positions ({} if it fails)."""
        every = self._every(program)
        if every is None:
            return {}
        return {
            v: [x for row in rows for x in row]
            for v, rows in every.items()
            if program.kind(v) != "selector"
        }

    def _every(self, program: Program) -> dict[str, list] | None:
        """Every variable's values (selectors included); None when the program does not evaluate."""
        from mechsynth import dsl

        return self._memo(self._values, program, lambda: dsl.evaluate_all(program, self.inputs))

    def _output(self, program: Program) -> list | None:
        """The output's values only (decoding every selector costs most of an evaluation).

        Same result as ``dsl.evaluate``, with the encoded inputs reused across programs
        that mention the same literals (encoding is most of what remains).
        """
        from mechsynth.dsl.interpret import decode, dtypes, encode, run

        def compute() -> list:
            symbols = tuple(sorted(set(map(repr, program.literals()))))
            if symbols not in self._batches:
                if len(self._batches) > 256:
                    self._batches.clear()
                self._batches[symbols] = encode(self.inputs, symbols=program.literals())
            batch = self._batches[symbols]
            values = run(program, batch)
            return decode(values[program.output], dtypes(program)[program.output], batch)

        return self._memo(self._outputs, program, compute)

    @staticmethod
    def _memo(cache: dict[str, Any], program: Program, compute: Callable[[], Any]) -> Any:
        from mechsynth.dsl.errors import DSLError

        key = str(program)
        if key not in cache:
            try:
                cache[key] = compute()
            except (DSLError, ValueError, TypeError, ZeroDivisionError):
                cache[key] = None
            if len(cache) > 4096:  # draws are rarely revisited: keep memory bounded
                cache.pop(next(iter(cache)))
        return cache[key]

    def same_as(self, program: Program, real: Program, located: Collection[str] = ()) -> bool:
        """Whether ``program`` computes ``real``'s function as a hypothesis placed at ``located`` claims it.

        The rule (one definition, used for every program null): the two programs take equal
        values at every position of every cached input (``n_per_length`` inputs of every
        length) at the output and at each variable in ``located`` (the variables the
        correspondence places; the checks read nothing else). Variables that are not located
        (a selector feeding a located ``selector_width``, an unplaced intermediate) may differ,
        and so may the primitives read: ``selector_width(select(indices, length, LT))`` is
        tracr:length's ``selector_width(select(tokens, tokens, TRUE))`` to every check, since
        both are the length. Values are compared exactly (a numerical value equal only up to
        rounding is a different function: the rule errs towards keeping a draw as a rival).
        A located variable the draw does not define, or a program that does not evaluate, is
        never the same.

        Why the cached inputs and not ``dsl.equivalence``: the p-value takes up to
        ``max_null_draws`` draws, each tested before it is used, and a bounded z3 or
        exhaustive check per draw costs seconds where this costs one interpreter run that
        the behaviour bound needs anyway; the checks themselves judge on sampled inputs too.
        A draw equal on these inputs but different elsewhere is excluded although it is
        another function; on it the real hypothesis' behaviour bound is the same, so such a
        draw would only have tied the real hypothesis on these inputs.
        """
        if program == real:
            return True
        compared = [v for v in located if v not in PRIMITIVES and v != real.output]
        if any(v not in program.variables for v in compared) or program.output != real.output:
            return False
        out, real_out = self._output(program), self._output(real)
        if out is None or real_out is None or out != real_out:
            return False  # a different output already makes it a different hypothesis
        if not compared:
            return True
        a, b = self._every(program), self._every(real)
        return a is not None and b is not None and all(a[v] == b[v] for v in compared)

    def bound(self, program: Program, real: Program | None = None) -> float:
        """Agreement with the network at the read positions where ``real``'s output is defined.

        The positions are fixed by the hypothesis under test (as the checks compare only
        where its program is defined, e.g. tracr's detect_pattern before a full pattern),
        so the real hypothesis and every null draw are measured on the same positions;
        there a draw's None still counts as a disagreement.
        """
        from mechsynth.synth.check.behaviour import compare_outputs

        key = (str(program), str(real) if real is not None else "")
        if key not in self._bounds:
            out = self._output(program)
            if out is None:
                self._bounds[key] = -math.inf
            else:
                mask_out = self._output(real) if real is not None else None
                kind = self.target.task.output_kind
                # Without a real program every read position is compared (None disagrees).
                everywhere = [[0] * len(row) for row in out]
                self._bounds[key] = compare_outputs(
                    self.network, out, self.readout, kind, defined_by=mask_out or everywhere
                ).agreement
            if len(self._bounds) > 100_000:
                self._bounds.pop(next(iter(self._bounds)))
        return self._bounds[key]


def _varies_within_length(values: Sequence[Any] | None, lengths: Sequence[int]) -> bool:
    """Whether a variable takes two values at the same position of two inputs of the same length."""
    if values is None:
        return True  # unknown: assume the checks can test it
    seen: dict[tuple[int, int], Any] = {}
    i = 0
    for length in lengths:
        for pos in range(length):
            v = values[i]
            i += 1
            key = (length, pos)
            if key in seen and seen[key] != v:
                return True
            seen.setdefault(key, v)
    return False


@dataclass(frozen=True)
class LocationSpace:
    """The locations a model offers, by kind: heads per layer, MLP outputs, residual width."""

    n_layers: int
    n_heads: int
    d_model: int
    has_mlp: bool = True

    @classmethod
    def of(cls, target: Target) -> LocationSpace:
        cfg = target.model.cfg
        return cls(
            int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model), not getattr(cfg, "attn_only", False)
        )

    def random_like(self, loc: Location, rng: np.random.Generator) -> Location:
        """A random location of the same kind (same hook type, random layer/head/dims of equal size)."""
        comp = loc.component
        hook = loc.hook
        if comp in ("attn", "mlp") and loc.layer is not None:
            hook = hook_in_layer(hook, int(rng.integers(self.n_layers)))
        head = int(rng.integers(self.n_heads)) if loc.head is not None else None
        dims = None
        if loc.dims is not None:
            dims = tuple(sorted(int(d) for d in rng.choice(self.d_model, size=len(loc.dims), replace=False)))
        return Location(hook, head, dims, loc.subspace)  # a learned subspace is refitted there (fitted)


def _located_parents(program: Program, located: Sequence[str]) -> dict[str, set[str]]:
    """For each located variable, the nearest located variables it is computed from."""
    return {v: set(program.nearest_ancestors(v, located)) for v in located}


def random_correspondence(
    hypothesis: Hypothesis,
    space: LocationSpace,
    rng: np.random.Generator,
    movable: Sequence[str] | None = None,
    tries: int = 2000,
) -> Hypothesis | None:
    """The program with each ``movable`` variable (default: every located non-primitive one)
    at a random location of its kind, in an order the network can compute.

    Rejection sampling, so the draw is uniform over the layer-ordered placements; None
    when there is nothing to move or no layer-ordered placement turned up in ``tries``.
    """
    corr = dict(hypothesis.correspondence)
    movable = [v for v in (movable if movable is not None else corr) if v in corr and v not in PRIMITIVES]
    if not movable:
        return None
    parents = _located_parents(hypothesis.program, list(corr))
    for _ in range(tries):
        candidate = dict(corr)
        for v in movable:
            candidate[v] = space.random_like(corr[v], rng)
        if _respects_order(candidate, parents):
            return hypothesis.with_correspondence(candidate)
    return None


def _respects_order(corr: Mapping[str, Location], parents: Mapping[str, set[str]]) -> bool:
    for v, ps in parents.items():
        ov = corr[v].order
        for p in ps:
            op = corr[p].order
            if ov is not None and op is not None and not op < ov:
                return False
    return True


def random_program_like(program: Program, rng: np.random.Generator, tries: int = 200) -> Program:
    """A random program with the same number of nodes and the same primitive at each node.

    Each node keeps its primitive and encoding; its variable arguments are redrawn from
    the variables defined before it (sequences for sequence slots, preferring the
    original argument's encoding; selectors for selector slots), its functions from the
    registry (parameter-free families, one-parameter families with a parameter drawn
    from small integers and the program's own literals, and the program's own
    functions), its comparisons from the comparison names. Literal values are kept.
    Draws that do not type-check are redrawn.
    """
    from mechsynth.dsl import registry
    from mechsynth.dsl.errors import DSLError
    from mechsynth.dsl.program import COMPARISONS, Direction, Fn, Node, Program

    literals = {0, 1, 2, 3}
    own_fns: dict[int, list[Any]] = {1: [], 2: []}
    for _, node in program.assignments:
        for arg in node.args:
            if isinstance(arg, Fn):
                own_fns.setdefault(arg.arity, []).append(arg)
                literals.update(
                    p for p in arg.params if isinstance(p, (int, str)) and not isinstance(p, bool)
                )
    pools: dict[int, list[Any]] = {}
    for arity in (1, 2):
        pool: list[Any] = list(own_fns.get(arity, []))
        for fam in registry.functions(arity):
            if fam.name in ("table", "expr"):
                continue  # open-ended families: parameters cannot be drawn meaningfully
            if not fam.params:
                pool.append(Fn(fam.name, arity, ()))
            elif len(fam.params) == 1:
                pool.extend(Fn(fam.name, arity, (c,)) for c in sorted(literals, key=str))
        pools[arity] = pool

    def pick(items: Sequence[Any]) -> Any:
        return items[int(rng.integers(len(items)))]

    last: Exception | None = None
    for _ in range(tries):
        kinds: dict[str, str] = {p: "categorical" for p in PRIMITIVES}
        assignments = []
        try:
            for name, node in program.assignments:
                args = []
                for arg, param in zip(node.args, node.primitive.signature):
                    if param.kind == "sop":
                        want = program.kind(arg) if arg in program.variables else "categorical"
                        seqs = [v for v, k in kinds.items() if k != "selector"]
                        same = [v for v in seqs if kinds[v] == want]
                        args.append(pick(same or seqs))
                    elif param.kind == "selector":
                        sels = [v for v, k in kinds.items() if k == "selector"]
                        args.append(pick(sels) if sels else arg)
                    elif param.kind in ("fn1", "fn2"):
                        args.append(pick(pools[1 if param.kind == "fn1" else 2]))
                    elif param.kind == "pred" and isinstance(arg, str):
                        args.append(pick(COMPARISONS))
                    elif param.kind == "direction":
                        args.append(pick(tuple(Direction)))
                    else:
                        args.append(arg)
                new = Node(node.op, tuple(args), node.encoding)
                assignments.append((name, new))
                kinds[name] = "selector" if new.is_selector else (node.encoding or "categorical")
            return Program(tuple(assignments))
        except (DSLError, ValueError, TypeError) as e:
            last = e
    raise ControlError(f"could not draw a random program shaped like this one in {tries} tries: {last}")
