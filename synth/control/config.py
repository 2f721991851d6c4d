"""Control configuration: which controls run and how many null draws they take.

The thresholds they must clear are the acceptance rule's (:class:`synth.accept.Thresholds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import ControlError, Thresholds

if TYPE_CHECKING:
    from mechsynth.dsl import Program
    from mechsynth.models import Target
    from mechsynth.synth.control.edge_popup import EdgePopupConfig


ScoreFn = Callable[["Target", Hypothesis], Mapping[str, Any]]


LocalizeFn = Callable[["Target", "Program"], "Hypothesis | None"]


NetworkFactory = Callable[["Target", int], "Target"]


NecessityFn = Callable[["Target", Hypothesis, str], Mapping[str, Any]]  # (target, hypothesis, ablation)


@dataclass(frozen=True)
class ControlConfig:
    """Which controls run and how many draws they take."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    network_seeds: tuple[int, ...] = (0, 1, 2)
    network_kinds: tuple[str, ...] = ("reinitialized", "shuffled")
    correspondence_draws: int = 50  # draws for the placement effect-size gate (null_correspondences)
    program_draws: int = 20  # first draws of the p-value's program null, for the null_programs gate
    # Draws in a row per program-null index before giving up on finding one that does not
    # compute the candidate's function (ControlContext.null_program_draw; None counts against it).
    max_redraws: int = 100
    min_null_draws: int = 99  # never fewer p-value draws than this, however few hypotheses
    max_null_draws: int = 20_000  # cap on p-value draws; above it a test is reported underpowered
    n_broader: int = 64  # inputs per length (and from the broader distribution)
    n_behaviour: int = 32  # inputs per length on which the p-value's behaviour is computed (cached)
    edge_popup: bool = False
    edge_popup_config: EdgePopupConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_null_draws < self.min_null_draws:
            raise ControlError("max_null_draws must be >= min_null_draws")
        if self.max_redraws < 1:
            raise ControlError(f"max_redraws must be >= 1, got {self.max_redraws}")
        if self.n_behaviour < 1:
            raise ControlError(f"n_behaviour must be >= 1, got {self.n_behaviour}")

    def to_json(self) -> dict[str, Any]:
        skip = ("thresholds", "edge_popup_config")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        data["network_seeds"], data["network_kinds"] = list(self.network_seeds), list(self.network_kinds)
        data["thresholds"] = self.thresholds.to_json()
        data["edge_popup_config"] = self.edge_popup_config.to_json() if self.edge_popup_config else None
        return data
