"""Statistics: empirical p-values against null draws, and Holm–Bonferroni over a whole run.

A control produces *null draws*: the score statistic of hypotheses that should not
explain the network (for the p-value: random programs of the same shape, see
:mod:`synth.control.stage`). A hypothesis is evidence only if its own statistic is rarely reached
by its nulls. Two pieces turn that into an acceptance rule that survives p-hacking.

**Empirical (Monte Carlo) p-value.** With ``N`` null draws of which ``k`` score at
least as well as the real hypothesis, ``p = (1 + k) / (1 + N)``. Under the null
hypothesis "the real score is exchangeable with the null draws" this is an exact,
valid p-value (Davison & Hinkley 1997, eq. 4.11): ``P(p <= t) <= t``. Ties count
against the hypothesis, and a null draw whose statistic is undefined (NaN) counts
as an exceedance, so every approximation is conservative.

**Holm–Bonferroni over every hypothesis scored in the run.** The search tries ``m``
hypotheses and keeps the best; the best of ``m`` frivolous hypotheses looks like a
``1/m`` event. Holm's step-down procedure controls the familywise error rate at
``alpha`` under any dependence between the p-values. Hypotheses that were scored but
never sent to the controls enter with ``p = 1`` (this can only make the procedure
more conservative), so the correction is over *all* ``m`` and not only over the
hypotheses that looked good.

**Why the number of null draws is sized from m and alpha.** An empirical p-value
can never be smaller than ``1 / (1 + N)``. After Holm, the best hypothesis is
accepted only when ``m * p < alpha``, so ``N`` must exceed ``m / alpha - 1`` or
*nothing* can ever be accepted, however good it is. ``required_null_draws(m, alpha)``
returns that minimum (``floor(m / alpha)``: 100 draws per hypothesis scored, at
alpha = 0.01). We chose this exact route over the alternatives because those are
not sound: a parametric tail fit (normal or generalised Pareto, Knijnenburg et al.
2009) extrapolates the null far beyond the draws it has seen, and testing a fixed
null quantile (``"better than 99% of random hypotheses"``) is passed by the best of
``m > 100`` frivolous candidates by construction. The cost is kept down in two
sound ways:

* *sequential stopping* (Besag & Clifford 1991): draws stop as soon as the number
  of exceedances ``h`` makes acceptance impossible at any Holm rank (``(1 + h)/(1 +
  N) >= alpha``); the reported p-value is then ``h / L`` after ``L`` draws, which is
  again a valid p-value. Frivolous hypotheses are therefore cheap to reject; only
  hypotheses that keep beating their nulls pay for all ``N`` draws;
* the draws of a finite null space are memoised by the caller (drawing the same null
  hypothesis twice costs one score), and a draw whose cheap upper bound of the
  statistic is below the real value is not scored in full (it cannot be an
  exceedance); neither changes the test.

When a draw budget caps ``N`` below the requirement the test is *underpowered*: the
hypothesis is not accepted and the report says how many draws were needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


class StatisticsError(ValueError):
    """A statistical procedure was given inputs it cannot use (one-line message)."""


def _exceeds(null: float, real: float) -> bool:
    # NaN nulls count as exceedances: an undefined null must not make a hypothesis look good.
    return math.isnan(null) or null >= real


def empirical_p_value(real: float, nulls: Iterable[float]) -> float:
    """``(1 + #{null >= real}) / (1 + #nulls)``; 1.0 when the real statistic is undefined."""
    nulls = list(nulls)
    if not math.isfinite(real):
        return 1.0
    k = sum(_exceeds(float(x), real) for x in nulls)
    return (1 + k) / (1 + len(nulls))


def required_null_draws(m: int, alpha: float, exceedances: int = 0) -> int:
    """Smallest N for which ``(1 + exceedances)/(1 + N) < alpha/m`` (Holm's strictest step).

    With ``exceedances=0`` this is ``floor(m/alpha)``: below it no hypothesis of a run
    that scored ``m`` hypotheses can be accepted at level ``alpha``.
    """
    if m < 1:
        raise StatisticsError(f"number of hypotheses tested must be >= 1, got {m}")
    if not 0 < alpha < 1:
        raise StatisticsError(f"alpha must be in (0, 1), got {alpha}")
    if exceedances < 0:
        raise StatisticsError(f"exceedances must be >= 0, got {exceedances}")
    # (1+k)/(1+N) < alpha/m  <=>  N > (1+k) m / alpha - 1. Rationals, so that alpha = 0.05 and
    # m = 153 give exactly 3060 rather than a float rounding of it.
    bound = (1 + exceedances) * m / Fraction(alpha).limit_denominator(10**12) - 1
    return math.floor(bound) + 1 if bound >= 0 else 0


def stopping_exceedances(n_max: int, alpha: float) -> int:
    """Exceedance count at which acceptance has become impossible: ``(1+h)/(1+n_max) >= alpha``."""
    return max(1, math.ceil(alpha * (1 + n_max)) - 1)


@dataclass(frozen=True)
class MonteCarloTest:
    """The outcome of a (possibly sequentially stopped) Monte Carlo test of one hypothesis."""

    real: float
    n_draws: int
    n_exceed: int
    p_value: float
    n_planned: int
    stopped_early: bool = False
    n_undefined: int = 0
    interrupted: bool = False  # stopped by a deadline (not by the outcomes): a fixed-n test on n_draws

    @property
    def min_attainable(self) -> float:
        """The smallest p-value the planned number of draws could have produced."""
        return 1.0 / (1 + self.n_planned)

    def to_json(self) -> dict[str, Any]:
        return {
            "real": _json_float(self.real),
            "n_draws": self.n_draws,
            "n_exceed": self.n_exceed,
            "p_value": self.p_value,
            "n_planned": self.n_planned,
            "stopped_early": self.stopped_early,
            "n_undefined": self.n_undefined,
            "interrupted": self.interrupted,
            "min_attainable": self.min_attainable,
        }


def sequential_p_value(
    real: float,
    draw: Callable[[int], float],
    n_max: int,
    *,
    stop_after: int | None = None,
    start: MonteCarloTest | None = None,
    interrupt: Callable[[], bool] | None = None,
) -> MonteCarloTest:
    """Draw nulls ``draw(0), draw(1), ...`` up to ``n_max``, stopping at ``stop_after`` exceedances.

    Besag–Clifford: stopped after ``L`` draws at the ``h``-th exceedance, ``p = h/L``;
    otherwise ``p = (1 + k)/(1 + n_max)``. ``start`` continues an earlier test of the
    same hypothesis with the same draw sequence (used to top up draws when the run
    has scored more hypotheses than it had when the test started). ``interrupt()`` is
    asked before each draw (e.g. a deadline); when it says stop, the result is the
    fixed-n test on the draws made, ``p = (1 + k)/(1 + n)``, which stays valid because
    the stopping did not look at the outcomes.
    """
    if n_max < 0:
        raise StatisticsError(f"number of null draws must be >= 0, got {n_max}")
    n, k, undefined = 0, 0, 0
    if start is not None:
        if start.stopped_early:
            return start  # an early stop is final: more draws cannot make it acceptable
        n, k, undefined = start.n_draws, start.n_exceed, start.n_undefined
    if not math.isfinite(real):
        return MonteCarloTest(real, n, k, 1.0, n_max, False, undefined)
    while n < n_max:
        if interrupt is not None and interrupt():
            return MonteCarloTest(real, n, k, (1 + k) / (1 + n), n_max, False, undefined, True)
        x = float(draw(n))
        n += 1
        undefined += math.isnan(x)
        if _exceeds(x, real):
            k += 1
            if stop_after is not None and k >= stop_after and n < n_max:
                return MonteCarloTest(real, n, k, k / n, n_max, True, undefined)
    return MonteCarloTest(real, n, k, (1 + k) / (1 + n), n_max, False, undefined)


def holm(p_values: Mapping[K, float], m: int | None = None) -> dict[K, float]:
    """Holm–Bonferroni adjusted p-values for a family of ``m`` hypotheses.

    ``p_values`` holds the p-values of the hypotheses that were tested; the other
    ``m - len(p_values)`` members of the family enter with ``p = 1``. Adjusted
    ``p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` in increasing order of p.
    """
    n = len(p_values)
    m = n if m is None else m
    if m < n:
        raise StatisticsError(f"family size m={m} is smaller than the {n} p-values given")
    for key, p in p_values.items():
        if not (0.0 <= p <= 1.0):
            raise StatisticsError(f"p-value of {key!r} is {p}, not in [0, 1]")
    order = sorted(p_values, key=lambda key: p_values[key])
    adjusted: dict[K, float] = {}
    running = 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[key]))
        adjusted[key] = running
    return adjusted


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)
