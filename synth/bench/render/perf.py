"""The performance section: the headline figures with their ratios, then one table per measurement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mechsynth.synth.bench.numeric import fmt, ratio
from mechsynth.synth.bench.render.scale import render_scale
from mechsynth.synth.bench.render.table import table

Row = Mapping[str, Any]


def _headline_rows(perf: Mapping[str, Any], results: Mapping[str, Any]) -> list[list[Any]]:
    """measure, figure, ratio, what the ratio is: one row per measurement that ran."""
    fwd = perf.get("forward") or {}
    rows = [
        [
            "clean batched forward pass",
            f"{fmt(fwd.get('seconds'))} s ({fwd.get('batch')} inputs)",
            "1",
            "the unit for the ratios below",
        ]
    ]
    it = perf.get("interpreter")
    if it:
        rows.append(
            [
                "interpreter (ground-truth program, same inputs)",
                f"{fmt(it['node_evals_per_s'])} node·inputs/s ({it['nodes']} nodes, {fmt(it['seconds'])} s)",
                fmt(it.get("vs_forward")),
                "interpreter time / forward time",
            ]
        )
    en = perf.get("enumerator")
    if en:
        rows.append(
            [
                "enumerator",
                f"{fmt(en['distinct_per_s'])} distinct programs/s",
                fmt(en.get("distinct_fraction")),
                f"distinct / nodes evaluated "
                f"({en['distinct']} of {en['evaluated']} in {fmt(en['seconds'])} s)",
            ]
        )
    costs = perf.get("score_cost") or []
    ratios = sorted(c["score_vs_forward"] for c in costs if c.get("score_vs_forward") is not None)
    if ratios:
        rows.append(
            [
                "one causal-scrubbing score",
                f"median over {len(ratios)} tracr targets",
                fmt(ratios[len(ratios) // 2]),
                "score time / clean forward time on the same batch (per target below)",
            ]
        )
    rows.append(
        [
            "peak RSS",
            f"{results['peak_rss_mb']:.0f} MB",
            fmt(ratio(results["peak_rss_mb"], results["rss_after_imports_mb"])),
            "peak / RSS after imports",
        ]
    )
    return rows


def _score_costs(costs: Sequence[Row]) -> list[str]:
    return [
        "",
        "### Cost of one score, per target",
        "",
        "Clean = one batched forward pass per input length on the same inputs the score uses "
        "(the floor any check pays once); the score's own count of batched passes is shown.",
        "",
        table(
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
                    f"{fmt(c.get('forward_passes_in_score'), 0)} (clean: {fmt(c.get('clean_passes'), 0)})",
                ]
                for c in costs
            ],
        ),
    ]


def _score_floor(rows: Sequence[Row]) -> list[str]:
    """Score / clean per target for the fused pass and the one-block-per-pass reference (#17)."""

    def passes(m: Row) -> str:
        return f"{fmt(m.get('forward_passes'), 0)} (clean: {fmt(m.get('clean_passes'), 0)})"

    def median(key: str) -> str:
        values = sorted(r["fused"][key] for r in rows if (r.get("fused") or {}).get(key) is not None)
        return fmt(values[len(values) // 2]) if values else "–"

    loads = [r[k] for r in rows for k in ("load_before", "load_after") if r.get(k) is not None]
    load = f" 1-minute load average while measuring: {min(loads):.1f} to {max(loads):.1f}." if loads else ""
    body = []
    for r in rows:
        f, ref = r.get("fused") or {}, r.get("reference") or {}
        body.append([
            r["target"], r["hypothesis"], str(r["claimed_variables"]), str(r["n"]),
            fmt(f.get("clean_seconds")), *(fmt(f.get(k)) for k in ("ratio", "cold_ratio", "cpu_ratio")),
            passes(f), fmt(ref.get("ratio")), passes(ref),
        ])
    return [
        "",
        "### Score floor",
        "",
        "One full score (behaviour, scrubbing, node ablations, interchange) over one clean batched pass "
        "per input length on the same inputs, best of repeated runs taken in turns. *fused*: every patched "
        "run of a length group in one forward pass, rows equal to clean rows gathered from the clean pass "
        "and every row entering the network at its first patched block (synth.check.batching, the "
        "default); *reference*: one pass per block, the same numbers. *fused* is a score as a run's second "
        "and later scores run (the network's outputs on the broader inputs, which no hypothesis changes, "
        "known from the first); *cold* pays for them too; *CPU* is the fused ratio in process CPU time, "
        "which counts other processes' use of the cores much less than the wall clock. Targets without "
        "ground truth score `chain_probe_hypothesis` (a copy head per block). "
        f"Median fused ratio: {median('ratio')} (cold {median('cold_ratio')}, CPU {median('cpu_ratio')})."
        + load,
        "",
        table(
            ["target", "hypothesis", "claimed vars", "n", "clean s", "fused score / clean", "cold", "CPU",
             "fused passes", "reference score / clean", "reference passes"],
            body,
        ),
    ]


def render_score_floor(rows: Sequence[Row]) -> str:
    """The "Score floor" section alone (``python -m mechsynth.synth.bench.perf``)."""
    return "\n".join(_score_floor(rows))


def _time_to_recovery(ttr: Sequence[Row]) -> list[str]:
    return [
        "",
        "### End-to-end time to recovery",
        "",
        table(
            ["target", "model-guided s", "I/O-only s", "I/O-only / model-guided", "model-guided / forward"],
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
        ),
    ]


def _depth_growth(dg: Sequence[Row]) -> list[str]:
    return [
        "",
        "### Growth with model depth",
        "",
        "Fresh random networks of 1, 2 and 4 blocks with the reference target's width, task and inputs; "
        "the score is one full score of a fixed one-head hypothesis placed in the last block "
        "(`synth.bench.perf.depth_probe_hypothesis`; fixed work, its scores on a random network are "
        "irrelevant).",
        "",
        table(
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
        ),
    ]


def _program_size_growth(pg: Sequence[Row]) -> list[str]:
    return [
        "",
        "### Growth with program size (interpreter, one batch)",
        "",
        "Programs of 1, 2, 4, ... identical units (`map`, `select`, `aggregate`; "
        "`synth.bench.perf.chain_program_text`), so the time per unit is comparable across sizes.",
        "",
        table(
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
        ),
    ]


def render_perf(perf: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    out = [
        "## Performance",
        "",
        f"Reference target {perf['reference_target']}, batch {perf['batch']}, torch threads "
        f"{perf.get('torch_threads', '?')} (as the synthesis loop runs). Times are best of repeated "
        "measurements; each ratio divides two timings taken in this run.",
        "",
        table(["measure", "figure", "ratio", "ratio is"], _headline_rows(perf, results)),
    ]
    sections = (
        ("score_cost", _score_costs),
        ("score_floor", _score_floor),
        ("time_to_recovery", _time_to_recovery),
        ("depth_growth", _depth_growth),
        ("program_size_growth", _program_size_growth),
    )
    for key, section in sections:
        if perf.get(key):
            out += section(perf[key])
    out += render_scale(perf)
    if perf.get("errors"):
        out += ["", "Measurements that failed: " + "; ".join(f"{k}: {e}" for k, e in perf["errors"].items())]
    return "\n".join(out)
