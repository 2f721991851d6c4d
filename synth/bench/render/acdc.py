"""The peer section: ACDC and edge attribution patching (auto-circuit) next to our locations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mechsynth.synth.bench.numeric import fmt
from mechsynth.synth.bench.recovery import seconds_to_recovery
from mechsynth.synth.bench.render.table import table

_HEADER = [
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
]
# Edges listed per target in the Markdown (all of them are in bench.json).
_EDGES_SHOWN = 24


def _intro(acdc: Mapping[str, Any]) -> list[str]:
    s = acdc["settings"]
    return [
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


def _precision_recall(a: Mapping[str, Any]) -> str:
    return f"{fmt(a.get('precision'), 2)}/{fmt(a.get('recall'), 2)}"


def _row(r: Mapping[str, Any], ours_seconds: float | None) -> list[Any]:
    return [
        r["target"],
        f"{r['acdc_edges']}/{r['n_edges']}",
        ", ".join(r["acdc_components"]) or "none",
        ", ".join(r["eap_components"]) or "none",
        ", ".join(r["ours_components"]) if r["ours_components"] is not None else "(none accepted)",
        ", ".join(r["truth_components"] or []),
        _precision_recall(r["acdc_vs_truth"]),
        _precision_recall(r["eap_vs_truth"]),
        _precision_recall(r["ours_vs_truth"]),
        r["acdc_seconds"],
        r["eap_seconds"],
        ours_seconds,
        r["rebuild_max_abs_diff"],
        r.get("corruption_changes_output"),
    ]


def _edges_kept(acdc: Mapping[str, Any]) -> list[str]:
    out = ["", "Edges ACDC kept (all of them are in bench.json):", ""]
    for r in acdc["rows"]:
        edges = list(r.get("edges_kept") or [])
        shown = ", ".join(f"`{e}`" for e in edges[:_EDGES_SHOWN])
        if len(edges) > _EDGES_SHOWN:
            shown += f", ... ({len(edges)} in all)"
        out.append(f"- {r['target']}: {shown or 'none'}")
    return out


def render_acdc(acdc: Mapping[str, Any], recovery: Mapping[str, Any] | None) -> str:
    out = ["## Peer: ACDC and edge attribution patching (auto-circuit)", ""]
    if "skipped" in acdc:
        return "\n".join(out + [f"Skipped: {acdc['skipped']}"])
    out += _intro(acdc)
    ours_seconds = {
        r["target"]: seconds_to_recovery(r)
        for r in (recovery or {}).get("rows", [])
        if r["mode"] == "model_guided"
    }
    out.append(table(_HEADER, [_row(r, ours_seconds.get(r["target"])) for r in acdc["rows"]]))
    out += _edges_kept(acdc)
    if acdc.get("errors"):
        out += ["", "Targets the peer could not run:", ""]
        out += [f"- {name}: {err}" for name, err in acdc["errors"].items()]
    return "\n".join(out)
