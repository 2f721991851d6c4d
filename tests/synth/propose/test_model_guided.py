"""Soft head matching for trained networks: functional (mirrored) and causal selectors."""

from __future__ import annotations

import itertools

import torch

from mechsynth import dsl
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.explain_heads import _functional_selectors, _is_causal
from mechsynth.synth.propose.guided_state import GuidedState
from mechsynth.synth.propose.match_stats import selector_agreement


def _pool(length: int = 4) -> Pool:
    inputs = [list(x) for x in itertools.product((1, 2, 3), repeat=length)]
    pool = Pool(dsl.encode(inputs))
    return pool


def test_mirrored_head_is_matched_by_a_fitted_query_map():
    pool = _pool()
    n, t = pool.batch.mask.shape
    mirror = torch.zeros(n, t, t, dtype=torch.float64)
    for q in range(t):
        mirror[:, q, t - 1 - q] = 1.0
    reps = ["tokens", "indices"]
    found = list(_functional_selectors(pool, GuidedState(pool), mirror, pool.batch.mask, reps))
    keys = [(k, q) for k, q, _ in found]
    assert ("indices", "indices") in keys
    node = next(node for k, q, node in found if (k, q) == ("indices", "indices"))
    values = pool.evaluate(node)
    assert bool((values.double() == (mirror > 0.5).double()).all())


def test_identity_head_offers_no_functional_selector():
    pool = _pool()
    n, t = pool.batch.mask.shape
    eye = torch.eye(t, dtype=torch.float64).expand(n, t, t).clone()
    found = list(_functional_selectors(pool, GuidedState(pool), eye, pool.batch.mask, ["indices"]))
    assert found == []


def test_causal_patterns_are_detected():
    t = 5
    lower = torch.tril(torch.ones(t, t, dtype=torch.float64))
    causal = (lower / lower.sum(-1, keepdim=True)).expand(3, t, t)
    full = torch.full((3, t, t), 1.0 / t, dtype=torch.float64)
    pair_mask = torch.ones(3, t, t, dtype=torch.bool)
    assert _is_causal(causal, pair_mask)
    assert not _is_causal(full, pair_mask)


def test_spread_head_agrees_with_its_uniform_selector():
    t = 4
    sel = torch.tril(torch.ones(2, t, t, dtype=torch.bool))
    pattern = sel.double() / sel.double().sum(-1, keepdim=True)
    mask = torch.ones(2, t, dtype=torch.bool)
    bos = torch.zeros(2, t, dtype=torch.float64)
    assert selector_agreement(sel, pattern, bos, mask) > 0.999
    assert selector_agreement(torch.ones_like(sel), pattern, bos, mask) < 0.9


def _with_network_errors(obs, every: int):
    """The same observations with the network's output changed at every ``every``-th read position."""
    import dataclasses

    values = sorted({v for v in obs.network_outputs() if v is not None})
    k = 0
    groups = []
    for g in obs.groups:
        rows = []
        for row in g.outputs:
            out = []
            for v in row:
                if v is not None:
                    k += 1
                    if k % every == 0:
                        v = values[(values.index(v) + 1) % len(values)]
                out.append(v)
            rows.append(tuple(out))
        groups.append(dataclasses.replace(g, outputs=tuple(rows)))
    return dataclasses.replace(obs, groups=tuple(groups))


def test_a_network_that_errs_on_a_few_inputs_still_gets_its_program_proposed(target_named):
    import dataclasses

    from mechsynth.synth.accept import Thresholds
    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose.enumerate import agreement
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import compose, network_outputs, walk

    clean = observe(target_named("tracr:hist"), per_length=64)
    noisy = _with_network_errors(clean, every=50)  # 2% of the read positions wrong

    exact = walk(noisy, MatchThresholds())
    assert exact.outputs == []
    assert any(n.startswith("output: no located variable") and "agrees on 0.98" in n for n in exact.notes)

    scored = walk(noisy, dataclasses.replace(MatchThresholds(), output=Thresholds().prefilter_behaviour))
    assert scored.outputs, scored.notes
    out = scored.outputs[0]
    assert 0.97 <= scored.output_agreement[out] < 1.0
    # What is proposed is the network's real program: it agrees with the clean outputs everywhere.
    target_codes, read, atol = network_outputs(scored.pool, clean)
    assert agreement(scored.pool.values[out], target_codes, read, atol) == 1.0
    hyp, meta = next(compose(scored, noisy))
    assert meta["output"] == out and hyp.correspondence


def test_an_output_computed_after_the_last_explained_component_is_a_fitted_function(target_named):
    """frac_prevs's head computes the prefix fraction; a readout thresholding it is map(f, fraction)."""
    import dataclasses

    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import compose, walk

    obs = observe(target_named("tracr:frac_prevs"), per_length=64)

    def threshold(v):
        return None if v is None else (1.0 if v > 0.5 else 0.0)

    groups = [
        dataclasses.replace(g, outputs=tuple(tuple(threshold(v) for v in row) for row in g.outputs))
        for g in obs.groups
    ]
    thresholded = dataclasses.replace(obs, groups=tuple(groups))
    state = walk(thresholded, MatchThresholds())
    assert state.outputs, state.notes
    hyp, _ = next(compose(state, thresholded))
    program = hyp.program
    out_node = dict(program.assignments)[program.output]
    assert out_node.op == "map"
    (arg,) = out_node.inputs
    assert dict(program.assignments)[arg].op == "aggregate"
    assert program.output not in hyp.correspondence and arg in hyp.correspondence
    inputs = [list(x) for g in thresholded.groups for x in g.inputs]
    want = [list(row) for g in thresholded.groups for row in g.outputs]
    assert dsl.evaluate(program, inputs) == want


def test_a_head_attending_where_two_relations_hold_is_matched_by_their_conjunction():
    from mechsynth.dsl.program import Node
    from mechsynth.synth.propose.explain_heads import _add_conjunctions

    pool = _pool()
    mask = pool.batch.mask
    same_token = Node("select", ("tokens", "tokens", "EQ"), None)
    earlier = Node("select", ("indices", "indices", "LT"), None)
    other = Node("select", ("indices", "indices", "GT"), None)
    both = pool.evaluate(same_token) & pool.evaluate(earlier)
    # The head spreads evenly over the earlier keys with its own token (BOS when there are none).
    pattern = both.double() / both.double().sum(-1, keepdim=True).clamp(min=1)
    bos = (~both.any(-1)).double()

    def agreements_of(values):
        return [("all", selector_agreement(values, pattern, bos, mask))]

    ranking = []
    for cost, node in ((1.0, same_token), (1.0, earlier), (1.0, other)):
        values = pool.evaluate(node)
        ranking.append((agreements_of(values)[0][1], -cost, "all", node, values))
    best_single = max(t[0] for t in ranking)
    assert best_single < 0.9
    rankings = ([*ranking],)
    _add_conjunctions(rankings, agreements_of)
    agreement, _, _, node, values = max(rankings[0], key=lambda t: (t[0], t[1]))
    assert set(node) == {same_token, earlier} and agreement == 1.0
    assert bool((values == both).all())
    # A pattern one relation already explains gets no conjunction.
    alone = pool.evaluate(earlier)
    pattern = alone.double() / alone.double().sum(-1, keepdim=True).clamp(min=1)
    bos = (~alone.any(-1)).double()
    singles = [(n, pool.evaluate(n)) for n in (same_token, earlier)]
    rankings = ([(agreements_of(v)[0][1], -1.0, "all", n, v) for n, v in singles],)
    _add_conjunctions(rankings, agreements_of)
    assert len(rankings[0]) == 2


def test_proposed_programs_read_as_a_person_would_write_them(target_named):
    """tracr:reverse: named roles and a closed-form mirror index, no table predicate, no identity map."""
    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import compose, walk

    target = target_named("tracr:reverse")
    obs = observe(target, per_length=64, seed=0)
    hyp, _ = next(compose(walk(obs, MatchThresholds()), obs))
    text = str(hyp.program)
    assert "seq_length = selector_width(all_positions)" in text
    assert "select(indices, opp_index, EQ)" in text
    assert "table(" not in text and "identity" not in text
    # The names are only names: the program computes the mirror index.
    values = dsl.evaluate_all(hyp.program, [[1, 2, 3], [3, 1, 2, 2]])
    assert values["opp_index"] == [[2, 1, 0], [3, 2, 1, 0]]


def test_an_output_map_claimed_at_an_mlp_is_also_proposed_unclaimed() -> None:
    from mechsynth.dsl.location import Location, act_name
    from mechsynth.synth.propose.model_guided import _final_map_claim

    state = GuidedState(Pool(dsl.encode([["a", "b"], ["b", "b"]])))
    program = dsl.parse(
        "m = numerical(aggregate(select(tokens, tokens, TRUE), map(eq('a'), tokens)))\nout = map(eq(1), m)"
    )
    head, mlp = Location(act_name("z", 1)), Location(act_name("mlp_out", 1))
    tokens = {"tokens": Location(act_name("embed"))}
    assert _final_map_claim(state, program, {**tokens, "m": head, "out": mlp}) == {**tokens, "m": head}
    # Nothing but a primitive would stay claimed, or the output is not claimed at an MLP: no variant.
    assert _final_map_claim(state, program, {**tokens, "out": mlp}) is None
    at_head = Location(act_name("z", 1), head=0)
    assert _final_map_claim(state, program, {**tokens, "m": head, "out": at_head}) is None


def test_past_the_deadline_the_proposer_does_not_walk(target_named, monkeypatch):
    """A walk costs minutes on a trained network: handed a spent budget, the proposer returns at once."""
    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose import model_guided
    from mechsynth.synth.propose.interface import ProposalContext, now

    def no_walk(*args, **kwargs):
        raise AssertionError("walked past the deadline")

    monkeypatch.setattr(model_guided, "walk", no_walk)
    target = target_named("tracr:hist")
    obs = observe(target, per_length=16)
    proposer = model_guided.ModelGuidedProposer()
    assert list(proposer.propose(ProposalContext(target, obs, deadline=now() - 1.0))) == []
    assert proposer.last_state is None


def test_the_walk_stops_inside_a_head_at_the_deadline(target_named, monkeypatch):
    """The deadline is asked before each layer, each head, each chunk of candidate selectors and the
    output; a clock that runs out during the first head's ranking leaves every later component
    unexplained, says so, and matches no output (a clock of question counts, not seconds)."""
    import itertools

    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose import interface
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import walk

    obs = observe(target_named("tracr:hist"), per_length=16)
    ticks = itertools.count()
    monkeypatch.setattr(interface, "now", lambda: float(next(ticks)))
    # ticks 0, 1: before layer 0 and its first head; 2: its candidate 0; 3: candidate 32, past the deadline.
    state = walk(obs, MatchThresholds.soft(), deadline=2.5)
    (first, *later) = sorted(state.heads)
    assert state.heads[first].get("deadline") is True
    assert later == [] and state.mlps.get(0, {}).get("deadline", True)
    assert state.outputs == [] and "deadline reached before the output was matched" in state.notes
    # Stopped inside the first head: fewer evaluations than that head's candidate chunks plus what
    # the pool evaluates before any head (the walk's value pool), far fewer than a whole walk.
    whole = walk(obs, MatchThresholds.soft(), deadline=float("inf"))
    assert state.pool.n_evaluated < whole.pool.n_evaluated


def test_an_expired_deadline_explains_nothing(target_named):
    from mechsynth.synth.observe import observe
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.interface import now
    from mechsynth.synth.propose.model_guided import walk

    obs = observe(target_named("tracr:hist"), per_length=16)
    state = walk(obs, MatchThresholds.soft(), deadline=now() - 1.0)
    assert state.heads == {} and state.mlps == {} and state.outputs == []
    assert state.pool.n_evaluated == 0
    assert state.notes[0] == "deadline reached before layer 0"


def test_a_many_valued_mean_is_not_relabelled_value_by_value():
    """A prefix mean takes a new value at almost every (count, position); a table from its values to
    the outputs memorises the batch, so the relabel step leaves it to the thresholded output
    functions. The same table over a few-valued variable is still a relabelling."""
    from mechsynth.dsl.location import Location, act_name
    from mechsynth.dsl.program import Fn, Node
    from mechsynth.synth.propose.chains import MANY_VALUES
    from mechsynth.synth.propose.guided_state import Located, MatchThresholds
    from mechsynth.synth.propose.model_guided import _relabel_output

    length = 8
    inputs = [list(x) for x in itertools.product((0, 1), repeat=length)]
    pool = Pool(dsl.encode(inputs))
    state = GuidedState(pool, thresholds=MatchThresholds.soft())
    prefix = pool.add(Node("select", ("indices", "indices", "LEQ"), None), prefix="prefix")
    frac = pool.add(Node("aggregate", (prefix, "tokens", 0), "numerical"), prefix="frac")
    mean = pool.add(Node("map", (Fn("identity", 1, ()), frac), "numerical"), prefix="mean", dedupe=False)
    state.located[mean] = Located(mean, Location(act_name("mlp_out", 0)), 0.5, 1.0)
    read = pool.batch.mask.clone()
    values = pool.values[mean]
    codes = torch.unique(values[read])
    assert codes.numel() > MANY_VALUES
    # An output no threshold of the mean gives: each observed value's own arbitrary label.
    labels = torch.randint(0, 2, (codes.numel(),), generator=torch.Generator().manual_seed(0)).double()
    target = torch.where(read, labels[torch.searchsorted(codes, values.clamp(min=0))], torch.nan)
    assert _relabel_output(state, [state.located[mean]], target, read, 1e-6, state.thresholds) is None
    # A two-valued variable with the output's information is relabelled to the output's values.
    last = pool.add(Node("map", (Fn("eq", 1, (1,)), "tokens"), "categorical"), prefix="is1", dedupe=False)
    state.located[last] = Located(last, Location(act_name("mlp_out", 0)), 0.5, 1.0)
    flipped = torch.where(read, 1.0 - pool.values[last], torch.nan)
    assert _relabel_output(state, [state.located[last]], flipped, read, 1e-6, state.thresholds) is not None
