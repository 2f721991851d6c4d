"""The bench's progress lines (on stderr, so ``--json`` output stays clean) and one-line errors."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def error_text(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
