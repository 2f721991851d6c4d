"""Benchmark: measure recovery, false positives and speed in one run, and write the tables.

Claims about the engine are only as good as the measurement behind them, so one
command measures everything the README quotes and writes it twice: ``BENCHMARKS.md``
(tables for people) and ``bench.json`` (every number, plus the machine, the library
versions and the git commit, for anyone who wants to check or re-plot).

Suites:

- **recovery** — for each target, run the synthesis loop under each *proposer
  configuration* with the same budget: (a) I/O-only enumeration (the same enumerator,
  no activations: what synthesis from input/output examples alone achieves), (b) the
  model-guided proposer, and, when an LLM endpoint is configured, (c) LLM only and
  (d) both; every run goes through the frivolous-circuit controls. A tracr run
  *recovers* when its top accepted hypothesis is equivalent to the ground truth at the
  right components (``synth.compare``); a trained target has no ground truth, so it
  counts when a hypothesis is accepted that clears the behaviour and loss-recovered
  bars of the synthesis issue. Optionally the ACDC/EAP peer (``synth.bench.acdc_peer``) runs
  on the same tracr targets.
- **controls** — the false-positive suite: what the engine accepts on networks that
  implement nothing (re-initialised and weight-shuffled copies), and the score gap.
- **perf** — each figure next to a ratio measured in the same process moments apart
  (a ratio survives a slower machine; a bare figure does not): enumerator distinct
  programs/s, interpreter throughput, the cost of one causal-scrubbing score as a
  multiple of one clean batched forward pass, time to recovery, peak RSS, and how
  time grows with model depth (1, 2, 4 layers) and with program size.

``--quick`` is a representative subset for CI; its recovery count is checked against
the committed floor in ``synth/bench/baseline.json`` (a measured number, written
from a real run by :func:`update_baseline`), so a regression fails CI without any
timed assertion.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SUITES = ("recovery", "controls", "perf")
BASELINE_PATH = Path(__file__).with_name("baseline.json")
SCHEMA_VERSION = 1
BUDGET_ENV = "MECHSYNTH_BENCH_BUDGET_SECONDS"
# Run stores, peer exports and control runs go here under --out, apart from the two reports,
# so `--out .` at the repo root leaves BENCHMARKS.md and bench.json next to the README.
WORK_DIR = "bench-work"

# A trained target has no ground truth; the synthesis issue's bar for "explained" is an
# accepted hypothesis with at least this behaviour match and loss recovered.
TRAINED_MIN_BEHAVIOUR = 0.98
TRAINED_MIN_LOSS_RECOVERED = 0.8

# Proposer configurations, in table order. "llm_only" and "both" need an LLM endpoint.
MODE_LABELS = {
    "io_only": "(a) I/O-only enumeration",
    "model_guided": "(b) model-guided",
    "llm_only": "(c) LLM only",
    "both": "(d) model-guided + LLM",
}
LLM_MODES = ("llm_only", "both")
# Configurations whose --quick recovery count CI holds to the committed floor.
FLOOR_MODES = ("model_guided",)

# The quick subset: targets that exercise every ground-truth shape the engine handles
# (a select/aggregate pair, selector_width, a numerical mean, an MLP map feeding a head),
# plus one trained network. Chosen for coverage, not for being easy.
QUICK_TRACR = ("tracr:reverse", "tracr:hist", "tracr:frac_prevs", "tracr:sort_unique")
# The first of these whose checkpoint loads here is the quick subset's trained target.
QUICK_TRAINED = ("trained:reverse", "trained:sort", "trained:hist", "trained:induction")


class BenchError(RuntimeError):
    """The benchmark could not run or its results fall below the committed baseline."""


# --- plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPlan:
    """What one bench invocation measures. Built from the CLI flags by :func:`make_plan`."""

    suites: tuple[str, ...]
    quick: bool
    targets: tuple[str, ...]
    modes: tuple[str, ...]
    budget_seconds: float
    control_seeds: tuple[int, ...]
    control_targets: tuple[str, ...]
    control_budget_seconds: float
    perf_batch: int
    depths: tuple[int, ...] = (1, 2, 4)
    program_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    with_acdc: bool = False
    seed: int = 0
    jobs: int = 1  # runs of the false-positive suite at once (worker processes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def llm_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether an LLM endpoint is configured (a key or a base URL), as the loop reads it."""
    env = os.environ if env is None else env
    return bool(env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_BASE_URL"))


def available_targets() -> tuple[list[str], list[str]]:
    """(tracr specs, trained specs) known here, without building any network."""
    try:
        from models.registry import known_specs

        names = list(known_specs())
    except ImportError:  # an older models package: fall back to the (slower) full table
        from models import list_targets

        names = [str(getattr(r, "name", None) or dict(r)["name"]) for r in list_targets()]
    tracr = [n for n in names if n.startswith("tracr:")]
    trained = [n for n in names if n.startswith("trained:")]
    return tracr, trained


def _first_loadable(specs: list[str], *, check: bool) -> list[str]:
    """The first spec that loads (a checkpoint may not be trained yet), as a 0/1-item list."""
    if not check:
        return specs[:1]
    from models import load_target

    for spec in specs:
        try:
            load_target(spec)
        except Exception:  # noqa: BLE001 - any failure to load means "not available here"
            continue
        return [spec]
    return []


def make_plan(
    suite: str,
    quick: bool,
    *,
    with_acdc: bool = False,
    llm: bool | None = None,
    targets: tuple[list[str], list[str]] | None = None,
    budget: float | None = None,
    jobs: int = 1,
) -> BenchPlan:
    """The plan for one invocation. ``budget`` (seconds per synthesis run) defaults to the
    issue's bar (5 minutes per target) for the full suite and 30 s for --quick; the
    environment variable ``MECHSYNTH_BENCH_BUDGET_SECONDS`` overrides it (recorded in the plan).
    """
    if budget is None and os.environ.get(BUDGET_ENV):
        try:
            budget = float(os.environ[BUDGET_ENV])
        except ValueError:
            raise BenchError(
                f"{BUDGET_ENV} must be a number of seconds, got {os.environ[BUDGET_ENV]!r}"
            ) from None
    suites = SUITES if suite == "all" else (suite,)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise BenchError(f"unknown suite {unknown[0]!r} (known: {', '.join(SUITES)}, all)")
    tracr, trained = targets if targets is not None else available_targets()
    if quick:
        chosen = [t for t in QUICK_TRACR if t in tracr] + _first_loadable(
            [t for t in QUICK_TRAINED if t in trained], check=targets is None
        )
    else:
        chosen = tracr + trained
    modes = ["io_only", "model_guided"]
    if llm if llm is not None else llm_configured():
        modes += list(LLM_MODES)
    return BenchPlan(
        suites=tuple(suites),
        quick=quick,
        targets=tuple(chosen),
        modes=tuple(modes),
        budget_seconds=budget if budget is not None else (30.0 if quick else 300.0),
        control_seeds=(0,) if quick else (0, 1, 2),
        control_targets=tuple(chosen[:1] if quick else chosen),
        control_budget_seconds=min(budget, 15.0 if quick else 120.0)
        if budget is not None
        else (15.0 if quick else 120.0),
        perf_batch=1024 if quick else 4096,
        program_sizes=(1, 2, 4, 8) if quick else (1, 2, 4, 8, 16),  # units of 3 nodes
        with_acdc=with_acdc,
        jobs=jobs,
    )


# --- machine, versions, memory ------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        info["memory_gb"] = round(total_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        info["memory_gb"] = None
    return info


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "transformer_lens", "tracr-pypi", "mechsynth", "z3-solver", "anthropic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_info(repo: Path | None = None) -> dict[str, Any]:
    repo = repo or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


# --- small helpers ------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _timed(fn: Callable[[], Any], *, repeat: int = 1, min_seconds: float = 0.0) -> tuple[Any, float]:
    """(last result, best single-call seconds) over at least `repeat` calls, and over more until
    `min_seconds` have been spent: the minimum filters out other processes' noise, which
    matters most for the millisecond timings that ratios divide by."""
    best = float("inf")
    result = None
    spent, calls = 0.0, 0
    while calls < max(1, repeat) or (spent < min_seconds and calls < 200):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return result, best


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN -> None


# --- recovery -----------------------------------------------------------------------------------


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


def mode_proposers(mode: str) -> list[Any]:
    """Fresh proposer objects for one configuration (proposers keep per-run state).

    (a) is the enumerator alone: it sees the observed inputs and the network's outputs,
    nothing inside. (b) is the model-guided proposer alone (it builds its candidates with
    the same enumerator, but from the activations). (c)/(d) add the LLM proposer.
    """
    from synth.propose.enumerate import EnumerativeProposer
    from synth.propose.model_guided import ModelGuidedProposer

    if mode == "io_only":
        return [EnumerativeProposer()]
    if mode == "model_guided":
        return [ModelGuidedProposer()]
    from synth.propose.llm import LLMProposer

    if mode == "llm_only":
        return [LLMProposer()]
    if mode == "both":
        return [ModelGuidedProposer(), LLMProposer()]
    raise BenchError(f"unknown proposer configuration {mode!r} (known: {', '.join(MODE_LABELS)})")


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
        nums = ", ".join(f"{k} {_f(_num(sc.get(k)))}" for k in ("behaviour", "loss_recovered", "iia"))
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
        if name in scores and _num(scores[name]) is not None:
            return _num(scores[name])
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


def run_one(spec: str, mode: str, *, budget_seconds: float, seed: int, run_dir: Path) -> RecoveryResult:
    """Run the loop on one target in one configuration and judge the outcome."""
    from models import load_target
    from synth.loop import run as synth_run
    from synth.report.recovery import compare

    target = load_target(spec)
    kind = spec.split(":", 1)[0]
    has_truth = target.ground_truth is not None
    criterion = (
        "synth.compare vs ground truth"
        if has_truth
        else f"accepted, behaviour>={TRAINED_MIN_BEHAVIOUR}, loss recovered>={TRAINED_MIN_LOSS_RECOVERED}"
    )
    run = synth_run(
        target,
        seed=seed,
        budget_seconds=budget_seconds,
        out=str(run_dir),
        proposers=mode_proposers(mode),  # the loop's default controls stage: every control
        no_llm=mode not in LLM_MODES,
    )
    accepted = list(run.accepted)
    seconds = _num(run.seconds)
    base = dict(
        target=spec,
        kind=kind,
        mode=mode,
        criterion=criterion,
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
    if not accepted:
        return RecoveryResult(recovered=False, why=_why_not(run), **base)
    # The loop lists accepted hypotheses in acceptance order; the benchmark judges the one it reports first.
    hypothesis, scores = _hypothesis_and_scores(accepted[0])
    behaviour = _first(scores, "behaviour")
    loss = _first(scores, "loss_recovered")
    recovery_json = None
    if has_truth:
        recovery = compare(hypothesis, target.ground_truth, target)
        recovered = bool(recovery.recovered)
        recovery_json = _recovery_json(recovery)
    else:
        recovered = (behaviour or 0.0) >= TRAINED_MIN_BEHAVIOUR and (
            loss or 0.0
        ) >= TRAINED_MIN_LOSS_RECOVERED
    why = None
    if not recovered:
        why = "accepted below the trained-target bar"
        if has_truth:
            why = "accepted but " + (recovery.summary() if hasattr(recovery, "summary") else "not recovered")
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
        **base,
    )


def recovery_suite(plan: BenchPlan, out_dir: Path) -> dict[str, Any]:
    import shutil

    runs_root = out_dir / WORK_DIR / "runs"
    # Runs resume from their directory; a benchmark must time fresh runs, never resumed ones.
    shutil.rmtree(runs_root, ignore_errors=True)
    rows: list[RecoveryResult] = []
    for spec in plan.targets:
        for mode in plan.modes:
            run_dir = runs_root / f"{spec.replace(':', '_')}-{mode}"
            _log(f"recovery: {spec} [{mode}] budget {plan.budget_seconds:.0f} s")
            try:
                row = run_one(spec, mode, budget_seconds=plan.budget_seconds, seed=plan.seed, run_dir=run_dir)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - a failing target is a result, not the end of the bench
                _log(f"recovery: {spec} [{mode}] failed: {_error_text(e)}")
                traceback.print_exc(file=sys.stderr)
                row = RecoveryResult(
                    target=spec,
                    kind=spec.split(":", 1)[0],
                    mode=mode,
                    recovered=False,
                    criterion="error",
                    error=_error_text(e),
                )
            _log(
                f"recovery: {spec} [{mode}] -> {'RECOVERED' if row.recovered else 'not recovered'}"
                f" ({row.seconds or 0:.1f} s, {row.n_scored} scored)"
            )
            rows.append(row)
    totals = {}
    for mode in plan.modes:
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
    return {
        "budget_seconds": plan.budget_seconds,
        "modes": list(plan.modes),
        "mode_labels": {m: MODE_LABELS[m] for m in plan.modes},
        "llm_configured": any(m in LLM_MODES for m in plan.modes),
        "rows": [asdict(r) for r in rows],
        "totals": totals,
    }


# --- ACDC peer ----------------------------------------------------------------------------------


def acdc_suite(plan: BenchPlan, recovery: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    """ACDC and EAP (auto-circuit, own venv) on the plan's tracr targets, next to our locations."""
    from models import load_target
    from synth.bench import acdc_peer

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
    """The controls helper's false-positive suite on the plan's control targets and seeds."""
    from synth.control import stage as control

    _log(f"controls: {len(plan.control_targets)} targets x seeds {list(plan.control_seeds)}")
    start = time.perf_counter()
    result = control.false_positive_suite(
        list(plan.control_targets),
        seeds=list(plan.control_seeds),
        budget_seconds=plan.control_budget_seconds,
        out=str(out_dir / WORK_DIR / "controls"),
        jobs=plan.jobs,
        progress=lambda msg: _log(f"controls: {msg}"),
    )
    data = result.to_json() if hasattr(result, "to_json") else result
    data = json.loads(json.dumps(data, default=str))
    return {
        "seconds": time.perf_counter() - start,
        "seeds": list(plan.control_seeds),
        "targets": list(plan.control_targets),
        "budget_seconds": plan.control_budget_seconds,
        "statistic": list(getattr(control.Thresholds(), "statistic", ()) or ()),
        "result": data,
    }


# --- perf ---------------------------------------------------------------------------------------


def _forward_seconds(target: Any, inputs: list[list[Any]], repeat: int = 3) -> float:
    """Best-of-`repeat` time of one clean batched forward pass on same-length inputs."""
    import torch

    tokens = target.tokens(inputs)
    with torch.no_grad():
        target.model(tokens)  # warm-up: first call pays for lazy init
        _, seconds = _timed(lambda: target.model(tokens), repeat=repeat, min_seconds=0.5)
    return seconds


def chain_program_text(units: int) -> str:
    """A program of `units` identical 3-node units (an MLP-like map, then a head-like select and
    aggregate), so interpreter time can be compared per unit as programs grow."""
    lines, prev = [], "tokens"
    for u in range(units):
        lines.append(f"m{u} = map(add(1), {prev})")
        lines.append(f"s{u} = select(indices, indices, EQ)")
        lines.append(f"a{u} = aggregate(s{u}, m{u})")
        prev = f"a{u}"
    return "\n".join(lines)


def interpreter_measure(program: Any, inputs: list[list[Any]], repeat: int = 3) -> dict[str, Any]:
    """Time the DSL's tensor path on one encoded batch (encoding once, as the enumerator does)."""
    from dsl.interpret import encode, run

    batch = encode(inputs)
    run(program, batch)  # warm-up: compiles the function-library lookups cached on the batch
    _, seconds = _timed(lambda: run(program, batch), repeat=repeat, min_seconds=0.3)
    nodes = int(program.size)
    return {
        "nodes": nodes,
        "batch": len(inputs),
        "positions": max(len(x) for x in inputs),
        "seconds": seconds,
        "node_evals_per_s": nodes * len(inputs) / seconds if seconds > 0 else None,
        "programs_per_s": 1.0 / seconds if seconds > 0 else None,
    }


def _random_depth_target(base: Any, n_layers: int, seed: int) -> Any:
    """The base target's task and encoding on a freshly initialised network of `n_layers` blocks."""
    import dataclasses

    from models.bridge import build_bridge
    from synth.bench.acdc_peer import model_config

    config = {k: v for k, v in model_config(base.model).items() if v is not None}
    config.update(n_layers=n_layers, seed=seed)
    model = build_bridge(config)
    return dataclasses.replace(base, name=f"{base.name}@random-{n_layers}L", model=model, ground_truth=None)


def depth_probe_hypothesis(n_layers: int) -> Any:
    """A fixed one-head hypothesis placed in the last block, valid at any depth.

    It claims the last block's head 0 copies the token at its own position, so scoring it
    scrubs through every block: the same work per block on networks of any depth.
    """
    from dsl import parse
    from dsl.hypothesis import Hypothesis
    from dsl.location import Location

    program = parse("out = aggregate(select(indices, indices, EQ), tokens)")
    return Hypothesis(program, {program.output: Location(f"blocks.{n_layers - 1}.attn.hook_z", head=0)})


def perf_suite(plan: BenchPlan, recovery: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    """Every figure next to a ratio measured moments apart in this process, with the torch
    thread count the synthesis loop itself uses (``RunOptions.threads``): on a busy 2-core
    machine two intra-op threads made one forward pass tens of times slower than one."""
    import torch

    from synth.loop import RunOptions

    old = torch.get_num_threads()
    threads = int(RunOptions().threads) or old
    torch.set_num_threads(threads)
    try:
        perf = _perf_measurements(plan, recovery, out_dir)
    finally:
        torch.set_num_threads(old)
    perf["torch_threads"] = threads
    return perf


def _perf_measurements(plan: BenchPlan, recovery: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    import random

    from dsl import parse
    from models import load_target

    tracr_specs = [s for s in plan.targets if s.startswith("tracr:")] or ["tracr:reverse"]
    reference = load_target(tracr_specs[0])
    perf: dict[str, Any] = {"reference_target": reference.name, "batch": plan.perf_batch}
    errors: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        _log(f"perf: {name}")
        try:
            return fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one broken measurement must not hide the others
            errors[name] = _error_text(e)
            _log(f"perf: {name} failed: {errors[name]}")
            return None

    length = reference.max_len
    ref_inputs = reference.task.sample(plan.perf_batch, plan.seed, length=length)
    forward_s = attempt("forward", lambda: _forward_seconds(reference, ref_inputs))
    perf["forward"] = {
        "target": reference.name,
        "batch": plan.perf_batch,
        "length": length,
        "seconds": forward_s,
    }

    # Interpreter: the reference target's ground-truth program on the same inputs the network saw.
    def interp() -> dict[str, Any]:
        program = reference.ground_truth.program
        m = interpreter_measure(program, ref_inputs)
        m["vs_forward"] = _ratio(m["seconds"], forward_s)
        m["program"] = str(program)
        return m

    perf["interpreter"] = attempt("interpreter", interp)

    # Enumerator: distinct programs/s; ratio = distinct / nodes evaluated (what pruning keeps).
    def enum() -> dict[str, Any]:
        from synth.propose.enumerate import throughput

        seconds = 3.0 if plan.quick else 10.0
        stats = throughput(reference, seconds=seconds, seed=plan.seed)
        return {
            "target": reference.name,
            "budget_seconds": seconds,
            "distinct": stats.distinct,
            "evaluated": stats.evaluated,
            "seconds": stats.seconds,
            "distinct_per_s": stats.per_second,
            "evaluated_per_s": stats.evaluated / stats.seconds if stats.seconds > 0 else None,
            "distinct_fraction": _ratio(stats.distinct, stats.evaluated),
        }

    perf["enumerator"] = attempt("enumerator", enum)

    # Score cost: one causal-scrubbing score of the ground truth vs one clean forward, per target.
    def score_cost(spec: str) -> dict[str, Any]:
        # The checks helper's own measurement: the same inputs (all lengths, grouped as the
        # scorer groups them) for the clean passes and for the score, best of `repeats`.
        from synth.check.scoring import cost_ratio

        target = load_target(spec)
        n = plan.perf_batch // 16 if plan.quick else plan.perf_batch // 16 * 4
        cost = cost_ratio(target, target.ground_truth, n=n, seed=plan.seed, repeats=2 if plan.quick else 3)
        return {
            "target": spec,
            "n": n,
            "program_size": int(target.ground_truth.program.size),
            "claimed_variables": len(target.ground_truth.correspondence),
            "forward_seconds": cost["clean_s"],
            "score_seconds": cost["score_s"],
            "score_vs_forward": cost["ratio"],
            "forward_passes_in_score": cost.get("forward_passes"),
            "clean_passes": cost.get("clean_passes"),
        }

    perf["score_cost"] = [
        r
        # --quick: the reference target only (one score costs tens of passes; see the table).
        for r in (
            attempt(f"score cost {s}", lambda s=s: score_cost(s))
            for s in (tracr_specs[:1] if plan.quick else tracr_specs)
        )
        if r is not None
    ]

    # Time to recovery (from the recovery suite of this same run) and the speed-up over I/O-only.
    rows = (recovery or {}).get("rows", [])
    ttr = []
    for spec in dict.fromkeys(r["target"] for r in rows):
        by_mode = {r["mode"]: r for r in rows if r["target"] == spec}
        mg, io = by_mode.get("model_guided"), by_mode.get("io_only")

        def when(r: Mapping[str, Any] | None) -> float | None:
            if not r or not r["recovered"]:
                return None
            return r.get("seconds_to_accept") or r.get("seconds")

        ttr.append(
            {
                "target": spec,
                "model_guided_seconds": when(mg),
                "io_only_seconds": when(io),
                "io_only_over_model_guided": _ratio(when(io), when(mg)),
                "model_guided_vs_forward": _ratio(when(mg), forward_s),
            }
        )
    perf["time_to_recovery"] = ttr

    # Growth with model depth: same task and inputs, fresh networks of 1, 2, 4 blocks. What is
    # timed is fixed work (a forward pass, observing every activation, one full score of a
    # one-head hypothesis in the last block), so only depth changes.
    def depth_growth() -> list[dict[str, Any]]:
        from synth.observe import observe
        from synth.check.scoring import score

        n = plan.perf_batch // 16
        rows_ = []
        for depth in plan.depths:
            target = _random_depth_target(reference, depth, plan.seed)
            hypothesis = depth_probe_hypothesis(depth)
            fwd = _forward_seconds(target, ref_inputs)
            _, obs_s = _timed(
                lambda t=target: observe(t, per_length=plan.perf_batch // 8, seed=plan.seed), repeat=3
            )
            score(target, hypothesis, n=n, seed=plan.seed)  # warm-up
            _, score_s = _timed(lambda t=target, h=hypothesis: score(t, h, n=n, seed=plan.seed), repeat=2)
            rows_.append(
                {
                    "layers": depth,
                    "forward_seconds": fwd,
                    "observe_seconds": obs_s,
                    "score_seconds": score_s,
                    "score_n": n,
                }
            )
        base = rows_[0]
        for r in rows_:
            r["forward_ratio"] = _ratio(r["forward_seconds"], base["forward_seconds"])
            r["observe_ratio"] = _ratio(r["observe_seconds"], base["observe_seconds"])
            r["score_ratio"] = _ratio(r["score_seconds"], base["score_seconds"])
        return rows_

    perf["depth_growth"] = attempt("depth growth", depth_growth)

    # Growth with program size: interpreter time on one batch for 1..16 units of 3 nodes.
    def size_growth() -> list[dict[str, Any]]:
        rng = random.Random(plan.seed)
        inputs = [[rng.randrange(5) for _ in range(8)] for _ in range(plan.perf_batch)]
        rows_ = [interpreter_measure(parse(chain_program_text(k)), inputs) for k in plan.program_sizes]
        for r in rows_:
            r["ratio_to_smallest"] = _ratio(r["seconds"], rows_[0]["seconds"])
        return rows_

    perf["program_size_growth"] = attempt("program size growth", size_growth)
    perf["errors"] = errors
    return perf


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        value = value.to_json()
    elif hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


# --- baseline (CI floor) ------------------------------------------------------------------------


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
    if failures:
        return BaselineCheck(
            False, True, "recovery below the committed baseline: " + "; ".join(failures), tuple(failures)
        )
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
        "synth.bench.suite.update_baseline "
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


# --- report -------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _secs(value: Any) -> str:
    """Seconds: 2 significant decimals below 10 s, 1 above (timings are not more precise than that)."""
    v = _num(value)
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(results: Mapping[str, Any]) -> str:
    """BENCHMARKS.md: every table, each number traceable to bench.json."""
    m, v, g, plan = results["machine"], results["versions"], results["git"], results["plan"]
    out = [
        "# mechsynth benchmarks",
        "",
        f"Generated by `{results['command']}` on {results['created']} "
        f"({'quick subset' if plan['quick'] else 'full suite'}; wall time {results['wall_seconds']:.0f} s). "
        "Every number below is in `bench.json` next to this file; ratios are measured in the same process, "
        "moments apart, so they transfer across machines better than the absolute figures.",
        "",
        f"- Machine: {m['processor']}, {m['cpus_usable']} usable CPU cores (of {m['cpu_count']}), "
        f"torch threads {m['torch_threads']}, {m.get('memory_gb')} GB RAM, load average at start "
        f"{', '.join(f'{x:.2f}' for x in (m.get('load_average_at_start') or []))}; {m['platform']}.",
        f"- Versions: python {v['python']}, torch {v['torch']}, transformer_lens {v['transformer_lens']}, "
        f"tracr-pypi {v['tracr-pypi']}, mechsynth {v['mechsynth']}.",
        f"- Commit: `{g.get('commit')}`{' (with uncommitted changes)' if g.get('dirty') else ''}.",
        f"- Peak RSS: {results['peak_rss_mb']:.0f} MB "
        f"(after imports: {results['rss_after_imports_mb']:.0f} MB).",
    ]
    if "recovery" in results:
        out += ["", _render_recovery(results["recovery"])]
    if "acdc" in results:
        out += ["", _render_acdc(results["acdc"], results.get("recovery"))]
    if "controls" in results:
        out += ["", _render_controls(results["controls"])]
    if "perf" in results:
        out += ["", _render_perf(results["perf"], results)]
    if results.get("baseline_check"):
        out += ["", "## CI baseline", "", results["baseline_check"]["message"]]
    if results.get("suite_errors"):
        out += ["", "## Suites that failed", ""]
        out += [f"- {k}: {e}" for k, e in results["suite_errors"].items()]
    return "\n".join(out) + "\n"


def _render_recovery(rec: Mapping[str, Any]) -> str:
    modes = rec["modes"]
    labels = rec["mode_labels"]
    out = [
        "## Recovery",
        "",
        f"Each target is run under each proposer configuration with the same budget "
        f"({rec['budget_seconds']:.0f} s wall clock per run) and seed. "
        "A tracr target is *recovered* when the "
        "top accepted hypothesis is equivalent to the ground-truth program and every ground-truth variable "
        "written by a head or MLP has an equivalent variable mapped to that component (`synth.compare`). "
        f"A trained target has no ground truth: it counts when a hypothesis is accepted with behaviour >= "
        f"{TRAINED_MIN_BEHAVIOUR} and loss recovered >= {TRAINED_MIN_LOSS_RECOVERED}.",
    ]
    stages = sorted({r["controls"] for r in rec["rows"] if r.get("controls")})
    if stages:
        out.append(f"Controls stage in these runs: {', '.join(stages)}.")
    if not rec.get("llm_configured"):
        out.append(
            "No LLM endpoint is configured (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL), so (c) LLM-only "
            "and (d) both were not run."
        )
    out += ["", "### Totals", ""]
    rows = []
    for mode in modes:
        t = rec["totals"][mode]
        rows.append(
            [
                labels[mode],
                f"{t['recovered']}/{t['total']}",
                f"{t['tracr_recovered']}/{t['tracr_total']}",
                f"{t['trained_recovered']}/{t['trained_total']}",
                str(t["errors"]),
            ]
        )
    out.append(_table(["configuration", "recovered", "tracr", "trained", "errors"], rows))
    out += ["", "### Side by side (recovered · seconds · candidates scored)", ""]
    by = {(r["target"], r["mode"]): r for r in rec["rows"]}
    targets = list(dict.fromkeys(r["target"] for r in rec["rows"]))
    rows = []
    for spec in targets:
        cells = [spec]
        for mode in modes:
            r = by.get((spec, mode))
            if r is None:
                cells.append("–")
            elif r.get("error"):
                cells.append("error")
            else:
                cells.append(
                    f"{'**yes**' if r['recovered'] else 'no'} · {_secs(r['seconds'])} s · {_f(r['n_scored'])}"
                )
        rows.append(cells)
    out.append(_table(["target"] + [labels[m] for m in modes], rows))
    for mode in modes:
        out += ["", f"### {labels[mode]}: per target", ""]
        rows = []
        for spec in targets:
            r = by.get((spec, mode))
            if r is None:
                continue
            rows.append(
                [
                    spec,
                    "error: " + r["error"] if r.get("error") else ("**yes**" if r["recovered"] else "no"),
                    str(r["accepted"]),
                    r["behaviour"],
                    r["loss_recovered"],
                    r["iia"],
                    r["p_value"],
                    _f(r["n_scored"]),
                    _secs(r["seconds"]),
                    _secs(r["seconds_to_accept"]),
                    (r.get("why") or "").replace("|", "/"),
                ]
            )
        out.append(
            _table(
                [
                    "target",
                    "recovered",
                    "accepted",
                    "behaviour",
                    "loss recovered",
                    "IIA",
                    "p (adjusted)",
                    "scored",
                    "seconds",
                    "s to accept",
                    "why not recovered",
                ],
                rows,
            )
        )
    return "\n".join(out)


def _render_acdc(acdc: Mapping[str, Any], recovery: Mapping[str, Any] | None) -> str:
    out = ["## Peer: ACDC and edge attribution patching (auto-circuit)", ""]
    if "skipped" in acdc:
        return "\n".join(out + [f"Skipped: {acdc['skipped']}"])
    s = acdc["settings"]
    out += [
        f"auto-circuit 1.0.1 in its own venv ({acdc['venv_message']}), on the same tracr networks exported "
        "with their real unembedding (`rebuild max diff`: max |logit difference| between the rebuilt "
        "TL 2.x model and ours on the clean batch).",
        "",
        f"- Data: {s['n']} clean prompts at the task's maximum length; the corrupt prompts are independent "
        "inputs of the same length (resample ablation, as our scrubbing uses for irrelevant paths).",
        f"- ACDC: one threshold, tau={s['tau']:g}, faithfulness KL divergence (MSE for numerical outputs), "
        "all read positions. EAP (attribution patching, auto-circuit's fast equivalent form) ranks every "
        "edge; it is read off at the number of edges ACDC kept, so both are compared at equal sparsity.",
        "- Components: heads `A<layer>.<head>`, `MLP <layer>`. Ground truth = the components that write a "
        "ground-truth variable. tracr's `selector_width` also uses a helper head that writes no variable, "
        "so a method that keeps that head shows it as extra (lower precision) without being wrong.",
        "- ACDC and EAP can only see what varies between clean and corrupt prompts. With one prompt length, "
        "components that compute length alone (e.g. `length`, `opp_index` in reverse) have no effect and are "
        "dropped; for tracr:reverse this is auto-circuit's own canonical resample-ablation circuit. Our "
        "scores sample every length. `outputs changed by corruption` is the share of read positions whose "
        "prediction differs between a clean prompt and its corrupt partner: at 0 (e.g. sort_unique at its "
        "maximum length, where every input is a permutation of the vocabulary and the output is constant) "
        "there is nothing for ACDC or EAP to find.",
        "- `ours`: the locations of the model-guided configuration's top accepted hypothesis in this run; "
        "`ours s`: its time to acceptance (the whole synthesis, not only localisation).",
        "",
    ]
    mg_secs = {}
    for r in (recovery or {}).get("rows", []):
        if r["mode"] == "model_guided":
            mg_secs[r["target"]] = r.get("seconds_to_accept") or r.get("seconds") if r["recovered"] else None
    rows = []
    for r in acdc["rows"]:

        def pr(a: Mapping[str, Any]) -> str:
            return f"{_f(a.get('precision'), 2)}/{_f(a.get('recall'), 2)}"

        rows.append(
            [
                r["target"],
                f"{r['acdc_edges']}/{r['n_edges']}",
                ", ".join(r["acdc_components"]) or "none",
                ", ".join(r["eap_components"]) or "none",
                ", ".join(r["ours_components"]) if r["ours_components"] is not None else "(none accepted)",
                ", ".join(r["truth_components"] or []),
                pr(r["acdc_vs_truth"]),
                pr(r["eap_vs_truth"]),
                pr(r["ours_vs_truth"]),
                r["acdc_seconds"],
                r["eap_seconds"],
                mg_secs.get(r["target"]),
                r["rebuild_max_abs_diff"],
                r.get("corruption_changes_output"),
            ]
        )
    out.append(
        _table(
            [
                "target",
                "ACDC edges kept",
                "ACDC components",
                "EAP components",
                "ours",
                "ground truth",
                "ACDC P/R",
                "EAP P/R",
                "ours P/R",
                "ACDC s",
                "EAP s",
                "ours s (to recovery)",
                "rebuild max diff",
                "outputs changed by corruption",
            ],
            rows,
        )
    )
    out += ["", "Edges ACDC kept (all of them are in bench.json):", ""]
    for r in acdc["rows"]:
        edges = list(r.get("edges_kept") or [])
        shown = ", ".join(f"`{e}`" for e in edges[:24])
        if len(edges) > 24:
            shown += f", ... ({len(edges)} in all)"
        out.append(f"- {r['target']}: {shown or 'none'}")
    if acdc.get("errors"):
        out += ["", "Targets the peer could not run:", ""]
        out += [f"- {name}: {err}" for name, err in acdc["errors"].items()]
    return "\n".join(out)


def _render_controls(ctl: Mapping[str, Any]) -> str:
    res = ctl["result"]
    stat = " and ".join(ctl.get("statistic") or []) or "the controls' statistic"
    out = [
        "## Controls: the false-positive suite",
        "",
        "The engine runs on each target (`real`) and on copies with its learned structure destroyed: "
        f"re-initialised and weight-shuffled networks, seeds {ctl['seeds']}, {ctl['budget_seconds']:.0f} s "
        f"search budget per run, {_run_seconds(res):.0f} s of runs in all. A sound engine accepts nothing "
        "on a copy that the copy does not compute. "
        f"*Best statistic*: the best score (minimum of {stat}) of any candidate in that run that reached "
        "the full checks; *gap*: the real run's best minus the best over its copies. *Passed checks*: "
        "candidates that met every check threshold and so went on to the controls (a run without the "
        "controls accepts the first of them).",
        "",
    ]
    if isinstance(res, Mapping) and "false_positives" in res:
        on_copies = res.get("accepted_on_copies", res["false_positives"])
        out += [
            f"**Accepted on copies: {on_copies} {'hypothesis' if on_copies == 1 else 'hypotheses'} over "
            f"{res.get('control_runs')} control runs; "
            f"false positives (accepted, and not true of the copy they were accepted on): "
            f"{res['false_positives']}**. Real targets accepting: "
            f"{res.get('real_targets_accepting')}/{res.get('real_targets')}; with some candidate that met "
            f"every check threshold (what a run without the controls would accept): "
            f"{res.get('real_targets_passing_checks', '?')}/{res.get('real_targets')}.",
            "",
        ]
        out += _render_copy_acceptances(res.get("rows") or [])
    rows_data = res.get("rows") if isinstance(res, Mapping) else res
    if isinstance(rows_data, list) and rows_data and isinstance(rows_data[0], Mapping):
        copies_of: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows_data:
            if row.get("network") != "real":
                copies_of.setdefault(row["target"], []).append(row)
        out += [
            "One row per target: its real run, then its copies' runs taken together (each run's own "
            "row is in the JSON). *reaching checks*: copy runs in which some candidate claiming an "
            "internal component got through the prefilter to the full checks (*none*: no such candidate "
            "on any copy, so no statistic and no gap); a statistic is shown only for those candidates, "
            "since a program placed at the embeddings alone patches nothing and scores 1 by default. "
            "*behaviour*: the best agreement of any candidate with that network's own output (a random "
            "network's output is often near-constant, which a trivial program matches; the controls "
            "reject such candidates, mostly by necessity).",
            "",
            _table(
                [
                    "target",
                    "real: accepted",
                    "real: passed checks",
                    "real: best statistic",
                    "copies: accepted",
                    "copy runs",
                    "reaching checks",
                    "copies: best statistic",
                    "gap",
                    "real: best behaviour",
                    "copies: best behaviour",
                ],
                [
                    [
                        r["target"],
                        str(r["accepted"]),
                        str(r.get("passed_checks", "?")),
                        _finite(r.get("best_statistic")),
                        str(sum(c["accepted"] for c in copies_of.get(r["target"], []))),
                        str(len(copies_of.get(r["target"], []))),
                        str(r.get("controls_reaching_checks")),
                        _finite(r.get("best_control_statistic")) if r.get("controls_reaching_checks")
                        else "none",
                        _finite(r.get("gap_statistic")),
                        _finite(r.get("best_behaviour")),
                        _finite(r.get("best_control_behaviour")),
                    ]
                    for r in rows_data
                    if r.get("network") == "real"
                ],
            ),
        ]
    return "\n".join(out)


def _run_seconds(res: Any) -> float:
    """Wall time of the suite's runs, summed (a resumed suite reuses runs done earlier)."""
    runs = res.get("runs") if isinstance(res, Mapping) else None
    return float(sum(r.get("seconds") or 0.0 for r in runs or []))


def _render_copy_acceptances(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each hypothesis accepted on a copy, with its check on fresh inputs apart from the run."""
    found = [(r, h) for r in rows if r.get("network") != "real" for h in r.get("accepted_hypotheses") or []]
    if not found:
        return []
    out = [
        "A copy is a network too: it can compute something simple that a hypothesis describes "
        "exactly. Each hypothesis accepted on a copy was checked again apart from the run "
        "(`synth.control.stage.verify_on_fresh_inputs`: the program against the copy's own output on "
        "500 fresh inputs of every length, and the full checks on other inputs):",
        "",
    ]
    rows_md = []
    for r, h in found:
        program = " ; ".join(
            line.strip() for line in str(h.get("hypothesis", "")).splitlines()
            if line.strip() and not line.strip().endswith(":")
        )
        holds = h.get("holds")
        rows_md.append([
            f"{r['target']} {r['network']}",
            f"`{program}`",
            h.get("behaviour_exact_fresh"),
            h.get("loss_recovered"),
            h.get("iia"),
            "unverified" if holds is None else "true of the copy" if holds else "FALSE POSITIVE",
        ])
    out.append(_table(
        ["copy", "accepted hypothesis (program ; correspondence)", "exact on fresh inputs", "loss recovered",
         "iia", "verdict"],
        rows_md,
    ))
    out.append("")
    return out


def _finite(x: Any) -> float | None:
    """A number for the tables; None (shown as –) for missing or non-finite values ("-inf" in JSON)."""
    f = _num(x)
    return f if f is not None and math.isfinite(f) else None


def _render_perf(perf: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    out = [
        "## Performance",
        "",
        f"Reference target {perf['reference_target']}, batch {perf['batch']}, torch threads "
        f"{perf.get('torch_threads', '?')} (as the synthesis loop runs). Times are best of repeated "
        "measurements; each ratio divides two timings taken in this run.",
        "",
    ]
    rows = []
    fwd = perf.get("forward") or {}
    rows.append(
        [
            "clean batched forward pass",
            f"{_f(fwd.get('seconds'))} s ({fwd.get('batch')} inputs)",
            "1",
            "the unit for the ratios below",
        ]
    )
    it = perf.get("interpreter")
    if it:
        rows.append(
            [
                "interpreter (ground-truth program, same inputs)",
                f"{_f(it['node_evals_per_s'])} node·inputs/s ({it['nodes']} nodes, {_f(it['seconds'])} s)",
                _f(it.get("vs_forward")),
                "interpreter time / forward time",
            ]
        )
    en = perf.get("enumerator")
    if en:
        rows.append(
            [
                "enumerator",
                f"{_f(en['distinct_per_s'])} distinct programs/s",
                _f(en.get("distinct_fraction")),
                f"distinct / nodes evaluated "
                f"({en['distinct']} of {en['evaluated']} in {_f(en['seconds'])} s)",
            ]
        )
    costs = perf.get("score_cost") or []
    if costs:
        ratios = sorted(c["score_vs_forward"] for c in costs if c.get("score_vs_forward") is not None)
        if ratios:
            med = ratios[len(ratios) // 2]
            rows.append(
                [
                    "one causal-scrubbing score",
                    f"median over {len(ratios)} tracr targets",
                    _f(med),
                    "score time / clean forward time on the same batch (per target below)",
                ]
            )
    rows.append(
        [
            "peak RSS",
            f"{results['peak_rss_mb']:.0f} MB",
            _f(_ratio(results["peak_rss_mb"], results["rss_after_imports_mb"])),
            "peak / RSS after imports",
        ]
    )
    out.append(_table(["measure", "figure", "ratio", "ratio is"], rows))
    if costs:
        out += [
            "",
            "### Cost of one score, per target",
            "",
            "Clean = one batched forward pass per input length on the same inputs the score uses "
            "(the floor any check pays once); the score's own count of batched passes is shown.",
            "",
        ]
        out.append(
            _table(
                [
                    "target",
                    "program nodes",
                    "claimed vars",
                    "n",
                    "clean passes s",
                    "score s",
                    "score / clean",
                    "batched passes in score",
                ],
                [
                    [
                        c["target"],
                        str(c["program_size"]),
                        str(c["claimed_variables"]),
                        str(c["n"]),
                        c["forward_seconds"],
                        c["score_seconds"],
                        c["score_vs_forward"],
                        f"{_f(c.get('forward_passes_in_score'), 0)} (clean: {_f(c.get('clean_passes'), 0)})",
                    ]
                    for c in costs
                ],
            )
        )
    ttr = perf.get("time_to_recovery") or []
    if ttr:
        out += ["", "### End-to-end time to recovery", ""]
        out.append(
            _table(
                [
                    "target",
                    "model-guided s",
                    "I/O-only s",
                    "I/O-only / model-guided",
                    "model-guided / forward",
                ],
                [
                    [
                        r["target"],
                        r["model_guided_seconds"],
                        r["io_only_seconds"],
                        r["io_only_over_model_guided"],
                        r["model_guided_vs_forward"],
                    ]
                    for r in ttr
                ],
            )
        )
    dg = perf.get("depth_growth")
    if dg:
        out += [
            "",
            "### Growth with model depth",
            "",
            "Fresh random networks of 1, 2 and 4 blocks with the reference target's width, task and inputs; "
            "the score is one full score of a fixed one-head hypothesis placed in the last block "
            "(`synth.bench.suite.depth_probe_hypothesis`; fixed work, its scores on a random network are "
            "irrelevant).",
            "",
        ]
        out.append(
            _table(
                ["layers", "forward s", "x", "observe s", "x", "one score s", "x"],
                [
                    [
                        str(r["layers"]),
                        r["forward_seconds"],
                        r["forward_ratio"],
                        r["observe_seconds"],
                        r["observe_ratio"],
                        r["score_seconds"],
                        r["score_ratio"],
                    ]
                    for r in dg
                ],
            )
        )
    pg = perf.get("program_size_growth")
    if pg:
        out += [
            "",
            "### Growth with program size (interpreter, one batch)",
            "",
            "Programs of 1, 2, 4, ... identical units (`map`, `select`, `aggregate`; "
            "`synth.bench.suite.chain_program_text`), so the time per unit is comparable across sizes.",
            "",
        ]
        out.append(
            _table(
                ["nodes", "batch x positions", "seconds", "x smallest", "node·inputs/s"],
                [
                    [
                        str(r["nodes"]),
                        f"{r['batch']} x {r['positions']}",
                        r["seconds"],
                        r["ratio_to_smallest"],
                        r["node_evals_per_s"],
                    ]
                    for r in pg
                ],
            )
        )
    if perf.get("errors"):
        out += ["", "Measurements that failed: " + "; ".join(f"{k}: {e}" for k, e in perf["errors"].items())]
    return "\n".join(out)


# --- entry point --------------------------------------------------------------------------------


def run_bench(plan: BenchPlan, out_dir: Path, *, command: str = "mechsynth bench") -> dict[str, Any]:
    """Run the planned suites and return every number (also what bench.json holds)."""
    import torch  # noqa: F401 - imported before the RSS baseline so it counts as "after imports"

    import synth  # noqa: F401

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

    def suite(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - report a broken suite, keep the others
            suite_errors[name] = _error_text(e)
            _log(f"{name} suite failed: {suite_errors[name]}")
            traceback.print_exc(file=sys.stderr)
        results.setdefault("suite_seconds", {})[name] = time.perf_counter() - t0

    if "recovery" in plan.suites:
        suite("recovery", lambda: recovery_suite(plan, out_dir))
    if plan.with_acdc:
        suite("acdc", lambda: acdc_suite(plan, results.get("recovery"), out_dir))
    if "controls" in plan.suites:
        suite("controls", lambda: controls_suite(plan, out_dir))
    if "perf" in plan.suites:
        suite("perf", lambda: perf_suite(plan, results.get("recovery"), out_dir))
    results["suite_errors"] = suite_errors
    results["peak_rss_mb"] = peak_rss_mb()
    results["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results["wall_seconds"] = time.perf_counter() - start
    return results


_NON_FINITE_TEXT = ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def finite(value: Any) -> Any:
    """The results with every NaN/inf replaced by None: strict JSON, and "–" in the tables."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str) and value.strip().lower() in _NON_FINITE_TEXT:
        return None  # some helpers serialise non-finite floats as text
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_outputs(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    results = finite(json.loads(json.dumps(results, default=str)))
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "bench.json", out_dir / "BENCHMARKS.md"
    js.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    md.write_text(render_markdown(results))
    return md, js


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
    plan = make_plan(args.suite, bool(args.quick), with_acdc=with_acdc, budget=budget, jobs=jobs)
    flags = (
        [f"--suite {args.suite}"]
        + (["--quick"] if plan.quick else [])
        + (["--with-acdc"] if plan.with_acdc else [])
        + ([f"--budget-seconds {budget:g}"] if budget is not None else [])
        + ([f"--jobs {jobs}"] if jobs > 1 else [])
    )
    results = run_bench(plan, out_dir, command="mechsynth bench " + " ".join(flags))
    check = check_baseline(results, load_baseline())
    results["baseline_check"] = asdict(check)
    md, js = write_outputs(results, out_dir)
    if getattr(args, "json", False):
        print(js.read_text(), end="")
    else:
        print(f"wrote {md} and {js} ({results['wall_seconds']:.0f} s)")
        if "recovery" in results:
            for mode, t in results["recovery"]["totals"].items():
                print(f"  {MODE_LABELS[mode]}: recovered {t['recovered']}/{t['total']}")
        print(f"  {check.message}")
    if results["suite_errors"]:
        print(f"mechsynth bench: suites failed: {', '.join(results['suite_errors'])}", file=sys.stderr)
        return 1
    if not check.ok:
        print(f"mechsynth bench: {check.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m synth.bench.suite update-baseline DIR/bench.json``: refresh the CI floor."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "update-baseline":
        print("usage: python -m synth.bench.suite update-baseline BENCH_JSON", file=sys.stderr)
        return 2
    baseline = update_baseline(Path(argv[1]))
    print(f"wrote {BASELINE_PATH}: {baseline['min_recovered']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
