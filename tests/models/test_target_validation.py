"""A target is checked against its network on load: one line naming the mismatch (issue 18 item 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mechsynth.models import checkpoint
from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Target, TargetError, Task
from tiny_targets import _config, _task, tiny_target

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "reverse"


def _checkpoint_with(tmp_path: Path, **params: int) -> Path:
    """A copy of the shipped reverse checkpoint whose recorded task parameters are changed."""
    stem = tmp_path / "reverse"
    shutil.copy(SHIPPED.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    meta["task"]["params"].update(params)
    stem.with_suffix(".json").write_text(json.dumps(meta))
    return stem


@pytest.mark.parametrize("length", [20, 10**9])
def test_a_task_longer_than_n_ctx_is_refused_on_load(tmp_path: Path, length: int) -> None:
    # Before: length 20 was a traceback in the first forward pass; 1e9 exhausted memory.
    with pytest.raises(TargetError, match=rf"up to {length} tokens need {length} positions.*n_ctx=8"):
        checkpoint.load(_checkpoint_with(tmp_path, length=length))


def test_a_vocabulary_larger_than_the_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="has no token id"):
        checkpoint.load(_checkpoint_with(tmp_path, n_tokens=30))


def _target(task: Task, ids: dict, **config: int) -> Target:
    return Target(name="t", model=build_bridge({**_config(0), **config}), task=task, input_ids=ids,
                  output_values=(0, 1, 2))


def test_a_bos_that_does_not_fit_n_ctx_is_named() -> None:
    with pytest.raises(TargetError, match=r"4 tokens plus BOS need 5 positions.*n_ctx=4"):
        _target(_task("copy"), {"BOS": 3, 0: 0, 1: 1, 2: 2}, n_ctx=4)


def test_a_token_id_outside_d_vocab_is_named() -> None:
    with pytest.raises(TargetError, match=r"token id 7, outside the network's vocabulary 0..3"):
        _target(_task("copy"), {"BOS": 3, 0: 0, 1: 1, 2: 7})


def test_output_values_must_match_d_vocab_out() -> None:
    with pytest.raises(TargetError, match="2 output values for 3 logit columns"):
        Target(name="t", model=build_bridge(_config(0)), task=_task("copy"),
               input_ids={"BOS": 3, 0: 0, 1: 1, 2: 2}, output_values=(0, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad: float) -> None:
    model = build_bridge(_config(0))
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = bad
    with pytest.raises(TargetError, match="NaN or infinite"):
        Target(name="t", model=model, task=_task("copy"), input_ids={"BOS": 3, 0: 0, 1: 1, 2: 2},
               output_values=(0, 1, 2))


def test_a_fitting_target_still_loads() -> None:
    assert tiny_target(0).task.max_len == 4
