"""Propose: the pluggable interface between the synthesis loop and its proposers.

A *proposer* turns what the loop knows so far (the target, the observations of its
activations, the best candidates scored so far with their failures) into candidate
hypotheses. The loop does not care where a candidate came from: every proposal goes
through the same localize -> check -> control -> accept path and is stored with the
name of the proposer that produced it, so the run can say which part of the engine
found what.

Proposers are plain objects with a ``name`` and a ``propose(context)`` generator.
A proposal may be *rejected before scoring* (malformed LLM text, an ill-typed
program): it is still yielded, with ``error`` set, so the loop counts and stores it
with its reason instead of silently dropping it.

**The budget.** A run has one deadline, a ``time.monotonic()`` value the loop computes once
from ``--budget-seconds`` and hands to every proposer as ``context.deadline``. Every proposer
and every long loop inside one asks :func:`expired` before each unit of work (a layer, a head,
a chunk of candidate selectors, a DAS fit) and stops there, keeping what it has: the run stops
starting new work at the deadline and abandons the unit in flight within seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Iterator, Mapping, Sequence

if TYPE_CHECKING:
    from mechsynth.models import Target
    from mechsynth.dsl.hypothesis import Hypothesis


@dataclass(frozen=True)
class Proposal:
    """One candidate from one proposer.

    ``hypothesis`` is set for a well-formed candidate; its correspondence may be empty
    (the localize stage fills it in) or partial. ``text`` is the raw text the candidate
    came from (an LLM reply fragment), kept for the run store. ``error`` is the reason
    a malformed candidate was rejected before scoring.
    """

    source: str
    hypothesis: Hypothesis | None = None
    text: str = ""
    error: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredCandidate:
    """What the loop tells proposers about a candidate it has already scored."""

    hypothesis: Hypothesis
    source: str
    scores: Mapping[str, float]
    accepted: bool = False
    failure: str | None = None
    counterexamples: Sequence[Any] = ()


@dataclass
class ProposalContext:
    """Everything a proposer may look at. ``observations`` is the observe stage's result."""

    target: Target
    observations: Any
    best: Sequence[ScoredCandidate] = ()
    deadline: float | None = None  # time.monotonic() value after which proposers should stop
    seed: int = 0
    round: int = 0


class Proposer(Protocol):
    """Yields proposals. A proposer with a cost to account for (the LLM's calls and tokens) may
    also define ``usage() -> dict``: JSON-safe numbers the loop stores with the run after each
    round, shown by the report and ``mechsynth show``. One that knows when it has nothing left
    to offer defines ``has_more(context) -> bool`` (see :func:`has_more`)."""

    name: str

    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        """Yield proposals; stop early when ``context.deadline`` has passed."""
        ...


def now() -> float:
    """The clock every deadline of a run is a value of (tests replace it to expire a deadline)."""
    return time.monotonic()


def expired(deadline: float | None) -> bool:
    """Whether the run's ``deadline`` (None: no deadline) has passed: no new work after it."""
    return deadline is not None and now() > deadline


def has_more(proposer: Any, context: ProposalContext) -> bool:
    """Whether ``proposer`` may offer something new in the round ``context`` describes.

    The loop runs rounds until no proposer has more (or the budget, or acceptance): a round in
    which nothing was offered is no reason to stop while a proposer still has looser bars to
    walk with or feedback to act on. An ``exhaustive`` proposer says everything in round 0;
    one without ``has_more`` is asked every round.
    """
    ask = getattr(proposer, "has_more", None)
    if ask is not None:
        return bool(ask(context))
    return context.round == 0 or not getattr(proposer, "exhaustive", False)
