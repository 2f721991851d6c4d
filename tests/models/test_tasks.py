"""The zoo's algorithmic tasks: each labeller against an independent statement of the task
(hypothesis draws the inputs), and each dataset-style sampler stays in its domain and
balances what it is meant to balance."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.models import tasks
from mechsynth.models.tasks import make_task

bits = st.lists(st.integers(0, 1), min_size=1, max_size=14)


def _reduces_to_empty(word: str) -> bool:
    while "()" in word or "[]" in word:
        word = word.replace("()", "").replace("[]", "")
    return word == ""


@given(st.lists(st.sampled_from("()[]"), min_size=1, max_size=12))
def test_dyck_label_is_bracket_reduction(x: list[str]) -> None:
    assert tasks.dyck_label(x) == [int(_reduces_to_empty("".join(x[: i + 1]))) for i in range(len(x))]


def _runs(x: list[int]) -> list[int]:
    return [v for i, v in enumerate(x) if i == 0 or x[i - 1] != v]


@given(bits)
def test_tomita_labels(x: list[int]) -> None:
    four, seven = tasks.tomita_label(4)(x), tasks.tomita_label(7)(x)
    for i in range(len(x)):
        prefix = x[: i + 1]
        assert four[i] == int("000" not in "".join(map(str, prefix)))
        runs = _runs(prefix)  # 0*1*0*1*: the runs read 0,1,0,1 (or 1,0,1), at most four of them
        assert seven[i] == int(runs == [0, 1, 0, 1][: len(runs)] or runs == [1, 0, 1][: len(runs)])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=10))
def test_first_unique_label(x: list[int]) -> None:
    for i, v in enumerate(tasks.first_unique_label(x)):
        prefix = x[: i + 1]
        once = [u for u in prefix if prefix.count(u) == 1]
        assert v == (once[0] if once else tasks.NO_UNIQUE)


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12))
def test_cumsum_sign_and_majority(x: list[int]) -> None:
    signs = tasks.cumsum_sign_label(x)
    assert all(s == (sum(x[: i + 1]) > 0) - (sum(x[: i + 1]) < 0) for i, s in enumerate(signs))
    votes = [int(v > 0) for v in x] + ([0] if len(x) % 2 == 0 else [])
    assert tasks.majority_label(votes)[-1] == int(sum(votes) > len(votes) / 2)


@given(st.lists(st.integers(0, 4), min_size=2, max_size=9))
def test_palindrome_label(x: list[int]) -> None:
    label = tasks.palindrome_label(x)
    mirrored = all(a == b for a, b in zip(x, reversed(x)))
    assert label[:-1] == [None] * (len(x) - 1) and label[-1] == int(mirrored)


@settings(max_examples=30)
@given(st.integers(0, 10_000))
def test_copy_tasks_read_the_next_answer_token(seed: int) -> None:
    for kind, reverse in (("unique_copy", False), ("unique_reverse", True)):
        t = make_task(kind, {"n_tokens": 10, "n": 5})
        for x in t.sample(20, seed=seed):
            assert t.in_domain(x)
            body, answered = x[:5], x[6:]
            expected = body[::-1] if reverse else body
            assert x[5] == tasks.SEP and answered == expected[: len(answered)]
            assert t.label([x])[0] == [None] * (len(x) - 1) + [expected[len(answered)]]


def test_samplers_balance_the_classes() -> None:
    # Inputs of full length, answer of the whole input: uniform inputs would make one class rare.
    for kind, params in (("palindrome", {}), ("majority", {}), ("tomita", {"grammar": 4}),
                         ("tomita", {"grammar": 7}), ("dyck1", {}), ("dyck2", {})):
        t = make_task(kind, params)
        last = [row[-1] for row in t.label(t.sample(2000, seed=0, length=t.max_len))]
        share = sum(last) / len(last)
        assert 0.1 < share < 0.9, (kind, share)
    count = make_task("count_token", {})
    counts = [row[0] for row in count.label(count.sample(2000, seed=0))]
    assert set(counts) == set(range(11))  # every count occurs, not only the binomial middle


def test_tomita_regexes_are_the_grammars() -> None:
    assert re.fullmatch(tasks.TOMITA[7], "0101010") is None and re.fullmatch(tasks.TOMITA[7], "001101")
    assert re.fullmatch(tasks.TOMITA[4], "1001") and re.fullmatch(tasks.TOMITA[4], "10001") is None


# --- readouts other than all/last: start token, answer digits, after SEP (issue 13) ---------------
@given(st.lists(st.sampled_from("()"), min_size=1, max_size=12))
def test_brackets_label_is_read_at_the_start_token(x: list[str]) -> None:
    t = make_task("brackets", {})
    framed = t.frame(x)
    assert framed[0] == tasks.START and t.read_positions(framed) == [0]
    assert t.label([framed])[0] == [int(_reduces_to_empty("".join(x)))] + [None] * len(x)


def test_brackets_sampler_mixes_lengths_and_balances_the_classes() -> None:
    t = make_task("brackets", {})
    xs = t.sample(2000, seed=0)
    assert {len(x) - 1 for x in xs} == set(range(1, 13)) and t.pad == tasks.PAD
    even = [x for x in xs if len(x) % 2 == 1]  # even content length: balance is possible
    share = sum(row[0] for row in t.label(even)) / len(even)
    assert 0.3 < share < 0.7, share


@given(st.integers(0, 99), st.integers(0, 99))
def test_addition_is_read_at_the_answer_digits(a: int, b: int) -> None:
    t = make_task("addition", {"width": 2})
    s = f"{a + b:03d}"
    x = [int(c) for c in f"{a:02d}"] + [tasks.PLUS] + [int(c) for c in f"{b:02d}"] + [tasks.EQUALS]
    x += [int(c) for c in s[:2]]
    assert t.in_domain(x) and t.read_positions(x) == [5, 6, 7]
    assert t.label([x])[0] == [None] * 5 + [int(c) for c in s]
    assert not t.in_domain(x[:-1] + [(x[-1] + 1) % 10])  # a wrong teacher-forced digit is outside


def test_addition_broader_distribution_carries_more() -> None:
    t = make_task("addition", {"width": 2})

    def carries(xs: list[list]) -> float:
        return sum(x[1] + x[4] >= 10 for x in xs) / len(xs)

    assert carries(t.broader_sample(1000, seed=0)) > carries(t.sample(1000, seed=0)) + 0.2


@given(st.lists(st.integers(0, 15), min_size=5, max_size=5, unique=True), st.integers(0, 4))
def test_sort_after_sep_reads_sep_and_every_answer_position(body: list[int], k: int) -> None:
    t = make_task("sort_after_sep", {})
    x = body + [tasks.SEP] + sorted(body)[:4]
    assert t.in_domain(x) and t.read_positions(x) == [5, 6, 7, 8, 9]
    assert t.label([x])[0] == [None] * 5 + sorted(body)
    assert not t.in_domain(body + [tasks.SEP] + sorted(body)[::-1][:4])
