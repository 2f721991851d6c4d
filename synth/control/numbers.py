"""Small numeric helpers shared by the controls (NaN-aware reductions, JSON-safe floats)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mechsynth.synth.accept import number

__all__ = ["is_number", "json_float", "jsonable", "mean", "nanmax", "number", "quantile"]


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def nanmax(xs: Sequence[float]) -> float:
    defined = [x for x in xs if not math.isnan(x)]
    return max(defined) if defined else math.nan


def mean(xs: Sequence[float]) -> float | None:
    finite = [x for x in xs if math.isfinite(x)]
    return sum(finite) / len(finite) if finite else None


def quantile(xs: Sequence[float], q: float) -> float:
    """Upper empirical quantile; NaN (undefined) draws are placed at the top (conservative)."""
    if not xs:
        return math.nan
    ordered = sorted(xs, key=lambda x: (math.isnan(x), x))
    value = ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
    return math.inf if math.isnan(value) else value


def json_float(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


def jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return json_float(x)
    if isinstance(x, (int, str, bool)) or x is None:
        return x
    return str(x)
