"""The perf suite: each figure next to a ratio measured in the same process moments apart.

A ratio survives a slower machine; a bare figure does not. Measured: one clean batched
forward pass (the unit), interpreter throughput, enumerator distinct programs/s, the cost
of one causal-scrubbing score as a multiple of the clean passes, time to recovery (from
this run's recovery suite), and how time grows with model depth and with program size.
One measurement that fails is recorded under ``errors`` and the others still run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mechsynth.synth.bench.log import error_text, log
from mechsynth.synth.bench.numeric import ratio
from mechsynth.synth.bench.plan import BenchPlan
from mechsynth.synth.bench.recovery import seconds_to_recovery


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


class _Attempts:
    """Runs one named measurement at a time; a failure is logged and kept in ``errors``."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        log(f"perf: {name}")
        try:
            return fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one broken measurement must not hide the others
            self.errors[name] = error_text(e)
            log(f"perf: {name} failed: {self.errors[name]}")
            return None


# --- what is measured ---------------------------------------------------------------------------


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
    from mechsynth.dsl.interpret import encode, run

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

    from mechsynth.models.bridge import build_bridge
    from mechsynth.synth.bench.acdc_peer import model_config

    config = {k: v for k, v in model_config(base.model).items() if v is not None}
    config.update(n_layers=n_layers, seed=seed)
    model = build_bridge(config)
    return dataclasses.replace(base, name=f"{base.name}@random-{n_layers}L", model=model, ground_truth=None)


def depth_probe_hypothesis(n_layers: int) -> Any:
    """A fixed one-head hypothesis placed in the last block, valid at any depth.

    It claims the last block's head 0 copies the token at its own position, so scoring it
    scrubs through every block: the same work per block on networks of any depth.
    """
    from mechsynth.dsl import parse
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.location import Location, act_name

    program = parse("out = aggregate(select(indices, indices, EQ), tokens)")
    return Hypothesis(program, {program.output: Location(act_name("z", n_layers - 1), head=0)})


def chain_probe_hypothesis(n_layers: int) -> Any:
    """A fixed hypothesis for a target without ground truth, as deep as the network.

    ``tokens`` and ``indices`` at the embeddings and a chain of copies, one head per block:
    block l's head 0 copies block l-1's value at its own position. Its claims graph has one
    level per block, so a score of it does the work of a deep hypothesis (a pool per level);
    whether the network computes it is irrelevant to what it costs.
    """
    from mechsynth.dsl import parse
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.location import Location, act_name

    lines, prev = [], "tokens"
    for layer in range(n_layers):
        lines.append(f"copy{layer} = aggregate(select(indices, indices, EQ), {prev})")
        prev = f"copy{layer}"
    corr = {"tokens": Location(act_name("embed")), "indices": Location(act_name("pos_embed"))}
    corr.update({f"copy{layer}": Location(act_name("z", layer), head=0) for layer in range(n_layers)})
    return Hypothesis(parse("\n".join(lines)), corr)


def _interpreter(reference: Any, inputs: list[list[Any]], forward_s: float | None) -> dict[str, Any]:
    """The reference target's ground-truth program on the same inputs the network saw."""
    program = reference.ground_truth.program
    m = interpreter_measure(program, inputs)
    m["vs_forward"] = ratio(m["seconds"], forward_s)
    m["program"] = str(program)
    return m


def _enumerator(reference: Any, plan: BenchPlan) -> dict[str, Any]:
    """Distinct programs/s; ratio = distinct / nodes evaluated (what pruning keeps)."""
    from mechsynth.synth.propose.enumerate import throughput

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
        "distinct_fraction": ratio(stats.distinct, stats.evaluated),
    }


def _score_cost(spec: str, plan: BenchPlan) -> dict[str, Any]:
    """One causal-scrubbing score of the ground truth vs one clean forward.

    The checks helper's own measurement: the same inputs (all lengths, grouped as the
    scorer groups them) for the clean passes and for the score, best of `repeats`.
    """
    from mechsynth.models import load_target
    from mechsynth.synth.check.scoring import cost_ratio

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


def _score_costs(attempt: _Attempts, plan: BenchPlan, tracr_specs: Sequence[str]) -> list[dict[str, Any]]:
    # --quick: the reference target only (one score costs tens of passes; see the table).
    specs = tracr_specs[:1] if plan.quick else tracr_specs
    costs = (attempt(f"score cost {s}", lambda s=s: _score_cost(s, plan)) for s in specs)
    return [r for r in costs if r is not None]


# The floor of a score (#17): tracr targets of three graph depths and trained ones of one and two blocks.
FLOOR_TARGETS = (
    "tracr:reverse", "tracr:hist", "tracr:sort", "trained:reverse", "trained:palindrome", "trained:dyck1",
)


def _floor_row(spec: str, plan: BenchPlan) -> dict[str, Any]:
    """One target's score cost in the fused batching and in the one-block-per-pass reference,
    each against one clean batched pass per length on the same inputs, measured moments apart."""
    from mechsynth.models import load_target
    from mechsynth.synth.check.batching import Batching
    from mechsynth.synth.check.scoring import cost_ratio

    target = load_target(spec)
    hypothesis = target.ground_truth or chain_probe_hypothesis(int(target.model.cfg.n_layers))
    n = plan.perf_batch // 16 if plan.quick else plan.perf_batch // 16 * 4
    repeats = 2 if plan.quick else 3
    row: dict[str, Any] = {
        "target": spec, "n": n,
        "hypothesis": "ground truth" if target.ground_truth is not None else "chain probe",
        "claimed_variables": len(hypothesis.correspondence),
    }
    row["load_before"] = _load()
    for batching in Batching:
        cost = cost_ratio(target, hypothesis, n=n, seed=plan.seed, repeats=repeats, batching=batching)
        row[batching.value] = {
            "clean_seconds": cost["clean_s"], "score_seconds": cost["score_s"], "ratio": cost["ratio"],
            "cold_ratio": cost["cold_ratio"], "cpu_ratio": cost["cpu_ratio"],
            "cold_cpu_ratio": cost["cold_cpu_ratio"],
            "forward_passes": cost["forward_passes"], "clean_passes": cost["clean_passes"],
        }
    row["load_after"] = _load()
    return row


def _load() -> float | None:
    """The machine's 1-minute load average (None where the system does not report one)."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def score_floor(attempt: _Attempts, plan: BenchPlan) -> list[dict[str, Any]]:
    """The score/clean ratio per floor target (--quick: the first tracr and first trained one)."""
    specs = FLOOR_TARGETS[::3] if plan.quick else FLOOR_TARGETS
    rows = (attempt(f"score floor {s}", lambda s=s: _floor_row(s, plan)) for s in specs)
    return [r for r in rows if r is not None]


def _time_to_recovery(recovery: Mapping[str, Any] | None, forward_s: float | None) -> list[dict[str, Any]]:
    """Time to recovery (from the recovery suite of this same run) and the speed-up over I/O-only."""
    rows = (recovery or {}).get("rows", [])
    out = []
    for spec in dict.fromkeys(r["target"] for r in rows):
        by_mode = {r["mode"]: r for r in rows if r["target"] == spec}
        mg = seconds_to_recovery(by_mode.get("model_guided"))
        io = seconds_to_recovery(by_mode.get("io_only"))
        out.append(
            {
                "target": spec,
                "model_guided_seconds": mg,
                "io_only_seconds": io,
                "io_only_over_model_guided": ratio(io, mg),
                "model_guided_vs_forward": ratio(mg, forward_s),
            }
        )
    return out


def _depth_row(reference: Any, inputs: list[list[Any]], depth: int, plan: BenchPlan) -> dict[str, Any]:
    from mechsynth.synth.check.scoring import score
    from mechsynth.synth.observe import observe

    n = plan.perf_batch // 16
    target = _random_depth_target(reference, depth, plan.seed)
    hypothesis = depth_probe_hypothesis(depth)
    fwd = _forward_seconds(target, inputs)
    _, obs_s = _timed(lambda: observe(target, per_length=plan.perf_batch // 8, seed=plan.seed), repeat=3)
    score(target, hypothesis, n=n, seed=plan.seed)  # warm-up
    _, score_s = _timed(lambda: score(target, hypothesis, n=n, seed=plan.seed), repeat=2)
    return {
        "layers": depth,
        "forward_seconds": fwd,
        "observe_seconds": obs_s,
        "score_seconds": score_s,
        "score_n": n,
    }


def _depth_growth(reference: Any, inputs: list[list[Any]], plan: BenchPlan) -> list[dict[str, Any]]:
    """Growth with model depth: same task and inputs, fresh networks of 1, 2, 4 blocks. What is
    timed is fixed work (a forward pass, observing every activation, one full score of a
    one-head hypothesis in the last block), so only depth changes."""
    rows = [_depth_row(reference, inputs, depth, plan) for depth in plan.depths]
    base = rows[0]
    for r in rows:
        r["forward_ratio"] = ratio(r["forward_seconds"], base["forward_seconds"])
        r["observe_ratio"] = ratio(r["observe_seconds"], base["observe_seconds"])
        r["score_ratio"] = ratio(r["score_seconds"], base["score_seconds"])
    return rows


def _size_growth(plan: BenchPlan) -> list[dict[str, Any]]:
    """Growth with program size: interpreter time on one batch for 1..16 units of 3 nodes."""
    import random

    from mechsynth.dsl import parse

    rng = random.Random(plan.seed)
    inputs = [[rng.randrange(5) for _ in range(8)] for _ in range(plan.perf_batch)]
    rows = [interpreter_measure(parse(chain_program_text(k)), inputs) for k in plan.program_sizes]
    for r in rows:
        r["ratio_to_smallest"] = ratio(r["seconds"], rows[0]["seconds"])
    return rows


# --- the suite ----------------------------------------------------------------------------------


def perf_suite(plan: BenchPlan, recovery: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Any]:
    """Every figure next to a ratio measured moments apart in this process, with the torch
    thread count the synthesis loop itself uses (``RunOptions.threads``): on a busy 2-core
    machine two intra-op threads made one forward pass tens of times slower than one."""
    import torch

    from mechsynth.synth.loop import RunOptions

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
    from mechsynth.models import load_target

    tracr_specs = [s for s in plan.targets if s.startswith("tracr:")] or ["tracr:reverse"]
    reference = load_target(tracr_specs[0])
    attempt = _Attempts()
    length = reference.max_len
    inputs = reference.task.sample(plan.perf_batch, plan.seed, length=length)
    forward_s = attempt("forward", lambda: _forward_seconds(reference, inputs))
    # Evaluated in this order, one measurement after another.
    return {
        "reference_target": reference.name,
        "batch": plan.perf_batch,
        "forward": {
            "target": reference.name,
            "batch": plan.perf_batch,
            "length": length,
            "seconds": forward_s,
        },
        "interpreter": attempt("interpreter", lambda: _interpreter(reference, inputs, forward_s)),
        "enumerator": attempt("enumerator", lambda: _enumerator(reference, plan)),
        "score_cost": _score_costs(attempt, plan, tracr_specs),
        "score_floor": score_floor(attempt, plan),
        "time_to_recovery": _time_to_recovery(recovery, forward_s),
        "depth_growth": attempt("depth growth", lambda: _depth_growth(reference, inputs, plan)),
        "program_size_growth": attempt("program size growth", lambda: _size_growth(plan)),
        **_scale(attempt, plan, out_dir),
        "errors": attempt.errors,
    }


def _scale(attempt: _Attempts, plan: BenchPlan, out_dir: Path) -> dict[str, Any]:
    """Cost growth to GPT-2-small's shape, scoring throughput vs workers, the suite's wall time
    per executor back end (``synth.bench.growth``; --quick: three small shapes only)."""
    from mechsynth.synth.bench import growth
    from mechsynth.synth.bench.plan import WORK_DIR

    out: dict[str, Any] = {"growth": attempt("growth", lambda: growth.growth(plan, log=log))}
    if not plan.quick:
        out["throughput"] = attempt("scoring throughput", lambda: growth.throughput(plan))
        out["suite_wall_times"] = attempt(
            "suite wall times", lambda: growth.suite_wall_times(plan, out_dir / WORK_DIR / "scale", log=log)
        )
    return out


def _floor_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mechsynth.synth.bench.perf [--n N] [--out FILE]``: the "Score floor" section of
    the perf suite alone (every floor target, both batchings), printed as the suite renders it."""
    import argparse
    import json

    import torch

    from mechsynth.synth.bench.plan import make_plan
    from mechsynth.synth.bench.render.perf import render_score_floor
    from mechsynth.synth.loop import RunOptions

    parser = argparse.ArgumentParser(prog="python -m mechsynth.synth.bench.perf",
                                     description="The perf suite's score floor section alone.")
    parser.add_argument("--n", type=int, default=256, help="inputs per score (the full suite: 1024)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.n < 4 or args.n % 4:
        parser.error("--n must be a multiple of 4, at least 4")
    # The full suite's plan with its batch set so that a floor score has n inputs (perf_batch // 16 * 4).
    plan = dataclasses.replace(make_plan("perf", False, targets=([], [])), perf_batch=args.n * 4)
    old = torch.get_num_threads()
    torch.set_num_threads(int(RunOptions().threads) or old)
    try:
        rows = score_floor(_Attempts(), plan)
    finally:
        torch.set_num_threads(old)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print(render_score_floor(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_floor_main())
