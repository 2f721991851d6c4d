"""The Scale part of the performance section: the suite's wall time per executor back end and
worker count, candidate-scoring throughput vs workers, and the cost-growth tables up to
GPT-2-small's shape (``synth.bench.growth``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mechsynth.synth.bench.numeric import fmt
from mechsynth.synth.bench.render.table import table

Row = Mapping[str, Any]

SWEEP_TITLES = {
    "layers": "Layers 1 -> 12 (4 heads, width 256)",
    "heads": "Heads 1 -> 12 (2 layers, width 768, d_head 64)",
    "width": "Width 64 -> 768 (2 layers, 4 heads)",
    "diagonal": "All three to GPT-2-small, 1x1x64 -> 12x12x768 (d_head 64)",
}


def _seconds(r: Row, stage: str) -> str:
    value = r.get(f"{stage}_seconds")
    if value is None:
        if stage in r.get("capped", ()):
            return f"not measured (cap {fmt(r.get('cap_seconds'))} s)"
        return "-"
    return fmt(value)


def _suite(rows: Sequence[Row]) -> list[str]:
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["executor"], str(r["workers"]), r["error"], "-", "-"])
            continue
        body.append([r["executor"], str(r["workers"]), r["wall_seconds"], str(r["runs"]),
                     "yes" if r.get("same_outcomes_as_inline") else "NO"])
    first = next((r for r in rows if "target" in r), {})
    return [
        "",
        "### Suite wall time vs executor and workers",
        "",
        f"The false-positive suite on {first.get('target', '?')} (the real network and one re-initialised "
        f"and one shuffled copy, seed 0, {fmt(first.get('budget_seconds'))} s budget per run), fresh for "
        "each configuration; Ray is a local cluster started by the bench. Same outcomes: every run accepted "
        "the same hypotheses as inline.",
        "",
        table(["executor", "workers", "wall s", "runs", "same outcomes"], body),
    ]


def _throughput(rows: Sequence[Row]) -> list[str]:
    first = rows[0] if rows else {}
    return [
        "",
        "### Candidate-scoring throughput vs workers",
        "",
        f"The same candidate scores (a chain-probe hypothesis on {first.get('target', '?')}, "
        f"{first.get('inputs', '?')} inputs, one seed each) through local worker processes, after a warm-up "
        "that pays each worker's start-up.",
        "",
        table(
            ["workers", "candidates", "wall s", "candidates/s", "speed-up", "mean s per score"],
            [[str(r["workers"]), str(r["candidates"]), r["wall_seconds"], r["candidates_per_second"],
              r["speedup"], r["mean_score_seconds"]] for r in rows],
        ),
    ]


def _growth(g: Mapping[str, Any]) -> list[str]:
    s = g.get("settings", {})
    out = [
        "",
        "### Cost growth to GPT-2-small's shape",
        "",
        "Random networks (GPT-2-style blocks: LayerNorm, GELU, d_mlp = 4 x width) with the task of "
        f"{g.get('task')}; a fixed hypothesis (head 0 of the last block copies its own token). Observe: "
        f"{s.get('observe_per_length')} inputs; one score: {s.get('score_n')} inputs; the control stage: "
        "every default control on that one hypothesis; one run: search, checks and controls under a "
        f"{fmt(s.get('run_budget_seconds'))} s budget. "
        f"Each stage is capped at {fmt(s.get('cap_seconds'))} s; a capped stage is not extrapolated. "
        f"Device: {s.get('device')}; {g.get('gpu')}.",
    ]
    for sweep, rows in (g.get("sweeps") or {}).items():
        full = any("controls_seconds" in r or "controls" in r.get("capped", ()) for r in rows)
        header = ["shape", "parameters", "forward s", "observe s", "x", "one score s", "x"]
        if full:
            header += ["control stage s", "x", "one run s", "scored in run"]
        body = []
        for r in rows:
            line = [r["label"], str(r["parameters"]), _seconds(r, "forward"), _seconds(r, "observe"),
                    r.get("observe_ratio"), _seconds(r, "score"), r.get("score_ratio")]
            if full:
                line += [_seconds(r, "controls"), r.get("controls_ratio"), _seconds(r, "run"),
                         str(r.get("run_n_scored", "-"))]
            body.append(line)
        out += ["", f"**{SWEEP_TITLES.get(sweep, sweep)}**", "", table(header, body)]
    limit = g.get("machine_limit")
    if limit:
        if limit.get("label"):
            out += ["", f"Where this machine stops being enough ({limit['rule']}, cap "
                    f"{fmt(limit['cap_seconds'])} s): **{limit['label']}**."]
        else:
            out += ["", f"Every diagonal point fit on this machine ({limit['rule']} never happened, cap "
                    f"{fmt(limit['cap_seconds'])} s)."]
    return out


def render_scale(perf: Mapping[str, Any]) -> list[str]:
    """The Scale part's lines (nothing when the perf suite measured none of it)."""
    if not any(perf.get(k) for k in ("growth", "throughput", "suite_wall_times")):
        return []
    out = ["", "## Scale"]
    if perf.get("suite_wall_times"):
        out += _suite(perf["suite_wall_times"])
    if perf.get("throughput"):
        out += _throughput(perf["throughput"])
    if perf.get("growth"):
        out += _growth(perf["growth"])
    return out
