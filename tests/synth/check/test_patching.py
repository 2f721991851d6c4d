"""Unit tests of the patching machinery on a tiny random TransformerBridge (no tracr, no DSL)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.dsl.location import Location
from mechsynth.synth.check.patching import CheckError, Edit, PassCounter, probe, readout_loss, resolve, run
from mechsynth.synth.check.scrub import agreeing_rows


@pytest.fixture(scope="module")
def model():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(0)
    cfg = TransformerBridgeConfig(
        n_layers=2, d_model=8, d_head=4, n_heads=2, d_mlp=16, d_vocab=5, d_vocab_out=4, n_ctx=6,
        act_fn="relu", normalization_type=None, attention_dir="bidirectional",
    )
    m = TransformerBridge.boot_native(cfg)
    m.eval()
    return m


@pytest.fixture(scope="module")
def info(model):
    return probe(model)


def test_probe_orders_hooks_in_execution_order(model, info):
    embed = resolve(model, Location("hook_embed"), info)
    z0 = resolve(model, Location("blocks.0.attn.hook_z", head=1), info)
    mlp0 = resolve(model, Location("blocks.0.hook_mlp_out"), info)
    z1 = resolve(model, Location("blocks.1.attn.hook_z", head=0), info)
    assert embed.order < z0.order < mlp0.order < z1.order
    assert z0.shape == (2, 4) and mlp0.shape == (8,)


@pytest.mark.parametrize(
    "location, message",
    [
        (Location("blocks.9.attn.hook_z", head=0), "no hook"),
        (Location("blocks.0.attn.hook_zz", head=0), "no hook"),
        (Location("blocks.0.attn.hook_z", head=2), "head 2 out of range"),
        (Location("blocks.0.hook_mlp_out", head=0), "no head axis"),
        (Location("blocks.0.hook_mlp_out", dims=(3, 8)), "dim 8 out of range"),
        (Location("blocks.0.attn.hook_z", head=0, dims=(4,)), "dim 4 out of range"),
        (Location("blocks.0.attn.hook_z", dims=(1,)), "need a head index"),
        (Location("blocks.0.attn.hook_pattern"), "no per-position axis"),
    ],
)
def test_bad_locations_raise_check_error(model, info, location, message):
    with pytest.raises(CheckError, match=message):
        resolve(model, location, info)


def test_run_without_edits_is_the_clean_forward(model):
    tokens = torch.randint(0, 5, (3, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model(tokens)
    logits, _ = run(model, tokens)
    assert torch.equal(logits, clean)


def test_head_edit_only_changes_that_head_and_later_positions_of_the_network(model, info):
    tokens = torch.randint(0, 5, (3, 6), generator=torch.Generator().manual_seed(2))
    h1 = resolve(model, Location("blocks.0.attn.hook_z", head=1), info)
    h0 = resolve(model, Location("blocks.0.attn.hook_z", head=0), info)
    _, clean = run(model, tokens, capture=[h0, h1])
    new = torch.zeros_like(clean[h1][:, 2:4])
    counter = PassCounter()
    _, acts = run(model, tokens, [Edit(h1, new, slice(2, 4))], capture=[h0, h1], counter=counter)
    assert counter.passes == 1
    assert torch.equal(acts[h0], clean[h0])  # the other head is untouched
    assert torch.equal(acts[h1][:, 2:4], new)
    assert torch.equal(acts[h1][:, :2], clean[h1][:, :2])


def test_dims_edit_keeps_the_complement(model, info):
    tokens = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(3))
    part = resolve(model, Location("blocks.0.hook_mlp_out", dims=(1, 5)), info)
    whole = resolve(model, Location("blocks.0.hook_mlp_out"), info)
    _, clean = run(model, tokens, capture=[whole])
    _, acts = run(model, tokens, [Edit(part, torch.full((2, 6, 2), 7.0))], capture=[whole])
    changed = (acts[whole] != clean[whole]).any(0).any(0)
    assert changed.nonzero().flatten().tolist() == [1, 5]


def test_patching_a_head_from_another_input_reproduces_that_inputs_head_output(model, info):
    # Patching hook_z of every head of the last layer from input B into input A gives exactly B's
    # logits when A and B share the residual stream before it: use identical tokens except nowhere.
    gen = torch.Generator().manual_seed(4)
    a = torch.randint(0, 5, (4, 6), generator=gen)
    z = resolve(model, Location("blocks.1.attn.hook_z"), info)
    mlp = resolve(model, Location("blocks.1.hook_mlp_out"), info)
    _, clean_a = run(model, a, capture=[z, mlp])
    logits, acts = run(model, a, [Edit(z, clean_a[z])], capture=[mlp])
    assert torch.allclose(acts[mlp], clean_a[mlp], atol=1e-6)


def test_capture_without_logits_stops_early(model, info):
    tokens = torch.zeros(1, 3, dtype=torch.long)
    site = resolve(model, Location("hook_embed"), info)
    logits, acts = run(model, tokens, capture=[site], need_logits=False)
    assert logits is None and acts[site].shape == (1, 3, 8)


def test_readout_loss_is_zero_on_the_clean_logits():
    logits = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(5))
    assert readout_loss(logits, logits, [1, 2], None).abs().max() < 1e-12
    assert readout_loss(logits, logits, [1, 2], 0).abs().max() == 0
    other = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(6))
    assert (readout_loss(other, logits, [1, 2], None) > 0).all()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1), st.booleans()
)
def test_agreeing_rows_always_agree(n, length, n_values, seed, with_none):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, n_values, (n, length), generator=gen).double()
    if with_none:
        codes[codes == 0] = float("nan")
    rows = agreeing_rows(codes, gen)
    assert rows.shape == (n, length) and rows.min() >= 0 and rows.max() < n
    picked = torch.gather(codes, 0, rows)
    assert torch.equal(torch.nan_to_num(picked, nan=-1.0), torch.nan_to_num(codes, nan=-1.0))


def test_agreeing_rows_is_uniform_over_the_agreeing_set():
    codes = torch.tensor([[0.0], [1.0], [0.0], [0.0], [1.0]]).repeat(1, 2)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(300):
        counts += torch.bincount(agreeing_rows(codes, gen)[0], minlength=5)  # row 0, code 0
    assert counts[1] == 0 and counts[4] == 0
    assert all(140 < c < 260 for c in counts[[0, 2, 3]].tolist())  # 600 draws: ~200 each


def test_agreeing_rows_of_distinct_codes_is_the_identity():
    codes = torch.arange(12.0).view(4, 3)
    rows = agreeing_rows(codes, torch.Generator().manual_seed(0))
    assert torch.equal(rows, torch.arange(4)[:, None].expand(4, 3))


def test_subspace_site_swaps_only_its_component():
    import math

    from mechsynth.dsl.location import Location, Subspace
    from mechsynth.synth.check.patching import Site

    r = 1 / math.sqrt(2)
    site = Site(Location("blocks.0.hook_resid_post", subspace=Subspace(((r, r, 0.0),))), "h", 0, (3,))
    base = torch.tensor([[[1.0, 0.0, 5.0]]])
    src = torch.tensor([[[0.0, 2.0, -1.0]]])
    act = base.clone()
    site.write(act, site.read(src))
    # x + R R^T (x_src - x): the (1, 1, 0) component becomes the source's, the rest stays the base's
    assert torch.allclose(site.read(act), site.read(src), atol=1e-6)
    assert torch.allclose(act, torch.tensor([[[1.5, 0.5, 5.0]]]), atol=1e-6)


def test_explicit_basis_is_the_stored_subspace_and_differentiable():
    """Site.write(basis=R) (what DAS trains through) is the same swap as a site holding R as its
    subspace (what the checks score), and carries gradients to R."""
    from mechsynth.dsl.location import Location, Subspace
    from mechsynth.synth.check.patching import Site, subspace_matrix

    gen = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(5, 2, generator=gen, dtype=torch.float64)).Q
    stored = Site(Location("h", subspace=Subspace(tuple(tuple(c) for c in q.T.tolist()))), "h", 0, (5,))
    whole = Site(Location("h"), "h", 0, (5,))
    base, src = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    r = subspace_matrix(stored.location.subspace).float()
    a, b = base.clone(), base.clone()
    stored.write(a, stored.read(src, slice(1, 3)), slice(1, 3))
    whole.write(b, whole.read(src, slice(1, 3), basis=r), slice(1, 3), basis=r)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(a[:, [0, 3]], base[:, [0, 3]])  # positions outside the slice untouched
    w = r.clone().requires_grad_(True)
    c = base.clone()
    whole.write(c, src @ w, basis=w)
    (grad,) = torch.autograd.grad(c.sum(), [w])
    assert grad.abs().sum() > 0
    with pytest.raises(CheckError):
        Site(Location("h", dims=(0, 1)), "h", 0, (5,)).write(base.clone(), src[..., :2], basis=r)
