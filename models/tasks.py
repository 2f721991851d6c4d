"""Algorithmic tasks for the trained zoo: what the input looks like and what the answer is.

Each task is a small pure-Python definition (a labeller and, where uniform sampling is
not the task, a generator) built by a factory from JSON-able parameters, so a checkpoint
can record exactly which task it was trained on (`{"kind": ..., "params": {...}}`) and be
rebuilt from that record alone.

Design choices that make the tasks learnable to >= 99% by 1-2 layer models and the
circuits explainable by RASP-shaped programs:
- sequence-to-sequence tasks (reverse, sort, hist) are *bidirectional* (encoder-style,
  like tracr's programs) with fixed length, every position read;
- prefix tasks (prefix_count, induction) and modular addition are *causal*;
- a BOS token gives attention a place to rest (count-like tasks read 1/(count+1) from it).

Every task may also define a broader distribution (skewed token frequencies, more
repeats), never trained on. An explanation should predict the network there too, including
its mistakes; checkpoints record the network's accuracy on it (`broader_accuracy`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from models.target import Task, TargetError

BOS = "BOS"
EQUALS = "="


# --- labellers (one raw input -> true output per position) ------------------------------------
def reverse_label(x: Sequence[Any]) -> list:
    return list(x)[::-1]


def sort_label(x: Sequence[Any]) -> list:
    return sorted(x)


def hist_label(x: Sequence[Any]) -> list:
    return [list(x).count(v) for v in x]


def prefix_count_label(x: Sequence[Any]) -> list:
    return [list(x[: i + 1]).count(v) for i, v in enumerate(x)]


def induction_label(x: Sequence[Any]) -> list:
    """At each position: the token that followed the most recent earlier occurrence of the
    current token (None if it has not occurred before)."""
    out: list = []
    for i, v in enumerate(x):
        prev = [j for j in range(i - 1) if x[j] == v]  # j + 1 < i: the follower is in the past
        out.append(x[prev[-1] + 1] if prev else None)
    return out


def _modadd_label(p: int) -> Callable[[Sequence[Any]], list]:
    def label(x: Sequence[Any]) -> list:
        return [None, None, (x[0] + x[1]) % p]

    return label


# --- generators -------------------------------------------------------------------------------
def _skewed(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Inputs over a random small subset of the vocabulary: many repeats, skewed counts."""

    def draw(rng: random.Random, length: int) -> list:
        few = rng.sample(list(vocab), k=rng.randint(1, min(3, len(vocab))))
        return [rng.choice(few) for _ in range(length)]

    return draw


def _induction_distinct(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Distinct tokens, then the last token repeats one earlier token (not the one just before)."""

    def draw(rng: random.Random, length: int) -> list:
        body = rng.sample(list(vocab), k=length - 1)
        j = rng.randrange(0, length - 2)
        return body + [body[j]]

    return draw


def _induction_repeats(vocab: Sequence[Any]) -> Callable[[random.Random, int], list]:
    """Broader: tokens may repeat anywhere; the last token occurred at least once before."""

    def draw(rng: random.Random, length: int) -> list:
        body = [rng.choice(list(vocab)) for _ in range(length - 1)]
        j = rng.randrange(0, length - 2)
        return body + [body[j]]

    return draw


def _modadd_draw(p: int) -> Callable[[random.Random, int], list]:
    def draw(rng: random.Random, length: int) -> list:
        return [rng.randrange(p), rng.randrange(p), EQUALS]

    return draw


# --- factories --------------------------------------------------------------------------------
def reverse(n_tokens: int = 10, length: int = 8) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("reverse", vocab, length, length, reverse_label, bos=None, output_vocab=vocab,
                broader_generator=_skewed(vocab), description=f"reverse {length} tokens")


def sort(n_tokens: int = 10, length: int = 6) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("sort", vocab, length, length, sort_label, bos=BOS, output_vocab=vocab,
                broader_generator=_skewed(vocab), description=f"sort {length} tokens (duplicates allowed)")


def hist(n_tokens: int = 6, length: int = 8) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("hist", vocab, length, length, hist_label, bos=BOS, output_vocab=tuple(range(1, length + 1)),
                broader_generator=_skewed(vocab), description="count of the current token in the input")


def prefix_count(n_tokens: int = 4, length: int = 10) -> Task:
    vocab = tuple(range(n_tokens))
    return Task("prefix_count", vocab, 1, length, prefix_count_label, bos=BOS,
                output_vocab=tuple(range(1, length + 1)), broader_generator=_skewed(vocab),
                description="occurrences of the current token so far (causal)")


def induction(n_tokens: int = 16, length: int = 12) -> Task:
    if length > n_tokens + 1:
        raise TargetError(f"induction: length {length} needs at least {length - 1} distinct tokens")
    vocab = tuple(range(n_tokens))
    return Task("induction", vocab, length, length, induction_label, bos=BOS, readout="last",
                output_vocab=vocab, generator=_induction_distinct(vocab),
                domain=lambda x: len(set(x[:-1])) == len(x) - 1 and x[-1] in x[:-2],
                broader_generator=_induction_repeats(vocab),
                description="token after the previous occurrence of the last token")


def modadd(p: int = 23) -> Task:
    vocab = (*range(p), EQUALS)
    return Task("modadd", vocab, 3, 3, _modadd_label(p), bos=None, readout="last",
                output_vocab=tuple(range(p)), generator=_modadd_draw(p),
                domain=lambda x: x[2] == EQUALS and x[0] != EQUALS and x[1] != EQUALS,
                description=f"(a + b) mod {p} from 'a b ='")


FACTORIES: dict[str, Callable[..., Task]] = {
    "reverse": reverse, "sort": sort, "hist": hist, "prefix_count": prefix_count,
    "induction": induction, "modadd": modadd,
}


def make_task(kind: str, params: dict[str, Any], name: str | None = None) -> Task:
    """Rebuild a task from its record (as stored in checkpoint metadata)."""
    if kind not in FACTORIES:
        raise TargetError(f"unknown task kind {kind!r} (known: {', '.join(FACTORIES)})")
    try:
        task = FACTORIES[kind](**params)
    except TypeError as e:
        raise TargetError(f"bad parameters for task {kind}: {e}") from None
    if name is not None:
        import dataclasses

        task = dataclasses.replace(task, name=name)
    return task
