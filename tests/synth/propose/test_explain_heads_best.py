"""Sorting heads: the head explainer proposes select_best when no plain selector fits the head."""

from __future__ import annotations

import itertools

import pytest
import torch

from mechsynth import dsl
from mechsynth.dsl.primitives import best_keys
from mechsynth.dsl.program import Direction, Node
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.explain_heads import (
    COMPOSITE_GAIN, BestOf, _add_best_of, _best_of_node, explain_head_soft,
)
from mechsynth.synth.propose.match_stats import argmax_agreement, selector_agreement

GREATER = Node("select", ("tokens", "tokens", "GT"), None)
SMALLER = Node("select", ("tokens", "tokens", "LT"), None)
EVERY = Node("select", ("tokens", "tokens", "TRUE"), None)


def _pool() -> Pool:
    inputs = [list(x) for x in itertools.product((0, 1, 2, 3), repeat=4)]
    return Pool(dsl.encode(inputs))


def _rankings(pool: Pool, pattern: torch.Tensor, bos: torch.Tensor):
    mask = pool.batch.mask

    def agreements_of(values):
        return [("all", argmax_agreement(values, pattern, bos, mask))]

    ranking, bases = [], []
    for node in (GREATER, SMALLER, EVERY):
        values = pool.evaluate(node)
        ranking.append((agreements_of(values)[0][1], -2.0, "all", node, values))
        bases.append((2.0, node, values))
    return (ranking,), agreements_of, bases


def _soft(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A soft head: 0.8 spread over the selected keys, 0.2 over every key; on BOS where none is selected."""
    t = sel.shape[-1]
    width = sel.double().sum(-1, keepdim=True)
    some = width > 0
    spread = 0.8 * sel.double() / width.clamp(min=1) + 0.2 / t
    pattern = torch.where(some, spread, torch.full_like(width, 0.02))
    return pattern, (~some[..., 0]).double() * 0.9


def test_a_head_on_the_next_larger_token_is_matched_by_select_best():
    pool = _pool()
    greater = pool.evaluate(GREATER)
    want = best_keys(greater, pool.values["tokens"], Direction.ARGMIN)
    pattern, bos = _soft(want)
    rankings, agreements_of, bases = _rankings(pool, pattern, bos)
    best_plain = max(t[0] for t in rankings[0])
    assert best_plain < 0.9  # no plain select names the next larger token
    _add_best_of(rankings, agreements_of, pool, bases, None)
    agreement, _, _, entry, values = max(rankings[0], key=lambda t: (t[0], t[1]))
    assert isinstance(entry, BestOf)
    assert (entry.base, entry.scores, entry.direction) == (GREATER, "tokens", Direction.ARGMIN)
    # The statistic charges every row for the share of keys it selects, so the exact selector's
    # agreement is below 1; the proposal reaches it.
    assert agreement == pytest.approx(agreements_of(want)[0][1])
    assert agreement >= best_plain + COMPOSITE_GAIN
    assert bool((values == want).all())
    # Pooled, it is a DSL selector with exactly these values.
    node = _best_of_node(pool, entry, Node("select", ("indices", "indices", "LEQ"), None), "sel1_0_")
    assert node is not None and node.op == "select_best"
    assert bool((pool.evaluate(node) == want).all())


def test_a_head_a_plain_select_explains_gets_no_select_best():
    pool = _pool()
    # Spread evenly over the larger tokens: select(tokens, tokens, GT) itself.
    greater = pool.evaluate(GREATER)
    pattern = greater.double() / greater.double().sum(-1, keepdim=True).clamp(min=1)
    bos = (~greater.any(-1)).double()
    mask = pool.batch.mask

    def agreements_of(values):
        return [("all", selector_agreement(values, pattern, bos, mask))]

    ranking = [(agreements_of(pool.evaluate(n))[0][1], -2.0, "all", n, pool.evaluate(n))
               for n in (GREATER, SMALLER, EVERY)]
    rankings = (ranking,)
    _add_best_of(rankings, agreements_of, pool, [(2.0, n, pool.evaluate(n)) for n in (GREATER, EVERY)],
                 None)
    assert all(not isinstance(t[3], BestOf) for t in rankings[0])


def test_a_causal_head_narrows_its_past_keys_before_choosing_the_best():
    pool = _pool()
    past = pool.evaluate(Node("select", ("indices", "indices", "LEQ"), None))
    entry = BestOf(EVERY, "tokens", Direction.ARGMAX, causal=True)
    node = _best_of_node(pool, entry, Node("select", ("indices", "indices", "LEQ"), None), "sel0_0_")
    got = pool.evaluate(node)
    want = best_keys(pool.evaluate(EVERY) & past, pool.values["tokens"], Direction.ARGMAX)
    assert bool((got == want).all())
    # The running maximum of the prefix, not the maximum of the whole input.
    prog = dsl.parse("s = select(tokens, tokens, TRUE)\npast = select(indices, indices, LEQ)\n"
                     "both = selector_and(s, past)\nb = select_best(both, tokens, ARGMAX)\n"
                     "out = aggregate(b, tokens)\n")
    assert dsl.evaluate(prog, [[1, 0, 3, 2]]) == [[1, 1, 3, 3]]


@pytest.mark.slow
def test_trained_sort_after_sep_is_explained_by_a_sorting_head(tmp_path):
    """The whole run on the trained network: model-guided proposes a select_best head and it is accepted."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mechsynth.synth.cli", "run", "trained:sort_after_sep", "--no-llm",
         "--proposers", "model-guided", "--budget-seconds", "150", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 accepted" in out.stdout and "select_best(" in out.stdout


def test_a_separator_query_is_relabelled_to_the_start_of_the_order():
    from mechsynth.synth.propose.explain_heads import _symbols_beyond

    inputs = [[a, b, "SEP", min(a, b)] for a in range(4) for b in range(4) if a != b]
    pool = Pool(dsl.encode(inputs))
    name = _symbols_beyond(pool, "tokens", "tokens", "GT")
    assert name is not None and _symbols_beyond(pool, "tokens", "tokens", "GT") == name  # pooled once
    assert _symbols_beyond(pool, "tokens", "tokens", "EQ") is None  # only orders have a start
    node = Node("select", ("tokens", name, "GT"), None)
    chosen = best_keys(pool.evaluate(node), pool.values["tokens"], Direction.ARGMIN)
    # From SEP the smallest body token is chosen (and its copy, a tie, at the first output);
    # from the first output, the next one.
    for i, x in enumerate(inputs):
        row_sep = chosen[i, 2].nonzero().reshape(-1).tolist()
        assert row_sep == [x.index(min(x[0], x[1])), 3]
        row_next = chosen[i, 3].nonzero().reshape(-1).tolist()
        assert [x[k] for k in row_next] == [max(x[0], x[1])]


def _split_sorting_layer(split: bool):
    """A bidirectional 2-head layer attending to the next larger token; ``split``: head 0 for
    next values below 5, head 1 for the rest (each rests on BOS otherwise), else both do all."""
    from mechsynth.synth.observe import LengthGroup, Observations

    inputs = [list(p) for p in itertools.permutations(range(9), 4)][::7]
    n, t, d = len(inputs), 4, 9
    pattern = torch.zeros(n, 2, t, t, dtype=torch.float64)
    bos = torch.zeros(n, 2, t, dtype=torch.float64)
    z = torch.zeros(n, t, 2, d)
    outputs = []
    for i, x in enumerate(inputs):
        row = []
        for q in range(t):
            above = [v for v in x if v > x[q]]
            nxt = min(above) if above else None
            row.append(nxt)
            for h in range(2):
                mine = nxt is not None and (not split or (nxt < 5) == (h == 0))
                if mine:
                    pattern[i, h, q] = 0.1 / t
                    pattern[i, h, q, x.index(nxt)] += 0.85
                    bos[i, h, q] = 0.05
                    z[i, q, h, nxt] = 1.0
                else:
                    pattern[i, h, q] = 0.05 / t
                    bos[i, h, q] = 0.95
        outputs.append(tuple(row))
    group = LengthGroup(t, tuple(map(tuple, inputs)), tuple(outputs), {"blocks.0.attn.hook_z": z},
                        (pattern.float(),), (bos.float(),))
    obs = Observations("synthetic", (group,), 1, 2, 12, "all", "categorical")
    return inputs, obs, pattern, bos


@pytest.mark.parametrize("split", [True, False])
def test_heads_splitting_one_selection_are_explained_together(split):
    from mechsynth.dsl.location import Location
    from mechsynth.synth.propose.explain_heads import explain_layer_soft
    from mechsynth.synth.propose.guided_state import GuidedState, MatchThresholds

    inputs, obs, pattern, bos = _split_sorting_layer(split)
    pool = Pool(dsl.encode(inputs))
    th = MatchThresholds.soft()
    state = GuidedState(pool, thresholds=th)
    avail = ["tokens", "indices"]
    for h in range(2):
        state.heads[(0, h)] = explain_head_soft(pool, state, obs, 0, h, obs.flat("blocks.0.attn.hook_z", h),
                                                pattern[:, h], bos[:, h], avail, th)
    located_before = dict(state.located)
    joint = explain_layer_soft(pool, state, obs, 0, pattern, bos, avail, th)
    singles = [state.heads[(0, h)]["agreement"] for h in range(2)]
    if not split:  # each head is the whole selector already: nothing joint is kept
        assert joint is None and state.located == located_before
        return
    assert joint is not None and joint["agreement"] >= max(singles) + COMPOSITE_GAIN
    name = joint["aggregates"][0]
    assert state.located[name].location == Location("blocks.0.attn.hook_z")
    through = pool.items[name].node.args[0]  # the aggregate's selector
    assert pool.items[through].node.op == "select_best"
    singles_ops = {pool.items[s].node.op for h in range(2) for s in state.heads[(0, h)]["selectors"]}
    assert "select_best" not in singles_ops  # no single head is the sorting selector
    want = [list(row) for row in obs.groups[0].outputs]
    got = dsl.decode(pool.values[name], "value", pool.batch)
    assert all(g == w for gr, wr in zip(got, want) for g, w in zip(gr, wr) if w is not None)
