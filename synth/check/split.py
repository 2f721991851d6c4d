"""The train / held-out split of inputs for anything fitted to the network (a DAS subspace).

A learned subspace is fitted by gradient descent to make interchange interventions come
out as the program says; scored on the inputs it was fitted on, it would report how well
it memorised them. So every input belongs to exactly one side of a fixed split, decided by
the input alone (a CRC of its text), independent of any seed or sample size: fitting draws
only TRAIN inputs, and `synth.check.scoring.score` scores a hypothesis that holds a learned
subspace only on HELD-OUT inputs. Small input spaces (every input of a length enumerated)
are split the same way, so the two sides never share an input.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

TRAIN_SHARE = 2  # one input in TRAIN_SHARE is a training input


def in_train_split(x: Sequence[Any]) -> bool:
    """Whether input ``x`` (framed, as the task samples it) is on the training side."""
    return zlib.crc32(repr(tuple(x)).encode()) % TRAIN_SHARE == 0


def draw(sample: Any, n: int, seed: int, train: bool, max_rounds: int = 8) -> list[list]:
    """Up to ``n`` inputs of one side, from ``sample(m, seed)`` (a task's sampler) with m growing."""
    out: list[list] = []
    m = 2 * n
    for r in range(max_rounds):
        out = [list(x) for x in sample(m, seed + r * 1_000_003) if in_train_split(x) == train]
        if len(out) >= n:
            return out[:n]
        m *= 2
    return out
