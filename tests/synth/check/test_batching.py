"""The fused pass (every block of a length group in one forward) against running the blocks one by one.

Same seed, same draws: every score, per-input array included, must agree to 1e-6 between
`Batching.FUSED` and `Batching.REFERENCE`, on tracr and trained targets, with ground-truth and
wrong hypotheses, and for every ablation and interchange mode.
"""

from __future__ import annotations


import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from score_compare import assert_scores_close

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.bench.perf import chain_probe_hypothesis
from mechsynth.synth.check.batching import Batching, Block, CleanRun, Patch, run_blocks
from mechsynth.synth.check.claims import prepare_groups, resolve_claims
from mechsynth.synth.check.patching import PassCounter
from mechsynth.synth.check.scoring import score
from mechsynth.synth.check.scrub import ABLATIONS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load(spec: str):
    from mechsynth.models import load_target

    return load_target(spec)


def wrong_reverse() -> Hypothesis:
    """tracr:reverse's ground truth with opp_idx_1 at the right layer but other dims."""
    h = load("tracr:reverse").ground_truth
    corr = dict(h.correspondence)
    corr["opp_idx_1"] = Location.parse("blocks.2.hook_mlp_out[dims=23,24,25,26,27,28,29,30,31,32]")
    return Hypothesis(h.program, corr)


def assert_same(a, b) -> None:
    assert_scores_close(a, b, ignore=frozenset({"forward_passes"}))


CASES = [
    ("tracr:reverse", "truth", {}),
    ("tracr:reverse", "wrong", {"lengths": "aligned"}),
    ("tracr:sort", "truth", {"ablation": "mean"}),
    ("trained:palindrome", "chain", {}),
    ("trained:dyck1", "chain", {"ablation": "zero", "n": 96}),
]


@pytest.mark.parametrize("spec,which,options", CASES)
def test_fused_pass_gives_the_reference_numbers(spec, which, options):
    target = load(spec)
    h = {"truth": lambda: target.ground_truth, "wrong": wrong_reverse,
         "chain": lambda: chain_probe_hypothesis(target.model.cfg.n_layers)}[which]()
    options = {"n": 128, "seed": 1, **options}
    fused = score(target, h, batching=Batching.FUSED, **options)
    reference = score(target, h, batching=Batching.REFERENCE, **options)
    assert_same(fused.to_json(), reference.to_json())
    groups = len(fused["lengths"])
    assert fused["forward_passes"] == 2 * groups  # the clean pass and one fused pass per length group
    assert reference["forward_passes"] > fused["forward_passes"]


def test_a_pull_reads_the_source_block_patched_at_an_earlier_hook():
    """A block reading another block's site sees that block's own patches upstream (a chain of two)."""
    target = load("tracr:reverse")
    claims = resolve_claims(target, target.ground_truth)
    group = prepare_groups(target, claims, target.task.sample(64, 0, length=4), PassCounter())[0]
    tokens, head = claims.claims["tokens"].site, claims.claims["reverse"].site
    n = group.size
    same = torch.arange(n)[:, None].expand(n, group.length)
    other_inputs = group.clean["tokens"][:, group.positions].flip(0)
    blocks = [  # the reader's last head reads the source's, which saw other inputs' tokens
        Block("source", group.tokens, (Patch(tokens, group.positions, values=other_inputs),), logits=False),
        Block("reader", group.tokens, (Patch(head, group.positions, source="source", rows=same),)),
    ]
    fused = run_blocks(target.model, blocks, PassCounter(), Batching.FUSED)
    reference = run_blocks(target.model, blocks, PassCounter(), Batching.REFERENCE)
    torch.testing.assert_close(fused["reader"], reference["reader"], atol=1e-6, rtol=0)
    assert not torch.allclose(fused["reader"], group.clean_logits)


def test_blocks_equal_to_clean_rows_leave_the_pass_and_keep_their_numbers():
    """Swapping tokens at every position is the source's clean run, swapping indices within one
    length changes nothing: both blocks are gathered from the clean pass, and a consumer of one
    reads the clean activations of the matched rows. Matching is per row: one changed entry makes
    that row run and no other, and a consumer's rows whose patch writes their own clean values stay
    clean rows."""
    target = load("trained:reverse")
    claims = resolve_claims(target, chain_probe_hypothesis(target.model.cfg.n_layers))
    group = prepare_groups(target, claims, target.task.sample(64, 0), PassCounter())[0]
    n, pos = group.size, group.positions
    site = {name: claims.claims[name].site for name in ("tokens", "indices", "copy0")}
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    swapped = group.clean["tokens"][perm][:, pos]
    other_positions = group.clean["indices"].flip(0)[:, pos]
    off = swapped.clone()
    off[0, 0, 0] += 1.0
    same = torch.arange(n)[:, None].expand(n, group.length)
    blocks = [
        Block("tokens", group.tokens, (Patch(site["tokens"], pos, values=swapped),), logits=False),
        Block("indices", group.tokens, (Patch(site["indices"], pos, values=other_positions),)),
        Block("off", group.tokens, (Patch(site["tokens"], pos, values=off),)),
        Block("reader", group.tokens, (Patch(site["copy0"], pos, source="tokens", rows=same),)),
    ]
    counter = PassCounter()
    reusing = run_blocks(target.model, blocks, counter, Batching.FUSED, CleanRun.of_group(group, claims))
    fused = run_blocks(target.model, blocks, PassCounter(), Batching.FUSED)
    reference = run_blocks(target.model, blocks, PassCounter(), Batching.REFERENCE)
    # "tokens" and "indices" did not run; of "off" only its changed row; of "reader" the rows whose
    # copy0 from the permuted input differs from their own.
    copy0 = group.clean["copy0"][:, pos]
    differs = int((copy0[perm] != copy0).flatten(1).any(1).sum())
    assert 0 < differs < n
    assert counter.sequences == 1 + differs
    assert torch.equal(reusing["tokens"], group.clean_logits[perm])
    assert torch.equal(reusing["indices"], group.clean_logits)
    for name in ("indices", "off", "reader"):
        torch.testing.assert_close(reusing[name], reference[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(reusing[name], fused[name], atol=1e-5, rtol=0)
    assert not torch.allclose(reusing["off"][0], group.clean_logits[perm][0], atol=1e-6)
    assert not torch.allclose(reusing["reader"], group.clean_logits, atol=1e-3)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n=st.integers(8, 48), ablation=st.sampled_from(ABLATIONS))
def test_fused_equals_reference_for_any_seed(seed, n, ablation):
    target = load("tracr:hist")
    h = target.ground_truth
    fused = score(target, h, n=n, seed=seed, ablation=ablation, n_broader=8)
    reference = score(target, h, n=n, seed=seed, ablation=ablation, n_broader=8, batching=Batching.REFERENCE)
    assert_same(fused.to_json(), reference.to_json())


def test_rows_enter_the_network_at_their_first_patched_block(monkeypatch):
    """tracr:reverse's ground truth: every block left to run patches only ``reverse`` (block 3's
    ``hook_z``) and reads nothing earlier, so all its rows join the pass inside block 3, at the
    attention's output projection, from the clean residual and z, and the numbers are the
    one-block-per-pass reference's."""
    from mechsynth.models.bridge import Stage
    from mechsynth.synth.check import patching

    entered: list[list[tuple[int, Stage]]] = []
    real = patching.staged_forward

    def spy(model, tokens, entering=()):
        start = [(-1, Stage.BLOCK)] if tokens.shape[0] else []
        entered.append([(e.layer, e.stage) for e in entering] + start)
        return real(model, tokens, entering)

    monkeypatch.setattr(patching, "staged_forward", spy)
    target = load("tracr:reverse")
    fused = score(target, target.ground_truth, n=64, seed=0, lengths="same")
    assert entered and all(points == [(3, Stage.ATTN_OUT)] for points in entered)
    reference = score(target, target.ground_truth, n=64, seed=0, lengths="same", batching=Batching.REFERENCE)
    assert_same(fused.to_json(), reference.to_json())
