"""Predict: the inputs on which the network is wrong, found by reading the hypothesis.

An accepted hypothesis explains the *network* (its checks compare the program with the
network's outputs, mistakes included), so where the program's output differs from the
task's label, the hypothesis predicts that the network is wrong. That is a novel, falsifiable
prediction: the search below looks for such inputs *outside* the distribution the hypothesis
was found on, then runs the network to see whether it is.

The search (all inputs are inputs of the task, see ``synth.use.inputs``):

1. **Broad sampling**: ``n_search`` inputs from every length the network has positions for,
   other token mixtures, the broader distribution and the task's own.
2. **Program-guided search**: the program is run on every searched input and its
   intermediate variables are compared with the values they take on the task's own
   distribution (*observed* values). A population of inputs whose variables take unobserved
   values (the program is off its known ground there) is mutated (one token changed, or the
   input made one longer or shorter) for ``steps`` rounds; a mutant replaces its parent when
   it reaches at least as many unobserved variables, and every mutant on which the program's
   output differs from the label is kept.
3. **Predicted errors**: inputs where the program's output differs from the label, ranked by
   how many variables take unobserved values (the least ordinary first); the first ``count``
   are reported, with the family that found them.

Then the network is run, and two numbers are reported against random sampling:

* **precision**: the fraction of predicted errors that are real (the network's output differs
  from the label); the baseline is the error rate of as many inputs drawn at random from the
  same broad distribution (step 1), i.e. the precision of guessing;
* **recall**: on a large fresh random sample (``n_recall`` inputs from step 1's distribution),
  the fraction of the network's real errors that the program flags; the baseline flags as
  many inputs of that sample at random.

A program that agrees with the labels wherever it is defined predicts no errors; the result
then says so (empty list, precision undefined) rather than inventing any.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mechsynth.synth.use.inputs import (
    Candidate, Family, is_task_input, safe_labels, search_inputs, widened, wrong,
)

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.program import Program
    from mechsynth.models import Target

EVAL_CHUNK = 512  # inputs per interpreter call (selectors are [batch, T, T])


@dataclass(frozen=True)
class PredictedError:
    """One input on which the program predicts the network is wrong, and what the network did."""

    input: tuple
    family: str
    label: tuple
    program: tuple
    network: tuple
    network_wrong: bool
    unobserved: tuple[str, ...]  # variables taking values never seen on the task distribution

    def to_json(self) -> dict[str, Any]:
        return {"input": list(self.input), "family": self.family, "label": list(self.label),
                "program": list(self.program), "network": list(self.network),
                "network_wrong": self.network_wrong, "unobserved": list(self.unobserved)}


@dataclass(frozen=True)
class Prediction:
    """predict's result: the predicted errors, precision and recall against random sampling."""

    target: str
    program: str
    predicted: tuple[PredictedError, ...]
    n_flagged: int  # distinct inputs the search found where the program differs from the label
    n_searched: int
    precision: float  # NaN when nothing is predicted
    baseline_precision: float  # error rate of as many random inputs
    n_baseline: int
    recall: float  # of the network's errors in the recall sample, the fraction the program flags
    baseline_recall: float  # of those errors, the fraction as many random flags hit
    n_recall_sample: int
    n_real_errors: int  # network errors in the recall sample
    n_program_flags: int  # inputs of the recall sample the program flags
    found_by: Mapping[str, int] = field(default_factory=dict)  # predicted errors per family

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "program": self.program,
            "predicted": [p.to_json() for p in self.predicted], "n_flagged": self.n_flagged,
            "n_searched": self.n_searched, "precision": self.precision,
            "baseline_precision": self.baseline_precision, "n_baseline": self.n_baseline,
            "recall": self.recall, "baseline_recall": self.baseline_recall,
            "n_recall_sample": self.n_recall_sample, "n_real_errors": self.n_real_errors,
            "n_program_flags": self.n_program_flags, "found_by": dict(self.found_by),
        }


def program_outputs(program: Program, inputs: Sequence[Sequence[Any]]) -> list[list]:
    """The program's outputs per input (any lengths), in chunks; UseError if it cannot run."""
    from mechsynth.dsl import evaluate
    from mechsynth.dsl.errors import DSLError
    from mechsynth.synth.use.inputs import UseError

    out: list[list] = []
    try:
        for start in range(0, len(inputs), EVAL_CHUNK):
            out += evaluate(program, [list(x) for x in inputs[start : start + EVAL_CHUNK]])
    except DSLError as e:
        raise UseError(f"the program does not evaluate on the searched inputs: {e}") from None
    return out


def _hashable(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def observed_values(program: Program, inputs: Sequence[Sequence[Any]]) -> dict[str, set]:
    """Every value each sequence variable takes on ``inputs`` (selectors left out)."""
    from mechsynth.dsl import evaluate_all

    seen: dict[str, set] = {}
    for start in range(0, len(inputs), EVAL_CHUNK):
        values = evaluate_all(program, [list(x) for x in inputs[start : start + EVAL_CHUNK]])
        for name, rows in values.items():
            if program.kind(name) == "selector":
                continue
            bucket = seen.setdefault(name, set())
            for row in rows:
                bucket.update(_hashable(v) for v in row)
    return seen


def unobserved(program: Program, inputs: Sequence[Sequence[Any]], seen: Mapping[str, set]) -> list[tuple]:
    """Per input, the variables taking a value outside ``seen``."""
    from mechsynth.dsl import evaluate_all

    out: list[tuple] = []
    for start in range(0, len(inputs), EVAL_CHUNK):
        chunk = [list(x) for x in inputs[start : start + EVAL_CHUNK]]
        values = evaluate_all(program, chunk)
        names = [n for n in seen if n in values]
        for b in range(len(chunk)):
            out.append(tuple(n for n in names if any(_hashable(v) not in seen[n] for v in values[n][b])))
    return out


def _mutate(target: Target, x: tuple, rng: random.Random) -> tuple | None:
    """One token changed, or the content one longer or shorter (framing kept)."""
    task = target.task
    content = task.content(x)
    roll = rng.random()
    if roll < 0.15 and len(content) < task.max_len:
        content.insert(rng.randint(0, len(content)), rng.choice(task.vocab))
    elif roll < 0.3 and len(content) > task.min_len:
        del content[rng.randrange(len(content))]
    elif content:
        content[rng.randrange(len(content))] = rng.choice(task.vocab)
    y = tuple(task.frame(content))
    return y if y != x and is_task_input(target, y) else None


def guided_search(
    target: Target, program: Program, seeds: Sequence[tuple], seen: Mapping[str, set], *, steps: int,
    seed: int, population: int = 64,
) -> list[tuple]:
    """Inputs where the program's output differs from the label, found by mutating ``seeds``
    toward unobserved intermediate values (see the module docstring, step 2)."""
    wide = widened(target)
    kind = wide.task.output_kind
    rng = random.Random(seed)
    chains = list(seeds[:population])
    if not chains:
        return []
    scores = [len(u) for u in unobserved(program, chains, seen)]
    found: list[tuple] = []
    known: set[tuple] = set(chains)
    for _ in range(steps):
        mutants = [(i, _mutate(wide, x, rng)) for i, x in enumerate(chains)]
        mutants = [(i, y) for i, y in mutants if y is not None and y not in known]
        if not mutants:
            continue
        ys = [y for _, y in mutants]
        known.update(ys)
        labels = safe_labels(wide.task, ys)
        flags = wrong(program_outputs(program, ys), labels, kind)
        novelty = unobserved(program, ys, seen)
        for (i, y), flag, u in zip(mutants, flags, novelty):
            if flag:
                found.append(y)
            if len(u) >= scores[i]:
                chains[i], scores[i] = y, len(u)
    return found


def predict(
    target: Target, hypothesis: Hypothesis, *, count: int = 100, n_search: int = 4000, n_recall: int = 4000,
    steps: int = 30, seed: int = 0,
) -> Prediction:
    """The program's predicted errors of the network, checked on the network (module docstring)."""
    program = hypothesis.program
    wide = widened(target)
    kind = wide.task.output_kind
    seen = observed_values(program, target.task.sample(512, seed))

    pool = search_inputs(target, n_search, seed + 1)
    xs = [c.input for c in pool]
    flags = wrong(program_outputs(program, xs), safe_labels(wide.task, xs), kind)
    novelty = unobserved(program, xs, seen)
    flagged = {c.input: c.family for c, f in zip(pool, flags) if f}
    # Guided chains start where the program is furthest from its observed ground.
    order = sorted(range(len(pool)), key=lambda i: -len(novelty[i]))
    seeds = [xs[i] for i in order if not flags[i]]
    for y in guided_search(target, program, seeds, seen, steps=steps, seed=seed + 2):
        flagged.setdefault(y, Family.GUIDED)
    candidates = list(flagged)
    rank = dict(zip(candidates, (len(u) for u in unobserved(program, candidates, seen))))
    chosen = sorted(candidates, key=lambda x: -rank[x])[:count]

    labels = safe_labels(wide.task, chosen)
    prog_out = program_outputs(program, chosen)
    net_out = wide.predict([list(x) for x in chosen]) if chosen else []
    net_wrong = wrong(net_out, labels, kind)
    reads = [wide.read_positions(list(x)) for x in chosen]
    novel_of = unobserved(program, chosen, seen) if chosen else []
    predicted = tuple(
        PredictedError(x, str(flagged[x]), tuple(label[i] for i in r), tuple(p[i] for i in r),
                       tuple(n[i] for i in r), w, u)
        for x, label, p, n, w, r, u in zip(chosen, labels, prog_out, net_out, net_wrong, reads, novel_of)
    )
    precision = sum(net_wrong) / len(chosen) if chosen else float("nan")

    baseline = search_inputs(target, max(len(chosen), 1) if chosen else count, seed + 3)
    base_rate = _error_rate(wide, [c.input for c in baseline])

    recall_set = [c.input for c in search_inputs(target, n_recall, seed + 4)]
    real = _network_wrong(wide, recall_set)
    prog_flags = wrong(program_outputs(program, recall_set), safe_labels(wide.task, recall_set), kind)
    n_real = sum(real)
    hits = sum(r and f for r, f in zip(real, prog_flags))
    random_flags = set(random.Random(seed + 5).sample(range(len(recall_set)), sum(prog_flags)))
    random_hits = sum(real[i] for i in random_flags)
    found_by: dict[str, int] = {}
    for p in predicted:
        found_by[p.family] = found_by.get(p.family, 0) + 1
    return Prediction(
        target=target.name, program=str(program), predicted=predicted, n_flagged=len(flagged),
        n_searched=len(pool), precision=precision, baseline_precision=base_rate, n_baseline=len(baseline),
        recall=hits / n_real if n_real else float("nan"),
        baseline_recall=random_hits / n_real if n_real else float("nan"),
        n_recall_sample=len(recall_set), n_real_errors=n_real, n_program_flags=sum(prog_flags),
        found_by=found_by,
    )


def _network_wrong(target: Target, inputs: Sequence[tuple]) -> list[bool]:
    if not inputs:
        return []
    outputs = target.predict([list(x) for x in inputs])
    return wrong(outputs, safe_labels(target.task, inputs), target.task.output_kind)


def _error_rate(target: Target, inputs: Sequence[tuple]) -> float:
    flags = _network_wrong(target, inputs)
    return sum(flags) / len(flags) if flags else float("nan")


def format_prediction(p: Prediction, show: int = 10) -> str:
    """The human-readable summary ``mechsynth predict`` prints."""
    lines = [f"target {p.target}: {p.n_flagged} inputs where the program's output differs from the task "
             f"label ({p.n_searched} searched, then program-guided mutation)"]
    if not p.predicted:
        lines.append("the program agrees with the task labels on every searched input: it predicts no errors")
    else:
        by = ", ".join(f"{k} {v}" for k, v in sorted(p.found_by.items()))
        lines.append(f"predicted errors reported: {len(p.predicted)} (found by: {by})")
        lines.append(f"precision  {p.precision:.3f}   (network really wrong on the predicted inputs; random "
                     f"inputs: {p.baseline_precision:.3f} of {p.n_baseline})")
    lines.append(f"recall     {_f(p.recall)}   (of {p.n_real_errors} network errors among "
                 f"{p.n_recall_sample} random inputs, flagged by the program ({p.n_program_flags} flags); "
                 f"as many random flags: "
                 f"{_f(p.baseline_recall)})")
    for e in p.predicted[:show]:
        mark = "wrong" if e.network_wrong else "right"
        extra = f"  unobserved: {', '.join(e.unobserved)}" if e.unobserved else ""
        lines.append(f"    {list(e.input)}  label {list(e.label)}  program {list(e.program)}  network "
                     f"{list(e.network)} ({mark}; {e.family}){extra}")
    if len(p.predicted) > show:
        lines.append(f"    ... {len(p.predicted) - show} more (--json lists all)")
    return "\n".join(lines)


def _f(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


__all__ = ["Candidate", "PredictedError", "Prediction", "format_prediction", "predict"]
