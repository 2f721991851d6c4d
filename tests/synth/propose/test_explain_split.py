"""A head split over two keys (its operands) and an MLP that is a lookup of both (explain_heads/explain_mlps).

The constructed case is a modular sum as a trained network computes it: at the read position
(the last) a head attends to the two operand positions with weights that depend on both
operands, writing their mixture; the MLP's output there is a function of (a + b) mod P.
"""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.dsl.program import Node
from mechsynth.synth.propose.enumerate import Pool, encode_outputs
from mechsynth.synth.propose.explain_heads import _shifted_predicate, mixture_fit, split_operands
from mechsynth.synth.propose.explain_mlps import read_lookup
from mechsynth.synth.propose.guided_state import GuidedState, MatchThresholds

P = 7


def _case(seed: int = 0):
    inputs = [[a, b, "="] for a, b in itertools.product(range(P), repeat=2)]
    pool = Pool(dsl.encode(inputs))
    n, t = pool.batch.mask.shape
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor([x[0] for x in inputs], dtype=torch.float64)
    b = torch.tensor([x[1] for x in inputs], dtype=torch.float64)
    w = torch.sigmoid(0.7 * (a - b) + 0.3)  # the weight on operand a depends on both operands
    pattern = torch.zeros(n, t, t, dtype=torch.float64)
    pattern[:, 2, 0], pattern[:, 2, 1] = w, 1 - w
    pattern[:, 0, 0] = 1.0
    pattern[:, 1, :2] = 0.5
    value = torch.randn(P, 8, generator=g, dtype=torch.float64)
    z = torch.zeros(n, t, 8, dtype=torch.float64)
    z[:, 2] = w[:, None] * value[a.long()] + (1 - w)[:, None] * value[b.long()]
    z[:, 0] = value[a.long()]
    z[:, 1] = 0.5 * (value[a.long()] + value[b.long()])
    read = torch.zeros(n, t, dtype=torch.bool)
    read[:, 2] = True
    return inputs, pool, pattern, z[pool.batch.mask], read


def _singles(pool: Pool):
    nodes = [Node("select", ("indices", "indices", _shifted_predicate(torch.eq, c)), None) for c in (1, 2)]
    nodes.append(Node("select", ("indices", "indices", "EQ"), None))
    return [(1.0, node, pool.evaluate(node)) for node in nodes]


def test_a_head_split_over_two_keys_reads_both_operands():
    _, pool, pattern, z, read = _case()
    th = MatchThresholds.soft()
    split = split_operands(pool, GuidedState(pool), z, pattern, ["tokens"], th, _singles(pool),
                           {"read": read})
    assert split is not None
    assert split.mass > 0.99 and split.decode == 1.0 and split.r2 > 0.99
    first, second = (pool.values[name][:, 2] for name in split.operands)
    assert torch.equal(first, pool.values["tokens"][:, 0])  # operands in input order
    assert torch.equal(second, pool.values["tokens"][:, 1])


def test_no_split_when_one_key_holds_the_attention_or_the_output_is_no_mixture():
    _, pool, pattern, z, read = _case()
    th = MatchThresholds.soft()
    one = pattern.clone()
    one[:, 2, 0], one[:, 2, 1] = 1.0, 0.0
    one_key = split_operands(pool, GuidedState(pool), z, one, ["tokens"], th, _singles(pool), {"read": read})
    assert one_key is None
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert split_operands(pool, GuidedState(pool), noise, pattern, ["tokens"], th, _singles(pool),
                          {"read": read}) is None


def test_mixture_fit_is_exact_on_a_mixture_and_poor_on_noise():
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (300,), generator=g)
    w = torch.rand(300, generator=g, dtype=torch.float64) * 0.8 + 0.1
    m = torch.randn(5, 6, generator=g, dtype=torch.float64)
    z = w[:, None] * m[x1] + (1 - w)[:, None] * m[x2]
    r2, decode = mixture_fit(z, [w, 1 - w], [x1.double(), x2.double()])
    assert r2 > 0.999 and decode > 0.95
    r2, decode = mixture_fit(torch.randn(300, 6, generator=g, dtype=torch.float64), [w, 1 - w],
                             [x1.double(), x2.double()])
    assert r2 < 0.3 and decode < 0.3


def test_an_mlp_that_computes_the_sum_is_a_fitted_modular_lookup_despite_a_few_network_mistakes():
    inputs, pool, pattern, z, read = _case()
    th = MatchThresholds.soft()
    state = GuidedState(pool)
    split = split_operands(pool, state, z, pattern, ["tokens"], th, _singles(pool), {"read": read})
    assert split is not None
    total = [(a + b) % P for a, b, _ in inputs]
    outputs = [[None, None, s] for s in total]
    outputs[3][2] = (outputs[3][2] + 1) % P  # the network errs on two inputs
    outputs[10][2] = (outputs[10][2] + 2) % P
    target, read_out = encode_outputs(pool.batch, outputs)
    n, t = pool.batch.mask.shape
    features = torch.randn(P, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    act = torch.zeros(n, t, 16, dtype=torch.float64)
    act[:, 2] = features[torch.tensor(total)]
    act[:, :2] = torch.randn(n, 2, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    found = read_lookup(pool, state, 0, act[pool.batch.mask], list(split.operands), th,
                        (target, read_out, 1e-6))
    assert found is not None
    assert found["lookup"] == f"seqmap(Mod(x + y, {P}), {split.operands[0]}, {split.operands[1]})"
    assert found["decode"] == 1.0 and found["agreement"] < 1.0  # kept although the network errs
    assert state.located[found["name"]].location.hook == "blocks.0.hook_mlp_out"


def test_no_lookup_when_the_mlp_output_does_not_hold_it():
    inputs, pool, pattern, z, read = _case()
    th = MatchThresholds.soft()
    state = GuidedState(pool)
    split = split_operands(pool, state, z, pattern, ["tokens"], th, _singles(pool), {"read": read})
    outputs = [[None, None, (a + b) % P] for a, b, _ in inputs]
    target, read_out = encode_outputs(pool.batch, outputs)
    noise = torch.randn(pool.batch.mask.shape + (16,), generator=torch.Generator().manual_seed(5),
                        dtype=torch.float64)
    found = read_lookup(pool, state, 0, noise[pool.batch.mask], list(split.operands), th,
                        (target, read_out, 1e-6))
    assert found is None
