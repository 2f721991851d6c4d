"""predict: a program's predicted errors of the network, checked on the network."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mechsynth.synth.use.inputs import Family, search_inputs, widened, wrong
from mechsynth.synth.use.predict import predict


def test_a_compiled_bug_is_predicted_with_full_precision_and_recall(buggy_hist):
    # The ground truth is the buggy program; where it differs from the correct labels, so does the network.
    result = predict(buggy_hist, buggy_hist.ground_truth, count=40, n_search=800, n_recall=800, steps=5)
    assert result.predicted
    assert all(4 in p.label and 0 in p.program for p in result.predicted)
    assert result.precision == 1.0
    assert result.recall == 1.0
    assert result.baseline_precision < 0.5  # random inputs rarely hold a token 4 times
    assert result.baseline_recall < result.recall


def test_a_program_equal_to_the_labels_predicts_no_errors(target_named):
    target = target_named("tracr:hist")
    result = predict(target, target.ground_truth, count=20, n_search=300, n_recall=300, steps=3)
    assert result.predicted == ()
    assert result.precision != result.precision  # NaN: nothing predicted, nothing claimed
    assert result.n_real_errors == 0


def test_search_draws_only_task_inputs_from_several_families(target_named):
    target = target_named("trained:prefix_count")
    wide = widened(target)
    pool = search_inputs(target, 200, seed=1)
    assert len(pool) == len({c.input for c in pool}) == 200
    assert {c.family for c in pool} >= {Family.LENGTHS, Family.MIXTURE, Family.TASK}
    assert all(wide.task.in_domain(c.input) for c in pool)


VALUES = st.sampled_from([0, 1, None])


@given(st.lists(st.tuples(VALUES, VALUES), min_size=1, max_size=6))
def test_wrong_needs_a_defined_output_and_label_that_differ(pairs):
    outputs, labels = [[o for o, _ in pairs]], [[y for _, y in pairs]]
    expected = any(o is not None and y is not None and o != y for o, y in pairs)
    assert wrong(outputs, labels, "categorical") == [expected]
