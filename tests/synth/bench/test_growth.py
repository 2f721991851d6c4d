"""synth.bench.growth: random networks of a given shape, capped stages, the Scale tables."""

from __future__ import annotations

import time

import pytest

from mechsynth.synth.bench.growth import (
    CHEAP_STAGES, GrowthSettings, Shape, capped, growth_point, machine_limit, random_target,
)
from mechsynth.synth.bench.render.scale import render_scale


def test_a_stage_past_its_cap_is_not_measured() -> None:
    assert capped(lambda: 7, 5.0)[0] == 7
    result, seconds = capped(lambda: time.sleep(3), 0.2)
    assert result is None and seconds is None


def test_a_random_network_has_the_shape_and_the_task() -> None:
    target = random_target(Shape(3, 2, 48), seed=1)
    cfg = target.model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp) == (3, 2, 48, 24, 192)
    assert target.task.name == "trained:reverse" and target.ground_truth is None
    x = target.task.sample(4, seed=0)
    assert target.logits(x).shape[:2] == (4, len(x[0]))
    again = random_target(Shape(3, 2, 48), seed=1)
    assert all(bool((a == b).all()) for a, b in zip(target.model.parameters(), again.model.parameters()))


def test_a_growth_point_times_each_stage_and_records_caps() -> None:
    row = growth_point(Shape(1, 1, 32), CHEAP_STAGES, GrowthSettings(observe_per_length=8, score_n=16))
    assert row["label"] == "1x1x32" and row["parameters"] > 0 and row["capped"] == []
    assert all(row[f"{s}_seconds"] > 0 for s in CHEAP_STAGES)
    slow = growth_point(Shape(1, 1, 32), ("score",), GrowthSettings(score_n=16, cap_seconds=1e-4))
    assert slow["score_seconds"] is None and slow["capped"] == ["score"]


def test_where_the_machine_stops_being_enough() -> None:
    fit = {"label": "1x1x64", "cap_seconds": 300.0, "capped": []}
    over = {"label": "12x12x768", "cap_seconds": 300.0, "capped": ["controls", "run"]}
    assert machine_limit([fit, over])["label"] == "12x12x768"
    assert machine_limit([fit])["label"] is None


def test_the_scale_tables_say_what_was_not_measured_and_where_it_ran() -> None:
    row = {"label": "12x12x768", "parameters": 85_000_000, "cap_seconds": 300.0, "capped": ["controls"],
           "forward_seconds": 2.0, "observe_seconds": 1.0, "score_seconds": 19.0, "controls_seconds": None,
           "run_seconds": 70.0, "run_n_scored": 0}
    perf = {"growth": {"settings": GrowthSettings().__dict__, "task": "trained:reverse",
                       "sweeps": {"diagonal": [row]}, "gpu": "no GPU run: this machine has no CUDA GPU",
                       "machine_limit": machine_limit([row])},
            "suite_wall_times": [{"executor": "ray", "workers": 2, "target": "tracr:reverse",
                                  "budget_seconds": 15.0, "runs": 3, "wall_seconds": 40.0,
                                  "same_outcomes_as_inline": True}]}
    text = "\n".join(render_scale(perf))
    assert "not measured (cap 300 s)" in text
    assert "no GPU run" in text and "**12x12x768**" in text
    assert "| ray | 2 | 40.0 | 3 | yes |" in text
    assert render_scale({}) == []


@pytest.mark.parametrize("bad", [0, -1])
def test_throughput_and_sweeps_refuse_no_workers(bad: int) -> None:
    from mechsynth.synth.bench.executor import ProcessExecutor
    from mechsynth.synth.bench.plan import BenchError

    with pytest.raises(BenchError):
        ProcessExecutor(bad)
