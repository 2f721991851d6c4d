"""Behaviour: does the program predict what the *network* outputs?

A hypothesis explains a network, not a task, so the reference here is the network's
own decoded output (``target.predict``), mistakes included, never the task labels. The
program's output (``dsl.evaluate``) is compared with it at the readout positions.

Two input sets: fresh samples from the task's distribution, and a broader set: every
length the task allows (the same number of inputs per length, so short and long inputs
weigh the same) plus the task's broader input distribution when it defines one.

The network's outputs on the broader set do not depend on the hypothesis, and every score of a
run reads the same broader set (same seed, same size): `network_outputs` remembers them per
network object, for exactly those inputs and that decoding, so a run pays for them once
(`forget_network_outputs` empties the memo; a modified network is a new object).

Numbers: ``behaviour`` is the fraction of readout positions where program and network
agree; ``behaviour_exact`` the fraction of inputs where they agree at every readout
position; the per-input agreement fractions are kept. For a multilabel target (a set of
allowed labels per position) agreement is set equality, and ``per_label`` gives each
label's own agreement (``behaviour_per_label`` in the scores). Where the program's output is
undefined (None, as RASP gives e.g. for ``shift_by`` at the first position) the program
makes no prediction and the position is not compared; ``defined`` reports the fraction
of readout positions where it does predict, so a program cannot score by saying nothing.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from mechsynth.synth.check.patching import CheckError

if TYPE_CHECKING:
    from mechsynth.models import Target


@dataclass(frozen=True)
class Behaviour:
    """Agreement of the program with the network on one input set."""

    positions: float  # fraction of readout positions that agree
    exact: float  # fraction of inputs agreeing at every readout position
    per_input: tuple[float, ...]  # agreement fraction per input (NaN where the program defines nothing)
    defined: float  # fraction of readout positions where the program's output is not None
    n: int
    per_label: Mapping[str, float] | None = None  # multilabel: agreement of each label alone


def per_label_agreement(
    network: Sequence[Sequence[Any]], predicted: Sequence[Sequence[Any]], readouts: Sequence[Sequence[int]],
    labels: Sequence[Any],
) -> dict[str, float]:
    """Multilabel outputs: for each label, the fraction of compared positions where the program and the
    network agree on whether it is on (set equality is all labels at once; this says which label fails)."""
    from mechsynth.models.target import label_set

    hits = dict.fromkeys(labels, 0)
    total = 0
    for net, prog, positions in zip(network, predicted, readouts):
        for i in positions:
            if prog[i] is None or net[i] is None:
                continue
            total += 1
            a, b = label_set(net[i]), label_set(prog[i])
            for label in labels:
                hits[label] += (label in a) == (label in b)
    return {str(label): (h / total if total else float("nan")) for label, h in hits.items()}


@dataclass(frozen=True)
class Comparison:
    """Per input: read positions, positions compared, positions where program and network agree."""

    read: tuple[int, ...]
    compared: tuple[int, ...]
    agree: tuple[int, ...]

    @property
    def agreement(self) -> float:
        """Fraction of compared positions that agree (NaN when nothing was compared)."""
        total = sum(self.compared)
        return sum(self.agree) / total if total else float("nan")


def compare_outputs(
    network: Sequence[Sequence[Any]],
    predicted: Sequence[Sequence[Any]],
    readouts: Sequence[Sequence[int]],
    kind: str,
    *,
    defined_by: Sequence[Sequence[Any]] | None = None,
) -> Comparison:
    """The one comparison of a program's outputs with the network's, input by input.

    ``readouts[j]`` are input j's read positions. A position is compared where the program's
    output is defined (not None) or, with ``defined_by``, where that other program's output
    is (then a None prediction there counts as a disagreement: the null draws of the p-value
    are measured on the real hypothesis' positions).
    """
    from mechsynth.models.target import outputs_equal

    reference = predicted if defined_by is None else defined_by
    read, compared, agree = [], [], []
    for net, prog, ref, positions in zip(network, predicted, reference, readouts):
        where = [i for i in positions if ref[i] is not None]
        read.append(len(positions))
        compared.append(len(where))
        agree.append(sum(prog[i] is not None and outputs_equal(net[i], prog[i], kind) for i in where))
    return Comparison(tuple(read), tuple(compared), tuple(agree))


def behaviour(
    target: Target, program: Any, inputs: Sequence[Sequence[Any]],
    network: Sequence[Sequence[Any]] | None = None,
) -> Behaviour:
    """Program output vs the network's decoded output at the readout positions (``network``: those
    outputs when already computed, e.g. decoded from a clean pass the caller ran anyway)."""
    from mechsynth.dsl import evaluate
    from mechsynth.dsl.errors import DSLError

    inputs = [list(x) for x in inputs]
    try:
        predicted = evaluate(program, inputs)
    except DSLError as e:
        raise CheckError(f"the program does not evaluate on the target's inputs: {e}") from None
    readouts = [target.read_positions(x) for x in inputs]
    network = network_outputs(target, inputs) if network is None else network
    c = compare_outputs(network, predicted, readouts, target.task.output_kind)
    per_input = [a / n if n else float("nan") for a, n in zip(c.agree, c.compared)]
    scored = [p for p in per_input if p == p]
    read_total = sum(c.read)
    per_label = None
    if target.task.output_kind == "multilabel":
        per_label = per_label_agreement(network, predicted, readouts, target.output_values)
    return Behaviour(
        positions=c.agreement,
        exact=sum(p == 1.0 for p in scored) / len(scored) if scored else float("nan"),
        per_input=tuple(per_input),
        defined=sum(c.compared) / read_total if read_total else float("nan"),
        n=len(inputs),
        per_label=per_label,
    )


_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> {inputs key: outputs}
_KEPT_PER_NETWORK = 4  # input sets remembered per network (a run reads one broader set)


def network_outputs(target: Target, inputs: Sequence[Sequence[Any]]) -> list[list]:
    """``target.predict(inputs)``, remembered per network for the same inputs and decoding (treat the
    result as read-only)."""
    key = (
        target.name, target.position_offset, target.padded, target.task.output_kind,
        tuple(target.output_values), tuple(tuple(x) for x in inputs),
    )
    try:
        hash(key)
    except TypeError:  # unhashable input values: nothing to remember them by
        return target.predict([list(x) for x in inputs])
    memo = _OUTPUTS.setdefault(target.model, {})
    if key not in memo:
        if len(memo) >= _KEPT_PER_NETWORK:
            memo.pop(next(iter(memo)))
        memo[key] = target.predict([list(x) for x in inputs])
    return memo[key]


def forget_network_outputs() -> None:
    """Empty the memo of `network_outputs` (to time a score that pays for them)."""
    _OUTPUTS.clear()


def broader_inputs(target: Target, n: int, seed: int) -> list[list]:
    """``n`` inputs per allowed length, plus ``n`` from the task's broader distribution if any."""
    task = target.task
    out: list[list] = []
    for length in range(task.min_len, task.max_len + 1):
        out += task.sample(n, seed + 1000 + length, length=length)
    if task.broader_generator is not None:
        out += task.broader_sample(n, seed + 999)
    return out
