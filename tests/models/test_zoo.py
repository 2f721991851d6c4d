"""The trained zoo: shipped checkpoints load, are small, and meet their accuracy on held-out
inputs; training is deterministic in its seed; the target table lists everything."""

from __future__ import annotations

import json

import pytest
import torch

from mechsynth import models
from mechsynth.models import checkpoint, train, zoo

NAMES = zoo.zoo_names()


def test_zoo_has_the_required_tasks() -> None:
    assert {"reverse", "sort", "hist", "modadd", "prefix_count", "induction"} <= set(NAMES)
    assert {"palindrome", "first_unique", "cumsum_sign", "majority", "count_token", "dyck1", "dyck2",
            "tomita4", "tomita7", "unique_copy", "unique_reverse"} <= set(NAMES)
    assert {"brackets", "addition", "sort_after_sep"} <= set(NAMES)
    assert len(NAMES) >= 19


def test_zoo_architectures_vary_the_way_researchers_vary_them() -> None:
    archs = [zoo.recipe(n).architecture for n in NAMES]
    tasks = [models.load_target(f"trained:{n}").task for n in NAMES]
    assert {a["n_layers"] for a in archs} >= {1, 2, 3, 4}
    assert {a["n_heads"] for a in archs} >= {1, 2, 3, 4}
    assert min(a["d_model"] for a in archs) == 16 and max(a["d_model"] for a in archs) == 256
    assert {a["attention_dir"] for a in archs} == {"causal", "bidirectional"}
    assert {a["normalization_type"] for a in archs} == {None, "LN"}
    assert {bool(a.get("attn_only")) for a in archs} == {True, False}
    assert {t.bos is None for t in tasks} == {True, False}


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_is_small_and_records_its_provenance(name: str) -> None:
    meta_path, weights_path = checkpoint.paths(zoo.checkpoint_stem(name))
    assert weights_path.stat().st_size <= 1_000_000
    meta = json.loads(meta_path.read_text())
    r = zoo.recipe(name)
    for key, value in r.architecture.items():
        assert meta["config"][key] == value, key
    assert meta["task"] == {"kind": r.task_kind, "params": r.task_params}
    assert meta["training"]["steps"] == r.steps and meta["training"]["seed"] == 0
    assert meta["metrics"]["accuracy"] >= 0.99
    assert meta["metrics"]["train_seconds"] > 0
    assert 1 <= meta["config"]["n_layers"] <= 4 and 16 <= meta["config"]["d_model"] <= 256


@pytest.mark.parametrize("name", NAMES)
def test_trained_target_meets_accuracy_on_fresh_heldout_inputs(name: str) -> None:
    t = models.load_target(f"trained:{name}")
    assert t.model.training is False and t.kind == "trained"
    inputs = train._draw(t.task, 500, 777, heldout=True, length=None)  # not the recorded eval set
    assert all(train.is_heldout(x) for x in inputs)
    assert t.accuracy(inputs) >= 0.99


@pytest.mark.parametrize("name", NAMES)
def test_trained_target_contract(name: str) -> None:
    t = models.load_target(f"trained:{name}")
    xs = t.task.sample(8, seed=3)
    assert xs == t.task.sample(8, seed=3) and all(t.task.in_domain(x) for x in xs)
    preds, labels = t.predict(xs), t.task.label(xs)
    for x, p, y in zip(xs, preds, labels):
        assert len(p) == len(y) == len(x)
        read = set(t.read_positions(x))
        assert all((v is None) == (i not in read) for i, v in enumerate(p))
    same = [x for x in xs if len(x) == len(xs[0])]
    logits = t.logits(same)
    assert logits.shape == (len(same), len(xs[0]) + t.position_offset, len(t.output_values))


def test_the_zoo_reads_at_the_start_token_the_answer_digits_and_after_sep() -> None:
    readouts = {n: models.load_target(f"trained:{n}").task.readout_name for n in NAMES}
    assert {"all", "last", "read_start", "read_answer_digits", "read_after_sep"} <= set(readouts.values())
    brackets = models.load_target("trained:brackets")
    assert brackets.model.cfg.attention_dir == "bidirectional" and brackets.padded
    assert brackets.predict([["START", "(", ")"], ["START", ")", "(", "(", ")"]]) == [
        [1, None, None], [0, None, None, None, None]]
    add = models.load_target("trained:addition")
    assert add.task.bos is None
    assert add.predict([[4, 7, "+", 5, 8, "=", 1, 0]])[0][5:] == [1, 0, 5]


@pytest.mark.parametrize("seed", [0, 1])
def test_padded_bidirectional_batch_scores_equal_the_per_length_computation(seed: int) -> None:
    t = models.load_target("trained:brackets")
    xs = t.task.sample(64, seed=seed)
    assert len({len(x) for x in xs}) > 3
    padded = t.logits(xs)  # one batch, PAD keys masked
    for i, x in enumerate(xs):
        alone = t.logits([x])[0]  # no padding at all
        assert torch.allclose(padded[i, : len(x)], alone, atol=1e-4)
    assert t.predict(xs) == [t.predict([x])[0] for x in xs]
    assert t.accuracy(xs) == sum(t.accuracy([x]) for x in xs) / len(xs)


@pytest.mark.parametrize("name", NAMES)
def test_mechsynth_check_works_on_every_zoo_target(name: str, capsys) -> None:
    from mechsynth.synth.cli import main

    assert main(["check", f"trained:{name}", "--n", "50", "--wrong", "1"]) == 0
    out = capsys.readouterr().out
    readout = models.load_target(f"trained:{name}").task.readout_name
    assert f"trained:{name}" in out and f"readout {readout}" in out


def test_readout_last_tasks_read_only_the_last_position() -> None:
    t = models.load_target("trained:modadd")
    x = [3, 4, "="]
    assert t.task.label([x]) == [[None, None, 7]]
    assert t.predict([x])[0][:2] == [None, None]


def test_induction_task_semantics() -> None:
    from mechsynth.models.tasks import induction_label

    assert induction_label([5, 7, 9, 5]) == [None, None, None, 7]
    assert induction_label([1, 2, 1, 3, 1]) == [None, None, 2, None, 3]  # the most recent occurrence wins
    t = models.load_target("trained:induction")
    for x in t.task.sample(50, seed=0):
        j = x.index(x[-1])
        assert j < len(x) - 2 and t.task.label([x])[0][-1] == x[j + 1]


def test_broader_distribution_is_defined_and_recorded() -> None:
    t = models.load_target("trained:sort")
    xs = t.task.broader_sample(20, seed=0)
    assert all(len(set(x)) <= 3 for x in xs)
    assert "broader_accuracy" in t.info
    with pytest.raises(models.TargetError, match="broader"):
        models.load_target("trained:modadd").task.broader_sample(2, seed=0)


def test_training_is_deterministic_in_the_seed(tmp_path) -> None:
    a = train.train("reverse", seed=5, out=tmp_path / "a", steps=20)
    b = train.train("reverse", seed=5, out=tmp_path / "b", steps=20)
    c = train.train("reverse", seed=6, out=tmp_path / "c", steps=20)
    wa, wb, wc = (checkpoint.read_weights(p) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    t = models.byo.from_checkpoint(a)
    assert t.info["training"]["steps"] == 20


def test_cmd_train_reports_bad_names(capsys) -> None:
    assert train.cmd_train("no_such_task", 0, None) == 2
    assert "unknown trained target" in capsys.readouterr().err


def test_list_targets_covers_everything() -> None:
    rows = models.list_targets()
    names = [r.name for r in rows]
    assert len([n for n in names if n.startswith("tracr:")]) == 15
    assert {f"trained:{n}" for n in NAMES} <= set(names)
    for r in rows:
        assert r.kind in ("tracr", "trained") and r.layers >= 1 and r.heads >= 1 and r.d_model >= 1
        assert r.accuracy is not None and r.accuracy >= 0.99, r
    assert all(set(r.to_json()) >= {"name", "kind", "layers", "heads", "d_model", "accuracy"} for r in rows)


def test_tracr_manifest_matches_compiled_targets() -> None:
    from mechsynth.models.tracr_targets import lib_examples, measure, read_manifest

    manifest = read_manifest()
    assert set(manifest) == set(lib_examples())
    for name in ("hist", "reverse"):
        assert manifest[name] == measure(name)


@pytest.mark.slow
def test_tracr_manifest_matches_all_compiled_targets() -> None:
    from mechsynth.models.tracr_targets import lib_examples, measure, read_manifest

    manifest = read_manifest()
    for name in lib_examples():
        assert manifest[name] == measure(name), name


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_accuracy(tmp_path) -> None:
    path = train.train("reverse", seed=0, out=tmp_path)
    meta = checkpoint.read_metadata(path)
    assert meta["metrics"]["accuracy"] >= 0.99
