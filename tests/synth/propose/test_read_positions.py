"""The proposers see the network's outputs only where the task reads."""

from __future__ import annotations

from readout_targets import first_token, zeros_readout

from mechsynth.synth.observe import observe
from mechsynth.synth.propose.enumerate import Pool
from mechsynth.synth.propose.explain_heads import read_mask
from mechsynth.synth.propose.model_guided import make_batch


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


def test_the_llm_prompt_names_the_readout_and_the_visible_special_tokens():
    import dataclasses

    from mechsynth.synth.propose.llm_prompt import task_lines

    t = first_token()
    task = dataclasses.replace(t.task, bos="S", bos_in_input=True)
    lines = "\n".join(task_lines(dataclasses.replace(t, task=task, input_ids={0: 0, 1: 1, 2: 2, "S": 3})))
    assert "BOS = 'S'" in lines and "`first_position`" in lines and "before the input" not in lines
    assert "only the last position" in "\n".join(task_lines(first_token("last")))
