"""Control configuration: which controls run, how many null draws they take, and their thresholds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any


from dsl.hypothesis import Hypothesis

if TYPE_CHECKING:
    from dsl import Program
    from models import Target
    from synth.control.edge_popup import EdgePopupConfig


ScoreFn = Callable[["Target", Hypothesis], Mapping[str, Any]]


LocalizeFn = Callable[["Target", "Program"], "Hypothesis | None"]


NetworkFactory = Callable[["Target", int], "Target"]


NecessityFn = Callable[["Target", Hypothesis, str], Mapping[str, Any]]  # (target, hypothesis, ablation)


class ControlError(ValueError):
    """A control cannot run on this hypothesis or target (one-line message)."""


@dataclass(frozen=True)
class Thresholds:
    """Every named threshold of the acceptance rule, with its default."""

    alpha: float = 0.01  # familywise error rate, after Holm over every hypothesis scored
    statistic: tuple[str, ...] = ("loss_recovered", "iia")  # compared statistic = min of these scores
    checks: Mapping[str, float] = field(
        default_factory=lambda: {"behaviour": 0.95, "loss_recovered": 0.8, "iia": 0.8}
    )  # minimum value of each named check score on the real network
    min_gap_random_networks: float = 0.3  # real statistic - best random/shuffled copy
    null_quantile: float = 0.95  # the null quantile the real statistic must clear ...
    min_gap_null: float = 0.1  # ... by this much (null correspondences, null programs), or by
    null_gap_share: float = 0.5  # ... this share of what the quantile leaves short of 1, if smaller
    min_necessity: float = 0.5  # share of full-resampling damage caused by ablating the claims
    min_node_cost: float = 0.02  # cost of dropping one located node (see Minimality)
    min_behaviour_broader: float = 0.95  # behaviour on the broader distribution
    min_network_accuracy: float = 0.9  # a broader-distribution part counts if the network handles it
    min_gap_edge_popup: float = 0.3  # real statistic - masked random network

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ControlError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.statistic:
            raise ControlError("the statistic needs at least one score name")
        if not 0 < self.null_quantile <= 1:
            raise ControlError(f"null_quantile must be in (0, 1], got {self.null_quantile}")
        if not 0 <= self.null_gap_share <= 1:
            raise ControlError(f"null_gap_share must be in [0, 1], got {self.null_gap_share}")
        object.__setattr__(self, "statistic", tuple(self.statistic))
        object.__setattr__(self, "checks", MappingProxyType(dict(self.checks)))

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return data | {"checks": dict(self.checks), "statistic": list(self.statistic)}


@dataclass(frozen=True)
class ControlConfig:
    """Which controls run and how many draws they take."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    network_seeds: tuple[int, ...] = (0, 1, 2)
    network_kinds: tuple[str, ...] = ("reinitialized", "shuffled")
    correspondence_draws: int = 50  # draws for the placement effect-size gate (null_correspondences)
    program_draws: int = 20  # first draws of the p-value's program null, for the null_programs gate
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
        if self.n_behaviour < 1:
            raise ControlError(f"n_behaviour must be >= 1, got {self.n_behaviour}")

    def to_json(self) -> dict[str, Any]:
        skip = ("thresholds", "edge_popup_config")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        data["network_seeds"], data["network_kinds"] = list(self.network_seeds), list(self.network_kinds)
        data["thresholds"] = self.thresholds.to_json()
        data["edge_popup_config"] = self.edge_popup_config.to_json() if self.edge_popup_config else None
        return data
