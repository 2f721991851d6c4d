"""synth.bench.executor: one interface, three back ends, results in submission order; the
false-positive suite on a local Ray cluster gives the local back end's outcomes and resumes."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mechsynth.synth.bench.executor import (
    RAY_MISSING, Backend, Executor, InlineExecutor, Job, ProcessExecutor, make_executor,
)
from mechsynth.synth.bench.plan import BenchError

# Stdlib functions: importable by name in any worker, quick to run.
JOBS = [Job("operator:pow", (k, 2), name=f"{k}^2") for k in (5, 1, 4, 2, 3)]


def _collect(executor: Executor) -> tuple[list, dict]:
    seen: dict[int, object] = {}
    results = executor.map(JOBS, on_result=lambda i, r: seen.__setitem__(i, r))
    return results, seen


def test_inline_results_come_in_submission_order() -> None:
    results, seen = _collect(InlineExecutor())
    assert results == [25, 1, 16, 4, 9] and seen == dict(enumerate(results))


def test_process_pool_results_come_in_submission_order() -> None:
    with ProcessExecutor(2) as ex:
        results, seen = _collect(ex)
    assert results == [25, 1, 16, 4, 9] and seen == dict(enumerate(results))


def test_bad_back_ends_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="unknown executor back end 'dask'"):
        make_executor("dask")
    with pytest.raises(BenchError, match="needs the Ray back end"):
        make_executor("processes", 2, address="auto")
    with pytest.raises(BenchError, match="workers must be >= 1"):
        make_executor("processes", 0)
    with pytest.raises(BenchError, match="module:function"):
        InlineExecutor().map([Job("operator.pow")])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(BenchError) as e:
        make_executor(Backend.RAY, 2)
    assert str(e.value) == RAY_MISSING


def _outcomes(bench_json: Path) -> list[tuple]:
    runs = json.loads(bench_json.read_text())["controls"]["result"]["runs"]
    # What a run decides; not its wall time. How many candidates fit in the budget depends on the
    # machine's load, so what the scored candidates say is compared only where as many were
    # scored (the candidates come in a fixed order): the last field, with n_scored inside it.
    return [(r["network"], r["accepted"], tuple(r["accepted_hypotheses"]),
             (r["n_scored"], r["passed_checks"], r["best_statistic"], r["best_hypothesis"])) for r in runs]


def _same_outcomes(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        x[:3] == y[:3] and (x[3][0] != y[3][0] or x[3] == y[3]) for x, y in zip(a, b)
    )


def test_controls_suite_on_ray_gives_the_local_outcomes_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from mechsynth.synth.bench import false_positives
    from mechsynth.synth.bench.executor import RayExecutor
    from mechsynth.synth.cli import main

    # The quick suite's own cap (15 s): tracr:reverse accepts in ~5 s idle and its null copies run
    # out of proposals in ~5 s, so every run ends on its own decision; with 4 s a loaded machine
    # ran the real network out of budget on Ray before it scored anything (a flaky comparison).
    common = ["bench", "--suite", "controls", "--quick", "--budget-seconds", "15", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "--jobs", "2"]) == 0
    local, ray = _outcomes(tmp_path / "local" / "bench.json"), _outcomes(tmp_path / "ray" / "bench.json")
    assert len(local) == 3 and _same_outcomes(ray, local), (ray, local)
    data = json.loads((tmp_path / "ray" / "bench.json").read_text())
    assert data["controls"]["executor"] == "ray" and data["controls"]["workers"] == 2

    # Interrupted after all but one run: a rerun on Ray runs only the missing one.
    work = tmp_path / "ray" / "bench-work" / "controls"
    stored = sorted(work.rglob("*.outcome.json"))
    assert len(stored) == 3
    stored[-1].unlink()
    submitted: list[str] = []

    class Counting(RayExecutor):
        def map(self, jobs, on_result=None):
            submitted.extend(j.name for j in jobs)
            return super().map(jobs, on_result)

    with Counting(1) as ex:
        report = false_positives.false_positive_suite(
            ["tracr:reverse"], seeds=[0], budget_seconds=15, out=str(work), executor=ex, device="cpu"
        )
    assert len(submitted) == 1
    again = [(r.network, r.accepted, r.accepted_hypotheses) for r in report.runs]
    assert again == [(n, a, h) for n, a, h, *_ in ray]


def _decided(suite: dict) -> list[tuple]:
    # What a run decides, not its timings: which program was accepted, at which location, scored how.
    return [(r["target"], r["mode"], r["recovered"], r["accepted"], r["program"], r["correspondence"],
             r["behaviour"], r["loss_recovered"], r["iia"], r["error"]) for r in suite["rows"]]


@pytest.mark.slow  # two full runs twice (~50 s on 2 cores)
def test_recovery_suite_in_processes_gives_the_inline_outcomes(tmp_path: Path) -> None:
    from mechsynth.synth.bench.plan import BenchPlan
    from mechsynth.synth.bench.recovery import recovery_suite

    # Targets the model-guided walk accepts in seconds, so a generous budget makes every run
    # finish on its own decision rather than on the clock.
    plan = BenchPlan(suites=("recovery",), quick=True, targets=("tracr:hist", "tracr:reverse"),
                     modes=("model_guided",), budget_seconds=60.0, control_seeds=(), control_targets=(),
                     control_budget_seconds=0.0, perf_batch=0, device="cpu")
    inline = recovery_suite(plan, tmp_path / "inline")
    pooled = recovery_suite(replace(plan, executor="processes", jobs=2), tmp_path / "processes")
    assert pooled["executor"] == "processes" and pooled["workers"] == 2
    assert all(r["accepted"] >= 1 and r["error"] is None for r in inline["rows"]), inline["rows"]
    assert _decided(pooled) == _decided(inline)
