"""The bench as one run: the planned suites in turn, then BENCHMARKS.md, bench.json and the CI floor.

:func:`cmd_bench` is ``mechsynth bench``; :func:`run_bench` runs the suites of a plan and
returns every number, :func:`write_outputs` writes both files. The recovery and perf suites
live in their own modules; the peer (``acdc_suite``) and the false-positive suite
(``controls_suite``) are thin here, their work being done elsewhere. ``python -m
synth.bench.suite update-baseline DIR/bench.json`` refreshes the committed floor (:func:`main`).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mechsynth.synth.bench.executor import plan_executor
from mechsynth.synth.bench.false_positives import false_positive_suite
from mechsynth.synth.bench.baseline import BASELINE_PATH, check_baseline, load_baseline, update_baseline
from mechsynth.synth.bench.log import error_text
from mechsynth.synth.bench.log import log as _log  # the name controls_suite's body uses
from mechsynth.synth.bench.numeric import finite
from mechsynth.synth.bench.perf import perf_suite
from mechsynth.synth.bench.plan import (
    MODE_LABELS,
    WORK_DIR,
    BenchError,
    BenchPlan,
    current_rss_mb,
    git_info,
    machine_info,
    make_plan,
    peak_rss_mb,
    versions,
)
from mechsynth.synth.bench.recovery import recovery_suite
from mechsynth.synth.bench.render import render_markdown
from mechsynth.synth.accept import Thresholds
from mechsynth.models.device import resolve_device

SCHEMA_VERSION = 1


# --- ACDC peer ----------------------------------------------------------------------------------


def acdc_suite(plan: BenchPlan, recovery: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    """ACDC and EAP (auto-circuit, own venv) on the plan's tracr targets, next to our locations."""
    from mechsynth.models import load_target
    from mechsynth.synth.bench import acdc_peer

    specs = [s for s in plan.targets if s.startswith("tracr:")]
    ours: dict[str, list[str]] = {}
    for row in (recovery or {}).get("rows", []):
        if row["mode"] == "model_guided" and row.get("correspondence"):
            ours[row["target"]] = list(row["correspondence"].values())
    targets = [load_target(s) for s in specs]
    _log(f"acdc: {len(targets)} tracr targets (auto-circuit venv at {acdc_peer.default_venv_dir()})")
    result = acdc_peer.run_peer(targets, ours, out_dir / WORK_DIR / "acdc")
    if "skipped" in result:
        _log(f"acdc: skipped: {result['skipped']}")
    return result


# --- controls -----------------------------------------------------------------------------------


def controls_suite(plan: BenchPlan, out_dir: Path) -> dict[str, Any]:
    """The false-positive suite on the plan's control targets and seeds, once per engine configuration.

    ``result`` is the first configuration's (the shipped engine unless ``--modes`` says otherwise);
    ``by_mode`` holds each configuration's, all at the same budget, targets and seeds.
    """
    modes = list(plan.control_modes)
    _log(f"controls: {len(plan.control_targets)} targets x seeds {list(plan.control_seeds)} x {modes}")
    start = time.perf_counter()
    by_mode: dict[str, Any] = {}
    with plan_executor(plan) as executor:
        _log(f"controls: runs on {executor.describe()}, networks on {plan.device}")
        for mode in modes:
            # The shipped engine keeps the folder it always had, so earlier outcomes are reused.
            work = out_dir / WORK_DIR / "controls" / ("" if mode == "engine" else f"mode-{mode}")
            result = false_positive_suite(
                list(plan.control_targets),
                seeds=list(plan.control_seeds),
                budget_seconds=plan.control_budget_seconds,
                out=str(work),
                progress=lambda msg, mode=mode: _log(f"controls [{mode}]: {msg}"),
                executor=executor,
                device=plan.device,
                mode=mode,
            )
            data = result.to_json() if hasattr(result, "to_json") else result
            by_mode[mode] = json.loads(json.dumps(data, default=str))
    return {
        "seconds": time.perf_counter() - start,
        "seeds": list(plan.control_seeds),
        "targets": list(plan.control_targets),
        "budget_seconds": plan.control_budget_seconds,
        "executor": plan.executor,
        "workers": plan.jobs,
        "device": plan.device,
        "statistic": list(Thresholds().statistic),
        "modes": modes,
        "mode_labels": {m: MODE_LABELS[m] for m in modes},
        "result": by_mode[modes[0]],
        "by_mode": by_mode,
    }


# --- the whole bench ----------------------------------------------------------------------------


def _run_suite(results: dict[str, Any], errors: dict[str, str], name: str, fn: Callable[[], Any]) -> None:
    """One suite into ``results[name]``; a broken suite is reported in ``errors`` and the others run."""
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - report a broken suite, keep the others
        errors[name] = error_text(e)
        _log(f"{name} suite failed: {errors[name]}")
        traceback.print_exc(file=sys.stderr)
    results.setdefault("suite_seconds", {})[name] = time.perf_counter() - t0


def run_bench(plan: BenchPlan, out_dir: Path, *, command: str = "mechsynth bench") -> dict[str, Any]:
    """Run the planned suites and return every number (also what bench.json holds)."""
    import torch  # noqa: F401 - imported before the RSS baseline so it counts as "after imports"

    from mechsynth import synth  # noqa: F401

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "command": command,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "plan": plan.to_json(),
        "machine": machine_info(),
        "versions": versions(),
        "git": git_info(),
        "rss_after_imports_mb": current_rss_mb(),
    }
    suite_errors: dict[str, str] = {}
    if "recovery" in plan.suites:
        _run_suite(results, suite_errors, "recovery", lambda: recovery_suite(plan, out_dir))
    if plan.with_acdc:
        _run_suite(results, suite_errors, "acdc", lambda: acdc_suite(plan, results.get("recovery"), out_dir))
    if "controls" in plan.suites:
        _run_suite(results, suite_errors, "controls", lambda: controls_suite(plan, out_dir))
    if "perf" in plan.suites:
        _run_suite(results, suite_errors, "perf", lambda: perf_suite(plan, results.get("recovery"), out_dir))
    results["suite_errors"] = suite_errors
    results["peak_rss_mb"] = peak_rss_mb()
    results["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results["wall_seconds"] = time.perf_counter() - start
    return results


def write_outputs(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    results = finite(json.loads(json.dumps(results, default=str)))
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "bench.json", out_dir / "BENCHMARKS.md"
    js.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    md.write_text(render_markdown(results))
    return md, js


# --- command line -------------------------------------------------------------------------------


def _command(args: Any, plan: BenchPlan, budget: float | None, jobs: int) -> str:
    """The invocation as the report names it: the flags that made this plan."""
    flags = (
        [f"--suite {args.suite}"]
        + (["--quick"] if plan.quick else [])
        + (["--with-acdc"] if plan.with_acdc else [])
        + ([f"--budget-seconds {budget:g}"] if budget is not None else [])
        + ([f"--jobs {jobs}"] if jobs > 1 else [])
        + (["--ray"] if plan.executor == "ray" and not plan.ray_address else [])
        + ([f"--ray-address {plan.ray_address}"] if plan.ray_address else [])
        + ([f"--device {plan.device}"] if plan.device != "cpu" else [])
        + [f"--{flag} {value}" for flag in ("targets", "modes", "seeds")
           if (value := getattr(args, flag, None)) is not None]
    )
    return "mechsynth bench " + " ".join(flags)


def _print_summary(results: Mapping[str, Any], message: str, md: Path, js: Path) -> None:
    print(f"wrote {md} and {js} ({results['wall_seconds']:.0f} s)")
    if "recovery" in results:
        for mode, t in results["recovery"]["totals"].items():
            print(f"  {MODE_LABELS[mode]}: recovered {t['recovered']}/{t['total']}")
    print(f"  {message}")


def cmd_bench(args: Any) -> int:
    """`mechsynth bench`: run, write DIR/BENCHMARKS.md and DIR/bench.json, check the CI floor.

    Exit 0 when every suite ran and (for --quick) recovery is at or above the committed
    baseline; 1 when a suite failed or recovery fell below the baseline.
    """
    out_dir = Path(getattr(args, "out", None) or "bench-out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot write to --out {out_dir}: {e.strerror}") from None
    budget = getattr(args, "budget_seconds", None)
    jobs = int(getattr(args, "jobs", None) or 1)
    if budget is not None and not budget > 0:
        raise BenchError(f"--budget-seconds must be > 0, got {budget}")
    if jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {jobs}")
    with_acdc = bool(getattr(args, "with_acdc", False))
    device = str(resolve_device(getattr(args, "device", None)))  # an unavailable device: one line, now
    ray_address = getattr(args, "ray_address", None)
    ray = bool(getattr(args, "ray", False) or ray_address)
    backend = "ray" if ray else ("processes" if jobs > 1 else "inline")
    plan = make_plan(args.suite, bool(args.quick), with_acdc=with_acdc, budget=budget, jobs=jobs,
                     device=device, executor=backend, ray_address=ray_address,
                     target_names=getattr(args, "targets", None), mode_names=getattr(args, "modes", None),
                     seed_names=getattr(args, "seeds", None))
    results = run_bench(plan, out_dir, command=_command(args, plan, budget, jobs))
    check = check_baseline(results, load_baseline())
    results["baseline_check"] = asdict(check)
    md, js = write_outputs(results, out_dir)
    if getattr(args, "json", False):
        print(js.read_text(), end="")
    else:
        _print_summary(results, check.message, md, js)
    if results["suite_errors"]:
        print(f"mechsynth bench: suites failed: {', '.join(results['suite_errors'])}", file=sys.stderr)
        return 1
    if not check.ok:
        print(f"mechsynth bench: {check.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mechsynth.synth.bench.suite update-baseline DIR/bench.json``: refresh the CI floor."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "update-baseline":
        print("usage: python -m mechsynth.synth.bench.suite update-baseline BENCH_JSON", file=sys.stderr)
        return 2
    baseline = update_baseline(Path(argv[1]))
    print(f"wrote {BASELINE_PATH}: {baseline['min_recovered']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
