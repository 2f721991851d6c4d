"""The predict table: does an accepted hypothesis find the network's mistakes better than chance?

``mechsynth predict RUN`` (``synth.use.predict``) reads a run's accepted program, searches
inputs beyond the distribution it was found on for inputs where the program's output differs
from the task's label (its *predicted errors* of the network), and then runs the network on
them. This module measures that on every target where the engine accepts a hypothesis:

1. **the engine** is run on the target (``synth.loop.run``, model-guided proposers, no LLM,
   every control, the residual stage included) within a budget, or an earlier run directory
   under ``OUT`` that accepted something is reused (its stored hypothesis is the same object a
   fresh run would check again);
2. **the hypothesis**: a residual-stage branch when one was accepted (it explains more of the
   network: the rule that separates the inputs the clean program gets wrong about it), else
   the first accepted; the row names its candidate id, so ``mechsynth predict RUN --candidate
   ID --n N_QUERY --steps STEPS`` reproduces it;
3. **predict** with one query budget for every target (``COUNT`` predicted errors checked on
   the network; ``N_SEARCH`` searched inputs and ``STEPS`` mutation rounds on the *program*,
   which costs no network query): *precision* (predicted errors that are real errors) against
   the error rate of as many random inputs from the same broad distribution (the same number
   of network queries), and *recall* (of the network's real errors in a fresh random sample of
   ``N_SEARCH`` inputs, the fraction the program flags) against as many random flags.

A network that makes no error on any sampled input has no recall to measure (``-``), and a
program that agrees with the labels everywhere predicts nothing (precision ``-``); the row says
so rather than filling the cell. ``python -m mechsynth.synth.bench.predict_table [BUDGET] [OUT]``
runs every target, prints the markdown table and writes ``OUT/predict-table.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mechsynth.models import Target

# Targets where the engine accepts a hypothesis: the tracr programs the recovery bench recovers
# (model-guided) and the trained networks accepted in models/README.md.
PREDICT_TARGETS = (
    "tracr:reverse", "tracr:hist", "tracr:sort_unique", "tracr:sort", "tracr:sort_freq", "tracr:frac_prevs",
    "tracr:pair_balance", "tracr:shift_by", "tracr:detect_pattern", "tracr:count_less_freq", "tracr:count",
    "tracr:nary_sequencemap",
    "trained:reverse", "trained:unique_copy", "trained:hist", "trained:prefix_count", "trained:induction",
    "trained:cumsum_sign", "trained:unique_reverse",
)
# The one query budget of the table (see the module docstring, step 3).
COUNT = 100
N_SEARCH = 2000
STEPS = 10
DEFAULT_BUDGET = 60.0
DEFAULT_OUT = "bench-out/predict"


def run_dir(out_dir: str | Path, spec: str) -> Path:
    """Where the run of ``spec`` is stored under ``out_dir`` (one folder per target)."""
    from mechsynth.synth.loop import safe_name

    return Path(out_dir) / safe_name(spec)


def chosen_hypothesis(accepted: Any) -> Any:
    """A residual-stage branch when one was accepted, else the first accepted (step 2)."""
    from mechsynth.synth.propose.residual import BRANCH_PREFIX

    branched = [a for a in accepted if a.hypothesis.program.output.startswith(BRANCH_PREFIX)]
    return branched[0] if branched else accepted[0]


def _engine_run(target: Target, budget: float, out_dir: str | Path, reuse: bool) -> tuple[Any, str, float]:
    """(the stored run, 'fresh' or 'reused', seconds the engine took)."""
    from mechsynth.synth.loop import run
    from mechsynth.synth.store import RunStoreError, load_run

    where = run_dir(out_dir, target.name)
    if reuse and (where / "run.sqlite").exists():
        try:
            stored = load_run(where)
        except RunStoreError:
            stored = None
        if stored is not None and stored.accepted:
            return stored, "reused", stored.seconds
    t0 = time.monotonic()
    stored = run(target, out=where, budget_seconds=budget, no_llm=True)
    return stored, "fresh", time.monotonic() - t0


def predict_row(spec: str | Target, budget: float = DEFAULT_BUDGET, out_dir: str | Path = DEFAULT_OUT, *,
                reuse: bool = True, count: int = COUNT, n_search: int = N_SEARCH, steps: int = STEPS
                ) -> dict[str, Any]:
    """One target's row: the engine's run, the chosen hypothesis, predict's numbers (module docstring)."""
    from mechsynth.models import load_target
    from mechsynth.synth.loop import torch_threads
    from mechsynth.synth.use.predict import predict

    target = load_target(spec) if isinstance(spec, str) else spec
    with torch_threads(1):
        stored, how, seconds = _engine_run(target, budget, out_dir, reuse)
        row: dict[str, Any] = {"target": target.name, "run": str(stored.dir), "engine": how,
                               "engine_seconds": round(seconds, 1), "accepted": len(stored.accepted),
                               "stopped": stored.stopped}
        if not stored.accepted:
            row["note"] = f"no hypothesis accepted (stopped: {stored.stopped})"
            return row
        chosen = chosen_hypothesis(stored.accepted)
        row.update(candidate=chosen.candidate_id, source=chosen.source,
                   program_size=len(chosen.hypothesis.program.variables))
        t0 = time.monotonic()
        p = predict(target, chosen.hypothesis, count=count, n_search=n_search, n_recall=n_search,
                    steps=steps)
    row.update(
        predict_seconds=round(time.monotonic() - t0, 1), n_searched=p.n_searched, n_flagged=p.n_flagged,
        n_predicted=len(p.predicted), n_predicted_real=sum(e.network_wrong for e in p.predicted),
        precision=p.precision, baseline_precision=p.baseline_precision, n_baseline=p.n_baseline,
        n_recall_sample=p.n_recall_sample, n_real_errors=p.n_real_errors, n_program_flags=p.n_program_flags,
        recall=p.recall, baseline_recall=p.baseline_recall, found_by=dict(p.found_by),
        command=f"mechsynth predict {stored.dir} --candidate {chosen.candidate_id} --n {n_search} "
                f"--steps {steps} --count {count}",
    )
    row["note"] = _note(row)
    return row


def _note(row: dict[str, Any]) -> str:
    """What the row means, in words (no number invented where there is none)."""
    if not row["n_predicted"]:
        no_errors = "the network made no error on the recall sample either" if not row["n_real_errors"] else (
            f"yet the network erred on {row['n_real_errors']} of {row['n_recall_sample']} random inputs")
        return f"the program agrees with the labels on every searched input: no error predicted; {no_errors}"
    if not row["n_real_errors"]:
        return "no network error in the recall sample: recall undefined"
    return ""


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of ``rows`` (one per target)."""
    head = ["target", "accepted (source, candidate)", "predicted errors (real)", "precision",
            "random precision", "network errors in recall sample", "program flags", "recall", "random recall",
            "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if not r.get("accepted"):
            cells = [r["target"], "0", "-", "-", "-", "-", "-", "-", "-", r.get("note", "")]
        else:
            cells = [r["target"], f"{r['accepted']} ({r['source']}, #{r['candidate']})",
                     f"{r['n_predicted']} ({r['n_predicted_real']})", _cell(r["precision"]),
                     f"{_cell(r['baseline_precision'])} of {r['n_baseline']}",
                     f"{r['n_real_errors']} / {r['n_recall_sample']}", str(r["n_program_flags"]),
                     _cell(r["recall"]), _cell(r["baseline_recall"]), r.get("note", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        budget = float(args[0]) if args else DEFAULT_BUDGET
    except ValueError:
        print(f"predict_table: BUDGET must be a number of seconds, got {args[0]!r}", file=sys.stderr)
        return 2
    out = Path(args[1]) if len(args) > 1 else Path(DEFAULT_OUT)
    targets = args[2:] or list(PREDICT_TARGETS)
    rows = []
    for spec in targets:
        try:
            rows.append(predict_row(spec, budget, out))
        except Exception as e:  # one target's failure is a row, not the end of the table
            rows.append({"target": spec, "accepted": 0, "note": f"error: {type(e).__name__}: {e}"})
        print(json.dumps(rows[-1], default=str), file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict-table.json").write_text(json.dumps(
        {"budget_seconds": budget, "count": COUNT, "n_search": N_SEARCH, "steps": STEPS, "rows": rows},
        indent=1, default=str))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
