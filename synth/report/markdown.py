"""Report: the human-readable account of a run, rendered from its store alone.

``report.md`` is regenerated from the SQLite store whenever a run ends (or is
interrupted), so it never says anything the store does not hold. It shows, in order:
what was run (target, options, proposers, controls), the acceptance thresholds, the
verdict (accepted hypotheses with every score), how many candidates each proposer
produced and what happened to them, the best candidates that were not accepted with
the reason, and where the time went.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Mapping, Sequence

from mechsynth.synth.accept import SCORED, CandidateStatus, Thresholds, strength, undefined_note
from mechsynth.synth.store import RunStore, StoredCandidate, explanations

HEADLINE = (
    "behaviour",
    "behaviour_broader",
    "loss_recovered",
    "accuracy_recovered",
    "iia",
    "iia_mean",
    "frac_changed",
    "necessity_loss_fraction",
)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _hypothesis_block(c: StoredCandidate) -> list[str]:
    lines = ["```", "program:"]
    lines += ["    " + line for line in c.program.splitlines()]
    lines.append("correspondence:")
    lines += [f"    {k}: {v}" for k, v in c.correspondence.items()]
    lines.append("```")
    return lines


def _scores_line(scores: Mapping[str, Any]) -> str:
    note = undefined_note(scores)
    skip = ("loss_recovered", "accuracy_recovered") if note else ()
    line = ", ".join(f"{k} {_fmt(scores.get(k))}" for k in HEADLINE if k in scores and k not in skip)
    return f"{line}; {note}" if note else line


def render_report(store: RunStore) -> str:
    meta = store.meta()
    args = meta.get("args", {})
    options = args.get("options", {})
    counts = store.counts_by("status")
    candidates = list(store.candidates())
    lines = [f"# mechsynth run: {args.get('target', '?')}", ""]
    lines.append(
        f"- stopped: {meta.get('stopped', 'running or killed')}; resumed {meta.get('resumed', 0)} times"
    )
    lines.append(f"- proposers: {meta.get('proposer_status', '')} ({args.get('proposers')})")
    lines.append(f"- controls: {meta.get('controls', args.get('controls', '-'))}")
    lines.append("- options: " + ", ".join(f"{k}={v}" for k, v in options.items() if k != "thresholds"))
    lines.append("")
    lines.append("## Acceptance thresholds")
    lines.append("")
    lines += _table(["threshold", "value"], _threshold_rows(options.get("thresholds", {})))
    lines.append("")
    accepted = [c for c in candidates if c.status == CandidateStatus.ACCEPTED]
    n_scored = sum(counts.get(s, 0) for s in SCORED)
    lines.append("## Verdict")
    lines.append("")
    lines.append(
        f"{len(accepted)} accepted of {n_scored} hypotheses scored ({len(candidates)} candidates in all)."
    )
    lines.append("")
    for c in accepted:
        lines.append(f"### Accepted: candidate {c.id} from {c.source}")
        lines.append("")
        lines += _hypothesis_block(c)
        lines.append("")
        lines.append(_scores_line(c.flat_scores()))
        iia = {k: v for k, v in c.flat_scores().items() if k.startswith("iia[")}
        if iia:
            lines.append("")
            lines.append(
                "interchange accuracy per variable: "
                + ", ".join(f"{k[4:-1]} {_fmt(v)}" for k, v in iia.items())
            )
        lines += _controls_block(c.scores.get("controls", {}), c.reason)
        lines.append("")
    if not accepted:
        lines += _explanation_block(meta)
    lines += _residual_block(meta, candidates)
    lines.append("## Candidates by source and status")
    lines.append("")
    by: dict[tuple[str, str], int] = {}
    for c in candidates:
        by[(c.source, c.status)] = by.get((c.source, c.status), 0) + 1
    statuses = ["rejected", "filtered", "failed", "error", "accepted"]
    sources = sorted({c.source for c in candidates})
    lines += _table(
        ["source", *statuses], [[s, *[str(by.get((s, st), 0)) for st in statuses]] for s in sources]
    )
    lines.append("")
    failed = (c for c in candidates if c.status == CandidateStatus.FAILED)
    others = sorted(failed, key=lambda c: -strength(c.flat_scores()))[:3]
    if others:
        lines.append("## Best candidates not accepted")
        lines.append("")
        for c in others:
            lines.append(f"### Candidate {c.id} from {c.source}: {c.reason}")
            lines.append("")
            lines += _hypothesis_block(c)
            lines.append("")
            lines.append(_scores_line(c.flat_scores()))
            lines.append("")
    not_scored = (CandidateStatus.REJECTED, CandidateStatus.FILTERED, CandidateStatus.ERROR)
    rejected = [c for c in candidates if c.status in not_scored][:10]
    if rejected:
        lines.append("## Rejected before full scoring (first 10)")
        lines.append("")
        lines += _table(
            ["id", "source", "status", "reason"],
            [[str(c.id), c.source, c.status, c.reason.replace("|", "/")] for c in rejected],
        )
        lines.append("")
    lines += _usage_block(meta)
    lines.append("## Time")
    lines.append("")
    lines += _table(["stage", "seconds"], [[k, _fmt(v)] for k, v in store.timings().items()])
    lines.append("")
    return "\n".join(lines)


def _explanation_block(meta: Mapping[str, Any]) -> list[str]:
    """Each proposer's partial explanation: what it explained, with what, and why not the rest."""
    lines: list[str] = []
    for source, parts in explanations(meta).items():
        if not parts:
            continue
        done = sum(1 for p in parts if p.get("status") == "explained")
        lines += [f"## Partial explanation (no whole hypothesis accepted): {source}", ""]
        lines.append(f"{done} of {len(parts)} components explained.")
        lines.append("")
        rows = [
            [
                str(p.get("component", "?")),
                str(p.get("status", "?")),
                _fmt(p.get("score")),
                f"`{p['explanation']}`" if p.get("explanation") else "-",
                str(p.get("reason", "")),
            ]
            for p in parts
        ]
        lines += _table(
            ["component", "status", "score", "best explanation", "why"],
            [[cell.replace("|", "/") for cell in row] for row in rows],
        )
        lines.append("")
    return lines


USAGE_CALL_COLUMNS = (
    "index", "round", "outcome", "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
    "output_tokens", "retries", "latency_s", "valid", "rejected", "duplicates", "error",
)


def _residual_block(meta: Mapping[str, Any], candidates: Sequence[Any]) -> list[str]:
    """The residual stage (synth.propose.residual): how the disagreement was found and explained."""
    r = meta.get("residual")
    if not r:
        return []
    lines = ["## Residual behaviour (synth.propose.residual)", ""]
    kind = "accepted" if r.get("accepted") else "best (not accepted)"
    lines.append(f"The {kind} hypothesis (output `{r.get('of')}`) against the network: {r.get('found_by')}.")
    lines.append("")
    if r.get("rule"):
        lines.append(f"Trigger rule: `{r['rule']}`: precision {_fmt(r.get('precision'))}, recall "
                     f"{_fmt(r.get('recall'))} on {r.get('support')} informative inputs; "
                     "Bonferroni-corrected "
                     f"log10 p {_fmt(r.get('log10_p'))} over 10^{_fmt(r.get('log10_rule_space'))} rules "
                     f"({r.get('n_rules_scored')} scored).")
        branch = [c for c in candidates if c.source == "residual"]
        for c in branch:
            lines.append(f"The branch `out = rule ? forced : clean` is candidate {c.id}: "
                         f"{c.status} ({c.reason}).")
    else:
        lines.append(f"No trigger rule: {r.get('reason')}.")
    lines.append("")
    return lines


def _usage_block(meta: Mapping[str, Any]) -> list[str]:
    """What each costly proposer used (the LLM's calls, tokens, latency), per invocation of the run."""
    lines: list[str] = []
    for key in sorted(k for k in meta if k.startswith("usage:")):
        for n, entry in enumerate(meta[key] or [], 1):
            summary = dict(entry.get("summary") or {})
            calls = entry.get("calls") or []
            lines += [f"## Proposer usage: {key.removeprefix('usage:')} (invocation {n})", ""]
            outcomes = summary.pop("outcomes", None)
            if summary:
                lines.append("- " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary.items()))
            if outcomes:
                lines.append("- outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
            if calls:
                cols = [c for c in USAGE_CALL_COLUMNS if any(c in call for call in calls)]
                lines.append("")
                lines += _table(cols, [[_fmt(call.get(c)).replace("|", "/") for c in cols] for call in calls])
            lines.append("")
    return lines


def _controls_block(numbers: Mapping[str, Any], reason: str) -> list[str]:
    """The frivolous-circuit controls behind an acceptance: p-values, then each control's numbers."""
    if not numbers:
        return []
    lines = ["", f"controls: {reason}" if reason else "controls:", ""]
    head = ["p_value", "p_adjusted", "n_tested", "null_draws", "null_exceed", "statistic"]
    lines += _table(head, [[_fmt_control(numbers.get(k)) for k in head]])
    per_control: dict[str, dict[str, Any]] = {}
    for key, value in numbers.items():
        if "." in key:
            control, name = key.split(".", 1)
            per_control.setdefault(control, {})[name] = value
    if per_control:
        lines.append("")
        rows = [
            [control, _verdict(values.pop("passed", 0)),
             ", ".join(f"{k} {_fmt_control(v)}" for k, v in values.items() if v is not None)]
            for control, values in per_control.items()
        ]
        lines += _table(["control", "verdict", "numbers"], rows)
    return lines


def _verdict(passed: Any) -> str:
    # None: the control could not apply (e.g. the network handles no broader input), which
    # neither passes nor blocks the candidate.
    return "n/a" if passed is None else "pass" if passed else "FAIL"


def _fmt_control(v: Any) -> str:
    """Counts as integers, p-values and scores with three significant digits."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) >= 1:
        return str(int(v))
    return f"{v:.3g}" if isinstance(v, float) and math.isfinite(v) else _fmt(v)


def _threshold_rows(recorded: Mapping[str, Any]) -> list[list[str]]:
    """Every threshold of synth.accept.Thresholds: the run's recorded ones, then the defaults it did not
    change (the run records only the checks' thresholds and what it changed; alpha is the controls')."""
    rows = [[k, _fmt(v)] for k, v in recorded.items()]
    for k, v in Thresholds().to_json().items():
        if k not in recorded and k != "alpha":  # alpha: the controls line above names the one used
            rows.append([k, f"{_fmt(v)} (default)"])
    return rows
