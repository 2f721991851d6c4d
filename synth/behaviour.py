"""Behaviour: does the program predict what the *network* outputs?

A hypothesis explains a network, not a task, so the reference here is the network's
own decoded output (``target.predict``), mistakes included, never the task labels. The
program's output (``dsl.evaluate``) is compared with it at the readout positions.

Two input sets: fresh samples from the task's distribution, and a broader set: every
length the task allows (the same number of inputs per length, so short and long inputs
weigh the same) plus the task's broader input distribution when it defines one.

Numbers: ``behaviour`` is the fraction of readout positions where program and network
agree; ``behaviour_exact`` the fraction of inputs where they agree at every readout
position; the per-input agreement fractions are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from synth.patching import CheckError

if TYPE_CHECKING:
    from models import Target


@dataclass(frozen=True)
class Behaviour:
    """Agreement of the program with the network on one input set."""

    positions: float  # fraction of readout positions that agree
    exact: float  # fraction of inputs agreeing at every readout position
    per_input: tuple[float, ...]  # agreement fraction per input
    n: int


def behaviour(target: Target, program: Any, inputs: Sequence[Sequence[Any]]) -> Behaviour:
    """Program output vs the network's decoded output at the readout positions."""
    from dsl import evaluate
    from dsl.errors import DSLError
    from models.target import outputs_equal

    inputs = [list(x) for x in inputs]
    try:
        predicted = evaluate(program, inputs)
    except DSLError as e:
        raise CheckError(f"the program does not evaluate on the target's inputs: {e}") from None
    network = target.predict(inputs)
    kind = target.task.output_kind
    per_input = []
    agree = total = 0
    for x, net, prog in zip(inputs, network, predicted):
        read = target.readout_positions(len(x))
        ok = sum(outputs_equal(net[i], prog[i], kind) for i in read)
        per_input.append(ok / len(read) if read else 1.0)
        agree += ok
        total += len(read)
    return Behaviour(
        positions=agree / total if total else float("nan"),
        exact=sum(p == 1.0 for p in per_input) / len(per_input) if per_input else float("nan"),
        per_input=tuple(per_input),
        n=len(inputs),
    )


def broader_inputs(target: Target, n: int, seed: int) -> list[list]:
    """``n`` inputs per allowed length, plus ``n`` from the task's broader distribution if any."""
    task = target.task
    out: list[list] = []
    for length in range(task.min_len, task.max_len + 1):
        out += task.sample(n, seed + 1000 + length, length=length)
    if task.broader_generator is not None:
        out += task.broader_sample(n, seed + 999)
    return out
