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


def _moving_case(seed: int = 0):
    """``a1 a2 + b1 b2 =`` read at b2 and ``=``: the head reads (a2, b2) from b2 and (a1, b1) from ``=``.

    The keys move with the query (no fixed offset names them), the head rests part of its weight
    on the fixed ``+`` at ``=``, and each key's value vector is a joint function of its token and
    its position (as after a LayerNorm), not a sum of the two.
    """
    from mechsynth.synth.propose.explain_heads import _split_selectors

    inputs = [[a1, a2, "+", b1, b2, "="] for a1, a2, b1, b2 in itertools.product(range(4), repeat=4)]
    pool = Pool(dsl.encode(inputs))
    n, t = pool.batch.mask.shape
    g = torch.Generator().manual_seed(seed)
    digits = torch.tensor([[x[0], x[1], 0, x[3], x[4], 0] for x in inputs])
    value = torch.randn(t, 4, 8, generator=g, dtype=torch.float64)  # per (position, token)
    w = torch.sigmoid(0.5 * (digits[:, 0] - digits[:, 3]).double())
    pattern = torch.zeros(n, t, t, dtype=torch.float64)
    for q in range(4):
        pattern[:, q, q] = 1.0
    pattern[:, 4, 1], pattern[:, 4, 4] = w, 1 - w
    pattern[:, 5, 0], pattern[:, 5, 3], pattern[:, 5, 2] = 0.8 * w, 0.8 * (1 - w), 0.2
    vec = torch.stack([value[p][digits[:, p]] for p in range(t)], 1)  # [n, key, 8]
    z = torch.einsum("nqk,nkd->nqd", pattern, vec)
    read = torch.zeros(n, t, dtype=torch.bool)
    read[:, 4:] = True
    singles = []
    for _k, _q, node in _split_selectors(pool, GuidedState(pool), pattern, read, ["indices"]):
        singles.append((1.0, node, pool.evaluate(node)))
    return pool, pattern, z[pool.batch.mask], read, singles


def test_a_split_head_whose_keys_move_with_the_query_reads_the_aligned_operands():
    pool, pattern, z, read, singles = _moving_case()
    assert len(singles) == 2
    split = split_operands(pool, GuidedState(pool), z, pattern, ["tokens"], MatchThresholds.soft(), singles,
                           {"read": read})
    assert split is not None and split.decode == 1.0 and split.r2 > 0.99
    tokens = pool.values["tokens"]
    first, second = (pool.values[name] for name in split.operands)
    assert torch.equal(first[:, 4], tokens[:, 1]) and torch.equal(second[:, 4], tokens[:, 4])
    assert torch.equal(first[:, 5], tokens[:, 0]) and torch.equal(second[:, 5], tokens[:, 3])


def test_a_moving_split_is_no_mixture_of_noise():
    pool, pattern, z, read, singles = _moving_case()
    th = MatchThresholds.soft()
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    found = split_operands(pool, GuidedState(pool), noise, pattern, ["tokens"], th, singles, {"read": read})
    assert found is None


def test_mixture_fit_needs_one_vector_per_value_and_key_position_after_a_layernorm():
    g = torch.Generator().manual_seed(3)
    rows = 400
    x1, x2 = torch.randint(0, 5, (rows,), generator=g), torch.randint(0, 5, (rows,), generator=g)
    p1 = torch.randint(0, 2, (rows,), generator=g)
    p2 = p1 + 3
    m = torch.randn(6, 5, 8, generator=g, dtype=torch.float64)  # not additive in (position, value)
    w = torch.rand(rows, generator=g, dtype=torch.float64) * 0.8 + 0.1
    z = w[:, None] * m[p1, x1] + (1 - w)[:, None] * m[p2, x2]
    plain = mixture_fit(z, [w, 1 - w], [x1.double(), x2.double()])
    by_position = mixture_fit(z, [w, 1 - w], [x1.double(), x2.double()], [p1.double(), p2.double()])
    assert by_position[0] > 0.999 and by_position[1] == 1.0
    assert plain[0] < 0.9 and plain[1] < 0.9


def test_constant_keys_are_the_fixed_tokens_and_positional_values_read_no_token():
    from mechsynth.synth.propose.explain_heads import constant_keys, positional

    pool, *_ = _moving_case()
    fixed = constant_keys(pool)
    assert fixed[:, [2, 5]].all() and not fixed[:, [0, 1, 3, 4]].any()
    assert positional(pool, "indices") and not positional(pool, "tokens")
    back = Node("aggregate", (pool.add(Node("select", ("indices", "indices", _shifted_predicate(torch.eq, 1)),
                                            None), prefix="s"), "indices", None), "categorical")
    assert positional(pool, pool.add(back, prefix="a"))


def test_two_key_rows_are_the_queries_reading_two_informative_keys():
    from mechsynth.synth.propose.explain_heads import two_key_rows

    pool, pattern, *_ = _moving_case()
    rows = two_key_rows(pool, pattern)
    assert rows[:, 4:].all() and not rows[:, :4].any()
    # Resting on the fixed '+' is not reading it: with all of q5's weight on a1 and '+', q5 reads one key.
    one = pattern.clone()
    one[:, 5] = 0.0
    one[:, 5, 0], one[:, 5, 2] = 0.6, 0.4
    assert not two_key_rows(pool, one)[:, 5].any()
