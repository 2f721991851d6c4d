"""What the model-guided walk knows: its thresholds and every variable it has located.

A *located* variable is a variable of the pool (:class:`synth.propose.enumerate.Pool`) that a
component of the network writes: the embeddings write ``tokens`` and ``indices``, a head the
aggregates it computes, an MLP the maps it computes. :class:`GuidedState` holds them with
every head's and MLP's explanation, for the composition step, reports and notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence


from synth.propose.enumerate import Pool
from dsl.location import Location

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class MatchThresholds:
    """How well a DSL object must match a component to be taken as its explanation.

    ``selector``: attention agreement (1 - mean total-variation distance between the head's
    pattern over non-BOS keys and the selector's uniform pattern); ``decode``:
    nearest-class-mean accuracy of the variable from the activation; ``explain``: fraction of
    the activation's variance (R^2) explained by the variable's class means; ``conflict``:
    largest fraction of (key value, query value) pairs on which the head's binarised pattern
    disagrees with itself (0 for an exact match).
    """

    selector: float = 0.95
    decode: float = 0.99
    explain: float = 0.99
    conflict: float = 0.0
    available: float = 0.99
    whole_mlp: bool = False  # claim a matched MLP variable at the whole hook_mlp_out, not its dims

    @staticmethod
    def soft() -> MatchThresholds:
        """Thresholds for trained networks, whose attention and encodings are not exact."""
        # A trained MLP spreads a variable over every output direction (no exact dims to claim).
        return MatchThresholds(
            selector=0.6, decode=0.9, explain=0.8, conflict=0.05, available=0.9, whole_mlp=True
        )


@dataclass
class Located:
    """A pooled variable that a component writes."""

    name: str
    location: Location
    layer: float  # ordering key: layer L attention = L, layer L MLP = L + 0.5, embeddings = -1
    score: float = 1.0


@dataclass
class GuidedState:
    """Everything the layer walk found (exposed for reports, notebooks and tests)."""

    pool: Pool
    located: dict[str, Located] = field(default_factory=dict)
    heads: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    mlps: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def representatives(state: GuidedState, names: Sequence[str]) -> list[str]:
    """One variable per MLP location (the first, cheapest labelling) plus all others.

    Other labellings of a component's variable carry the same information; the heads and
    the output that read it choose its labels (relabelling on demand), so searching over
    every labelling would only multiply the work.
    """
    seen: set[Location] = set()
    out = []
    for n in names:
        loc = state.located.get(n)
        if loc is not None and loc.layer >= 0 and loc.location.component == "mlp":
            if loc.location in seen:
                continue
            seen.add(loc.location)
        out.append(n)
    return out


def layer_of(state: GuidedState, name: str) -> float:
    loc = state.located.get(name)
    return loc.layer if loc is not None else -1.0
