"""The Markdown table every section of BENCHMARKS.md uses."""

from __future__ import annotations

from typing import Any

from mechsynth.synth.bench.numeric import fmt


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; text cells as they are, other cells through :func:`~synth.bench.numeric.fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)
