"""The bottom-up enumerator: I/O synthesis, observational equivalence, registry extension, fitting."""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.synth.propose.enumerate import Pool, enumerate_programs, fit_map, grow


def _inputs(vocab=(1, 2, 3), max_len=3):
    return [list(x) for n in range(1, max_len + 1) for x in itertools.product(vocab, repeat=n)]


def test_finds_a_map_from_examples():
    inputs = _inputs()
    outputs = [[v + 1 for v in x] for x in inputs]
    programs, stats = enumerate_programs(inputs, outputs, max_size=2)
    assert programs, "add(1) over tokens is a one-node program"
    assert dsl.evaluate(programs[0], inputs) == outputs
    assert stats.distinct > 0 and stats.evaluated >= stats.distinct


def test_finds_a_counting_program():
    inputs = _inputs(vocab=(1, 2), max_len=3)
    outputs = [[x.count(v) for v in x] for x in inputs]
    programs, _ = enumerate_programs(inputs, outputs, max_size=2, max_count=5_000)
    assert programs
    assert dsl.evaluate(programs[0], inputs) == outputs


def test_observational_equivalence_keeps_one_program_per_value():
    batch = dsl.encode(_inputs())
    pool = Pool(batch)
    names = list(grow(pool, max_size=2, max_count=5_000))
    keys = [pool.key(pool.values[n]) for n in names]
    assert len(keys) == len(set(keys)), "two pooled variables have the same values"
    # map(add(0), tokens) equals tokens: it must not be pooled.
    from mechsynth.dsl.program import Fn, Node

    assert pool.add(Node("map", (Fn("add", 1, (0,)), "tokens"))) is None


def test_user_registered_function_is_enumerated():
    with dsl.registry.scope():

        @dsl.register.function("triple", 1, cost=0.1)
        def _triple(x):
            return 3 * x

        inputs = _inputs()
        outputs = [[3 * v for v in x] for x in inputs]
        programs, _ = enumerate_programs(inputs, outputs, max_size=1)
        assert programs and "triple" in str(programs[0])


def test_fit_map_simplifies_to_a_closed_form():
    batch = dsl.encode(_inputs())
    pool = Pool(batch)
    target = pool.values["tokens"] * 2 + 1
    node = fit_map(pool, ["tokens"], target)
    assert node is not None
    values = pool.evaluate(node)
    assert torch.allclose(values[batch.mask], target[batch.mask])
    assert "table" not in str(node.args[0]), "2x+1 has a closed form"


def test_enumeration_is_seeded():
    inputs = _inputs(max_len=2)
    a = [str(p) for p in enumerate_programs(inputs, [[0] * len(x) for x in inputs], max_size=3, seed=1)[0]]
    b = [str(p) for p in enumerate_programs(inputs, [[0] * len(x) for x in inputs], max_size=3, seed=1)[0]]
    assert a == b


def _masked_equal(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> bool:
    from mechsynth.synth.propose.enumerate import _SCALE

    if a.dtype == torch.bool:
        return bool(torch.equal(a[mask], b[mask]))
    ra, rb = (torch.nan_to_num(torch.round(x[mask] * _SCALE), nan=-7.0e15) for x in (a, b))
    return bool(torch.equal(ra, rb))


def test_value_keys_tell_tensors_apart_on_the_real_positions_only():
    """Two value tensors get one key iff they agree where the mask is set (None included), whatever
    lies outside it: selectors ([N, T, T] bool) and numbers ([N, T], NaN for None)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mechsynth.synth.propose.enumerate import value_key

    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.booleans())
    def check(seed: int, selector: bool) -> None:
        gen = torch.Generator().manual_seed(seed)
        shape = (3, 4, 4) if selector else (3, 5)
        mask = torch.rand(shape, generator=gen) > 0.3
        if selector:
            a = torch.rand(shape, generator=gen) > 0.5
        else:
            a = torch.randint(0, 3, shape, generator=gen).double() / 2
            a[torch.rand(shape, generator=gen) > 0.8] = float("nan")
        junk = a.clone()
        junk[~mask] = (~a[~mask]) if selector else 7.0  # differs only off the mask
        flip = a.clone()
        where = torch.nonzero(mask)[: int(torch.randint(0, 2, (1,), generator=gen))]
        for idx in where.tolist():
            flip[tuple(idx)] = (not bool(a[tuple(idx)])) if selector else float(a[tuple(idx)]) + 0.5
        assert value_key(a, mask) == value_key(junk, mask)
        assert (value_key(a, mask) == value_key(flip, mask)) == _masked_equal(a, flip, mask)

    check()
