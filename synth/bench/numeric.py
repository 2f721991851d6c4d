"""Numbers in the results: reading them, keeping them finite, ratios, and how the tables print them.

Every suite and every table reads numbers through these helpers, so "missing", NaN and
infinities mean the same everywhere: None in ``bench.json``, "–" in ``BENCHMARKS.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Some helpers serialise non-finite floats as text.
_NON_FINITE_TEXT = ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def number(value: Any) -> float | None:
    """``value`` as a float; None for what is not a number, and for NaN."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN -> None


def finite(value: Any) -> Any:
    """The results with every NaN/inf replaced by None: strict JSON, and "–" in the tables."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and value.strip().lower() in _NON_FINITE_TEXT:
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def finite_number(value: Any) -> float | None:
    """A number for the tables; None (shown as –) for missing or non-finite values ("-inf" in JSON)."""
    return finite(number(value))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: "–" for missing or NaN, yes/no, and floats to the precision their size merits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def secs(value: Any) -> str:
    """Seconds: 2 significant decimals below 10 s, 1 above (timings are not more precise than that)."""
    v = number(value)
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"
