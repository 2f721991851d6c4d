"""What the model-guided walk knows: its thresholds and every variable it has located.

A *located* variable is a variable of the pool (:class:`synth.propose.enumerate.Pool`) that a
component of the network writes: the embeddings write ``tokens`` and ``indices``, a head the
aggregates it computes, an MLP the maps it computes. :class:`GuidedState` holds them with
every head's and MLP's explanation, for the composition step, reports and notebooks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

from mechsynth.synth.accept import Thresholds
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.dsl.location import Location, act_name


@dataclass(frozen=True)
class MatchThresholds:
    """How well a DSL object must match a component to be taken as its explanation.

    ``selector``: attention agreement (1 - mean total-variation distance between the head's
    pattern over non-BOS keys and the selector's uniform pattern); ``decode``:
    nearest-class-mean accuracy of the variable from the activation; ``explain``: fraction of
    the activation's variance (R^2) explained by the variable's class means; ``conflict``:
    largest fraction of (key value, query value) pairs on which the head's binarised pattern
    disagrees with itself (0 for an exact match); ``output``: fraction of read positions on
    which a variable equals the network's decoded output (:func:`synth.propose.enumerate.agreement`).
    A trained network errs on a few inputs, so its outputs are matched at the prefilter's bar
    (a proposal below it would be filtered anyway); the checks decide acceptance.
    """

    selector: float = 0.95
    decode: float = 0.99
    explain: float = 0.99
    conflict: float = 0.0
    available: float = 0.99
    output: float = 1.0
    whole_mlp: bool = False  # claim a matched MLP variable at the whole hook_mlp_out, not its dims

    @staticmethod
    def soft() -> MatchThresholds:
        """Thresholds for trained networks, whose attention and encodings are not exact."""
        # A trained MLP spreads a variable over every output direction (no exact dims to claim).
        return MatchThresholds(
            selector=0.6,
            decode=0.9,
            explain=0.8,
            conflict=0.05,
            available=0.9,
            output=Thresholds().prefilter_behaviour,
            whole_mlp=True,
        )


TABLE_SUPPORT = 8  # read positions per table entry a fitted lookup (an output or MLP function) needs at least


@dataclass
class Located:
    """A pooled variable that a component writes."""

    name: str
    location: Location
    layer: float  # ordering key: layer L attention = L, layer L MLP = L + 0.5, embeddings = -1
    score: float = 1.0


@dataclass(frozen=True)
class Exclusion:
    """An explanation the walk must not give again: a variable's values at one location.

    Feedback from the checks: a variable whose interchange at its claimed location fails was the
    wrong explanation of that component (or the wrong labelling), so the next walk takes the
    component's next-best one. Values are identified by their hash on the walk's batch
    (:meth:`synth.propose.enumerate.Pool.key`), which every walk over the same observations shares.
    """

    location: Location
    values: str


@dataclass
class GuidedState:
    """Everything the layer walk found (exposed for reports, notebooks and tests)."""

    pool: Pool
    located: dict[str, Located] = field(default_factory=dict)
    # one dimension of an MLP block kept whole, pooled with where it is written; located once a head reads it
    parts: dict[str, Located] = field(default_factory=dict)
    heads: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    layers: dict[int, dict[str, Any]] = field(default_factory=dict)  # heads explained together, per layer
    mlps: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_agreement: dict[str, float] = field(default_factory=dict)  # output variable -> agreement
    thresholds: MatchThresholds = field(default_factory=MatchThresholds)  # the bars the walk used
    excluded: frozenset[Exclusion] = frozenset()  # explanations the checks refuted (skipped)
    # program text -> its claimed variable -> the pooled variable it is (what :func:`compose` made)
    claims: dict[str, dict[str, str]] = field(default_factory=dict)

    def exclusion(self, location: Location, values: Any) -> Exclusion:
        return Exclusion(location, self.pool.key(values))

    def allows(self, location: Location, values: Any) -> bool:
        """Whether ``values`` may explain the component at ``location`` (not refuted by the checks)."""
        return not self.excluded or self.exclusion(location, values) not in self.excluded


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


class ComponentStatus(enum.StrEnum):
    """How far the walk explained one component of the network."""

    EXPLAINED = "explained"  # its output is a DSL variable the walk located
    SELECTOR_ONLY = "selector only"  # a head whose pattern matched a selector but whose output did not
    UNEXPLAINED = "unexplained"  # nothing the DSL offered met the match thresholds


@dataclass(frozen=True)
class ComponentExplanation:
    """One component's best explanation with its fit score, or why there is none.

    ``component`` names it as a person would (``head 1.0``, ``MLP 1``, ``output``);
    ``location`` is its hook name; ``explanation`` the DSL text of what it computes (or of
    the closest candidate when unexplained); ``score`` that candidate's fit (attention
    agreement for heads, R^2 for MLPs, agreement with the network's outputs for the output).
    """

    component: str
    location: str
    status: ComponentStatus
    explanation: str | None
    score: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "location": self.location,
            "status": str(self.status),
            "explanation": self.explanation,
            "score": self.score,
            "reason": self.reason,
        }


def explanation(state: GuidedState) -> tuple[ComponentExplanation, ...]:
    """What the walk explained, component by component (heads, MLPs, then the output).

    This is the run's partial hypothesis when no whole one is accepted: each component's
    best explanation and its score, and for an unexplained one the closest candidate.
    """
    pool = state.pool
    out: list[ComponentExplanation] = []

    def text(name: str) -> str:
        node = pool.items[name].node
        return f"{name} = {node}" if node is not None else name

    for (layer, head), info in sorted(state.heads.items()):
        where = str(Location(act_name("z", layer), head=head))
        label = f"head {layer}.{head}"
        agree = info.get("agreement", 0.0)
        if info.get("aggregates"):
            shown = "; ".join(text(n) for n in (info["selectors"][:1] + info["aggregates"][:1]))
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.EXPLAINED,
                    shown,
                    round(agree, 3),
                    f"attention agreement {agree:.3f}; its output decodes the aggregate",
                )
            )
        elif info.get("split") is not None:
            split = info["split"]
            shown = "; ".join(text(n) for n in (*split.selectors, *split.operands))
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.EXPLAINED,
                    shown,
                    round(split.mass, 3),
                    f"attention split over two keys ({split.mass:.3f} of it on both); its output is their "
                    f"weighted mixture (R^2 {split.r2:.3f}, pair decoded on {split.decode:.3f} of the "
                    f"{split.rows} rows): the pair is offered to the MLP",
                )
            )
        elif info.get("selectors"):
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.SELECTOR_ONLY,
                    text(info["selectors"][0]),
                    round(agree, 3),
                    f"attention agreement {agree:.3f}, but no aggregate of an available variable "
                    "decodes its output (offered to the MLP as a count)",
                )
            )
        else:
            best = info.get("best_selector")
            score = info.get("best_agreement")
            reason = (
                f"best selector agrees {score:.3f} with its attention (bar {state.thresholds.selector:g})"
                if best is not None and score is not None
                else "no (key, query) variable pair determines its attention pattern"
            )
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.UNEXPLAINED,
                    best,
                    None if score is None else round(score, 3),
                    reason,
                )
            )
    for layer, info in sorted(state.layers.items()):
        agree, single = info.get("agreement", 0.0), info.get("single_agreement", 0.0)
        shown = "; ".join(text(n) for n in (info["selectors"][:1] + info["aggregates"][:1]))
        out.append(
            ComponentExplanation(
                f"heads {layer}.* together",
                act_name("z", layer),
                ComponentStatus.EXPLAINED,
                shown,
                round(agree, 3),
                f"the layer's mean attention agrees {agree:.3f} (best single head {single:.3f}); its heads' "
                "outputs together decode the aggregate",
            )
        )
    for layer, info in sorted(state.mlps.items()):
        where = act_name("mlp_out", layer)
        label = f"MLP {layer}"
        names = [n for block in info.get("blocks", []) for n in block["variables"][:1]]
        unexplained = info.get("unexplained_dims", [])
        best, best_r2 = info.get("best_candidate"), info.get("best_r2")
        lookups = [block for block in info.get("blocks", []) if "lookup" in block]
        if names and not unexplained and lookups:
            fit = lookups[0]
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.EXPLAINED,
                    "; ".join(text(n) for n in names),
                    fit["r2"],
                    f"a lookup fitted to the network's outputs at the read positions (agreement "
                    f"{fit['agreement']:.3f}); the MLP's output there decodes it ({fit['decode']:.3f}) and "
                    f"its class means explain R^2 {fit['r2']:.3f}",
                )
            )
        elif names and not unexplained:
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.EXPLAINED,
                    "; ".join(text(n) for n in names),
                    None,
                    f"{info.get('active', 0)} active dims covered",
                )
            )
        else:
            closest = (
                ""
                if best is None
                else f"; best candidate {best} R^2 {best_r2:.2f} (bar {state.thresholds.explain:g})"
            )
            out.append(
                ComponentExplanation(
                    label,
                    where,
                    ComponentStatus.UNEXPLAINED,
                    "; ".join(text(n) for n in names) or best,
                    None if best_r2 is None else round(best_r2, 3),
                    f"{len(unexplained)} of {info.get('active', 0)} active dims unexplained{closest}"
                    + ("; deadline before every candidate was tried" if info.get("deadline") else ""),
                )
            )
    if state.outputs:
        name = state.outputs[0]
        agree = state.output_agreement.get(name, 1.0)
        out.append(
            ComponentExplanation(
                "output",
                "unembed",
                ComponentStatus.EXPLAINED,
                text(name),
                round(agree, 3),
                f"agrees with the network's outputs on {agree:.3f} of read positions",
            )
        )
    else:
        note = next(
            (n.removeprefix("output: ") for n in state.notes if n.startswith("output:")),
            "no located variable was tried",
        )
        out.append(ComponentExplanation("output", "unembed", ComponentStatus.UNEXPLAINED, None, None, note))
    return tuple(out)
