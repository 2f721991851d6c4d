"""score refuses what it cannot compare instead of reporting 0.0 (issue 18 item 10)."""

from __future__ import annotations

import pytest

from mechsynth import dsl
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.check.patching import CheckError
from mechsynth.synth.check.scoring import score
from tiny_targets import tiny_target


def test_a_selector_output_is_refused_not_scored_zero() -> None:
    hypothesis = Hypothesis(dsl.parse("y = select(tokens, tokens, EQ)"), {})
    with pytest.raises(CheckError, match="output 'y' is a selector"):
        score(tiny_target(0), hypothesis, n=8)
