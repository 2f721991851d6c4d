"""tracr networks compiled from programs with a known bug (shared by the synth.use and bench tests)."""

from __future__ import annotations

import dataclasses
import functools


@functools.cache
def buggy_hist():
    """tracr's hist with a planted bug: a count of 4 comes out as 0. The task's labels are the
    correct counts, so the network is wrong exactly where some token occurs 4 times."""
    from tracr.rasp import rasp

    from mechsynth.models.tracr_targets import compile_rasp

    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same")
    hist = rasp.SelectorWidth(same).named("hist")
    buggy = rasp.categorical(rasp.Map(lambda c: 0 if c == 4 else c, hist).named("buggy"))
    target = compile_rasp(buggy, ("a", "b", "c"), 5, name="buggy_hist")

    def correct(x):
        return [list(x).count(v) for v in x]

    return dataclasses.replace(target, task=dataclasses.replace(target.task, labeller=correct))
