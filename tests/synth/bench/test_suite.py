"""The benchmark's plumbing: plan, output files, report structure and the CI baseline check.

The suites themselves are replaced by fakes here (they take minutes); what is tested is
that whatever they measure ends up in both files with the machine, versions and commit,
and that a drop in recovery fails the run. The real end-to-end run is marked slow.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from mechsynth.synth.bench import baseline as bench_baseline
from mechsynth.synth.bench import plan as bench_plan
from mechsynth.synth.bench import suite as bench_suite
from mechsynth.synth.bench.baseline import check_baseline, load_baseline, update_baseline
from mechsynth.synth.bench.perf import chain_program_text
from mechsynth.synth.bench.plan import BenchPlan
from mechsynth.synth.bench.recovery import RecoveryResult
from mechsynth.synth.bench.render import render_markdown

TRACR = ["tracr:reverse", "tracr:hist", "tracr:frac_prevs", "tracr:sort_unique", "tracr:sort"]
TRAINED = ["trained:reverse", "trained:sort"]


def _plan(quick: bool = True, suite: str = "all", llm: bool = False) -> BenchPlan:
    return bench_plan.make_plan(suite, quick, llm=llm, targets=(TRACR, TRAINED))


def _fake_recovery(plan: BenchPlan, recovered: set[tuple[str, str]]) -> dict:
    rows = []
    for spec in plan.targets:
        for mode in plan.modes:
            ok = (spec, mode) in recovered
            rows.append(
                asdict(
                    RecoveryResult(
                        target=spec,
                        kind=spec.split(":")[0],
                        mode=mode,
                        recovered=ok,
                        criterion="fake",
                        accepted=int(ok),
                        program="out = aggregate(select(indices, indices, EQ), tokens)" if ok else None,
                        correspondence={"out": "blocks.0.attn.hook_z[0]"} if ok else None,
                        behaviour=1.0 if ok else None,
                        loss_recovered=0.99 if ok else None,
                        iia=1.0 if ok else None,
                        p_value=0.001 if ok else None,
                        n_scored=12,
                        seconds=3.5,
                        seconds_to_accept=1.5 if ok else None,
                    )
                )
            )
    totals = {}
    for mode in plan.modes:
        mine = [r for r in rows if r["mode"] == mode]
        totals[mode] = {
            "recovered": sum(r["recovered"] for r in mine),
            "total": len(mine),
            "tracr_recovered": sum(r["recovered"] for r in mine if r["kind"] == "tracr"),
            "tracr_total": sum(r["kind"] == "tracr" for r in mine),
            "trained_recovered": sum(r["recovered"] for r in mine if r["kind"] == "trained"),
            "trained_total": sum(r["kind"] == "trained" for r in mine),
            "errors": 0,
        }
    return {
        "budget_seconds": plan.budget_seconds,
        "modes": list(plan.modes),
        "mode_labels": {m: bench_plan.MODE_LABELS[m] for m in plan.modes},
        "llm_configured": False,
        "rows": rows,
        "totals": totals,
    }


def _fake_perf(plan: BenchPlan, recovery: dict | None, out_dir: Path) -> dict:
    return {
        "reference_target": "tracr:reverse",
        "batch": plan.perf_batch,
        "forward": {"target": "tracr:reverse", "batch": plan.perf_batch, "length": 5, "seconds": 0.01},
        "interpreter": {
            "nodes": 7,
            "batch": plan.perf_batch,
            "positions": 5,
            "seconds": 0.002,
            "node_evals_per_s": 3.5e6,
            "programs_per_s": 500.0,
            "vs_forward": 0.2,
            "program": "...",
        },
        "enumerator": {
            "target": "tracr:reverse",
            "budget_seconds": 1.0,
            "distinct": 100,
            "evaluated": 400,
            "seconds": 1.0,
            "distinct_per_s": 100.0,
            "evaluated_per_s": 400.0,
            "distinct_fraction": 0.25,
        },
        "score_cost": [
            {
                "target": "tracr:reverse",
                "n": 64,
                "program_size": 7,
                "claimed_variables": 4,
                "forward_seconds": 0.01,
                "score_seconds": 0.05,
                "score_vs_forward": 5.0,
            }
        ],
        "time_to_recovery": [
            {
                "target": "tracr:reverse",
                "model_guided_seconds": 1.5,
                "io_only_seconds": None,
                "io_only_over_model_guided": None,
                "model_guided_vs_forward": 150.0,
            }
        ],
        "depth_growth": [
            {
                "layers": d,
                "forward_seconds": 0.01 * d,
                "observe_seconds": 0.02 * d,
                "score_seconds": 0.5 * d,
                "score_n": 64,
                "forward_ratio": float(d),
                "observe_ratio": float(d),
                "score_ratio": float(d),
            }
            for d in plan.depths
        ],
        "program_size_growth": [
            {
                "nodes": k,
                "batch": plan.perf_batch,
                "positions": 8,
                "seconds": 0.001 * k,
                "node_evals_per_s": 1e6,
                "programs_per_s": 1.0,
                "ratio_to_smallest": float(k),
            }
            for k in plan.program_sizes
        ],
        "errors": {},
    }


@pytest.fixture
def fake_suites(monkeypatch: pytest.MonkeyPatch):
    """Replace the suites with fakes; `state["recovered"]` picks which runs recover."""
    state = {"recovered": {(t, "model_guided") for t in TRACR[:3]} | {(TRACR[0], "io_only")}}
    monkeypatch.setattr(bench_plan, "available_targets", lambda: (TRACR, TRAINED))
    monkeypatch.setattr(bench_plan, "llm_configured", lambda env=None: False)
    monkeypatch.setattr(bench_plan, "_first_loadable", lambda specs, check: specs[:1])
    monkeypatch.setattr(
        bench_suite, "recovery_suite", lambda plan, out: _fake_recovery(plan, state["recovered"])
    )
    monkeypatch.setattr(
        bench_suite,
        "controls_suite",
        lambda plan, out: {
            "seconds": 1.0,
            "seeds": list(plan.control_seeds),
            "targets": list(plan.control_targets),
            "budget_seconds": 15.0,
            "statistic": ["loss_recovered"],
            "result": {
                "rows": [{"target": "tracr:reverse", "control": "reinitialized", "seed": 0, "accepted": 0}],
                "accepted_total": 0,
            },
        },
    )
    monkeypatch.setattr(bench_suite, "perf_suite", _fake_perf)
    return state


def _args(out: Path, **kw) -> argparse.Namespace:
    base = {"suite": "all", "quick": True, "out": str(out), "with_acdc": False, "json": False}
    base.update(kw)
    return argparse.Namespace(**base)


def _write_baseline(monkeypatch: pytest.MonkeyPatch, path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))
    monkeypatch.setattr(bench_baseline, "BASELINE_PATH", path)


def test_plan_quick_is_a_subset_and_llm_modes_need_an_endpoint():
    quick, full = _plan(quick=True), _plan(quick=False)
    assert set(quick.targets) < set(full.targets)
    assert [t for t in quick.targets if t.startswith("trained:")] == list(bench_plan.QUICK_TRAINED[:1])
    assert quick.modes == ("io_only", "model_guided")
    assert _plan(llm=True).modes == ("io_only", "model_guided", "llm_only", "both")
    assert quick.budget_seconds < full.budget_seconds
    assert _plan(suite="perf").suites == ("perf",)
    with pytest.raises(bench_plan.BenchError):
        _plan(suite="nonsense")


def test_budget_can_be_set_from_the_environment(monkeypatch):
    monkeypatch.setenv(bench_plan.BUDGET_ENV, "7")
    plan = _plan()
    assert plan.budget_seconds == 7.0 and plan.control_budget_seconds <= 7.0
    monkeypatch.setenv(bench_plan.BUDGET_ENV, "soon")
    with pytest.raises(bench_plan.BenchError):
        _plan()


def test_llm_configured_reads_key_or_base_url():
    assert not bench_plan.llm_configured({})
    assert bench_plan.llm_configured({"ANTHROPIC_API_KEY": "k"})
    assert bench_plan.llm_configured({"ANTHROPIC_BASE_URL": "http://127.0.0.1:1"})


def test_bench_writes_both_files_with_machine_versions_and_commit(fake_suites, monkeypatch, tmp_path):
    _write_baseline(
        monkeypatch,
        tmp_path / "baseline.json",
        {"targets": list(_plan().targets), "min_recovered": {"io_only": 1, "model_guided": 3}},
    )
    out = tmp_path / "out"
    assert bench_suite.cmd_bench(_args(out)) == 0
    data = json.loads((out / "bench.json").read_text())
    for key in ("machine", "versions", "git", "plan", "recovery", "controls", "perf", "peak_rss_mb"):
        assert key in data, key
    assert {"cpu_count", "cpus_usable", "torch_threads"} <= set(data["machine"])
    assert {"python", "torch", "transformer_lens", "tracr-pypi"} <= set(data["versions"])
    assert "commit" in data["git"]
    assert data["peak_rss_mb"] > 0 and data["wall_seconds"] >= 0
    assert data["baseline_check"]["ok"] and data["baseline_check"]["checked"]
    md = (out / "BENCHMARKS.md").read_text()
    for heading in (
        "# mechsynth benchmarks",
        "## Recovery",
        "### Side by side",
        "## Controls",
        "## Performance",
        "### Growth with model depth",
        "### Growth with program size",
        "## CI baseline",
    ):
        assert heading in md, heading
    assert "(a) I/O-only enumeration" in md and "(b) model-guided" in md
    # The totals in the report are the ones in the JSON.
    assert f"{data['recovery']['totals']['model_guided']['recovered']}/" in md


def test_json_flag_prints_the_results(fake_suites, monkeypatch, tmp_path, capsys):
    _write_baseline(
        monkeypatch,
        tmp_path / "b.json",
        {"targets": list(_plan().targets), "min_recovered": {"model_guided": 0}},
    )
    assert bench_suite.cmd_bench(_args(tmp_path / "o", json=True)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["recovery"]["totals"]["model_guided"]["recovered"] == 3


def test_bench_fails_when_recovery_drops_below_the_baseline(fake_suites, monkeypatch, tmp_path, capsys):
    _write_baseline(
        monkeypatch,
        tmp_path / "baseline.json",
        {"targets": list(_plan().targets), "min_recovered": {"io_only": 1, "model_guided": 3}},
    )
    fake_suites["recovered"] = {(TRACR[0], "model_guided"), (TRACR[0], "io_only")}  # 3 -> 1
    out = tmp_path / "out"
    assert bench_suite.cmd_bench(_args(out)) == 1
    assert "model_guided: recovered 1 < baseline 3" in capsys.readouterr().err
    # The files are still written, so CI can show what dropped.
    data = json.loads((out / "bench.json").read_text())
    assert data["baseline_check"]["ok"] is False


def test_baseline_check_rules():
    plan = _plan()
    results = {"plan": plan.to_json(), "recovery": _fake_recovery(plan, {(TRACR[0], "model_guided")})}
    floor = {"targets": list(plan.targets), "min_recovered": {"model_guided": 1}}
    assert check_baseline(results, floor).ok
    assert not check_baseline(results, {**floor, "min_recovered": {"model_guided": 2}}).ok
    # Different targets: the floor does not apply, which is itself a failure.
    assert not check_baseline(results, {**floor, "targets": ["tracr:length"]}).ok
    # A smaller budget than the baseline's is not comparable.
    assert not check_baseline(results, {**floor, "budget_seconds": plan.budget_seconds + 1}).ok
    assert check_baseline(results, {**floor, "budget_seconds": plan.budget_seconds}).ok
    # A missing baseline fails a quick run; LLM floors are skipped where no endpoint ran them.
    assert not check_baseline(results, None).ok
    assert check_baseline(results, {**floor, "min_recovered": {"model_guided": 1, "both": 5}}).ok
    # Full runs and runs without the recovery suite are not checked.
    full = {"plan": _plan(quick=False).to_json(), "recovery": results["recovery"]}
    assert check_baseline(full, None).checked is False
    assert check_baseline({"plan": plan.to_json()}, None).checked is False


def test_update_baseline_comes_from_a_real_results_file(tmp_path):
    plan = _plan()
    results = {
        "plan": plan.to_json(),
        "git": {"commit": "abc"},
        "created": "now",
        "machine": {"cpus_usable": 2, "torch_threads": 2},
        "recovery": _fake_recovery(plan, {(TRACR[0], "model_guided"), (TRACR[1], "model_guided")}),
    }
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(results))
    dest = tmp_path / "baseline.json"
    baseline = update_baseline(src, dest)
    assert baseline["min_recovered"] == {"model_guided": 2}  # the engine's configuration only
    assert json.loads(dest.read_text())["targets"] == list(plan.targets)
    assert check_baseline(results, load_baseline(dest)).ok
    full = {**results, "plan": _plan(quick=False).to_json()}
    src.write_text(json.dumps(full))
    with pytest.raises(bench_plan.BenchError):
        update_baseline(src, dest)


def test_a_broken_suite_is_reported_and_fails_the_run(fake_suites, monkeypatch, tmp_path):
    def broken(plan, out):
        raise RuntimeError("controls exploded")

    monkeypatch.setattr(bench_suite, "controls_suite", broken)
    _write_baseline(
        monkeypatch,
        tmp_path / "b.json",
        {"targets": list(_plan().targets), "min_recovered": {"model_guided": 0}},
    )
    out = tmp_path / "out"
    assert bench_suite.cmd_bench(_args(out)) == 1
    data = json.loads((out / "bench.json").read_text())
    assert data["suite_errors"]["controls"] == "RuntimeError: controls exploded"
    assert "controls exploded" in (out / "BENCHMARKS.md").read_text()


def test_markdown_handles_a_skipped_peer_and_missing_numbers():
    plan = _plan(suite="recovery")
    results = {
        "command": "mechsynth bench --suite recovery --quick --with-acdc",
        "created": "now",
        "plan": plan.to_json(),
        "machine": bench_plan.machine_info(),
        "versions": bench_plan.versions(),
        "git": {"commit": None, "dirty": None},
        "peak_rss_mb": 100.0,
        "rss_after_imports_mb": 50.0,
        "wall_seconds": 1.0,
        "recovery": _fake_recovery(plan, set()),
        "acdc": {"skipped": "auto-circuit venv missing at /nowhere; run the bench with --with-acdc"},
    }
    md = render_markdown(results)
    assert "Skipped: auto-circuit venv missing" in md
    assert "0/" in md


def test_chain_programs_have_the_requested_size():
    dsl = pytest.importorskip("dsl")
    for k in (1, 2, 3, 8):
        assert dsl.parse(chain_program_text(k)).size == 3 * k


def test_peak_rss_is_positive():
    assert bench_plan.peak_rss_mb() > 0
    assert bench_plan.current_rss_mb() > 0


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    """The real thing, as CI runs it (minutes): both files, and the committed floor holds."""
    from mechsynth.synth.cli import main

    code = main(["bench", "--quick", "--out", str(tmp_path)])
    assert (tmp_path / "BENCHMARKS.md").is_file()
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["suite_errors"] == {}
    assert code == 0, data["baseline_check"]["message"]


def test_non_finite_numbers_become_null_in_strict_json(fake_suites, monkeypatch, tmp_path):
    def perf_with_nan(plan, recovery, out_dir):
        data = _fake_perf(plan, recovery, out_dir)
        data["forward"]["seconds"] = float("nan")
        data["enumerator"]["distinct_fraction"] = float("-inf")
        return data

    monkeypatch.setattr(bench_suite, "perf_suite", perf_with_nan)
    _write_baseline(
        monkeypatch,
        tmp_path / "b.json",
        {"targets": list(_plan().targets), "min_recovered": {"model_guided": 0}},
    )
    bench_suite.cmd_bench(_args(tmp_path / "o"))

    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite {token} in bench.json")

    data = json.loads((tmp_path / "o" / "bench.json").read_text(), parse_constant=refuse)
    assert data["perf"]["forward"]["seconds"] is None
    assert data["perf"]["enumerator"]["distinct_fraction"] is None
