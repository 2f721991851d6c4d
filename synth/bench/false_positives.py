"""The false-positive suite: the engine on real targets and on copies that implement nothing.

A sound engine accepts nothing on a copy of a network whose learned structure was destroyed
(re-initialised or weight-shuffled weights) unless the copy really computes what is
accepted. The suite runs the engine on each target and its copies (several seeds, each run
in its own process and resumable from its saved outcome), re-checks every hypothesis
accepted on a copy apart from the run (fresh inputs, another seed), and counts as false
positives only those that are not true of their copy. It is benchmark code: the engine
never imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


from mechsynth.dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES
from mechsynth.dsl.hypothesis import Hypothesis

from mechsynth.synth.accept import ControlError, Thresholds
from mechsynth.synth.bench.executor import Backend, Executor, InlineExecutor, Job, ProcessExecutor
from mechsynth.synth.control.config import NetworkFactory
from mechsynth.synth.control.numbers import json_float, nanmax, number
from mechsynth.synth.accept import statistic
from mechsynth.synth.control.results import finite_or_none
from mechsynth.synth.control.stage import default_networks

if TYPE_CHECKING:
    from mechsynth.models import Target


@dataclass(frozen=True)
class RunOutcome:
    """What the suite needs from one run: how many hypotheses were accepted, the best statistic."""

    network: str
    accepted: int
    best_statistic: float
    n_scored: int
    seconds: float
    best_hypothesis: str | None = None
    best_behaviour: float = math.nan  # best agreement with the network's output, any candidate
    accepted_hypotheses: tuple[str, ...] = ()  # each as text (``Hypothesis.parse`` reads it back)
    # Candidates that met every check threshold and so went on to the controls: what a run
    # without controls would have accepted (it stops at the first of them).
    passed_checks: int = 0
    # Per accepted hypothesis on a copy: is it true of that copy? (:func:`verify_on_fresh_inputs`)
    verification: tuple[Mapping[str, Any], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "accepted": self.accepted,
            "best_statistic": json_float(self.best_statistic),
            "n_scored": self.n_scored,
            "seconds": round(self.seconds, 2),
            "best_hypothesis": self.best_hypothesis,
            "best_behaviour": json_float(self.best_behaviour),
            "accepted_hypotheses": list(self.accepted_hypotheses),
            "passed_checks": self.passed_checks,
            "verification": None if self.verification is None else [dict(v) for v in self.verification],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOutcome:
        def number(x: Any, missing: float) -> float:
            return missing if x is None else float(x)  # float("-inf") reads json_float's "-inf"

        return cls(
            network=str(data["network"]),
            accepted=int(data["accepted"]),
            best_statistic=number(data["best_statistic"], -math.inf),
            n_scored=int(data["n_scored"]),
            seconds=float(data["seconds"]),
            best_hypothesis=data.get("best_hypothesis"),
            best_behaviour=number(data.get("best_behaviour"), math.nan),
            accepted_hypotheses=tuple(data.get("accepted_hypotheses") or ()),
            passed_checks=int(data.get("passed_checks") or 0),
            verification=None if data.get("verification") is None else tuple(data["verification"]),
        )


@dataclass(frozen=True)
class FalsePositiveReport:
    """Per target: the real run and the runs on its random copies; the gap between their best scores."""

    rows: tuple[Mapping[str, Any], ...]
    runs: tuple[RunOutcome, ...]

    @property
    def accepted_on_copies(self) -> int:
        return sum(r["accepted"] for r in self.rows if r["network"] != "real")

    @property
    def false_positives(self) -> int:
        """Hypotheses accepted on a copy that are not true of that copy (unverified ones count)."""
        return sum(r["accepted"] - r["accepted_true_of_network"] for r in self.rows if r["network"] != "real")

    def to_json(self) -> dict[str, Any]:
        reals = [r for r in self.rows if r["network"] == "real"]
        return {
            "rows": [dict(r) for r in self.rows],
            "accepted_on_copies": self.accepted_on_copies,
            "false_positives": self.false_positives,
            "control_runs": sum(1 for r in self.rows if r["network"] != "real"),
            "real_targets_accepting": sum(1 for r in reals if r["accepted"] > 0),
            "real_targets_passing_checks": sum(1 for r in reals if r["passed_checks"] > 0),
            "real_targets": len(reals),
            "runs": [r.to_json() for r in self.runs],
        }


RunFn = Callable[["Target", int, float, str | None], RunOutcome]


SuiteProgress = Callable[[str], None]


@dataclass(frozen=True)
class SuiteJob:
    """One run of the suite: the real network (``kind`` None) or one seeded random copy."""

    target: str | Target
    kind: str | None
    seed: int
    mode: str = "engine"  # the engine configuration (synth.bench.modes) that runs

    @property
    def network(self) -> str:
        return "real" if self.kind is None else f"{self.kind}[{self.seed}]"

    @property
    def target_name(self) -> str:
        return self.target if isinstance(self.target, str) else self.target.name

    def directory(self, out: str | None) -> str | None:
        if out is None:
            return None
        from pathlib import Path

        from mechsynth.synth.loop import safe_name

        sub = "real" if self.kind is None else f"{self.kind}-{self.seed}"
        return str(Path(out) / safe_name(self.target_name) / sub)


def false_positive_suite(
    targets: Sequence[str | Target],
    seeds: Sequence[int] = (0, 1, 2),
    budget_seconds: float = 60.0,
    *,
    out: str | None = None,
    kinds: Sequence[str] = ("reinitialized", "shuffled"),
    run_fn: RunFn | None = None,
    networks: Mapping[str, NetworkFactory] | None = None,
    jobs: int = 1,
    progress: SuiteProgress | None = None,
    verify_fn: VerifyFn | None = None,
    executor: Executor | None = None,
    device: str | None = None,
    mode: str = "engine",
) -> FalsePositiveReport:
    """Run the engine on each target and on its re-initialised and shuffled copies (every seed).

    A sound engine accepts nothing on a copy that the copy does not compute, while the real
    targets still accept. Each row reports the accepted count and the best statistic of one run, and, per
    target, ``gap`` = real best - best over all copies. ``run_fn(target, seed,
    budget_seconds, out_dir)`` defaults to the synthesis loop (``synth.run``).

    With ``out``, each finished run's outcome is saved next to its run directory and a
    rerun with the same budget reuses it, so an interrupted suite loses at most the runs in
    flight, whichever back end ran them. ``executor`` (:mod:`synth.bench.executor`: inline,
    local processes or Ray) runs the runs; without one, ``jobs`` > 1 means that many local
    processes. Any back end but inline needs string target specs and the default
    ``run_fn``/``networks`` (a worker imports them by name). ``device`` is where every
    network runs (default: where the target is built). ``mode`` is the engine configuration
    the default ``run_fn`` runs (:func:`synth.bench.modes.mode_setup`; default the shipped engine),
    so the suite can compare the engine with and without its search at one budget.

    A copy is a network too, and can compute something simple (a shuffled 3-token network
    that outputs a fixed map of the current token, say) that a hypothesis describes exactly.
    So every hypothesis accepted on a copy is then checked independently of the run that
    accepted it (``verify_fn``, default :func:`verify_on_fresh_inputs`): ``accepted_on_copies``
    counts them all, ``false_positives`` those that are not true of their copy.
    """
    if jobs < 1:
        raise ControlError(f"jobs must be >= 1, got {jobs}")
    if executor is None:
        executor = ProcessExecutor(jobs) if jobs > 1 else InlineExecutor()
    say = progress or (lambda _msg: None)
    plan = [
        job
        for spec in targets
        for job in (
            SuiteJob(spec, None, 0, mode),
            *(SuiteJob(spec, kind, seed, mode) for kind in kinds for seed in seeds),
        )
    ]
    per_target = 1 + len(kinds) * len(seeds)  # the plan holds each target's runs together
    outcomes: dict[int, RunOutcome] = {}
    todo = []
    for i, job in enumerate(plan):
        saved = _saved_outcome(job.directory(out), budget_seconds)
        if saved is not None:
            outcomes[i] = saved
        else:
            todo.append(i)
    loaded: dict[int, Target] = {}  # in this process, each target is built once for all its runs

    def target_of(i: int) -> Target:
        first = i - i % per_target
        if first not in loaded:
            loaded[first] = _load(plan[first].target, device)
        return loaded[first]

    if todo and executor.backend is not Backend.INLINE:
        if run_fn is not None or networks is not None or not all(isinstance(job.target, str) for job in plan):
            raise ControlError(f"the {executor.backend.value} back end needs target specs (strings) and the "
                               "default run_fn and networks")

        def finished(k: int, outcome: RunOutcome) -> None:  # stored at once: an interrupted suite resumes
            i = todo[k]
            outcomes[i] = outcome
            _finish_job(plan[i], outcome, out, budget_seconds, say, len(outcomes), len(plan))

        executor.map(
            [Job(f"{__name__}:suite_job", (plan[i], budget_seconds, plan[i].directory(out), device),
                 name=f"{plan[i].target_name} {plan[i].network}") for i in todo],
            on_result=finished,
        )
    else:
        for i in todo:
            job = plan[i]
            outcomes[i] = _suite_job(job, budget_seconds, job.directory(out), run_fn, networks, target_of(i))
            _finish_job(job, outcomes[i], out, budget_seconds, say, len(outcomes), len(plan))
    for i, job in enumerate(plan):
        outcome = outcomes[i]
        if job.kind is None or not outcome.accepted_hypotheses or outcome.verification is not None:
            continue
        factories = networks if networks is not None else default_networks()
        copy = factories[job.kind](target_of(i), job.seed)
        checks = tuple(
            (verify_fn or verify_on_fresh_inputs)(copy, text, job.seed + VERIFY_SEED_OFFSET)
            for text in outcome.accepted_hypotheses
        )
        outcomes[i] = dataclasses.replace(outcome, verification=checks)
        holds = sum(bool(c.get("holds")) for c in checks)
        _finish_job(job, outcomes[i], out, budget_seconds, say, len(outcomes), len(plan),
                    f"verified on fresh inputs: {holds}/{len(checks)} true of {job.network}")
    rows: list[dict[str, Any]] = []
    runs = [outcomes[i] for i in range(len(plan))]
    for start in range(0, len(plan), per_target):
        rows += _suite_rows(plan[start].target_name, runs[start], runs[start + 1 : start + per_target])
    return FalsePositiveReport(tuple(rows), tuple(runs))


def suite_job(job: SuiteJob, budget_seconds: float, out: str | None, device: str | None = None) -> RunOutcome:
    """One run of the suite in a worker (any executor back end): the default engine and copies."""
    return _suite_job(job, budget_seconds, out, target=_load(job.target, device))


def _suite_job(
    job: SuiteJob,
    budget_seconds: float,
    out: str | None,
    run_fn: RunFn | None = None,
    networks: Mapping[str, NetworkFactory] | None = None,
    target: Target | None = None,
) -> RunOutcome:
    """One run of the suite; ``target`` is the job's target already built (else it is loaded)."""
    target = target if target is not None else _load(job.target)
    if job.kind is not None:
        factories = networks if networks is not None else default_networks()
        target = factories[job.kind](target, job.seed)
    if run_fn is None:
        run_fn = functools.partial(_default_run_fn, mode=job.mode)
    outcome = run_fn(target, job.seed, budget_seconds, out)
    return dataclasses.replace(outcome, network=job.network)


def _outcome_file(run_dir: str) -> str:
    return run_dir.rstrip("/") + ".outcome.json"


def _saved_outcome(run_dir: str | None, budget_seconds: float) -> RunOutcome | None:
    """The outcome a previous suite saved for this run, if it ran with the same budget.

    Where the run left a run store, the summary is read again from it (:func:`run_outcome`),
    so a reused run is summarised exactly as a new one; only its wall time comes from the file.
    """
    import json
    import os

    if run_dir is None or not os.path.exists(_outcome_file(run_dir)):
        return None
    try:
        with open(_outcome_file(run_dir)) as f:
            data = json.load(f)
        if data.get("budget_seconds") != budget_seconds:
            return None
        saved = RunOutcome.from_json(data["outcome"])
        if os.path.exists(os.path.join(run_dir, "run.sqlite")):
            from mechsynth.synth.loop import load_run

            again = run_outcome(load_run(run_dir), saved.seconds)
            return dataclasses.replace(again, network=saved.network, verification=saved.verification)
        return saved
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: run it again


def _finish_job(
    job: SuiteJob,
    outcome: RunOutcome,
    out: str | None,
    budget_seconds: float,
    say: SuiteProgress,
    done: int,
    total: int,
    what: str | None = None,
) -> None:
    import json
    import os

    run_dir = job.directory(out)
    if run_dir is not None:
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        tmp = _outcome_file(run_dir) + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"budget_seconds": budget_seconds, "outcome": outcome.to_json()}, f)
        os.replace(tmp, _outcome_file(run_dir))  # atomic: a half-written outcome is never reused
    what = what or (
        f"{outcome.accepted} accepted, best statistic {outcome.best_statistic:.3f} ({outcome.seconds:.0f} s)"
    )
    say(f"[{done}/{total}] {job.target_name} {job.network}: {what}")


def _suite_rows(name: str, real: RunOutcome, control_runs: Sequence[RunOutcome]) -> list[dict[str, Any]]:
    """One target's rows: the real run (with the gaps) and each copy's run."""
    # Statistic: only runs where some candidate reached the full checks have one (-inf
    # otherwise: nothing on that copy even matched its outputs well enough to be checked).
    finite = [r.best_statistic for r in control_runs if math.isfinite(r.best_statistic)]
    best_control = max(finite) if finite else None
    real_stat = real.best_statistic if math.isfinite(real.best_statistic) else None
    behaviours = [r.best_behaviour for r in control_runs if not math.isnan(r.best_behaviour)]
    best_control_b = max(behaviours) if behaviours else None
    real_b = None if math.isnan(real.best_behaviour) else real.best_behaviour
    rows = []
    for r in (real, *control_runs):
        is_real = r is real
        rows.append(
            {
                "target": name,
                "network": r.network,
                "accepted": r.accepted,
                "passed_checks": r.passed_checks,
                "accepted_true_of_network": (
                    r.accepted if is_real else sum(bool(v.get("holds")) for v in r.verification or ())
                ),
                "accepted_hypotheses": [
                    {"hypothesis": text, **(dict(r.verification[k]) if r.verification else {})}
                    for k, text in enumerate(r.accepted_hypotheses)
                ],
                "n_scored": r.n_scored,
                "best_statistic": json_float(r.best_statistic),
                "best_behaviour": json_float(r.best_behaviour),
                "best_control_statistic": best_control if is_real else None,
                "gap_statistic": (
                    round(real_stat - best_control, 9) + 0.0  # no -1e-16 for equal scores
                    if is_real and real_stat is not None and best_control is not None
                    else None
                ),
                "controls_reaching_checks": len(finite) if is_real else None,
                "best_control_behaviour": best_control_b if is_real else None,
                "gap_behaviour": (
                    round(real_b - best_control_b, 9) + 0.0
                    if is_real and real_b is not None and best_control_b is not None
                    else None
                ),
                "seconds": round(r.seconds, 1),
            }
        )
    return rows


def _load(spec: str | Target, device: str | None = None) -> Target:
    if isinstance(spec, str):
        from mechsynth.models import load_target

        return load_target(spec, device=device)
    return spec if device is None else spec.on(device)


def _default_run_fn(
    target: Target, seed: int, budget_seconds: float, out: str | None, mode: str = "engine"
) -> RunOutcome:
    """One fresh run of the engine in configuration ``mode`` (default: the shipped proposers, no
    LLM) with the loop's default controls on ``target``."""
    import shutil
    import tempfile

    from mechsynth.synth.bench.modes import mode_setup
    from mechsynth.synth.bench.plan import LLM_MODES
    from mechsynth.synth.loop import run

    proposers, options = mode_setup(mode)
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)  # fresh, never resumed
    start = time.perf_counter()
    out = out or tempfile.mkdtemp(prefix="mechsynth-fp-")
    # The loop's default controls stage is these controls, seeded with the run's seed.
    result = run(target, out=out, seed=seed, budget_seconds=budget_seconds, no_llm=mode not in LLM_MODES,
                 proposers=proposers, **options)
    return run_outcome(result, time.perf_counter() - start)


def run_outcome(result: Any, seconds: float) -> RunOutcome:
    """What the suite compares, read from a stored run (:class:`synth.loop.Run`).

    The best statistic is over candidates that reached the full checks and claim at least
    one internal component: a program located only at the embeddings (a constant, say)
    patches nothing, so its loss recovered and IIA are 1 by default, whatever the network.
    Such candidates count in ``best_behaviour`` (agreement with the network's own output)
    and are rejected by necessity; they are not evidence of a mechanism on either side of the gap.
    """
    keys = Thresholds().statistic
    best, best_h, best_b = -math.inf, None, math.nan
    candidates = result.candidates()
    for cand in candidates:
        flat = cand.flat_scores()
        b = nanmax([number(flat.get("behaviour")), number(flat.get("prefilter.behaviour_observed"))])
        best_b = nanmax([best_b, b])
        if cand.status not in ("failed", "accepted"):
            continue  # filtered and rejected candidates never reached the full checks
        if all(v in PRIMITIVES for v in cand.correspondence):
            continue
        value = statistic(flat, keys)
        if value > best:
            best, best_h = value, f"{cand.program} @ {dict(cand.correspondence)}"
    accepted = tuple(str(a.hypothesis) for a in result.accepted)
    passed = sum(1 for cand in candidates if "controls" in cand.scores)
    return RunOutcome(
        result.target, len(accepted), best, int(result.n_scored), seconds, best_h, best_b, accepted, passed
    )


VERIFY_SEED_OFFSET = 7919  # fresh inputs: another seed than the run's sampling and scoring


VerifyFn = Callable[["Target", str, int], Mapping[str, Any]]


def verify_on_fresh_inputs(
    target: Target, hypothesis_text: str, seed: int, n_per_length: int = 500, n_score: int = 512
) -> dict[str, Any]:
    """Whether a hypothesis is true of ``target``, judged apart from the run that accepted it.

    Its program against the network's own output on ``n_per_length`` fresh inputs of every
    length (``behaviour_exact``: the share of inputs where every position agrees), and the
    full checks again on other inputs (another seed). ``holds`` when every check threshold
    of :class:`Thresholds` holds on both.
    """
    from mechsynth.synth.check.behaviour import behaviour
    from mechsynth.synth.check.scoring import score

    hypothesis = Hypothesis.parse(hypothesis_text)
    task = target.task
    inputs = [
        x for length in range(task.min_len, task.max_len + 1)
        for x in task.sample(n_per_length, seed + length, length=length)
    ]
    beh = behaviour(target, hypothesis.program, inputs)
    scores = score(target, hypothesis, n=n_score, seed=seed)
    checks = Thresholds().checks
    values = {"behaviour": beh.positions} | {k: number(scores.get(k)) for k in checks if k != "behaviour"}
    holds = all(values[k] >= minimum for k, minimum in checks.items())
    return {
        "behaviour_fresh": beh.positions,
        "behaviour_exact_fresh": beh.exact,
        "n_inputs": beh.n,
        **{k: finite_or_none(v) for k, v in values.items() if k != "behaviour"},
        "holds": bool(holds),
    }


