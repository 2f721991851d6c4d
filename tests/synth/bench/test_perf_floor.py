"""The perf suite's score-floor section: rendered from the measured rows, median and load included."""

from __future__ import annotations

from mechsynth.synth.bench.render.perf import render_score_floor


def _row(target: str, fused: float, cold: float, cpu: float, load: float) -> dict:
    m = {"clean_seconds": 0.01, "ratio": fused, "cold_ratio": cold, "cpu_ratio": cpu, "forward_passes": 10.0,
         "clean_passes": 5.0}
    return {"target": target, "hypothesis": "ground truth", "claimed_variables": 3, "n": 64,
            "load_before": load, "load_after": load + 1, "fused": m, "reference": {**m, "ratio": fused * 3}}


def test_the_section_gives_each_ratio_and_their_medians():
    text = render_score_floor([_row("a", 4.0, 5.0, 3.0, 0.5), _row("b", 8.0, 9.0, 7.0, 2.0),
                               _row("c", 6.0, 7.0, 5.0, 1.0)])
    assert "### Score floor" in text
    assert "Median fused ratio: 6.000 (cold 7.000, CPU 5.000)" in text
    assert "load average while measuring: 0.5 to 3.0" in text
    assert "| b | ground truth | 3 | 64 |" in text and "| 24.0" in text
