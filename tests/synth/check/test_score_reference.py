"""Scores against numbers recorded before the score's cost was cut (#17).

`data/score_reference.json` holds the full output of `score` (every scalar, every per-input
array, every per-variable number) for a few target/hypothesis/option cases, recorded with
the scorer as it was before the work that removed passes and Python loops from it (commit
7cbd285: one clean pass per length group, behaviour through `Target.predict`, interchange
compared input by input in Python). Every later change to how a score is computed must give
the same numbers to 1e-6 on the same seed. The cases cover categorical, numerical and
multilabel readouts, a wrong hypothesis, mean ablation and interchange across lengths.
``lengths="aligned"`` scrubs across lengths only when within-length scrubbing is degenerate
(#19), which tracr:reverse is not, so its case keeps the numbers recorded before #17.

To re-record after a deliberate change to what a score means (not how fast it is):
``python tests/synth/check/test_score_reference.py --record``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from score_compare import assert_scores_close

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.bench.perf import chain_probe_hypothesis
from mechsynth.synth.check.scoring import score

REFERENCE = Path(__file__).parent / "data" / "score_reference.json"
IGNORED = ("forward_passes",)  # how the work is batched, not what it measures

CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "reverse-truth": ("tracr:reverse", "truth", {}),
    "reverse-wrong-aligned": ("tracr:reverse", "wrong", {"lengths": "aligned"}),
    "hist-truth-mean": ("tracr:hist", "truth", {"ablation": "mean"}),
    "sort-truth": ("tracr:sort", "truth", {"seed": 3}),
    "frac_prevs-truth": ("tracr:frac_prevs", "truth", {}),
    "trained-reverse-chain": ("trained:reverse", "chain", {}),
    "dyck1_next-chain-zero": ("trained:dyck1_next", "chain", {"ablation": "zero"}),
}


def _hypothesis(target: Any, which: str) -> Hypothesis:
    if which == "truth":
        return target.ground_truth
    if which == "chain":
        return chain_probe_hypothesis(int(target.model.cfg.n_layers))
    # tracr:reverse's ground truth with opp_idx_1 at the right layer but other dims.
    corr = dict(target.ground_truth.correspondence)
    corr["opp_idx_1"] = Location.parse("blocks.2.hook_mlp_out[dims=23,24,25,26,27,28,29,30,31,32]")
    return Hypothesis(target.ground_truth.program, corr)


def _scores(name: str) -> dict[str, Any]:
    from mechsynth.models import load_target

    spec, which, options = CASES[name]
    target = load_target(spec)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # The options are pinned as they were recorded (lengths="same" was the default then).
        options = {"n": 64, "seed": 0, "lengths": "same", **options}
        out = score(target, _hypothesis(target, which), **options).to_json()
    finally:
        torch.set_num_threads(before)
    return {k: v for k, v in out.items() if k not in IGNORED}


@pytest.mark.parametrize("name", list(CASES))
def test_score_equals_the_recorded_reference(name):
    """Every recorded number is reproduced; keys added to the scores since (new numbers) are not
    compared, keys that disappeared fail."""
    recorded = json.loads(REFERENCE.read_text())[name]
    now = _scores(name)
    assert set(recorded) <= set(now), sorted(set(recorded) - set(now))
    assert_scores_close({k: now[k] for k in recorded}, recorded)


def test_the_comparison_can_fail():
    recorded = json.loads(REFERENCE.read_text())["reverse-truth"]
    changed = dict(recorded, loss_recovered=recorded["loss_recovered"] - 1e-4)
    with pytest.raises(AssertionError):
        assert_scores_close(changed, recorded)
    changed_rows = recorded["per_input"]["changed"]
    flipped_rows = [not changed_rows[0]] + changed_rows[1:]
    flipped = dict(recorded, per_input=dict(recorded["per_input"], changed=flipped_rows))
    with pytest.raises(AssertionError):
        assert_scores_close(flipped, recorded)


if __name__ == "__main__" and "--record" in sys.argv:
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({name: _scores(name) for name in CASES}, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes)")
