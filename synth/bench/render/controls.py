"""The controls section: what the engine accepts on networks that implement nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mechsynth.synth.bench.numeric import finite_number
from mechsynth.synth.bench.render.table import table

Row = Mapping[str, Any]

_PER_TARGET_HEADER = [
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
]


def _run_seconds(res: Any) -> float:
    """Wall time of the suite's runs, summed (a resumed suite reuses runs done earlier)."""
    runs = res.get("runs") if isinstance(res, Mapping) else None
    return float(sum(r.get("seconds") or 0.0 for r in runs or []))


def _intro(ctl: Mapping[str, Any]) -> list[str]:
    stat = " and ".join(ctl.get("statistic") or []) or "the controls' statistic"
    seconds = sum(_run_seconds(r) for r in (ctl.get("by_mode") or {"": ctl["result"]}).values())
    return [
        "## Controls: the false-positive suite",
        "",
        "The engine runs on each target (`real`) and on copies with its learned structure destroyed: "
        f"re-initialised and weight-shuffled networks, seeds {ctl['seeds']}, {ctl['budget_seconds']:.0f} s "
        f"search budget per run, {seconds:.0f} s of runs in all. A sound engine accepts "
        "nothing on a copy that the copy does not compute. "
        f"*Best statistic*: the best score (minimum of {stat}) of any candidate in that run that reached "
        "the full checks; *gap*: the real run's best minus the best over its copies. *Passed checks*: "
        "candidates that met every check threshold and so went on to the controls (a run without the "
        "controls accepts the first of them).",
        "",
    ]


def _summary(res: Mapping[str, Any]) -> list[str]:
    """The suite's verdict in one paragraph: acceptances on copies, false positives, real targets."""
    on_copies = res.get("accepted_on_copies", res["false_positives"])
    return [
        f"**Accepted on copies: {on_copies} {'hypothesis' if on_copies == 1 else 'hypotheses'} over "
        f"{res.get('control_runs')} control runs; "
        f"false positives (accepted, and not true of the copy they were accepted on): "
        f"{res['false_positives']}**. Real targets accepting: "
        f"{res.get('real_targets_accepting')}/{res.get('real_targets')}; with some candidate that met "
        f"every check threshold (what a run without the controls would accept): "
        f"{res.get('real_targets_passing_checks', '?')}/{res.get('real_targets')}.",
        "",
    ]


def _program_line(hypothesis: Any) -> str:
    """A hypothesis's text on one line: program and correspondence, without section headings."""
    return " ; ".join(
        line.strip() for line in str(hypothesis).splitlines()
        if line.strip() and not line.strip().endswith(":")
    )


def _verdict(holds: bool | None) -> str:
    return "unverified" if holds is None else "true of the copy" if holds else "FALSE POSITIVE"


def _copy_acceptances(rows: Sequence[Row]) -> list[str]:
    """Each hypothesis accepted on a copy, with its check on fresh inputs apart from the run."""
    found = [(r, h) for r in rows if r.get("network") != "real" for h in r.get("accepted_hypotheses") or []]
    if not found:
        return []
    rows_md = [
        [
            f"{r['target']} {r['network']}",
            f"`{_program_line(h.get('hypothesis', ''))}`",
            h.get("behaviour_exact_fresh"),
            h.get("loss_recovered"),
            h.get("iia"),
            _verdict(h.get("holds")),
        ]
        for r, h in found
    ]
    return [
        "A copy is a network too: it can compute something simple that a hypothesis describes "
        "exactly. Each hypothesis accepted on a copy was checked again apart from the run "
        "(`synth.bench.false_positives.verify_on_fresh_inputs`: the program against the copy's own output on "
        "500 fresh inputs of every length, and the full checks on other inputs):",
        "",
        table(
            ["copy", "accepted hypothesis (program ; correspondence)", "exact on fresh inputs",
             "loss recovered", "iia", "verdict"],
            rows_md,
        ),
        "",
    ]


def _per_target_row(r: Row, copies: Sequence[Row]) -> list[Any]:
    """A real run's row, with its copies' runs taken together."""
    return [
        r["target"],
        str(r["accepted"]),
        str(r.get("passed_checks", "?")),
        finite_number(r.get("best_statistic")),
        str(sum(c["accepted"] for c in copies)),
        str(len(copies)),
        str(r.get("controls_reaching_checks")),
        finite_number(r.get("best_control_statistic")) if r.get("controls_reaching_checks") else "none",
        finite_number(r.get("gap_statistic")),
        finite_number(r.get("best_behaviour")),
        finite_number(r.get("best_control_behaviour")),
    ]


def _per_target(rows_data: Sequence[Row]) -> list[str]:
    copies_of: dict[str, list[Row]] = {}
    for row in rows_data:
        if row.get("network") != "real":
            copies_of.setdefault(row["target"], []).append(row)
    return [
        "One row per target: its real run, then its copies' runs taken together (each run's own "
        "row is in the JSON). *reaching checks*: copy runs in which some candidate claiming an "
        "internal component got through the prefilter to the full checks (*none*: no such candidate "
        "on any copy, so no statistic and no gap); a statistic is shown only for those candidates, "
        "since a program placed at the embeddings alone patches nothing and scores 1 by default. "
        "*behaviour*: the best agreement of any candidate with that network's own output (a random "
        "network's output is often near-constant, which a trivial program matches; the controls "
        "reject such candidates, mostly by necessity).",
        "",
        table(
            _PER_TARGET_HEADER,
            [
                _per_target_row(r, copies_of.get(r["target"], []))
                for r in rows_data
                if r.get("network") == "real"
            ],
        ),
    ]


def _one_configuration(res: Any) -> list[str]:
    """One configuration's verdict, its acceptances on copies and its per-target table."""
    out: list[str] = []
    if isinstance(res, Mapping) and "false_positives" in res:
        out += _summary(res)
        out += _copy_acceptances(res.get("rows") or [])
    rows_data = res.get("rows") if isinstance(res, Mapping) else res
    if isinstance(rows_data, list) and rows_data and isinstance(rows_data[0], Mapping):
        out += _per_target(rows_data)
    return out


def _cell(real: Row | None, copies: Sequence[Row]) -> str:
    """One target under one configuration: real accepted? · accepted on copies · false positives."""
    if real is None:
        return "–"
    fp = sum(c["accepted"] - c.get("accepted_true_of_network", 0) for c in copies)
    accepted = f"**{real['accepted']}**" if real["accepted"] else "0"
    return (f"{accepted} · {sum(c['accepted'] for c in copies)}/{len(copies)} · "
            f"{'**' + str(fp) + ' FP**' if fp else '0'}")


def _side_by_side(ctl: Mapping[str, Any]) -> list[str]:
    """Every configuration at the same budget: totals, then one cell per target and configuration."""
    modes, labels, by_mode = ctl["modes"], ctl.get("mode_labels") or {}, ctl["by_mode"]
    totals = [
        [
            labels.get(m, m),
            f"{by_mode[m].get('real_targets_accepting')}/{by_mode[m].get('real_targets')}",
            f"{by_mode[m].get('real_targets_passing_checks')}/{by_mode[m].get('real_targets')}",
            str(by_mode[m].get("accepted_on_copies")),
            str(by_mode[m].get("control_runs")),
            f"**{by_mode[m]['false_positives']}**",
            _run_seconds(by_mode[m]),
        ]
        for m in modes
    ]
    per_target: dict[str, dict[str, tuple[Row | None, list[Row]]]] = {}
    for m in modes:
        for row in by_mode[m].get("rows") or []:
            real, copies = per_target.setdefault(row["target"], {}).get(m, (None, []))
            if row.get("network") == "real":
                real = row
            else:
                copies = [*copies, row]
            per_target[row["target"]][m] = (real, copies)
    cells = [[t] + [_cell(*per_target[t].get(m, (None, []))) for m in modes] for t in per_target]
    return [
        "### Side by side: the engine with and without its search, and I/O-only",
        "",
        f"Each configuration ran the same targets, copies (seeds {ctl['seeds']}) and budget "
        f"({ctl['budget_seconds']:.0f} s per run), with the same controls (`synth.bench.modes` says what "
        "each configuration proposes with). *Real accepting*: real targets with an accepted hypothesis; "
        "*passing checks*: real targets where some candidate met every check threshold; *accepted on "
        "copies*: hypotheses accepted on re-initialised or shuffled copies; *false positives*: those "
        "not true of their copy on fresh inputs (`verify_on_fresh_inputs`).",
        "",
        table(["configuration", "real accepting", "real passing checks", "accepted on copies",
               "copy runs", "false positives", "s of runs"], totals),
        "",
        "Per target (real accepted · accepted on copies / copy runs · false positives):",
        "",
        table(["target"] + [labels.get(m, m) for m in modes], cells),
        "",
    ]


def render_controls(ctl: Mapping[str, Any]) -> str:
    out = _intro(ctl)
    modes = ctl.get("modes") or []
    if len(modes) <= 1:
        if modes and modes[0] != "engine":
            out += [f"Configuration: {(ctl.get('mode_labels') or {}).get(modes[0], modes[0])}.", ""]
        return "\n".join(out + _one_configuration(ctl["result"]))
    out += _side_by_side(ctl)
    for m in modes:
        out += ["", f"### {(ctl.get('mode_labels') or {}).get(m, m)}", ""]
        out += _one_configuration(ctl["by_mode"][m])
    return "\n".join(out)
