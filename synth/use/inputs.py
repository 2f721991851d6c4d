"""The ground every use of a hypothesis stands on: inputs beyond the observed ones, and errors.

A hypothesis was found on inputs from the task's distribution. Its value as a prediction is
what it says about inputs it was *not* found on, so every stage here draws from the
network's own input space, which is usually larger than the task's:

* **lengths**: every content length the network has positions for (`capacity`), not only
  the task's ``min_len..max_len`` (a causal network trained at length 10 with 16 positions
  still runs at 16; a tracr network has exactly its compiled length);
* **mixtures**: other token mixtures than the task's sampler draws (few distinct tokens, one
  token dominating), and for tasks whose generator builds structured inputs (brackets,
  prompts with a separator), the generator's inputs with tokens substituted;
* **broader**: the task's broader distribution, when it defines one;
* **task**: the task's own distribution (what the hypothesis was found on), for reference.

Every input drawn must still be an input of the task: its content in the vocabulary, in the
task's domain, and labelled by the task's labeller without error (the label is what
"wrong" means). `widened(target)` is the target whose task admits every length the network
has positions for, so the network can be run there.

An input is *wrong* for some outputs when, at one of its read positions where the label is
defined, the output is defined and differs from the label (`models.target.outputs_equal`,
so numerical outputs within its tolerance are equal). A program that says nothing (None) at
a position predicts nothing there.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.models import Target


class UseError(ValueError):
    """A hypothesis or run that cannot be used as asked (one-line message)."""


class Family(StrEnum):
    """Where a searched input came from."""

    TASK = "task"  # the task's own distribution
    LENGTHS = "lengths"  # any length the network has positions for
    MIXTURE = "mixture"  # other token mixtures
    BROADER = "broader"  # the task's broader distribution
    GUIDED = "guided"  # found by the program-guided search (synth.use.predict)


@dataclass(frozen=True)
class Candidate:
    """One searched input and the family that produced it."""

    input: tuple
    family: Family


def accepted_hypothesis(run_dir: str | Path, candidate: int | None = None) -> tuple[str, Hypothesis]:
    """(target spec, hypothesis) of a stored run's accepted hypothesis (the first, or candidate id)."""
    from mechsynth.synth.store import load_run

    run = load_run(run_dir)
    if not run.accepted:
        raise UseError(f"{run_dir}: the run accepted no hypothesis (stopped: {run.stopped}); "
                       "predict, edit and replace use an accepted one")
    if candidate is None:
        return run.target, run.accepted[0].hypothesis
    for a in run.accepted:
        if a.candidate_id == candidate:
            return run.target, a.hypothesis
    ids = ", ".join(str(a.candidate_id) for a in run.accepted)
    raise UseError(f"{run_dir}: candidate {candidate} is not accepted (accepted: {ids})")


def capacity(target: Target) -> int:
    """The longest content the network has positions for (at least the task's ``max_len``)."""
    task = target.task
    fits = int(target.model.cfg.n_ctx) - target.position_offset - task.frame_size
    return max(task.max_len, fits)


def widened(target: Target) -> Target:
    """The target with its task admitting every content length the network has positions for."""
    longest = capacity(target)
    if longest == target.task.max_len:
        return target
    task = dataclasses.replace(target.task, max_len=longest)
    return dataclasses.replace(target, task=task)


def safe_labels(task: Any, inputs: Sequence[Sequence[Any]]) -> list[list | None]:
    """The task's labels per input; None for an input its labeller cannot label."""
    out: list[list | None] = []
    for x in inputs:
        try:
            out.append(task.label([list(x)])[0])
        except Exception:  # noqa: BLE001 - a labeller is task code run off its distribution
            out.append(None)
    return out


def wrong(outputs: Sequence[Sequence[Any]], labels: Sequence[Sequence[Any]], kind: str) -> list[bool]:
    """Per input: is some defined output different from a defined label (see module docstring)?"""
    from mechsynth.models.target import outputs_equal

    return [
        any(y is not None and o is not None and not outputs_equal(o, y, kind) for o, y in zip(out, label))
        for out, label in zip(outputs, labels)
    ]


def _draw_family(task: Any, base: Any, family: Family, rng: random.Random) -> list | None:
    """One framed input of a family (``task`` widened, ``base`` the task as found), or None when
    the family cannot draw."""
    vocab = list(task.vocab)
    longest = task.max_len
    if family is Family.TASK:
        return base.sample(1, rng.randrange(2**31))[0]
    if family is Family.BROADER:
        return task.broader_sample(1, rng.randrange(2**31))[0] if task.broader_generator else None
    length = rng.randint(task.min_len, longest)
    if family is Family.LENGTHS:
        if task.generator:
            content = task.generator(rng, length)
        else:
            content = [rng.choice(vocab) for _ in range(length)]
    else:  # MIXTURE: a few distinct tokens, one of them dominant
        subset = rng.sample(vocab, k=rng.randint(1, max(1, len(vocab) // 2)))
        dominant = rng.choice(subset)

        def token() -> Any:
            return dominant if rng.random() < 0.5 else rng.choice(subset)

        if task.generator:  # keep the generator's structure (SEP, brackets), substitute tokens
            drawn = task.generator(rng, length)
            content = [token() if v in vocab and rng.random() < 0.5 else v for v in drawn]
        else:
            content = [token() for _ in range(length)]
    return task.frame(content)


def search_inputs(target: Target, n: int, seed: int,
                  families: Sequence[Family] = (Family.LENGTHS, Family.MIXTURE, Family.BROADER, Family.TASK),
                  ) -> list[Candidate]:
    """``n`` distinct inputs of the widened task, in equal shares from each family that can draw
    (deterministic in ``seed``). Fewer when the input space is smaller than ``n``."""
    wide = widened(target)
    task = wide.task
    usable = [f for f in families if f is not Family.BROADER or task.broader_generator is not None]
    rng = random.Random(seed)
    seen: set[tuple] = set()
    out: list[Candidate] = []
    misses = 0
    while len(out) < n and misses < 20 * n + 1000:
        family = usable[len(out) % len(usable)] if misses % 7 else rng.choice(usable)
        try:
            x = _draw_family(task, target.task, family, rng)
        except Exception:  # noqa: BLE001 - task generators may refuse lengths or mixtures they were not written for
            x = None
        key = tuple(x) if x is not None else None
        if key is None or key in seen or not is_task_input(wide, x):
            misses += 1
            continue
        seen.add(key)
        out.append(Candidate(key, family))
    return out


def is_task_input(target: Target, x: Sequence[Any]) -> bool:
    """In the (widened) task's domain and labelled without error."""
    return target.task.in_domain(x) and safe_labels(target.task, [x])[0] is not None
