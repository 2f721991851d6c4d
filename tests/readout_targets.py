"""Targets that read only some positions, built on tests/tiny_targets.copy_target.

``copy_target`` outputs each position's token. ``first_token`` reads it at position 0
only, so ``FIRST`` (every position gets the token at position 0) is exactly what the
network outputs where the task reads, and wrong everywhere else.
"""

from __future__ import annotations

import dataclasses

from mechsynth import dsl
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.models.target import Target
from tiny_targets import EMBED, MLP0, copy_target

FIRST = dsl.parse("first = select(indices, indices, k == 0)\nout = aggregate(first, tokens)")
FIRST_AT_MLP0 = Hypothesis(FIRST, {"tokens": Location.parse(EMBED), "out": MLP0})


def first_position(x: list) -> list[int]:
    return [0]


def first_token(readout: object = first_position) -> Target:
    """copy_target without BOS, read at position 0 (or with ``readout``)."""
    t = copy_target()
    task = dataclasses.replace(t.task, bos=None, readout=readout)
    return dataclasses.replace(t, name=f"copy[{task.readout_name}]", task=task, input_ids={0: 0, 1: 1, 2: 2})


def zeros_readout(x: list) -> list[int]:
    """Positions holding token 0: a different number per input, none in some."""
    return [i for i, v in enumerate(x) if v == 0]
