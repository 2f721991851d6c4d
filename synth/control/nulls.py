"""Controls against matched nulls: the same checks where no mechanism should be found.

``RandomNetworks`` scores the hypothesis on re-initialised and weight-shuffled copies,
``NullCorrespondences`` on random placements of the same program, ``NullPrograms`` on random
programs of the same shape, and ``EdgePopup`` on a masked random network trained to mimic
the target. Each is an effect-size gate: the real statistic must beat the null by a named
margin (:func:`required_gap` for the quantile gates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.control.statistics import (
    empirical_p_value,
)

from mechsynth.synth.accept import Thresholds
from mechsynth.synth.control.context import ControlContext
from mechsynth.synth.control.numbers import mean, nanmax, quantile
from mechsynth.synth.control.results import ControlResult

if TYPE_CHECKING:
    pass


class RandomNetworks:
    """Same localisation and checks on re-initialised and weight-shuffled copies.

    Both sides are compared on :meth:`ControlContext.network_statistic` (the gates' statistic,
    capped by the IIA on informative pairs), so a copy whose output hardly depends on its input
    cannot match the hypothesis by predicting "no change" where the program predicts none.
    """

    name = "random_networks"

    def run(self, ctx: ControlContext) -> ControlResult:
        per_copy: dict[str, Any] = {}
        stats = []
        real = ctx.network_real
        for kind in ctx.config.network_kinds:
            for seed in ctx.config.network_seeds:
                copy = ctx.network(kind, seed)
                claimed = ctx.network_statistic_of(copy, ctx.hypothesis)
                relocalised = ctx.network_statistic_of(copy, ctx.localize(copy, ctx.hypothesis.program))
                best = nanmax([claimed, relocalised])
                per_copy[f"{kind}[{seed}]"] = {
                    "as_claimed": claimed,
                    "relocalised": relocalised,
                    "best": best,
                }
                stats.append(best)
        defined = [s for s in stats if math.isfinite(s)]
        numbers: dict[str, Any] = {
            "real": real,
            "copies": per_copy,
            "n_undefined": len(stats) - len(defined),
        }
        if not stats:
            return ControlResult(self.name, None, "no network kinds or seeds configured", numbers)
        if not defined:
            # No copy gives the statistic a value: the checks find nothing to explain there.
            numbers.update(best_control=None, gap=None)
            return ControlResult(self.name, True, "no copy has a defined score (nothing to explain)", numbers)
        best = max(defined)
        gap = real - best
        numbers.update(best_control=best, gap=gap)
        ok = gap >= ctx.thresholds.min_gap_random_networks
        return ControlResult(
            self.name,
            ok,
            f"real {real:.3f} vs best copy {best:.3f} (gap {gap:.3f}, need "
            f">= {ctx.thresholds.min_gap_random_networks})",
            numbers,
        )


class NullCorrespondences:
    """Effect-size gate: the real placement must beat other placements of the same program.

    Draws place the testable claims at random layer-ordered locations of the same kind.
    A draw identical to the real correspondence is not another placement and is left
    out (counted in ``n_same_as_real``); with no distinct placement left the gate tested
    nothing and says so: it is "not applicable" (``passed`` None), never a pass. This is
    not the p-value: on a small model there are only a
    handful of placements, too few for a p-value near ``alpha / n_tested``.
    """

    name = "null_correspondences"

    def run(self, ctx: ControlContext) -> ControlResult:
        if not ctx.located:
            why = "the hypothesis locates no internal variable"
            return ControlResult(self.name, None, why, {"real": ctx.real})
        if not ctx.testable:
            why = "no located variable can be changed by resampling (the checks cannot see its placement)"
            return ControlResult(self.name, None, why, {"real": ctx.real})
        n = ctx.config.correspondence_draws
        draws = [ctx.null_correspondence(i, testable_only=True) for i in range(n)]
        placed = [d for d in draws if d is not None]  # None: no layer-ordered placement turned up
        others = distinct_placements(ctx.hypothesis, placed)
        stats = [ctx.statistic_of(ctx.target, h) for h in others]
        numbers = {
            "real": ctx.real,
            "n_draws": len(placed),
            "n_same_as_real": len(placed) - len(others),
            "n_distinct": len(set(others)),
            "n_none": len(draws) - len(placed),
            "n_undefined": sum(math.isnan(s) for s in stats),
            "draws": stats,
        }
        return _gate(self.name, ctx, ctx.real, stats, numbers, "other placements",
                     "not applicable: no placement other than the claimed one exists, so nothing was tested")


class NullPrograms:
    """Effect-size gate on the first ``program_draws`` draws of the p-value's program null.

    Each draw's value is the p-value's statistic where the full checks ran, and the cheap
    behaviour bound (never below the statistic) where they were skipped. They are skipped
    only where the bound is already below the gate's cutoff (real - ``min_gap_null``): a draw
    that agrees with the network's output often enough to matter is checked in full. A mostly
    constant output (tracr's detect_pattern: random programs agree on ~90% of positions) would
    otherwise put the quantile at the agreement, not at what those programs explain. The
    quantile can only be overestimated, so the gate can only err towards rejecting.
    """

    name = "null_programs"

    def run(self, ctx: ControlContext) -> ControlResult:
        real = ctx.significance_real()
        cutoff = real - ctx.thresholds.min_gap_null
        values, checked = [], 0
        for i in range(ctx.config.program_draws):
            value, full = ctx.significance_of_draw(i, real, cutoff)
            values.append(value)
            checked += full
        numbers = {
            "real": real,
            "n_draws": len(values),
            "n_checked": checked,
            "n_redrawn_as_real": ctx.n_redrawn,
            "n_undefined": sum(math.isnan(s) for s in values),
            "draws": values,
        }
        return _gate(self.name, ctx, real, values, numbers, "random programs",
                     "no program draws configured")


def distinct_placements(real: Hypothesis, draws: Sequence[Hypothesis]) -> list[Hypothesis]:
    """The draws whose correspondence differs from the real one (duplicates among them kept)."""
    return [d for d in draws if d.correspondence != real.correspondence]


def _gate(
    name: str,
    ctx: ControlContext,
    real: float,
    stats: Sequence[float],
    numbers: dict[str, Any],
    what: str,
    vacuous: str,
) -> ControlResult:
    """Real statistic vs the ``null_quantile`` quantile of ``stats``; not applicable (None) on no draws."""
    th = ctx.thresholds
    # Effect sizes are compared among draws with a defined statistic (undefined ones are
    # counted in the numbers; the p-value, by contrast, counts them against the hypothesis).
    defined = [x for x in stats if not math.isnan(x)]
    q = quantile(defined, th.null_quantile)
    gap = real - q if defined else math.nan
    numbers.update(
        mean=mean(stats), max=nanmax(stats) if stats else None, quantile=q, gap=gap,
        p_value=empirical_p_value(real, stats),
    )
    if not stats:  # a gate that compared against nothing neither passes nor fails
        return ControlResult(name, None, vacuous, numbers)
    if not defined:
        return ControlResult(name, False, f"no draw of the {what} has a defined score", numbers)
    need = required_gap(q, th)
    numbers.update(required_gap=need)
    ok = gap > 0 and gap >= need
    return ControlResult(
        name,
        ok,
        f"real {real:.3f} vs {th.null_quantile:.0%} quantile of {len(defined)} {what} {q:.3f} "
        f"(gap {gap:.3f}, need > 0 and >= {need:.3g})",
        numbers,
    )


def required_gap(quantile: float, th: Thresholds) -> float:
    """The effect size a null gate asks for: ``min_gap_null``, or ``null_gap_share`` of what
    the null quantile leaves short of a perfect score, whichever is smaller.

    Where the network's output is mostly one value, random programs of the hypothesis' shape
    agree with it most of the time and score close to 1 (tracr's detect_pattern: 0.91): no
    hypothesis, however exact, could then clear an absolute gap of 0.1, and the gate would
    measure the ceiling, not the hypothesis. The share keeps the demand proportional (explain
    at least half of what the null leaves unexplained). The p-value is unaffected, and a tie
    with the quantile never passes.
    """
    return min(th.min_gap_null, th.null_gap_share * max(0.0, 1.0 - quantile))


class EdgePopup:
    """The hypothesis must not explain a masked random network (edge-popup) as well as the target."""

    name = "edge_popup"

    def run(self, ctx: ControlContext) -> ControlResult:
        from mechsynth.synth.control.edge_popup import EdgePopupConfig, fit_edge_popup

        cfg = ctx.config.edge_popup_config or EdgePopupConfig(seed=ctx.config.seed)
        fitted = ctx.stage._edge_popup(ctx.target, cfg, fit_edge_popup)
        masked = fitted.target
        claimed = ctx.network_statistic_of(masked, ctx.hypothesis)
        relocalised = ctx.network_statistic_of(masked, ctx.localize(masked, ctx.hypothesis.program))
        best = nanmax([claimed, relocalised])
        real = ctx.network_real
        numbers = {**fitted.to_json(), "real": real, "as_claimed": claimed, "relocalised": relocalised}
        if not math.isfinite(best):
            numbers["gap"] = None
            return ControlResult(self.name, True, "the masked network gives the statistic no value", numbers)
        gap = real - best
        numbers["gap"] = gap
        ok = gap >= ctx.thresholds.min_gap_edge_popup
        return ControlResult(
            self.name,
            ok,
            f"masked random network mimics the target on {fitted.agreement:.0%} of outputs; "
            f"real {real:.3f} vs masked {best:.3f} "
            f"(gap {gap:.3f}, need >= {ctx.thresholds.min_gap_edge_popup})",
            numbers,
        )
