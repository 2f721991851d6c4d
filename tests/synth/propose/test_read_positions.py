"""The proposers see the network's outputs only where the task reads."""

from __future__ import annotations

from readout_targets import first_token, zeros_readout

from synth.observe import observe
from synth.propose.enumerate import Pool
from synth.propose.explain_heads import read_mask
from synth.propose.model_guided import make_batch


def test_observations_hold_outputs_only_at_read_positions():
    obs = observe(first_token(zeros_readout), per_length=30, seed=0)
    for x, row in zip(obs.all_inputs(), [r for g in obs.groups for r in g.outputs]):
        assert [v is not None for v in row] == [v == 0 for v in x]
    assert obs.readout == "zeros_readout"


def test_the_head_matcher_reads_where_the_task_reads():
    obs = observe(first_token(zeros_readout), per_length=30, seed=0)
    pool = Pool(make_batch(obs))
    mask = read_mask(pool, obs)
    for b, x in enumerate(obs.all_inputs()):
        assert mask[b, : len(x)].tolist() == [v == 0 for v in x] and not mask[b, len(x):].any()
