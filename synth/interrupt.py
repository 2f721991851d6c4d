"""Ctrl-C that always stops a run, even when it lands where Python would swallow it.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever Python code the
main thread runs at that moment. Usually that is the run, which stops, commits and exits
130. But if the moment falls inside a garbage-collector callback (jax registers one,
``_xla_gc_callback``, and the enumerator allocates enough to trigger the collector
constantly) or a ``__del__`` method, Python prints "Exception ignored in ..." and drops the
exception: the run carries on as if nothing was pressed, and may end with exit 0.

:func:`reliable_sigint` installs a SIGINT handler that looks at where it landed. Where a
raised exception would reach the run, it raises ``KeyboardInterrupt`` as Python's own
handler does. Where it would be swallowed (a frame of a ``gc.callbacks`` function or of a
``__del__`` is on the stack), it raises nothing and sends SIGINT again a moment later, by
which time the callback has returned; so one press always stops the run, and nothing is
raised into a half-finished cleanup (the re-sent signal goes through the same check).
Places the frame test cannot see (a weakref callback run by the collector) are caught
where Python reports what it dropped, ``sys.unraisablehook``: a dropped
``KeyboardInterrupt`` is sent again the same way.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from contextlib import contextmanager
from types import FrameType

RETRY_SECONDS = 0.05  # long enough for a gc callback to return, far below a person's notice


def _swallowed_here(frame: FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` would be dropped by the interpreter."""
    callbacks = {_code(cb) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _code(callback: object) -> object:
    """The code a callback runs: a function's (or bound method's), or a callable object's ``__call__``."""
    code = getattr(callback, "__code__", None)
    if code is None:
        call = vars(type(callback)).get("__call__")
        code = getattr(call, "__code__", None)
    return code


def _send_again() -> None:
    timer = threading.Timer(RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _swallowed_here(frame):
        _send_again()
        return
    raise KeyboardInterrupt


def _unraisable(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _send_again()  # Python dropped our interrupt: press it again for the user
        previous(unraisable)

    return hook


@contextmanager
def reliable_sigint() -> Iterator[None]:
    """Within the block, one Ctrl-C always raises KeyboardInterrupt in the run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handle)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(previous_hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
