"""tracr targets: the converted TransformerLens network reproduces tracr exactly, and the
ground-truth locations really hold the RASP variables they are said to hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechsynth import models
from mechsynth.models.target import outputs_equal
from mechsynth.models.tracr_targets import compiled_example, lib_examples, tracr_predict, tracr_target

ALL = list(lib_examples())
# A fast subset covering categorical/numerical outputs, attention- and MLP-written variables.
FAST = ["hist", "reverse", "frac_prevs", "shift_by"]


def _assert_matches_tracr(name: str) -> None:
    target, compiled = tracr_target(name), compiled_example(name)
    inputs = list(target.task.enumerate())  # every input of every length 1..max_len
    ours, theirs = target.predict(inputs), tracr_predict(compiled, inputs)
    kind = target.task.output_kind
    for x, a, b in zip(inputs, ours, theirs):
        assert all(outputs_equal(u, v, kind) for u, v in zip(a, b)), (name, x, a, b)


@pytest.mark.parametrize("name", FAST)
def test_conversion_matches_tracr_on_every_input(name: str) -> None:
    _assert_matches_tracr(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in FAST])
def test_conversion_matches_tracr_on_every_input_all_examples(name: str) -> None:
    _assert_matches_tracr(name)


def test_residual_stream_matches_tracr() -> None:
    # Beyond decoded outputs: the final residual stream is tracr's, dimension by dimension.
    import jax.numpy as jnp

    target, compiled = tracr_target("reverse"), compiled_example("reverse")
    inputs = target.task.sample(16, seed=1, length=5)
    ids = [compiled.assembled.input_encoder.encode(["BOS", *x]) for x in inputs]
    out = compiled.assembled.forward(compiled.assembled.params, jnp.array(ids))
    theirs = np.asarray(out.transformer_output.output)
    _, cache = target.model.run_with_cache(target.tokens(inputs))
    ours = cache[f"blocks.{target.model.cfg.n_layers - 1}.hook_resid_post"].numpy()
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max())


def test_target_contract() -> None:
    t = models.load_target("tracr:reverse")
    assert t.model.training is False
    assert t.position_offset == 1 and t.vocab == (1, 2, 3) and t.max_len == 5
    xs = t.task.sample(5, seed=0, length=3)
    assert xs == t.task.sample(5, seed=0, length=3)
    toks = t.tokens(xs)
    assert toks.shape == (5, 4) and bool((toks[:, 0] == t.input_ids["BOS"]).all())
    logits = t.logits(xs)
    assert logits.shape == (5, 4, t.model.cfg.d_vocab_out)
    assert t.decode(logits, xs) == t.predict(xs) == t.task.label(xs) == [x[::-1] for x in xs]
    assert t.readout_positions(3) == [0, 1, 2]
    mixed = t.task.sample(20, seed=3)
    assert t.predict(mixed) == [x[::-1] for x in mixed]
    assert models.load_target("tracr:reverse") is t  # cached


def test_sort_unique_task_samples_only_distinct_tokens() -> None:
    t = tracr_target("sort_unique")
    assert all(len(set(x)) == len(x) for x in t.task.sample(50, seed=0))
    xs = t.task.sample(50, seed=0)
    assert t.predict(xs) == [sorted(x) for x in xs]


def _component_output(target: models.Target, cache, loc) -> np.ndarray:
    """What the component at `loc` writes into the residual stream, [B, T, d_model]."""
    if loc.head is not None:
        layer = loc.layer
        z = cache[f"blocks.{layer}.attn.hook_z"][:, :, loc.head]  # [B, T, d_head]
        w_o = target.model.blocks[layer].attn.W_O[loc.head]  # [d_head, d_model]
        return (z @ w_o).detach().numpy()
    return cache[loc.hook].detach().numpy()


@pytest.mark.parametrize("name", FAST + ["sort", "pair_balance", "detect_pattern"])
def test_ground_truth_locations_hold_their_variables(name: str) -> None:
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    from mechsynth.models.ground_truth import variable_name

    target, compiled = tracr_target(name), compiled_example(name)
    locations = target.info["rasp_locations"]
    inputs = target.task.sample(40, seed=2, length=target.max_len)
    _, cache = target.model.run_with_cache(target.tokens(inputs))
    checked = 0
    for label, node in compiled.graph.nodes.items():
        expr = node[nodes.EXPR]
        if isinstance(expr, rasp.Selector) or label in (rasp.tokens.label, rasp.indices.label):
            continue
        loc = locations[variable_name(expr)]
        basis = node[nodes.OUTPUT_BASIS]
        dims = [target.info["residual_labels"].index(str(d)) for d in basis]
        if loc.dims is not None:
            assert list(loc.dims) == dims
        written = _component_output(target, cache, loc)[:, 1:, dims]  # drop BOS
        for b, x in enumerate(inputs):
            values = rasp.evaluate(expr, x)
            for i, v in enumerate(values):
                if v is None:
                    continue
                if rasp.is_numerical(expr):
                    assert written[b, i, 0] == pytest.approx(float(v), abs=1e-2), (label, x, i)
                else:
                    assert basis[int(np.argmax(written[b, i]))].value == v, (label, x, i)
                checked += 1
    assert checked > 0


def test_every_sop_has_a_location_with_valid_hook() -> None:
    for name in FAST:
        target = tracr_target(name)
        _, cache = target.model.run_with_cache(target.tokens([list(target.vocab[:1]) * 2]))
        for var, loc in target.info["rasp_locations"].items():
            assert loc.hook in cache, (name, var, loc)
            if loc.head is not None:
                assert loc.head < target.model.cfg.n_heads
        assert {"tokens"} <= set(target.info["rasp_locations"])


def test_unknown_and_bad_specs() -> None:
    with pytest.raises(models.TargetError, match="did you mean tracr:reverse"):
        models.load_target("tracr:revrse")
    with pytest.raises(models.TargetError, match="unknown target"):
        models.load_target("nonsense")
    t = tracr_target("reverse")
    with pytest.raises(models.TargetError, match="not in the vocabulary"):
        t.tokens([[1, 9]])
    with pytest.raises(models.TargetError, match="one length"):
        t.tokens([[1], [1, 2]])
    with pytest.raises(models.TargetError, match="outside"):
        t.tokens([[1] * 6])


def test_compile_rasp_user_program() -> None:
    from tracr.rasp import rasp

    prog = rasp.Map(lambda x: x + 1, rasp.tokens).named("plus_one")
    t = models.compile_rasp(prog, {0, 1, 2}, 3, name="plus_one")
    xs = list(t.task.enumerate())
    assert t.predict(xs) == [[v + 1 for v in x] for x in xs]
    from mechsynth.models.ground_truth import variable_name

    name = variable_name(prog)
    assert name.startswith("plus_one")  # tracr labels carry a unique id: plus_one_<id>
    assert set(t.info["rasp_locations"]) == {"tokens", name}
    assert t.info["rasp_locations"][name].hook == "blocks.0.hook_mlp_out"


def test_compile_rasp_rejects_bad_vocab() -> None:
    from tracr.rasp import rasp

    with pytest.raises(models.TargetError, match="BOS"):
        models.compile_rasp(rasp.Map(lambda x: x, rasp.tokens), {"BOS", "a"}, 3)


def test_no_grad_logits() -> None:
    t = tracr_target("hist")
    assert not t.logits([list(t.vocab[:2])]).requires_grad
    assert torch.is_grad_enabled()


def _assert_ground_truth_program_matches(name: str) -> None:
    from mechsynth import dsl

    target = tracr_target(name)
    assert target.ground_truth is not None, target.info.get("ground_truth_error")
    hyp = target.ground_truth
    inputs = list(target.task.enumerate())
    ours, program = target.predict(inputs), dsl.evaluate(hyp.program, inputs)
    kind = target.task.output_kind
    for x, a, b in zip(inputs, ours, program):
        # Where RASP itself is undefined (None) the network's output is unconstrained.
        assert all(v is None or outputs_equal(u, v, kind) for u, v in zip(a, b)), (name, x, a, b)
    # Every SOp variable of the program has a location; selectors have none.
    for var in hyp.program.variables:
        assert (var in hyp.correspondence) == (hyp.program.kind(var) != "selector"), var


@pytest.mark.parametrize("name", FAST)
def test_ground_truth_program_equals_network_on_every_input(name: str) -> None:
    pytest.importorskip("mechsynth.dsl.rasp_bridge")
    _assert_ground_truth_program_matches(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in FAST])
def test_ground_truth_program_equals_network_all_examples(name: str) -> None:
    pytest.importorskip("mechsynth.dsl.rasp_bridge")
    _assert_ground_truth_program_matches(name)
