"""A heartbeat for long silent phases: a run that says nothing for a while says that it is working.

The loop reports each scored candidate, but some phases run long between reports: the
observation pass, an enumerator that searches for tens of seconds before its first
proposal, the frivolous-circuit controls on one candidate (up to minutes). Silence that
long looks like a hang. :class:`Heartbeat` wraps the run's progress callback: it remembers
the last message, how many candidates have been scored and the best strength so far (both
read from the loop's own "[N scored] ... best X" lines), and a background thread prints
one line whenever :data:`SILENCE_SECONDS` pass without a message, with the phase, the time
spent in it, the scoring rate and the best so far.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SILENCE_SECONDS = 10.0
_SCORED = re.compile(r"^\[(?P<n>\d+) scored\]")
_BEST = re.compile(r"best (?P<best>-?[0-9.]+|nan|-)\s*$")


@dataclass
class Heartbeat:
    """``progress`` wrapper (call it with each message) that speaks up during silences."""

    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    silence: float = SILENCE_SECONDS
    start: float = field(init=False)
    last_message: str = field(init=False, default="starting")
    last_time: float = field(init=False)
    scored: int = field(init=False, default=0)
    best: str = field(init=False, default="-")
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.start = self.last_time = self.clock()

    def __call__(self, message: str) -> None:
        with self._lock:
            self.last_message, self.last_time = message, self.clock()
            scored, best = _SCORED.match(message), _BEST.search(message)
            if scored:
                self.scored = int(scored.group("n"))
            if scored and best:
                self.best = best.group("best")
        self.say(message)

    def phase(self, message: str) -> None:
        """Name what is running now without printing it (the heartbeat names it if it runs long)."""
        with self._lock:
            self.last_message, self.last_time = message, self.clock()

    def line(self) -> str:
        """The heartbeat line for now: phase, time in it, rate and best so far."""
        with self._lock:
            now = self.clock()
            minutes = max(now - self.start, 1e-9) / 60
            phase = self.last_message.split(";", 1)[0][:80]
            return (f"still working ({now - self.last_time:.0f}s since: {phase}); {self.scored} scored in "
                    f"{now - self.start:.0f}s ({self.scored / minutes:.1f}/min), best {self.best}")

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            with self._lock:
                quiet = self.clock() - self.last_time >= self.silence
            if quiet:
                line = self.line()
                with self._lock:
                    self.last_time = self.clock()  # the next beat after another full silence
                self.say(line)

    def __enter__(self) -> Heartbeat:
        self._stop = threading.Event()  # a fresh beat for each block (loading, then the run)
        beat = threading.Thread(target=self._beat, args=(self._stop,), name="heartbeat", daemon=True)
        beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
