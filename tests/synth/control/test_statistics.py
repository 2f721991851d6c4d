"""Empirical p-values, sequential Monte Carlo tests and Holm–Bonferroni (synth.control.statistics)."""

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.synth.control.statistics import (
    StatisticsError,
    empirical_p_value,
    holm,
    required_null_draws,
    sequential_p_value,
    stopping_exceedances,
)


def test_empirical_p_value_counts_ties_and_nan_against_the_hypothesis():
    assert empirical_p_value(1.0, [0.1, 0.2, 0.3]) == pytest.approx(1 / 4)
    assert empirical_p_value(1.0, [1.0, 0.2, 0.3]) == pytest.approx(2 / 4)  # tie counts
    assert empirical_p_value(1.0, [float("nan"), 0.2]) == pytest.approx(2 / 3)
    assert empirical_p_value(1.0, [float("-inf")]) == pytest.approx(1 / 2)  # "no explanation" never exceeds
    assert empirical_p_value(float("nan"), [0.0]) == 1.0
    assert empirical_p_value(0.5, []) == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=2000), st.sampled_from([0.01, 0.05, 0.001]), st.integers(0, 3))
def test_required_null_draws_is_the_smallest_sufficient_number(m, alpha, k):
    n = required_null_draws(m, alpha, k)
    a = Fraction(str(alpha))
    assert Fraction(1 + k, 1 + n) < a / m
    if n > 0:
        assert not Fraction(1 + k, n) < a / m  # one draw fewer is not enough


def test_required_null_draws_rejects_bad_input():
    with pytest.raises(StatisticsError):
        required_null_draws(0, 0.01)
    with pytest.raises(StatisticsError):
        required_null_draws(5, 1.5)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=20),
    st.sampled_from([0.01, 0.05, 0.2]),
)
def test_holm_adjusted_p_matches_the_step_down_procedure(ps, extra, alpha):
    m = len(ps) + extra
    adjusted = holm(dict(enumerate(ps)), m)
    # Step-down: reject p_(1..r) where r is the first rank with p_(r) > alpha / (m - r + 1).
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    rejected = set()
    for rank, i in enumerate(order):
        if ps[i] <= alpha / (m - rank):
            rejected.add(i)
        else:
            break
    assert {i for i, a in adjusted.items() if a <= alpha} == rejected
    assert all(adjusted[i] >= ps[i] for i in adjusted)


def test_holm_counts_untested_hypotheses():
    assert holm({"a": 0.001}, m=1)["a"] == pytest.approx(0.001)
    assert holm({"a": 0.001}, m=50)["a"] == pytest.approx(0.05)
    with pytest.raises(StatisticsError):
        holm({"a": 0.1, "b": 0.2}, m=1)
    with pytest.raises(StatisticsError):
        holm({"a": 1.5})


def test_empirical_p_value_is_valid_under_the_null():
    # Real and null scores exchangeable: P(p <= t) must not exceed t (up to sampling error).
    rng = random.Random(0)
    n, trials, t = 19, 4000, 0.1
    hits = 0
    for _ in range(trials):
        xs = [rng.random() for _ in range(n + 1)]
        hits += empirical_p_value(xs[0], xs[1:]) <= t
    assert hits / trials <= t + 3 * math.sqrt(t * (1 - t) / trials)


def test_sequential_test_stops_on_frivolous_and_runs_full_on_strong_hypotheses():
    alpha, n_max = 0.01, 5000
    h = stopping_exceedances(n_max, alpha)
    assert (1 + h) / (1 + n_max) >= alpha
    calls = []

    def frivolous(i):
        calls.append(i)
        return 0.9 if i % 2 else 0.1  # half the nulls beat 0.5

    res = sequential_p_value(0.5, frivolous, n_max, stop_after=h)
    assert res.stopped_early and res.n_exceed == h and res.p_value == pytest.approx(h / res.n_draws)
    assert len(calls) < n_max // 10
    strong = sequential_p_value(0.99, lambda i: 0.2, n_max, stop_after=h)
    assert not strong.stopped_early and strong.n_draws == n_max
    assert strong.p_value == pytest.approx(1 / (1 + n_max))


def test_sequential_test_tops_up_with_the_same_draw_sequence():
    seen = []

    def draw(i):
        seen.append(i)
        return 0.0

    first = sequential_p_value(1.0, draw, 10)
    second = sequential_p_value(1.0, draw, 30, start=first)
    assert seen == list(range(30))
    assert second.n_draws == 30 and second.p_value == pytest.approx(1 / 31)
