"""The heartbeat names the silent phase, the scoring rate and the best so far (issue 18 item 11)."""

from __future__ import annotations

from mechsynth.synth.heartbeat import Heartbeat


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_heartbeat_reads_the_loops_own_lines() -> None:
    clock, said = _Clock(), []
    beat = Heartbeat(said.append, clock=clock)
    beat("observe: running the target on sampled inputs")
    clock.now += 30
    beat("[2 scored] enumerator: failed (iia 0.1 < 0.8); best 0.420")
    clock.now += 30
    beat("[3 scored] model-guided: passed; running controls; best 0.910")
    clock.now += 60
    line = beat.line()
    assert said[-1].startswith("[3 scored]")  # every message still goes through
    assert "60s since: [3 scored] model-guided: passed" in line
    assert "3 scored in 120s (1.5/min), best 0.910" in line


def test_before_anything_is_scored_it_says_so() -> None:
    clock = _Clock()
    beat = Heartbeat(lambda _m: None, clock=clock)
    beat("observe: running the target on sampled inputs")
    clock.now += 25
    assert beat.line() == ("still working (25s since: observe: running the target on sampled inputs); "
                           "0 scored in 25s (0.0/min), best -")


def test_a_phase_named_quietly_is_not_printed_but_is_reported() -> None:
    clock, said = _Clock(), []
    beat = Heartbeat(said.append, clock=clock)
    beat.phase("loading tracr:shuffle_dyck")
    clock.now += 12
    assert said == [] and "12s since: loading tracr:shuffle_dyck" in beat.line()


def test_a_negative_best_is_read() -> None:
    beat = Heartbeat(lambda _m: None, clock=_Clock())
    beat("[2 scored] model-guided: filtered (ablation loss recovered 0.222 < 0.5); best -0.538")
    assert beat.line().endswith("best -0.538")
