"""The recovery section: totals per configuration, the configurations side by side, and each
configuration's run on every target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mechsynth.synth.bench.numeric import fmt, secs
from mechsynth.synth.bench.recovery import TRAINED_MIN_BEHAVIOUR, TRAINED_MIN_LOSS_RECOVERED
from mechsynth.synth.bench.render.table import table

_PER_TARGET_HEADER = [
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
]

Row = Mapping[str, Any]


def _intro(rec: Mapping[str, Any]) -> list[str]:
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
    return out


def _totals(rec: Mapping[str, Any]) -> str:
    rows = []
    for mode in rec["modes"]:
        t = rec["totals"][mode]
        rows.append(
            [
                rec["mode_labels"][mode],
                f"{t['recovered']}/{t['total']}",
                f"{t['tracr_recovered']}/{t['tracr_total']}",
                f"{t['trained_recovered']}/{t['trained_total']}",
                str(t["errors"]),
            ]
        )
    return table(["configuration", "recovered", "tracr", "trained", "errors"], rows)


def _side_by_side_cell(r: Row | None) -> str:
    if r is None:
        return "–"
    if r.get("error"):
        return "error"
    return f"{'**yes**' if r['recovered'] else 'no'} · {secs(r['seconds'])} s · {fmt(r['n_scored'])}"


def _side_by_side(rec: Mapping[str, Any], by: Mapping[tuple[str, str], Row], targets: Sequence[str]) -> str:
    modes, labels = rec["modes"], rec["mode_labels"]
    rows = [[spec] + [_side_by_side_cell(by.get((spec, mode))) for mode in modes] for spec in targets]
    return table(["target"] + [labels[m] for m in modes], rows)


def _per_target_row(spec: str, r: Row) -> list[Any]:
    return [
        spec,
        "error: " + r["error"] if r.get("error") else ("**yes**" if r["recovered"] else "no"),
        str(r["accepted"]),
        r["behaviour"],
        r["loss_recovered"],
        r["iia"],
        r["p_value"],
        fmt(r["n_scored"]),
        secs(r["seconds"]),
        secs(r["seconds_to_accept"]),
        (r.get("why") or "").replace("|", "/"),
    ]


def _per_target(mode: str, by: Mapping[tuple[str, str], Row], targets: Sequence[str]) -> str:
    rows = [_per_target_row(spec, by[(spec, mode)]) for spec in targets if (spec, mode) in by]
    return table(_PER_TARGET_HEADER, rows)


def render_recovery(rec: Mapping[str, Any]) -> str:
    modes, labels = rec["modes"], rec["mode_labels"]
    by = {(r["target"], r["mode"]): r for r in rec["rows"]}
    targets = list(dict.fromkeys(r["target"] for r in rec["rows"]))
    out = _intro(rec)
    out += ["", "### Totals", "", _totals(rec)]
    out += ["", "### Side by side (recovered · seconds · candidates scored)", ""]
    out.append(_side_by_side(rec, by, targets))
    for mode in modes:
        out += ["", f"### {labels[mode]}: per target", "", _per_target(mode, by, targets)]
    return "\n".join(out)
