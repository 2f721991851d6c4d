"""The recovery suite: the synthesis loop on each target under each proposer configuration.

A tracr run *recovers* when its top accepted hypothesis is equivalent to the ground truth at
the right components (``synth.report.recovery.compare``); a trained target has no ground
truth, so it counts when a hypothesis is accepted that clears the behaviour and
loss-recovered bars of the synthesis issue. :func:`run_one` is one run and its verdict;
:func:`recovery_suite` is every run of the plan and the totals per configuration.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mechsynth.synth.bench.executor import Job, plan_executor
from mechsynth.synth.bench.log import error_text, log
from mechsynth.synth.bench.numeric import fmt, number
from mechsynth.synth.accept import undefined_note, undefined_scores
from mechsynth.synth.bench.modes import mode_setup
from mechsynth.synth.bench.plan import LLM_MODES, MODE_LABELS, WORK_DIR, BenchPlan

# A trained target has no ground truth; the synthesis issue's bar for "explained" is an
# accepted hypothesis with at least this behaviour match and loss recovered.
TRAINED_MIN_BEHAVIOUR = 0.98
TRAINED_MIN_LOSS_RECOVERED = 0.8


@dataclass(frozen=True)
class RecoveryResult:
    """One synthesis run: one target under one proposer configuration."""

    target: str
    kind: str
    mode: str
    recovered: bool
    criterion: str
    accepted: int = 0
    source: str | None = None
    program: str | None = None
    correspondence: Mapping[str, str] | None = None
    behaviour: float | None = None
    loss_recovered: float | None = None
    iia: float | None = None
    p_value: float | None = None
    n_scored: int | None = None
    n_candidates: int | None = None
    seconds: float | None = None
    seconds_to_accept: float | None = None
    stopped: str | None = None
    controls: str | None = None
    timings: Mapping[str, float] | None = None
    recovery: Mapping[str, Any] | None = None
    why: str | None = None
    error: str | None = None


def seconds_to_recovery(row: Mapping[str, Any] | None) -> float | None:
    """A recovery row's time to acceptance (its wall time when that is missing); None unless recovered."""
    if not row or not row["recovered"]:
        return None
    return row.get("seconds_to_accept") or row.get("seconds")


def mode_proposers(mode: str) -> list[Any] | None:
    """Fresh proposer objects for one configuration (``synth.bench.modes``; None: the loop's default)."""
    return mode_setup(mode)[0]


# --- one run ------------------------------------------------------------------------------------


def _why_not(run: Any) -> str:
    """Why a run accepted nothing: its best candidate's rejection, or that nothing was scored."""
    try:
        best = run.best(1)
    except Exception:  # noqa: BLE001 - a report detail must not fail the benchmark
        best = []
    if best:
        c = best[0]
        reason = (c.reason or c.status).splitlines()[0]
        sc = c.flat_scores()
        nums = ", ".join(f"{k} {fmt(number(sc.get(k)))}" for k in ("behaviour", "loss_recovered", "iia"))
        nums += f"; {undefined_note(sc)}" if undefined_note(sc) else ""
        return f"best candidate ({c.source}) {c.status} [{nums}]: {reason[:300]}"
    return f"no candidate fully scored (stopped: {getattr(run, 'stopped', '?')}; {run.n_candidates} proposed)"


def _hypothesis_and_scores(item: Any) -> tuple[Any, Mapping[str, Any]]:
    """An accepted entry of a Run as (hypothesis, scores), whatever container the loop uses."""
    hypothesis = getattr(item, "hypothesis", item)
    scores = getattr(item, "scores", None)
    if scores is None and isinstance(item, Mapping):
        hypothesis, scores = item.get("hypothesis", item), item.get("scores", {})
    return hypothesis, dict(scores or {})


def _first(scores: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        if name in scores and number(scores[name]) is not None:
            return number(scores[name])
    return None


def _p_adjusted(scores: Mapping[str, Any]) -> float | None:
    """The Holm-adjusted p-value the controls stage stored, wherever the loop put it
    (top level, a flattened ``controls.p_adjusted`` key, or a nested ``controls`` dict)."""
    nested = scores.get("controls")
    if isinstance(nested, Mapping):
        found = _first(nested, "p_adjusted")
        if found is not None:
            return found
    return _first(scores, "p_adjusted", "controls.p_adjusted")


def _recovery_json(recovery: Any) -> dict[str, Any]:
    if hasattr(recovery, "to_json"):
        return dict(recovery.to_json())
    if hasattr(recovery, "__dataclass_fields__"):
        return json.loads(json.dumps(asdict(recovery), default=str))
    return {"recovered": bool(getattr(recovery, "recovered", False))}


def _criterion(has_truth: bool) -> str:
    if has_truth:
        return "synth.compare vs ground truth"
    return f"accepted, behaviour>={TRAINED_MIN_BEHAVIOUR}, loss recovered>={TRAINED_MIN_LOSS_RECOVERED}"


def _run_facts(spec: str, mode: str, target: Any, run: Any, accepted: Sequence[Any]) -> dict[str, Any]:
    """What a run's result records whether or not it recovered anything."""
    seconds = number(run.seconds)
    return dict(
        target=spec,
        kind=spec.split(":", 1)[0],
        mode=mode,
        criterion=_criterion(target.ground_truth is not None),
        accepted=len(accepted),
        n_scored=int(run.n_scored),
        n_candidates=int(getattr(run, "n_candidates", 0) or 0),
        seconds=seconds,
        stopped=str(getattr(run, "stopped", "")),
        controls=str(dict(getattr(run, "args", {}) or {}).get("controls", "")),
        # The loop stops at the first accepted hypothesis, so its wall time is the time to accept.
        seconds_to_accept=seconds if accepted and getattr(run, "stopped", "") == "accepted" else None,
        timings={k: float(v) for k, v in dict(getattr(run, "timings", {}) or {}).items()},
    )


def _judge(
    target: Any, hypothesis: Any, behaviour: float | None, loss: float | None
) -> tuple[bool, str | None, dict[str, Any] | None]:
    """(recovered, why not, the comparison with the ground truth as JSON) for an accepted hypothesis."""
    if target.ground_truth is None:
        recovered = (behaviour or 0.0) >= TRAINED_MIN_BEHAVIOUR and (
            loss or 0.0
        ) >= TRAINED_MIN_LOSS_RECOVERED
        return recovered, None if recovered else "accepted below the trained-target bar", None
    from mechsynth.synth.report.recovery import compare

    recovery = compare(hypothesis, target.ground_truth, target)
    recovered = bool(recovery.recovered)
    recovery_json = _recovery_json(recovery)
    if recovered:
        return True, None, recovery_json
    why = "accepted but " + (recovery.summary() if hasattr(recovery, "summary") else "not recovered")
    return False, why, recovery_json


def run_one(
    spec: str, mode: str, *, budget_seconds: float, seed: int, run_dir: Path, device: str | None = None
) -> RecoveryResult:
    """Run the loop on one target in one configuration and judge the outcome."""
    from mechsynth.models import load_target
    from mechsynth.synth.loop import run as synth_run

    target = load_target(spec, device=device)
    proposers, options = mode_setup(mode)
    run = synth_run(
        target,
        seed=seed,
        budget_seconds=budget_seconds,
        out=str(run_dir),
        proposers=proposers,  # the loop's default controls stage: every control
        no_llm=mode not in LLM_MODES,
        **options,
    )
    accepted = list(run.accepted)
    facts = _run_facts(spec, mode, target, run, accepted)
    if not accepted:
        return RecoveryResult(recovered=False, why=_why_not(run), **facts)
    # The loop lists accepted hypotheses in acceptance order; the benchmark judges the one it reports first.
    hypothesis, scores = _hypothesis_and_scores(accepted[0])
    behaviour = _first(scores, "behaviour")
    loss = _first(scores, "loss_recovered")
    # An undefined loss recovered (with its reason) is not a failure: acceptance decided without it.
    bar_loss = TRAINED_MIN_LOSS_RECOVERED if "loss_recovered" in undefined_scores(scores) else loss
    recovered, why, recovery_json = _judge(target, hypothesis, behaviour, bar_loss)
    return RecoveryResult(
        recovered=recovered,
        why=why,
        source=str(getattr(accepted[0], "source", "")),
        program=str(hypothesis.program),
        correspondence={k: str(v) for k, v in hypothesis.correspondence.items()},
        behaviour=behaviour,
        loss_recovered=loss,
        iia=_first(scores, "iia"),
        p_value=_p_adjusted(scores),
        recovery=recovery_json,
        **facts,
    )


# --- the suite ----------------------------------------------------------------------------------


def run_or_error(
    spec: str, mode: str, budget_seconds: float, seed: int, run_dir: str, device: str | None = None
) -> RecoveryResult:
    """One run of the suite (in any executor's worker); a failing target is a result, not the end."""
    log(f"recovery: {spec} [{mode}] budget {budget_seconds:.0f} s")
    try:
        return run_one(spec, mode, budget_seconds=budget_seconds, seed=seed, run_dir=Path(run_dir),
                       device=device)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a failing target is a result, not the end of the bench
        log(f"recovery: {spec} [{mode}] failed: {error_text(e)}")
        traceback.print_exc(file=sys.stderr)
        return RecoveryResult(
            target=spec,
            kind=spec.split(":", 1)[0],
            mode=mode,
            recovered=False,
            criterion="error",
            error=error_text(e),
        )


def _totals(modes: Sequence[str], rows: Sequence[RecoveryResult]) -> dict[str, dict[str, int]]:
    totals = {}
    for mode in modes:
        mine = [r for r in rows if r.mode == mode]
        totals[mode] = {
            "recovered": sum(r.recovered for r in mine),
            "total": len(mine),
            "tracr_recovered": sum(r.recovered for r in mine if r.kind == "tracr"),
            "tracr_total": sum(r.kind == "tracr" for r in mine),
            "trained_recovered": sum(r.recovered for r in mine if r.kind == "trained"),
            "trained_total": sum(r.kind == "trained" for r in mine),
            "errors": sum(r.error is not None for r in mine),
        }
    return totals


def recovery_suite(plan: BenchPlan, out_dir: Path) -> dict[str, Any]:
    from mechsynth.synth.loop import safe_name

    runs_root = out_dir / WORK_DIR / "runs"
    # Runs resume from their directory; a benchmark must time fresh runs, never resumed ones.
    shutil.rmtree(runs_root, ignore_errors=True)
    runs = [(spec, mode) for spec in plan.targets for mode in plan.modes]
    jobs = [
        Job(f"{__name__}:run_or_error",
            (spec, mode, plan.budget_seconds, plan.seed, str(runs_root / f"{safe_name(spec)}-{mode}"),
             plan.device), name=f"{spec} [{mode}]")
        for spec, mode in runs
    ]

    def finished(_: int, row: RecoveryResult) -> None:
        log(
            f"recovery: {row.target} [{row.mode}] -> {'RECOVERED' if row.recovered else 'not recovered'}"
            f" ({row.seconds or 0:.1f} s, {row.n_scored} scored)"
        )

    # Runs at once (--jobs, --ray) share the machine: each run's seconds are then wall time under load.
    with plan_executor(plan) as executor:
        log(f"recovery: {len(jobs)} runs on {executor.describe()}, networks on {plan.device}")
        rows: list[RecoveryResult] = executor.map(jobs, on_result=finished)
    return {
        "executor": plan.executor,
        "workers": plan.jobs,
        "device": plan.device,
        "budget_seconds": plan.budget_seconds,
        "modes": list(plan.modes),
        "mode_labels": {m: MODE_LABELS[m] for m in plan.modes},
        "llm_configured": any(m in LLM_MODES for m in plan.modes),
        "rows": [asdict(r) for r in rows],
        "totals": _totals(plan.modes, rows),
    }
