"""Recovery: did a hypothesis recover a known ground truth (tracr targets)?

A hypothesis *recovers* the ground truth when

1. **the program is equivalent**: its output equals the ground-truth program's output on
   every input up to the maximum length (``dsl.equivalent``: z3 or exhaustive). When the
   task restricts its inputs to a domain (``sort_unique`` is defined on distinct tokens
   only), "every input" means every input of the domain, enumerated exhaustively; and
2. **the mechanism is located**: every ground-truth variable written by an attention head
   or an MLP has an equivalent variable in the hypothesis mapped to that same component
   (same hook, same head; residual dimensions are not compared, since a hypothesis may
   name a sub-block or no dims at all).

"Equivalent variable" is checked on every input of the domain. Two strengths are
reported: ``exact`` (the same value at every position of every input) and
``relabelled`` (a bijection between their values makes them equal: the two variables
carry the same information under different names — a network's one-hot encoding fixes
a variable's partition of inputs, not the names of its values). Recovery uses the
relabelled notion; the exact count is reported next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location

if TYPE_CHECKING:
    from mechsynth.models import Target


@dataclass(frozen=True)
class VariableMatch:
    """How one ground-truth variable was matched (``match`` None: not matched)."""

    variable: str
    component: str  # location text of the ground-truth variable
    match: str | None
    exact: bool


@dataclass(frozen=True)
class Recovery:
    """The recovery verdict for one hypothesis against one ground truth."""

    program_equivalent: bool
    counterexample: Sequence[Any] | None
    variables: tuple[VariableMatch, ...] = field(default_factory=tuple)

    @property
    def matched(self) -> int:
        return sum(1 for v in self.variables if v.match is not None)

    @property
    def matched_exact(self) -> int:
        return sum(1 for v in self.variables if v.match is not None and v.exact)

    @property
    def recovered(self) -> bool:
        return self.program_equivalent and all(v.match is not None for v in self.variables)

    def to_json(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
            "program_equivalent": self.program_equivalent,
            "counterexample": list(self.counterexample) if self.counterexample is not None else None,
            "variables_matched": self.matched,
            "variables_matched_exact": self.matched_exact,
            "variables_total": len(self.variables),
            "variables": [
                {"variable": v.variable, "component": v.component, "match": v.match, "exact": v.exact}
                for v in self.variables
            ],
        }

    def summary(self) -> str:
        head = "recovered" if self.recovered else "not recovered"
        prog = (
            "program equivalent" if self.program_equivalent else f"program differs on {self.counterexample}"
        )
        return (
            f"{head}: {prog}; {self.matched}/{len(self.variables)} components matched "
            f"({self.matched_exact} exactly)"
        )


def _component(loc: Location) -> tuple[str, int | None]:
    return (loc.hook, loc.head)


def _domain_inputs(target: Target) -> list[list[Any]]:
    return [list(x) for x in target.task.enumerate()]


def compare(hypothesis: Hypothesis, ground_truth: Hypothesis, target: Target) -> Recovery:
    """The recovery verdict (see the module docstring)."""
    from mechsynth.dsl.interpret import encode, run

    task = target.task
    inputs = _domain_inputs(target)
    counterexample: Sequence[Any] | None = None
    if task.domain is None:
        from mechsynth.dsl.equivalence import equivalent

        counterexample = equivalent(hypothesis.program, ground_truth.program, task.vocab, task.max_len)
    symbols = list(hypothesis.program.literals()) + list(ground_truth.program.literals())
    batch = encode(inputs, symbols=symbols)
    hv = run(hypothesis.program, batch)
    gv = run(ground_truth.program, batch)
    mask = batch.mask
    if task.domain is not None:
        a, b = hv[hypothesis.program.output][mask], gv[ground_truth.program.output][mask]
        diff = ~_same(a, b)
        if bool(diff.any()):
            rows = mask.nonzero()[diff.nonzero()[0, 0]]
            counterexample = inputs[int(rows[0])]
    by_component: dict[tuple[str, int | None], list[str]] = {}
    for var, loc in hypothesis.correspondence.items():
        by_component.setdefault(_component(loc), []).append(var)
    matches = []
    for var, loc in ground_truth.correspondence.items():
        if loc.component not in ("attn", "mlp"):
            continue
        want = gv[var][mask]
        best: tuple[str, bool] | None = None
        for cand in by_component.get(_component(loc), []):
            got = hv[cand][mask]
            if bool(_same(got, want).all()):
                best = (cand, True)
                break
            if best is None and _bijective(got, want):
                best = (cand, False)
        matches.append(VariableMatch(var, str(loc), best[0] if best else None, bool(best and best[1])))
    return Recovery(counterexample is None, counterexample, tuple(matches))


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    both_none = torch.isnan(a) & torch.isnan(b)
    return both_none | (torch.abs(a - b) <= atol)


def _codes(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(torch.round(x * 1e6), nan=-7.0e15)


def _bijective(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a bijection between the values of ``a`` and ``b`` maps one onto the other."""
    _, ia = torch.unique(_codes(a), return_inverse=True)
    _, ib = torch.unique(_codes(b), return_inverse=True)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    if na != nb:
        return False
    return int(torch.unique(ia * nb + ib).numel()) == na
