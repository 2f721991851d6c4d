"""Controls inside the full network: is the claimed mechanism needed, minimal, and general?

``Necessity`` resample-ablates the claimed locations inside the full network (the behaviour
must break), ``Minimality`` drops each located variable in turn (each must cost score), and
``BroaderDistribution`` compares the program with the network on every length and the
task's broader distribution, where the network itself still works.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES

from mechsynth.synth.control.context import ControlContext
from mechsynth.synth.control.numbers import number
from mechsynth.synth.control.results import ControlResult

if TYPE_CHECKING:
    pass


class Necessity:
    """Resample-ablating the claimed internal locations in the full network must break it."""

    name = "necessity"

    def run(self, ctx: ControlContext) -> ControlResult:
        if not ctx.located:
            return ControlResult(self.name, False, "the hypothesis claims no internal location", {})
        # Primitive inputs are excluded: ablating the embeddings breaks any network and says
        # nothing about the claimed mechanism.
        internal = ctx.hypothesis.with_correspondence(
            {v: ctx.hypothesis.correspondence[v] for v in ctx.located}
        )
        ablation = ctx.ablation_for(ctx.located)
        scores = ctx.stage._necessity(ctx.target, internal, ablation)
        fraction = number(scores.get("necessity_loss_fraction"))
        numbers = {
            "necessity_loss_fraction": fraction,
            "ablation": ablation,
            "ablated": [str(ctx.hypothesis.correspondence[v]) for v in ctx.located],
        }
        if "error" in scores:
            numbers["error"] = scores["error"]
        if not math.isfinite(fraction):
            why = scores.get("error") or "resampling the input changes nothing"
            return ControlResult(self.name, False, f"necessity undefined ({why})", numbers)
        ok = fraction >= ctx.thresholds.min_necessity
        return ControlResult(
            self.name,
            ok,
            f"{ablation}-ablating the claimed locations does {fraction:.0%} of the damage of "
            f"{ablation}-ablating the input (need >= {ctx.thresholds.min_necessity:.0%})",
            numbers,
        )


class Minimality:
    """Every located node must matter; dead program variables are superfluous by construction.

    A node's cost is measured two ways, both reported: ``ablation_cost``, the share of
    the full-resampling damage done by resampling its location alone, unconditionally,
    inside the otherwise clean network (does the network need what sits there?) — zero
    ablation for a variable resampling cannot change (see ``ControlContext.testable``); and
    ``unclaimed_cost``, the drop of the statistic when the variable is removed from the
    correspondence (does claiming it explain anything the rest does not?). The second
    alone would flag every link of a chain: the checks treat an unclaimed location on a
    claimed path as part of that path. A node is superfluous when *both* costs are below
    ``min_node_cost``.
    """

    name = "minimality"

    def run(self, ctx: ControlContext) -> ControlResult:
        import networkx as nx

        program = ctx.hypothesis.program
        live = nx.ancestors(program.graph(), program.output) | {program.output}
        dead = [v for v in program.variables if v not in live and v not in PRIMITIVES]
        corr = ctx.hypothesis.correspondence
        ablation: dict[str, float] = {}
        unclaimed: dict[str, float] = {}
        kinds: dict[str, str] = {}
        for v in ctx.located:
            kinds[v] = ctx.ablation_for([v])
            alone = ctx.stage._necessity(
                ctx.target, ctx.hypothesis.with_correspondence({v: corr[v]}), kinds[v]
            )
            ablation[v] = number(alone.get("necessity_loss_fraction"))
            reduced = ctx.hypothesis.with_correspondence({k: loc for k, loc in corr.items() if k != v})
            unclaimed[v] = ctx.real - ctx.statistic_of(ctx.target, reduced)
        floor = ctx.thresholds.min_node_cost
        superfluous = [v for v in ctx.located if not (ablation[v] >= floor or unclaimed[v] >= floor)]
        numbers = {
            "real": ctx.real,
            "ablation_cost": ablation,
            "ablation": kinds,
            "unclaimed_cost": unclaimed,
            "superfluous": superfluous,
            "dead_variables": dead,
        }
        if not ctx.located and not dead:
            return ControlResult(self.name, None, "no located node to drop", numbers)
        bad = superfluous + dead
        if bad:
            return ControlResult(
                self.name,
                False,
                f"superfluous: {', '.join(bad)} (resampling it costs < {floor} of the damage and of the "
                "statistic, or the output does not depend on it)",
                numbers,
            )
        return ControlResult(self.name, True, f"every located node costs >= {floor} when dropped", numbers)


class BroaderDistribution:
    """Behaviour on every length and the task's broader distribution the network still handles."""

    name = "broader_distribution"

    def run(self, ctx: ControlContext) -> ControlResult:
        from mechsynth.synth.check.behaviour import behaviour

        target, task, n = ctx.target, ctx.target.task, ctx.config.n_broader
        seed = ctx.config.seed + 4242
        parts: dict[str, list[list]] = {
            f"length={length}": task.sample(n, seed + length, length=length)
            for length in range(task.min_len, task.max_len + 1)
        }
        if task.broader_generator is not None:
            parts["broader"] = task.broader_sample(n, seed)
        numbers: dict[str, Any] = {"parts": {}}
        handled: list[list] = []
        for name, inputs in parts.items():
            acc = target.accuracy(inputs)
            handles = not (acc < ctx.thresholds.min_network_accuracy)  # NaN (no labels): use it
            numbers["parts"][name] = {"network_accuracy": acc, "used": handles}
            if handles:
                handled += inputs
        if not handled:
            return ControlResult(
                self.name, None, "the network handles no part of the broader distribution", numbers
            )
        beh = behaviour(target, ctx.hypothesis.program, handled)
        numbers.update(behaviour=beh.positions, behaviour_exact=beh.exact, n_inputs=beh.n)
        ok = beh.positions >= ctx.thresholds.min_behaviour_broader
        used = [k for k, v in numbers["parts"].items() if v["used"]]
        return ControlResult(
            self.name,
            ok,
            f"behaviour {beh.positions:.3f} on {beh.n} inputs ({', '.join(used)}; need "
            f">= {ctx.thresholds.min_behaviour_broader})",
            numbers,
        )
