"""Comparing two score JSONs in tests: equal structure, floats to 1e-6 absolute or relative
(NaN equals NaN). Relative too because float32 losses near 13 differ by ~1e-7 relative between
machines (13.3695954 recorded vs 13.3695944 on a later machine, trained-reverse-chain)."""

from __future__ import annotations

import math
from typing import Any


def assert_scores_close(a: Any, b: Any, path: str = "", ignore: frozenset[str] = frozenset()) -> None:
    """Equal structure and values; floats to 1e-6 absolute or relative (NaN, stored as
    null, equals NaN); keys in
    `ignore` are left out at every depth."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, sorted(set(a) ^ set(b)))
        for k in a:
            if k not in ignore:
                assert_scores_close(a[k], b[k], f"{path}.{k}", ignore)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_scores_close(x, y, f"{path}[{i}]", ignore)
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (path, a, b)
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (
            path, a, b)
    else:
        assert a == b, (path, a, b)
