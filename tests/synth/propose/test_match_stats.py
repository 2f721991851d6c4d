"""The magnitude fit tells a numerical variable from an affine relabelling of it."""

from __future__ import annotations

import itertools

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mechsynth.synth.propose.guided_state import MatchThresholds
from mechsynth.synth.propose.match_stats import explains, magnitude_r2


def _bracket_fractions() -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of '(' and of ')' in every prefix of every bracket string up to length 5."""
    opens, closes = [], []
    for n in range(1, 6):
        for s in itertools.product("()", repeat=n):
            for i in range(n):
                k = s[: i + 1].count("(")
                opens.append(k / (i + 1))
                closes.append(1 - k / (i + 1))
    return torch.tensor(opens, dtype=torch.float64), torch.tensor(closes, dtype=torch.float64)


def test_a_fraction_and_its_complement_explain_each_other_but_only_one_is_the_magnitude():
    opens, closes = _bracket_fractions()
    direction = torch.tensor([0.3, -1.2, 0.0, 2.0], dtype=torch.float64)
    act = closes[:, None] * direction  # a head that writes the fraction of ')' as a magnitude
    bar = MatchThresholds().explain
    assert explains(act, opens)[1] >= bar and explains(act, closes)[1] >= bar  # class means: a tie
    assert magnitude_r2(act, closes) >= bar
    assert magnitude_r2(act, opens) < bar


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=40),
    st.lists(st.floats(0.5, 5), min_size=1, max_size=4),
    st.floats(0.1, 10),
)
def test_value_times_a_direction_is_an_exact_magnitude_fit_at_any_scale(values, direction, scale):
    v = torch.tensor(values, dtype=torch.float64)
    assume(float(v.max() - v.min()) > 1e-3)
    act = v[:, None] * torch.tensor(direction, dtype=torch.float64)
    assert magnitude_r2(act, v * scale) >= 1 - 1e-6
    assert magnitude_r2(torch.zeros_like(act), v) == 0.0  # a constant activation holds no variable


def test_undefined_values_are_left_out_and_a_constant_offset_fails():
    v = torch.tensor([0.0, 0.5, 1.0, float("nan"), 0.25], dtype=torch.float64)
    act = torch.nan_to_num(v, nan=7.0)[:, None] * torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert magnitude_r2(act, v) >= 1 - 1e-9
    assert magnitude_r2(act + 1.0, v) < MatchThresholds().explain
