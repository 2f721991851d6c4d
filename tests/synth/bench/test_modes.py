"""Engine configurations (synth.bench.modes) and how the suites are told which to run.

The false-positive suite's side-by-side table compares the shipped engine, the engine without
its scored/anytime search (``exact_walk``) and I/O-only enumeration at one budget: these tests
pin what each configuration proposes with, that --targets/--modes/--seeds select what they say,
that every job of the suite runs its configuration, and that the table shows each one.
"""

from __future__ import annotations

import math

import pytest
from tiny_targets import copy_target, tiny_target

from mechsynth.synth.bench import false_positives
from mechsynth.synth.bench.false_positives import RunOutcome, false_positive_suite
from mechsynth.synth.bench.modes import mode_setup
from mechsynth.synth.bench.plan import MODE_LABELS, BenchError, make_plan
from mechsynth.synth.bench.render.controls import render_controls
from mechsynth.synth.propose.enumerate import EnumerativeProposer
from mechsynth.synth.propose.guided_state import MatchThresholds
from mechsynth.synth.propose.model_guided import ModelGuidedProposer

KNOWN = (["tracr:a", "tracr:b"], ["trained:c"])


def test_exact_walk_is_one_round_of_exact_bars_and_enumeration():
    proposers, options = mode_setup("exact_walk")
    walk, enum = proposers
    assert isinstance(walk, ModelGuidedProposer) and isinstance(enum, EnumerativeProposer)
    assert options == {"rounds": 1}
    assert walk.schedule(copy_target()) == (MatchThresholds(),)  # no widening, on any target
    # The shipped configurations: model-guided alone widens its bars; the engine is the loop's default.
    assert len(mode_setup("model_guided")[0][0].schedule(copy_target())) > 1
    assert mode_setup("engine") == (None, {})
    assert isinstance(mode_setup("io_only")[0][0], EnumerativeProposer)
    first, second = mode_setup("exact_walk")[0][0], walk
    assert first is not second  # proposers keep per-run state: fresh objects each run
    with pytest.raises(BenchError):
        mode_setup("nope")


def test_targets_modes_and_seeds_select_what_they_name():
    plan = make_plan("controls", False, targets=KNOWN, llm=False, target_names="trained,tracr:b",
                     mode_names="engine,exact_walk,io_only", seed_names="0")
    assert plan.targets == plan.control_targets == ("trained:c", "tracr:b")
    assert plan.control_modes == plan.modes == ("engine", "exact_walk", "io_only")
    assert plan.control_seeds == (0,)
    default = make_plan("all", False, targets=KNOWN, llm=False)
    assert default.control_modes == ("engine",) and default.modes == ("io_only", "model_guided")
    tracr = make_plan("all", False, targets=KNOWN, llm=False, target_names="tracr")
    assert tracr.targets == ("tracr:a", "tracr:b")
    for bad in (dict(target_names="tracr:zzz"), dict(target_names=","), dict(mode_names="fast"),
                dict(mode_names="both"), dict(seed_names="x"), dict(seed_names="-1")):
        with pytest.raises(BenchError):
            make_plan("all", False, targets=KNOWN, llm=False, **bad)


def test_every_job_of_the_suite_runs_its_configuration(monkeypatch):
    seen = []

    def fake_run(target, seed, budget, out, mode="engine"):
        seen.append(mode)
        return RunOutcome(target.name, 0, -math.inf, 0, 0.0)

    monkeypatch.setattr(false_positives, "_default_run_fn", fake_run)
    networks = {"reinitialized": lambda t, s: tiny_target(s, name="random")}
    report = false_positive_suite([copy_target()], seeds=(0, 1), kinds=("reinitialized",), networks=networks,
                                  mode="exact_walk")
    assert seen == ["exact_walk"] * 3 and report.to_json()["control_runs"] == 2


def _result(real_accepted: int, copy_accepted: int, true_of_copy: int) -> dict:
    rows = [
        {"target": "tracr:a", "network": "real", "accepted": real_accepted, "passed_checks": real_accepted,
         "accepted_true_of_network": real_accepted, "accepted_hypotheses": []},
        {"target": "tracr:a", "network": "shuffled[0]", "accepted": copy_accepted, "passed_checks": 0,
         "accepted_true_of_network": true_of_copy, "accepted_hypotheses": []},
    ]
    return {"rows": rows, "runs": [{"seconds": 2.0}, {"seconds": 3.0}], "accepted_on_copies": copy_accepted,
            "false_positives": copy_accepted - true_of_copy, "control_runs": 1,
            "real_targets_accepting": int(real_accepted > 0), "real_targets_passing_checks": 1,
            "real_targets": 1}


def test_the_side_by_side_table_shows_each_configuration():
    by_mode = {"engine": _result(1, 0, 0), "exact_walk": _result(0, 0, 0), "io_only": _result(0, 1, 0)}
    ctl = {"seeds": [0], "budget_seconds": 20.0, "statistic": ["iia"], "modes": list(by_mode),
           "mode_labels": {m: MODE_LABELS[m] for m in by_mode}, "result": by_mode["engine"],
           "by_mode": by_mode}
    md = render_controls(ctl)
    assert "### Side by side" in md and "15 s of runs in all" in md
    row = next(line for line in md.splitlines() if line.startswith("| tracr:a |"))
    assert row == "| tracr:a | **1** · 0/1 · 0 | 0 · 0/1 · 0 | 0 · 1/1 · **1 FP** |"
    assert all(f"### {MODE_LABELS[m]}" in md for m in by_mode)
