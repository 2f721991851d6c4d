"""Cost growth: what the engine's stages cost as the network grows towards GPT-2-small's shape.

The networks are random (freshly initialised, seeded) with the task and encoding of a small
reference target, so only the shape changes: layers 1 -> 12, heads 1 -> 12, width 64 -> 768,
and the diagonal 1x1x64 -> 12x12x768 (d_head 64, d_mlp 4 x width, LayerNorm, GELU: GPT-2-small's
block at 12x12x768). The hypothesis is fixed (head 0 of the last block copies the token at
its own position, `perf.depth_probe_hypothesis`), so each stage does the same work per block
at every size. Measured per point: one clean forward pass, observing every activation, one
causal-scrubbing score, the control stage on that one hypothesis (every default control),
and one full run (search + checks + controls) under a fixed budget.

A point that takes too long on the machine is not extrapolated: each stage has a wall-clock
cap, and a stage that hits it is recorded as ``None`` with ``capped`` naming the cap. The
points are jobs (`synth.bench.executor`), so a sweep can run on a Ray cluster as well.

Candidate-scoring throughput vs workers: the same batch of candidate scores submitted
through the executor with 1 and 2 (and more, where the machine has them) local worker
processes, after a warm-up that pays each worker's start-up (imports, target build).
"""

from __future__ import annotations

import functools
import os
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mechsynth.synth.bench.executor import Job, ProcessExecutor, make_executor
from mechsynth.synth.bench.numeric import ratio

# The task and encoding every random network of the sweep is given (10 tokens, length 8).
GROWTH_TASK = "trained:reverse"
GPT2_SMALL = (12, 12, 768)


@dataclass(frozen=True)
class Shape:
    """A network shape: blocks, heads per block, residual width (d_head = width / heads)."""

    layers: int
    heads: int
    width: int
    d_head: int | None = None  # default width // heads

    @property
    def head_dim(self) -> int:
        return self.d_head or self.width // self.heads

    @property
    def label(self) -> str:
        return f"{self.layers}x{self.heads}x{self.width}"


# The sweeps: each grows one axis from a small base; the diagonal grows all three to GPT-2-small.
SWEEPS: Mapping[str, tuple[Shape, ...]] = {
    "layers": tuple(Shape(n, 4, 256) for n in (1, 2, 4, 8, 12)),
    "heads": tuple(Shape(2, h, 768, 64) for h in (1, 2, 4, 8, 12)),
    "width": tuple(Shape(2, 4, w) for w in (64, 128, 256, 512, 768)),
    "diagonal": tuple(Shape(*s, 64) for s in ((1, 1, 64), (2, 2, 128), (4, 4, 256), (8, 8, 512), GPT2_SMALL)),
}
# Stages measured on every sweep; the costly ones only on the diagonal.
CHEAP_STAGES = ("forward", "observe", "score")
DIAGONAL_STAGES = (*CHEAP_STAGES, "controls", "run")


@dataclass(frozen=True)
class GrowthSettings:
    """What one growth point does: inputs per length observed, inputs scored, caps, the run budget."""

    observe_per_length: int = 64
    score_n: int = 128
    cap_seconds: float = 300.0  # per stage
    run_budget_seconds: float = 60.0
    seed: int = 0
    device: str = "cpu"


class _Capped(Exception):
    """A stage ran past its wall-clock cap."""


def capped(fn: Callable[[], Any], cap_seconds: float) -> tuple[Any, float | None]:
    """(result, seconds), or (None, None) when ``fn`` ran past ``cap_seconds`` (a SIGALRM timer;
    main thread of a Unix process only, which is where executor jobs run)."""

    def alarm(_signum: int, _frame: Any) -> None:
        raise _Capped()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, cap_seconds)
    start = time.perf_counter()
    try:
        result = fn()
        return result, time.perf_counter() - start
    except _Capped:
        return None, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def random_target(shape: Shape, seed: int = 0, device: str = "cpu") -> Any:
    """The growth task on a freshly initialised network of ``shape`` (GPT-2-style block)."""
    import dataclasses

    from mechsynth.models import load_target
    from mechsynth.models.bridge import build_bridge
    from mechsynth.synth.bench.acdc_peer import model_config

    base = load_target(GROWTH_TASK)
    config = {k: v for k, v in model_config(base.model).items() if v is not None}
    config.update(
        n_layers=shape.layers, n_heads=shape.heads, d_model=shape.width, d_head=shape.head_dim,
        d_mlp=4 * shape.width, act_fn="gelu", normalization_type="LN", attn_only=False, seed=seed,
    )
    model = build_bridge(config)
    name = f"{base.name}@random-{shape.label}"
    info = {**base.info, "config": config, "accuracy": None}
    return dataclasses.replace(base, name=name, model=model, ground_truth=None, info=info).on(device)


def growth_point(shape: Shape, stages: Sequence[str], settings: GrowthSettings) -> dict[str, Any]:
    """One shape's stage costs (a job: runs in any executor's worker)."""
    import torch

    from mechsynth.synth.bench.perf import depth_probe_hypothesis
    from mechsynth.synth.check.scoring import score
    from mechsynth.synth.observe import observe

    torch.set_num_threads(1)  # as the loop runs (RunOptions.threads): one core per worker
    target = random_target(shape, settings.seed, settings.device)
    hypothesis = depth_probe_hypothesis(shape.layers)
    params = sum(p.numel() for p in target.model.parameters())
    row: dict[str, Any] = {**asdict(shape), "label": shape.label, "parameters": int(params),
                           "device": str(target.device), "cap_seconds": settings.cap_seconds, "capped": []}
    inputs = target.task.sample(settings.score_n, settings.seed, length=target.task.max_len)
    cap = settings.cap_seconds
    seed = settings.seed
    scores: Any = None

    def measure(name: str, fn: Callable[[], Any]) -> Any:
        result, seconds = capped(fn, cap)
        row[f"{name}_seconds"] = seconds
        if seconds is None:
            row["capped"].append(name)
        return result

    for stage in stages:
        if stage == "forward":
            measure("forward", lambda: target.logits(inputs))
        elif stage == "observe":
            measure("observe", lambda: observe(target, per_length=settings.observe_per_length, seed=seed))
        elif stage == "score":
            scores = measure("score", lambda: score(target, hypothesis, n=settings.score_n, seed=seed))
        elif stage == "controls":
            if scores is None:
                row["controls_seconds"] = None
                continue
            verdict = measure("controls", functools.partial(_control_stage, target, hypothesis, scores, seed))
            row["controls_accepted"] = None if verdict is None else bool(verdict)
        elif stage == "run":
            row["run_budget_seconds"] = settings.run_budget_seconds
            result = measure("run", lambda: _full_run(target, settings))
            if result is not None:
                row["run_n_scored"], row["run_accepted"], row["run_stopped"] = result
    return row


def _control_stage(target: Any, hypothesis: Any, scores: Any, seed: int) -> bool:
    """Every default control on one hypothesis, as the loop runs them on a candidate."""
    from mechsynth.synth.control.stage import loop_controls

    controls = loop_controls(seed)
    verdict = controls.check(target, hypothesis, scores, n_tested=1, deadline=None)
    return bool(verdict.passed)


def _full_run(target: Any, settings: GrowthSettings) -> tuple[int, int, str]:
    """One synthesis run (no LLM) under the budget: (scored, accepted, why it stopped)."""
    from mechsynth.synth.loop import run

    with tempfile.TemporaryDirectory(prefix="mechsynth-growth-") as out:
        result = run(target, out=out, seed=settings.seed, budget_seconds=settings.run_budget_seconds,
                     no_llm=True)
        stopped = str(getattr(result, "stopped", None) or result.to_json().get("stopped", ""))
        return int(result.n_scored), len(result.accepted), stopped


def growth(plan: Any, executor: Any | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every sweep's points (``--quick``: the diagonal's first three points, cheap stages only)."""
    settings = GrowthSettings(
        cap_seconds=60.0 if plan.quick else 300.0,
        run_budget_seconds=20.0 if plan.quick else 60.0,
        seed=plan.seed, device=plan.device,
    )
    sweeps = {"diagonal": SWEEPS["diagonal"][:3]} if plan.quick else SWEEPS
    jobs, where = [], []
    for sweep, shapes in sweeps.items():
        stages = DIAGONAL_STAGES if sweep == "diagonal" and not plan.quick else CHEAP_STAGES
        for shape in shapes:
            job = Job(f"{__name__}:growth_point", (shape, stages, settings), name=f"{sweep} {shape.label}")
            jobs.append(job)
            where.append(sweep)
    own = executor is None
    executor = executor or make_executor("inline")
    try:
        log(f"perf: growth, {len(jobs)} points on {executor.describe()}")
        rows = executor.map(jobs, on_result=lambda i, r: log(f"perf: growth {jobs[i].name}: {_brief(r)}"))
    finally:
        if own:
            executor.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for sweep, row in zip(where, rows):
        out.setdefault(sweep, []).append(row)
    for points in out.values():
        base = points[0]
        for r in points:
            for stage in DIAGONAL_STAGES:
                r[f"{stage}_ratio"] = ratio(r.get(f"{stage}_seconds"), base.get(f"{stage}_seconds"))
    limit = machine_limit(out.get("diagonal", [])) if not plan.quick else None
    return {"settings": asdict(settings), "task": GROWTH_TASK, "sweeps": out, "machine_limit": limit,
            "gpu": _gpu_note(plan.device)}


def machine_limit(diagonal: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where this machine stops being enough, by one rule: the first diagonal point whose control
    stage for *one* candidate does not finish within the cap (a run with a budget of the cap's
    length could not control a single candidate there). None when every point fit."""
    rule = "the control stage of one candidate runs past the cap"
    for r in diagonal:
        if "controls" in r.get("capped", ()):
            return {"label": r["label"], "cap_seconds": r["cap_seconds"], "rule": rule}
    return {"label": None, "cap_seconds": diagonal[0]["cap_seconds"] if diagonal else None, "rule": rule}


def _brief(row: Mapping[str, Any]) -> str:
    seconds = {s: row.get(f"{s}_seconds") for s in DIAGONAL_STAGES}
    parts = [f"{s} {v:.2f} s" for s, v in seconds.items() if v is not None]
    return ", ".join(parts + [f"{s} capped" for s in row.get("capped", ())])


def _gpu_note(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"measured on {torch.cuda.get_device_name(torch.device(device))}"
    return "no GPU run: " + ("this machine has no CUDA GPU" if not torch.cuda.is_available()
                            else f"run on {device} (a GPU was present but not used)")


# --- candidate-scoring throughput vs workers ----------------------------------------------------


THROUGHPUT_N = 512  # inputs per candidate score


def score_candidate(spec: str, layers: int, seed: int, n: int, device: str) -> float:
    """One candidate score of the probe hypothesis on a target (a job); returns its seconds."""
    import torch

    from mechsynth.models import load_target
    from mechsynth.synth.bench.perf import chain_probe_hypothesis
    from mechsynth.synth.check.scoring import score

    torch.set_num_threads(1)
    target = load_target(spec, device=device)
    start = time.perf_counter()
    score(target, chain_probe_hypothesis(layers), n=n, seed=seed)
    return time.perf_counter() - start


def throughput(plan: Any, n_candidates: int = 24, spec: str = "trained:palindrome") -> list[dict[str, Any]]:
    """Candidates scored per second through the executor's local processes, for 1, 2, ... workers."""
    from mechsynth.models import load_target

    layers = int(load_target(spec).model.cfg.n_layers)
    counts = sorted({1, 2, *(k for k in (4, 8) if k <= (os.cpu_count() or 1))})
    rows = []
    for workers in counts:
        with ProcessExecutor(workers) as ex:
            warm = Job(f"{__name__}:score_candidate", (spec, layers, 0, 32, plan.device))
            ex.map([warm] * workers)  # each worker's start-up (imports, target build) is paid here
            jobs = [Job(f"{__name__}:score_candidate", (spec, layers, seed, THROUGHPUT_N, plan.device))
                    for seed in range(n_candidates)]
            start = time.perf_counter()
            each = ex.map(jobs)
            wall = time.perf_counter() - start
        rows.append({"workers": workers, "candidates": n_candidates, "target": spec, "inputs": THROUGHPUT_N,
                     "wall_seconds": wall,
                     "candidates_per_second": n_candidates / wall if wall > 0 else None,
                     "mean_score_seconds": sum(each) / len(each)})
    for r in rows:
        r["speedup"] = ratio(rows[0]["wall_seconds"], r["wall_seconds"])
    return rows


# --- the false-positive suite's wall time vs back end and workers ------------------------------


SUITE_CONFIGS = (("inline", 1), ("processes", 1), ("processes", 2), ("ray", 1), ("ray", 2))
SUITE_TARGET = "tracr:reverse"  # the reference target: it accepts in seconds, so the copies dominate


def suite_wall_times(plan: Any, out_dir: Any, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The false-positive suite on one target (seed 0) under each back end and worker count,
    fresh each time; its outcomes must not depend on the back end."""
    import shutil
    from pathlib import Path

    from mechsynth.synth.bench.false_positives import false_positive_suite

    rows = []
    target = SUITE_TARGET
    budget = min(plan.control_budget_seconds, 15.0)
    for backend, workers in SUITE_CONFIGS:
        work = Path(out_dir) / f"suite-{backend}-{workers}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            executor = make_executor(backend, workers)
        except Exception as e:  # noqa: BLE001 - ray missing: the row says so, the others run
            rows.append({"executor": backend, "workers": workers, "error": str(e)})
            continue
        with executor:
            start = time.perf_counter()
            report = false_positive_suite([target], seeds=[0], budget_seconds=budget, out=str(work),
                                          executor=executor, device=plan.device)
            wall = time.perf_counter() - start
        decided = [(r.network, r.accepted, list(r.accepted_hypotheses)) for r in report.runs]
        rows.append({"executor": backend, "workers": workers, "target": target, "budget_seconds": budget,
                     "runs": len(report.runs), "wall_seconds": wall, "outcomes": decided})
        log(f"perf: suite on {backend} x{workers}: {wall:.1f} s")
    reference = next((r for r in rows if "outcomes" in r), None)
    for r in rows:
        if "outcomes" in r and reference is not None:
            r["same_outcomes_as_inline"] = r["outcomes"] == reference["outcomes"]
    return rows


# --- the Scale part alone ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mechsynth.synth.bench.growth OUT [--quick] [--parts suite,throughput,growth]``:
    the Scale measurements of ``mechsynth bench --suite perf`` alone (the same functions, the
    full plan's settings), written as OUT/bench-scale.json and OUT/scale.md."""
    import argparse
    import json
    from pathlib import Path

    from mechsynth.synth.bench.log import log
    from mechsynth.synth.bench.plan import machine_info, make_plan
    from mechsynth.synth.bench.render.scale import render_scale

    parser = argparse.ArgumentParser(prog="python -m mechsynth.synth.bench.growth")
    parser.add_argument("out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="suite,throughput,growth")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    plan = make_plan("perf", args.quick, device=args.device)
    results: dict[str, Any] = {"machine": machine_info(), "created": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                    time.gmtime())}
    start = time.perf_counter()
    if "suite" in parts:
        results["suite_wall_times"] = suite_wall_times(plan, out / "bench-work" / "scale", log=log)
    if "throughput" in parts:
        results["throughput"] = throughput(plan)
    if "growth" in parts:
        results["growth"] = growth(plan, log=log)
    results["seconds"] = time.perf_counter() - start
    (out / "bench-scale.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "scale.md").write_text("\n".join(render_scale(results)) + "\n")
    print(f"wrote {out / 'bench-scale.json'} and {out / 'scale.md'} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
