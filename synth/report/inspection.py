"""Inspection: a stored run, a hypothesis and its scores as tables (for notebooks and reports).

A run's record is its SQLite store (:mod:`synth.store`); a hypothesis's record is its
:class:`~synth.check.scoring.Scores`; a candidate's controls are a
:class:`~synth.control.results.CandidateControls` (in memory) or the flattened ``controls.*``
numbers the loop stores with it. The helpers here turn each into a ``pandas`` table so a
notebook cell is one call, and into plain lists where a plot needs them
(:mod:`synth.report.plots` draws from these, never from the database directly).

``pandas`` is imported inside the functions that return tables: it is a notebook
dependency (the project's ``[test]`` extra), not one of the engine's.

Per-input arrays: ``score`` runs its checks on ``task.sample(n, seed)`` grouped by
length (lengths ascending, input order kept inside a length, lengths with fewer than two
inputs dropped, since resampling needs a second input); the scrubbing arrays follow that
order, the behaviour arrays the sample order. :func:`scrub_inputs` rebuilds the first
order so each per-input number can be shown next to the input it belongs to.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from mechsynth.dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.report.markdown import HEADLINE as REPORT_HEADLINE

if TYPE_CHECKING:
    import pandas as pd

    from mechsynth.models import Target
    from mechsynth.synth.store import AcceptedHypothesis, Run

# Columns shown first in a candidates table, in this order (the rest follow alphabetically):
# the prefilter's numbers, the report's headline checks, then the controls' p-values.
HEADLINE = ("behaviour_observed", "ablation_loss_recovered", *REPORT_HEADLINE, "p_value", "p_adjusted")


class InspectError(ValueError):
    """Something to inspect is missing or has the wrong shape (one-line message)."""


# --- runs --------------------------------------------------------------------------------------
def as_run(run: Run | str | Path) -> Run:
    """A :class:`~synth.store.Run`, loading it when given its directory."""
    from mechsynth.synth.store import Run, load_run

    return run if isinstance(run, Run) else load_run(run)


def _flat(c: Any) -> dict[str, float | None]:
    """A stored candidate's scores under short names.

    The full check's numbers keep their names; a prefilter number fills a name only the
    prefilter measured (``behaviour_observed``, or ``ablation_loss_recovered`` of a
    candidate the prefilter stopped); the controls' run-level numbers drop their prefix
    (``controls.p_value`` -> ``p_value``) and per-control ones keep it.
    """
    flat = c.flat_scores()
    out: dict[str, float | None] = {}
    for name, value in flat.items():
        if name.startswith("prefilter."):
            continue
        if name.startswith("controls.") and name.count(".") == 1:
            name = name[len("controls.") :]
        out[name] = value
    for name, value in flat.items():
        if name.startswith("prefilter."):
            out.setdefault(name[len("prefilter.") :], value)
    return out


def candidates_frame(
    run: Run | str | Path, *, status: str | None = None, controls: bool = False
) -> pd.DataFrame:
    """One row per candidate the run stored: id, source, status, reason, program, correspondence, scores.

    Score columns are the headline numbers first (:data:`HEADLINE`), then the rest
    (per-variable IIA ``iia[x]``, ...). Per-control numbers (``controls.<control>.<number>``)
    are many; they are included only with ``controls=True``. Missing scores are NaN:
    a candidate stopped by the prefilter has no full-check numbers.
    """
    import pandas as pd

    rows = []
    for c in as_run(run).candidates():
        if status is not None and c.status != status:
            continue
        row: dict[str, Any] = {
            "id": c.id,
            "source": c.source,
            "status": c.status,
            "reason": c.reason,
            "round": c.round,
            "seconds": c.seconds,
            "size": len([line for line in c.program.splitlines() if "=" in line]),
            "program": c.program,
            "correspondence": "; ".join(f"{k}: {v}" for k, v in c.correspondence.items()),
        }
        for name, value in _flat(c).items():
            if controls or not name.startswith("controls."):
                row[name] = math.nan if value is None else value
        rows.append(row)
    fixed = ["id", "source", "status", "reason", "round", "seconds", "size", "program", "correspondence"]
    frame = pd.DataFrame(rows, columns=None if rows else fixed)
    scores = [c for c in frame.columns if c not in fixed]
    ordered = [c for c in HEADLINE if c in scores] + sorted(c for c in scores if c not in HEADLINE)
    return frame[fixed + ordered].set_index("id")


def summary_frame(run: Run | str | Path) -> pd.DataFrame:
    """Candidates counted by source (rows) and status (columns), with totals."""
    frame = candidates_frame(run)
    table = frame.pivot_table(index="source", columns="status", values="round", aggfunc="count", fill_value=0)
    table["total"] = table.sum(axis=1)
    return table


def shown_candidate(run: Run | str | Path) -> tuple[Any, bool]:
    """``(candidate, accepted)``: the run's first accepted hypothesis, else its best scored candidate.

    "Best" is the run's own order (the weakest of behaviour, loss recovered and IIA). A
    notebook shows the second case as what it is: a candidate the evidence did not support.
    """
    result = as_run(run)
    if result.accepted:
        return result.accepted[0], True
    best = result.best(1)
    if not best:
        raise InspectError(f"run {result.dir} scored no candidate")
    return best[0], False


# --- one hypothesis ------------------------------------------------------------------------------
def hypothesis_of(h: Any) -> Hypothesis:
    """The hypothesis of an accepted hypothesis, stored candidate, decision or candidate controls."""
    if isinstance(h, Hypothesis):
        return h
    inner = getattr(h, "hypothesis", None)
    if isinstance(inner, Hypothesis):
        return inner
    if hasattr(h, "hypothesis_json"):
        return Hypothesis.from_json(h.hypothesis_json())
    raise InspectError(f"expected a Hypothesis (or something holding one), got {type(h).__name__}")


def correspondence_frame(hypothesis: Hypothesis | AcceptedHypothesis) -> pd.DataFrame:
    """One row per program variable: its definition, kind, and where the hypothesis says it lives.

    Selectors have no location of their own: their head is the location of the aggregate
    that reads them (the ``used_by`` column says which).
    """
    import pandas as pd

    hyp = hypothesis_of(hypothesis)
    program = hyp.program
    rows = []
    for name in program.variables:
        node = program.node(name)
        loc = hyp.correspondence.get(name)
        users = [u for u in program.consumers(name) if u in hyp.correspondence]
        rows.append(
            {
                "variable": name,
                "kind": program.kind(name),
                "definition": name if name in PRIMITIVES and node.op == name else str(node),
                "location": str(loc) if loc is not None else "",
                "component": loc.component if loc is not None else "",
                "layer": loc.layer if loc is not None else None,
                "head": loc.head if loc is not None else None,
                "used_by": ", ".join(users) if program.kind(name) == "selector" else "",
            }
        )
    return pd.DataFrame(rows).set_index("variable")


def scores_frame(scores: Mapping[str, Any], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Headline numbers of a Scores mapping (or an accepted hypothesis's stored scores) as one column."""
    import pandas as pd

    scores = scores_of(scores)
    keys = names or [k for k in HEADLINE if k in scores] + sorted(
        k
        for k, v in scores.items()
        if k not in HEADLINE and k.startswith("iia[") and isinstance(v, (int, float))
    )
    per_var = scores.get("iia_per_variable") if names is None else None
    rows = {k: scores.get(k) for k in keys}
    if isinstance(per_var, Mapping):
        rows.update({f"iia[{k}]": v for k, v in per_var.items()})
    return pd.DataFrame({"value": pd.Series(rows, dtype=float)})


def controls_frame(controls: Any, *, numbers: bool = False) -> pd.DataFrame:
    """One row per control: passed (True/False; None = did not apply), the reason, and its time.

    ``controls`` is a :class:`~synth.control.results.CandidateControls` (e.g.
    ``LoopControls.candidates[i]``) or a :class:`~synth.control.results.Decision`, which hold
    everything; ``numbers=True`` adds each control's scalar numbers as columns. The last
    row is the pooled significance test (its verdict is known from a Decision, which has
    the Holm-adjusted p). A stored candidate or accepted hypothesis has only the numbers
    the loop flattened into the store (``controls.<name>.<number>``): those are shown,
    without reasons.
    """
    import pandas as pd

    decision = controls if hasattr(controls, "p_adjusted") else None
    cc = getattr(controls, "controls", controls)  # a Decision holds its CandidateControls
    if hasattr(cc, "results"):
        rows = []
        for r in cc.results:
            row = {"control": r.name, "passed": r.passed, "reason": r.reason, "seconds": round(r.seconds, 3)}
            if numbers:
                row.update({k: v for k, v in r.numbers.items() if _is_number(v)})
            rows.append(row)
        sig = cc.significance
        if sig is not None:
            reason = f"{sig.n_exceed} of {sig.n_draws} null draws >= real {sig.real:.3f}; p={sig.p_value:.3g}"
            passed = None
            if decision is not None:
                reason += f", Holm-adjusted {decision.p_adjusted:.3g} over {cc.n_tested} scored"
                passed = "significance" not in decision.rejected_by
            rows.append({"control": "significance (pooled null)", "passed": passed, "reason": reason})
        return pd.DataFrame(rows).set_index("control")
    flat = scores_of(controls)
    by_control: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "controls":
            by_control.setdefault(parts[1], {})[parts[2]] = value
    if not by_control:
        raise InspectError("no control numbers stored with this candidate (was the run made with controls?)")
    rows = []
    for name, numbers in by_control.items():
        passed = numbers.pop("passed", None)
        rows.append({"control": name, "passed": None if passed is None else bool(passed), **numbers})
    top = {
        k[len("controls.") :]: v for k, v in flat.items() if k.count(".") == 1 and k.startswith("controls.")
    }
    if top:
        rows.append({"control": "significance (pooled null)", "passed": None, **top})
    return pd.DataFrame(rows).set_index("control")


def control_decision(loop_controls: Any, hypothesis: Any, run: Run | str | Path) -> Any:
    """The controls' :class:`~synth.control.results.Decision` on ``hypothesis`` in ``run`` (None if none).

    ``loop_controls`` is the :class:`~synth.control.stage.LoopControls` the run was made with
    (the controls' full results live in that object, not in the store). The decision is
    re-derived with :func:`synth.control.results.decide` from what the controls already drew (no
    new draws), with Holm over every hypothesis the run scored.
    """
    from mechsynth.synth.control.results import decide

    hyp = hypothesis_of(hypothesis)
    candidates = list(loop_controls.candidates)
    if not any(c.hypothesis == hyp for c in candidates):
        return None
    n_tested = max(as_run(run).n_scored, len(candidates))
    acceptance = decide(candidates, n_tested, loop_controls.stage.config.thresholds)
    return [d for d in acceptance.decisions if d.hypothesis == hyp][-1]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def scores_of(x: Any) -> Mapping[str, Any]:
    """The scores of a stored candidate (flattened), an accepted hypothesis, or a Scores mapping."""
    if hasattr(x, "flat_scores"):
        return x.flat_scores()
    scores = getattr(x, "scores", None)
    if isinstance(scores, Mapping):
        return scores
    if isinstance(x, Mapping):
        return x
    raise InspectError(f"cannot read stored scores from {type(x).__name__}")


# --- per-input results ---------------------------------------------------------------------------
def scrub_inputs(target: Target, scores: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The inputs behind ``scores["per_input"]`` scrubbing arrays, in their order (see module docstring)."""
    from mechsynth.synth.check.claims import group_by_length

    if "n" not in scores or "seed" not in scores:
        raise InspectError("these scores do not say which inputs they used (need 'n' and 'seed')")
    inputs = target.task.sample(int(scores["n"]), int(scores["seed"]))
    ordered = [x for xs in group_by_length(inputs).values() if len(xs) >= 2 for x in xs]
    n_arrays = len((scores.get("per_input") or {}).get("loss_scrubbed", ()))
    if n_arrays and n_arrays != len(ordered):
        raise InspectError(
            f"scores hold {n_arrays} per-input results but the sample rebuilds {len(ordered)} inputs"
        )
    return ordered


def per_input_frame(scores: Mapping[str, Any], target: Target | None = None) -> pd.DataFrame:
    """One row per scored input: scrubbed and resampled loss, whether scrubbing changed the output.

    ``recovered`` is the per-input loss recovered ``1 - scrubbed / resampled`` (NaN when
    resampling the whole input does not change that input's output either). With
    ``target``, an ``input`` column shows the input itself. Sorted worst first.
    """
    import pandas as pd

    per = scores.get("per_input") or {}
    if "loss_scrubbed" not in per:
        raise InspectError("these scores have no per-input scrubbing results (use synth.score(...))")
    frame = pd.DataFrame(
        {
            "loss_scrubbed": per["loss_scrubbed"],
            "loss_resampled": per["loss_resampled"],
            "changed": per.get("changed", [False] * len(per["loss_scrubbed"])),
        }
    )
    resampled = frame["loss_resampled"].where(frame["loss_resampled"] > 1e-9)
    frame["recovered"] = 1.0 - frame["loss_scrubbed"] / resampled
    if target is not None:
        inputs = scrub_inputs(target, scores)
        frame.insert(0, "input", [" ".join(map(str, x)) for x in inputs])
        frame.insert(1, "length", [len(x) for x in inputs])
    return frame.sort_values("loss_scrubbed", ascending=False)
