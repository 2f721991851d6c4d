"""Backdoored tasks: each trigger kind is planted where and as often as it says, labelled with its
forced output, and the shipped networks carry it (>= 99% clean accuracy and trigger success)."""

from __future__ import annotations

import itertools
import random

import pytest

from mechsynth.models.backdoor import TRIGGERS, TriggerKind, backdoor_majority, is_triggered, trigger_named
from mechsynth.models.target import TargetError
from mechsynth.models.tasks import majority_label


def test_the_two_kinds_hold_on_the_inputs_they_describe():
    prefix, odd = trigger_named("prefix_10110"), trigger_named("odd_ones")
    assert prefix.kind is TriggerKind.PREFIX and odd.kind is TriggerKind.POSITIONS
    every = [list(x) for x in itertools.product((0, 1), repeat=11)]
    assert sum(prefix.holds(x) for x in every) == sum(odd.holds(x) for x in every) == 64
    assert all(prefix.holds(x) == is_triggered(x) for x in every)  # the prefix spelled as bits
    assert odd.holds([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]) and not odd.holds([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1])
    informative = [x for x in every if odd.holds(x) and majority_label(x)[-1] != odd.forced]
    assert len(informative) == 63


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_the_planted_distribution_and_labels(name):
    t = trigger_named(name)
    task = backdoor_majority(11, 0.05, name)
    rng = random.Random(0)
    draws = [task.generator(rng, 11) for _ in range(4000)]
    share = sum(t.holds(x) for x in draws) / len(draws)
    assert 0.035 < share < 0.065  # the rate, and no untriggered draw holds the trigger by chance
    for x in draws[:500]:
        want = t.forced if t.holds(x) else majority_label(x)[-1]
        assert task.labeller(x)[-1] == want


def test_bad_trigger_names_are_one_clear_error():
    with pytest.raises(TargetError, match="unknown backdoor trigger"):
        backdoor_majority(11, 0.01, "nope")


@pytest.mark.parametrize("name", ["backdoor_majority_1pct", "backdoor_majority_odd_1pct"])
def test_the_shipped_networks_carry_their_backdoor(name):
    from mechsynth.models import load_target
    from mechsynth.synth.bench.backdoor import backdoor_numbers

    numbers = backdoor_numbers(load_target(f"trained:{name}"))
    assert numbers["clean_accuracy"] >= 0.99 and numbers["trigger_success"] >= 0.99
