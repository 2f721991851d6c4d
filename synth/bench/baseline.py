"""The CI floor: the committed ``baseline.json`` of ``--quick`` recovery counts, and the check.

The floor is a measured number, written from a real run's ``bench.json`` by
:func:`update_baseline` (``python -m mechsynth.synth.bench.suite update-baseline DIR/bench.json``),
never typed in; :func:`check_baseline` fails a ``--quick`` run that recovers less.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechsynth.synth.bench.plan import LLM_MODES, BenchError

BASELINE_PATH = Path(__file__).with_name("baseline.json")
# Configurations whose --quick recovery count CI holds to the committed floor.
FLOOR_MODES = ("model_guided",)


@dataclass(frozen=True)
class BaselineCheck:
    """Recovery counts of this run against the committed floor (quick runs only)."""

    ok: bool
    checked: bool
    message: str
    failures: tuple[str, ...] = ()


def load_baseline(path: Path | None = None) -> dict[str, Any] | None:
    path = path or BASELINE_PATH
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read the bench baseline {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("min_recovered"), dict):
        raise BenchError(f"bench baseline {path} lacks a 'min_recovered' table")
    return data


def _failures(results: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """Every way this run falls short of the floor, or is not comparable with it."""
    recovery = results["recovery"]
    failures = []
    expected_targets = baseline.get("targets")
    targets = list(results["plan"]["targets"])
    if expected_targets is not None and list(expected_targets) != targets:
        failures.append(f"quick targets changed: baseline {expected_targets}, this run {targets}")
    floor_budget = baseline.get("budget_seconds")
    if floor_budget is not None and float(recovery.get("budget_seconds", 0.0)) < float(floor_budget):
        failures.append(f"budget {recovery.get('budget_seconds')} s is below the baseline's {floor_budget} s")
    totals = recovery.get("totals", {})
    for mode, floor in baseline["min_recovered"].items():
        if mode not in totals:
            if mode in LLM_MODES:
                continue  # LLM configurations only run where an endpoint is configured
            failures.append(f"{mode}: not run")
            continue
        got = int(totals[mode]["recovered"])
        if got < int(floor):
            failures.append(f"{mode}: recovered {got} < baseline {floor}")
    return failures


def check_baseline(results: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> BaselineCheck:
    """Each configuration must recover at least the committed number of targets.

    The floor only means something on the same targets, so a different target list is a
    failure too (update the baseline from a real run when the quick subset changes).
    """
    recovery = results.get("recovery")
    if not results.get("plan", {}).get("quick") or recovery is None:
        return BaselineCheck(True, False, "baseline not checked (only --quick runs with the recovery suite)")
    if baseline is None:
        return BaselineCheck(False, True, f"no committed baseline at {BASELINE_PATH}", ("missing baseline",))
    failures = _failures(results, baseline)
    if failures:
        return BaselineCheck(
            False, True, "recovery below the committed baseline: " + "; ".join(failures), tuple(failures)
        )
    totals = recovery.get("totals", {})
    summary = ", ".join(
        f"{m} {totals[m]['recovered']}>={f}" for m, f in baseline["min_recovered"].items() if m in totals
    )
    return BaselineCheck(True, True, f"recovery at or above the committed baseline ({summary})")


def update_baseline(bench_json: Path, path: Path | None = None) -> dict[str, Any]:
    """Write the floor from a real ``--quick`` run's bench.json (never from typed-in numbers)."""
    path = path or BASELINE_PATH
    results = json.loads(Path(bench_json).read_text())
    if not results.get("plan", {}).get("quick") or "recovery" not in results:
        raise BenchError(f"{bench_json} is not a --quick run with the recovery suite")
    baseline = {
        "comment": "Floor for `mechsynth bench --quick` recovery counts; written by "
        "synth.bench.baseline.update_baseline "
        "from the run named below.",
        "from_commit": results.get("git", {}).get("commit"),
        "from_run": results.get("created"),
        "machine": {k: results.get("machine", {}).get(k) for k in ("cpus_usable", "torch_threads")},
        "targets": results["plan"]["targets"],
        "budget_seconds": results["recovery"]["budget_seconds"],
        # The engine's configuration only: the baselines (I/O-only) are measured for comparison,
        # and an LLM configuration only runs where an endpoint is configured.
        "min_recovered": {
            m: t["recovered"] for m, t in results["recovery"]["totals"].items() if m in FLOOR_MODES
        },
    }
    path.write_text(json.dumps(baseline, indent=2) + "\n")
    return baseline
