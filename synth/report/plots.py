"""Plots: the figures a researcher looks at to judge an accepted hypothesis.

Each function draws one question and returns a ``matplotlib.figure.Figure``:

* :func:`plot_null_distribution` — is the hypothesis better than chance? Its statistic
  against the null hypotheses the controls drew (same program at random locations,
  random programs of the same shape) and against the same hypothesis on re-initialised
  and weight-shuffled copies of the network;
* :func:`plot_attention_vs_selector` — does each head the hypothesis claims attend the
  way the claimed selector says? The head's attention pattern beside the selector;
* :func:`draw_program_graph` — the program as a graph, each variable labelled by its
  definition and the location the hypothesis gives it;
* :func:`plot_scrub_per_input` — where does causal scrubbing fail? Per-input scrubbed
  loss against the loss of resampling the whole input (an average can hide inputs the
  hypothesis gets badly wrong);
* :func:`plot_candidate_scores` — what did the search try? Every scored candidate by
  source and status.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``: nothing is
registered with a global figure manager, so a notebook shows a figure once (when a cell
returns it) and scripts and tests need no display (any backend, e.g. Agg, works).
matplotlib is imported inside each function: it is a notebook dependency, not one of
the engine's. Tables live in :mod:`synth.report.inspection`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from mechsynth.dsl.location import act_name
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.report.inspection import InspectError, as_run, hypothesis_of, per_input_frame, scores_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mechsynth.models import Target

# One colour per kind of location, used by the graph and the attention plots.
COMPONENT_COLOURS = {
    "attn": "#f4a261",
    "mlp": "#2a9d8f",
    "embed": "#a8dadc",
    "pos_embed": "#a8dadc",
    "resid": "#e9c46a",
    "selector": "#e0e0e0",
    "": "#ffffff",
}
NULL_FAMILIES = (
    ("null_correspondences", "same program,\nrandom locations"),
    ("null_programs", "random programs,\nsame shape"),
)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finite(xs: Sequence[Any]) -> list[float]:
    out = []
    for x in xs:
        try:
            v = float(x)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


# --- null distribution ---------------------------------------------------------------------------
def _null_rows(x: Any) -> tuple[float, list[tuple[str, list[float], int]], dict[str, float], str]:
    """(real statistic, [(label, values, n_undefined)], markers, note) from controls or stored scores."""
    cc = getattr(x, "controls", x)  # Decision -> CandidateControls
    if hasattr(cc, "results"):
        rows = []
        for name, label in NULL_FAMILIES:
            res = cc.result(name)
            if res is None or "draws" not in res.numbers:
                continue
            draws = list(res.numbers["draws"])
            vals = _finite(draws)
            rows.append((label, vals, len(draws) - len(vals)))
        net = cc.result("random_networks")
        if net is not None and isinstance(net.numbers.get("copies"), Mapping):
            best = [c.get("best") for c in net.numbers["copies"].values()]
            vals = _finite(best)
            rows.append(("re-initialised and\nshuffled networks", vals, len(best) - len(vals)))
        sig = cc.significance
        note = f"pooled test p = {sig.p_value:.3g} ({sig.n_draws} draws)" if sig is not None else ""
        return float(cc.statistic), rows, {}, note
    # A stored candidate: the store keeps each control's summary numbers, not its draws.
    flat = scores_of(x)
    real = flat.get("controls.statistic")
    if real is None:
        real = flat.get("controls.null_correspondences.real")
    if real is None:
        raise InspectError("no control numbers stored with this candidate (was the run made with controls?)")
    rows, markers = [], {}
    for name, label in NULL_FAMILIES:
        for stat in ("mean", "quantile", "max"):
            v = flat.get(f"controls.{name}.{stat}")
            if v is not None and math.isfinite(v):
                markers[f"{label.splitlines()[0]} {label.splitlines()[1]}: {stat}"] = v
    best = flat.get("controls.random_networks.best_control")
    if best is not None:
        markers["best re-initialised / shuffled network"] = best
    p = flat.get("controls.p_adjusted")
    note = "summary numbers from the run store" + (f"; Holm-adjusted p = {p:.3g}" if p is not None else "")
    return float(real), rows, markers, note


def plot_null_distribution(x: Any, *, title: str | None = None) -> Figure:
    """The accepted hypothesis's statistic against its nulls and control networks.

    ``x`` is the controls' full result — a :class:`~synth.control.results.CandidateControls`
    (``LoopControls.candidates[i]``) or :class:`~synth.control.results.Decision` — which holds
    every null draw, or a stored run / accepted hypothesis / stored candidate, for which
    the store holds only summary numbers (mean, gate quantile and maximum of each null
    family, best control network), drawn as markers. The statistic is the one the
    controls compare: the minimum of causal scrubbing's loss recovered and the weakest IIA.
    """
    import numpy as np

    if hasattr(x, "accepted") and hasattr(x, "candidates"):  # a Run: its first accepted hypothesis
        if not x.accepted:
            raise InspectError(f"run {x.dir} accepted nothing; pass a stored candidate instead")
        x = x.accepted[0]
    real, rows, markers, note = _null_rows(x)
    fig = _figure(7.5, 1.2 + 0.9 * max(len(rows), 1) + 0.25 * len(markers))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for i, (_, vals, n_undefined) in enumerate(rows):
        jitter = rng.uniform(-0.18, 0.18, len(vals))
        ax.scatter(vals, np.full(len(vals), i) + jitter, s=18, alpha=0.6, color="#457b9d")
        extra = f" (+{n_undefined} not finite)" if n_undefined else ""
        ax.text(1.02, i, f"n={len(vals)}{extra}", va="center", fontsize=8, transform=ax.get_yaxis_transform())
    for j, v in enumerate(markers.values()):
        ax.scatter([v], [len(rows) + j], marker="D", color="#457b9d")
    ax.set_yticks(range(len(rows) + len(markers)), [r[0] for r in rows] + list(markers))
    ax.axvline(real, color="#e63946", lw=2)
    ax.set_xlabel("statistic: min(loss recovered, weakest IIA)")
    ax.set_xlim(min(-0.05, *(v for _, vals, _ in rows for v in vals), *markers.values(), real) - 0.05, 1.08)
    ax.set_ylim(len(rows) + len(markers) - 0.5, -0.5)  # first row on top
    head = f"hypothesis (red line) {real:.3f} vs nulls and control networks"
    ax.set_title(title or f"{head}\n{note}", fontsize=10)
    return fig


# --- attention vs selector -----------------------------------------------------------------------
def claimed_heads(hypothesis: Hypothesis) -> list[tuple[str, str, Any]]:
    """``(variable, selector, location)`` for every located variable computed by a head from a selector."""
    program = hypothesis.program
    out = []
    for var, loc in hypothesis.correspondence.items():
        if loc.head is None or loc.component != "attn":
            continue
        selectors = [s for s in program.inputs(var) if program.kind(s) == "selector"]
        if selectors:
            out.append((var, selectors[0], loc))
    return out


def plot_attention_vs_selector(
    target: Target, hypothesis: Hypothesis | Any, inputs: Sequence[Sequence[Any]] | None = None, *, n: int = 2
) -> Figure:
    """Each claimed head's attention pattern beside the selector the hypothesis claims for it.

    One row per (input, claimed head): left the head's attention (queries down, keys
    across; the BOS column, when the target has one, is where a tracr head puts the
    weight of a query that selects nothing), right the claimed selector evaluated on the
    same input, with its BOS column marking queries that select nothing. ``inputs`` (a
    list of inputs, or one input) defaults to ``n`` inputs of the task's sampler.
    """
    import numpy as np
    import torch

    from mechsynth import dsl

    hyp = hypothesis_of(hypothesis)
    heads = claimed_heads(hyp)
    if not heads:
        raise InspectError("the hypothesis claims no attention head that computes a selector aggregate")
    if inputs is None:
        inputs = target.task.sample(n, seed=0)
    if inputs and not isinstance(inputs[0], (list, tuple)):
        inputs = [inputs]  # one input given on its own
    inputs = [list(x) for x in inputs]
    values = dsl.evaluate_all(hyp.program, inputs)
    off = int(target.position_offset)
    rows = [(x_i, h) for x_i in range(len(inputs)) for h in heads]
    fig = _figure(7.0, 2.9 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    names = {act_name("pattern", loc.layer) for _, _, loc in heads}
    for x_i, x in enumerate(inputs):
        with torch.no_grad():
            _, cache = target.model.run_with_cache(
                target.tokens([x]), names_filter=lambda name: name in names
            )
        for r, (xi, (var, sel, loc)) in enumerate(rows):
            if xi != x_i:
                continue
            pattern = cache[act_name("pattern", loc.layer)][0, loc.head].float().numpy()
            pattern = pattern[off:]  # queries at input positions; keys keep BOS
            matrix = np.array([[1.0 if v else 0.0 for v in row] for row in values[sel][x_i]])
            if off:
                none = (matrix.sum(1, keepdims=True) == 0).astype(float)
                matrix = np.concatenate([none, matrix], 1)
            keys = (["BOS"] if off else []) + [str(t) for t in x]
            for ax, data, label in (
                (axes[r, 0], pattern, f"{loc} attention"),
                (axes[r, 1], matrix, f"{sel} (claimed for {var})"),
            ):
                ax.imshow(data, vmin=0, vmax=1, cmap="Blues")
                ax.set_xticks(range(len(keys)), keys, fontsize=7)
                ax.set_yticks(range(len(x)), [str(t) for t in x], fontsize=7)
                ax.set_xlabel("key", fontsize=8)
                ax.set_ylabel("query", fontsize=8)
                ax.set_title(label, fontsize=9)
            axes[r, 0].set_title(f"input {' '.join(map(str, x))}\n{loc} attention", fontsize=9)
            agree = _agreement(pattern, matrix)
            axes[r, 1].text(
                1.02,
                0.5,
                f"argmax agrees on\n{agree:.0%} of queries",
                fontsize=8,
                transform=axes[r, 1].transAxes,
                va="center",
            )
    return fig


def _agreement(pattern: Any, selector: Any) -> float:
    """Share of queries whose most-attended key is one the selector selects."""
    import numpy as np

    top = pattern.argmax(1)
    return float(np.mean([selector[q, k] > 0 for q, k in enumerate(top)])) if len(top) else math.nan


# --- program graph -------------------------------------------------------------------------------
def draw_program_graph(hypothesis: Hypothesis | Any, *, width: float | None = None) -> Figure:
    """The program's variable graph (``Program.graph()``), read left to right.

    Each node shows the variable, its definition and its location; colour says which kind
    of component holds it (attention head, MLP, embedding; grey: a selector, which lives
    in the head of the aggregate that reads it; white: not located).
    """
    import networkx as nx

    hyp = hypothesis_of(hypothesis)
    g = hyp.program.graph()
    for depth, layer in enumerate(nx.topological_generations(g)):
        for name in layer:
            g.nodes[name]["depth"] = depth
    pos = nx.multipartite_layout(g, subset_key="depth", align="vertical")
    depth = 1 + max(d for _, d in g.nodes(data="depth"))
    tall = max(sum(1 for _, d in g.nodes(data="depth") if d == k) for k in range(depth))
    fig = _figure(width or 3.0 * depth + 1, 1.1 * tall + 1.0)
    ax = fig.add_subplot()
    boxes = {}
    for name, data in g.nodes(data=True):
        loc = hyp.correspondence.get(name)
        text = data["text"] if len(data["text"]) <= 38 else data["text"][:35] + "..."
        where = (
            str(loc) if loc is not None else ("(selector)" if data["kind"] == "selector" else "(not located)")
        )
        label = f"{name}\n{text}\n@ {where}" if text != name else f"{name}\n@ {where}"
        kind = "selector" if data["kind"] == "selector" and loc is None else (loc.component if loc else "")
        boxes[name] = ax.text(
            *pos[name],
            label,
            ha="center",
            va="center",
            fontsize=7,
            zorder=3,
            bbox={
                "boxstyle": "round,pad=0.4",
                "facecolor": COMPONENT_COLOURS.get(kind, "#ffffff"),
                "edgecolor": "#333333",
            },
        )
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.35, max(xs) + 0.35)
    ax.set_ylim(min(ys) - 0.3, max(ys) + 0.3)
    ax.axis("off")
    ax.set_title(f"program graph (output: {hyp.program.output})", fontsize=10)
    # Arrows run between box edges, which are known only once the text is laid out.
    fig.draw_without_rendering()
    to_data = ax.transData.inverted()
    extent = {name: (t.get_bbox_patch() or t).get_window_extent() for name, t in boxes.items()}
    for u, v in g.edges:
        start = _box_exit(extent[u], extent[v])
        end = _box_exit(extent[v], extent[u])
        arrow = ax.annotate(
            "",
            xy=to_data.transform(end),
            xytext=to_data.transform(start),
            zorder=2,
            arrowprops={"arrowstyle": "-|>", "color": "#555555", "shrinkA": 2, "shrinkB": 2},
        )
        arrow.set_in_layout(False)
    return fig


def _box_exit(box: Any, towards: Any) -> tuple[float, float]:
    """Where the segment from ``box``'s centre to ``towards``'s centre leaves ``box`` (display coords)."""
    (x0, y0), (x1, y1) = box.get_points()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    tx, ty = (towards.x0 + towards.x1) / 2, (towards.y0 + towards.y1) / 2
    dx, dy = tx - cx, ty - cy
    scale = min(
        (x1 - x0) / 2 / abs(dx) if dx else math.inf,
        (y1 - y0) / 2 / abs(dy) if dy else math.inf,
    )
    scale = min(scale, 1.0)
    return cx + dx * scale, cy + dy * scale


# --- per-input scrubbing -------------------------------------------------------------------------
def plot_scrub_per_input(
    scores: Mapping[str, Any], target: Target | None = None, *, worst: int = 5
) -> Figure:
    """Per-input causal scrubbing: scrubbed loss vs whole-input resampling loss, worst inputs named.

    Left: one point per input; on the diagonal scrubbing is as bad as resampling
    everything, on the x-axis the hypothesis explains the input fully; red points are
    inputs whose scrubbed output differs from the clean one. Right: the distribution of
    per-input loss recovered. With ``target`` the ``worst`` inputs are listed.
    """
    frame = per_input_frame(scores, target)
    fig = _figure(10.0, 4.0)
    left, right = fig.subplots(1, 2, width_ratios=(1.2, 1))
    changed = frame["changed"].astype(bool)
    for mask, colour, label in (
        (~changed, "#457b9d", "output unchanged"),
        (changed, "#e63946", "output changed"),
    ):
        left.scatter(
            frame.loc[mask, "loss_resampled"],
            frame.loc[mask, "loss_scrubbed"],
            s=14,
            alpha=0.6,
            color=colour,
            label=f"{label} ({int(mask.sum())})",
        )
    top = float(max(frame["loss_resampled"].max(), frame["loss_scrubbed"].max(), 1e-6))
    left.plot([0, top], [0, top], color="#999999", lw=1, ls="--", label="scrubbed = resampled")
    left.set_xlabel("loss, whole input resampled")
    left.set_ylabel("loss, scrubbed (hypothesis kept)")
    lr = scores.get("loss_recovered")
    defined = lr is not None and math.isfinite(float(lr)) and not scores.get("loss_recovered_undefined")
    left.set_title(
        f"per-input scrubbing (loss recovered {float(lr):.3f})" if defined
        else "per-input scrubbing (loss recovered undefined)",
        fontsize=10,
    )
    left.legend(fontsize=8)
    rec = frame["recovered"].dropna().clip(-1, 1)
    right.hist(rec, bins=20, range=(-1, 1), color="#2a9d8f")
    right.set_xlabel("per-input loss recovered (clipped to [-1, 1])")
    right.set_ylabel("inputs")
    if target is not None and worst:
        lines = [f"{row.input}: {row.loss_scrubbed:.3g}" for row in frame.head(worst).itertuples()]
        right.set_title("worst inputs (scrubbed loss)\n" + "\n".join(lines), fontsize=8, loc="left")
    return fig


# --- the search ----------------------------------------------------------------------------------
def plot_candidate_scores(run: Any, *, x: str = "behaviour_observed", y: str = "loss_recovered") -> Figure:
    """Every candidate of a run on two scores, marker by status, colour by source."""
    from mechsynth.synth.report.inspection import candidates_frame

    frame = candidates_frame(as_run(run))
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    markers = {"accepted": "*", "failed": "o", "filtered": "x", "error": "s", "rejected": "v"}
    sources = sorted(frame["source"].unique())
    palette = ["#e63946", "#457b9d", "#2a9d8f", "#f4a261", "#6d597a"]
    for si, source in enumerate(sources):
        for status, marker in markers.items():
            part = frame[(frame["source"] == source) & (frame["status"] == status)]
            if part.empty or x not in part or y not in part:
                continue
            ax.scatter(
                part[x].fillna(-0.05),
                part[y].fillna(-0.05),
                marker=marker,
                s=80 if status == "accepted" else 24,
                color=palette[si % len(palette)],
                label=f"{source}: {status} ({len(part)})",
                alpha=0.75,
            )
    for axis, name in ((ax.set_xlim, x), (ax.set_ylim, y)):
        values = frame[name].dropna() if name in frame else []
        axis(min([-0.1, *values]) - 0.02, max([1.0, *values]) + 0.05)
    ax.set_xlabel(f"{x} (missing: -0.05)")
    ax.set_ylabel(f"{y} (missing: -0.05)")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{len(frame)} candidates", fontsize=10)
    return fig
