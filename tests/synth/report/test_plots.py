"""Tables (synth.report.inspection) and figures (synth.report.plots) on hand-made runs, scores and controls.

Nothing here runs a synthesis: the run store is written directly, the controls' result is
built by hand and the attention plot uses a tiny random TransformerBridge, so the file
stays fast. The notebooks (tests/notebooks/test_notebooks.py) exercise the same helpers end to end.
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from mechsynth import dsl  # noqa: E402
from mechsynth.synth.report import inspection, plots  # noqa: E402
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.control.results import CandidateControls, ControlResult, decide  # noqa: E402
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location  # noqa: E402
from mechsynth.synth.control.statistics import MonteCarloTest  # noqa: E402
from mechsynth.synth.store import RunStore  # noqa: E402

PROGRAM = dsl.parse("sel = select(indices, indices, EQ)\nout = aggregate(sel, tokens)")
HYP = Hypothesis(PROGRAM, {"tokens": Location("hook_embed"), "out": Location("blocks.0.attn.hook_z", head=1)})


@pytest.fixture
def run_dir(tmp_path):
    """A run store with an accepted, a failed, a filtered and a rejected candidate."""
    path = tmp_path / "run"
    with RunStore(path) as store:
        store.begin({"target": "toy", "options": {"thresholds": {}}})
        corr = {k: str(v) for k, v in HYP.correspondence.items()}
        check = {"behaviour": 1.0, "loss_recovered": 0.97, "iia": 0.95, "iia[out]": 0.95,
                 "ablation_loss_recovered": 0.9}
        controls = {
            "statistic": 0.95,
            "p_value": 0.004,
            "p_adjusted": 0.008,
            "necessity.passed": 1.0,
            "null_correspondences.passed": 1.0,
            "null_correspondences.mean": 0.2,
            "null_correspondences.quantile": 0.4,
            "null_correspondences.max": 0.5,
            "random_networks.passed": 1.0,
            "random_networks.best_control": 0.1,
        }
        store.add_candidate(
            "a",
            program=str(PROGRAM),
            correspondence=corr,
            source="model-guided",
            status="accepted",
            reason="every control passed",
            scores={
                "prefilter": {"behaviour_observed": 1.0, "ablation_loss_recovered": 0.5},
                "check": check,
                "controls": controls,
            },
        )
        store.add_candidate(
            "b",
            program="out = map(add(1), tokens)",
            correspondence={"out": "hook_embed"},
            source="enumerator",
            status="failed",
            reason="iia 0.1 < 0.8",
            scores={
                "prefilter": {"behaviour_observed": 0.95},
                "check": {"behaviour": 0.95, "loss_recovered": 0.3, "iia": 0.1},
            },
        )
        store.add_candidate(
            "c",
            program="out = map(add(2), tokens)",
            correspondence={},
            source="enumerator",
            status="filtered",
            reason="behaviour",
            scores={"prefilter": {"behaviour_observed": 0.1}},
        )
        store.add_candidate(
            "d", program="garbage", correspondence={}, source="llm", status="rejected", reason="parse error"
        )
        store.set_meta(stopped="accepted")
    return path


def test_candidates_frame_has_every_candidate_with_headline_scores_first(run_dir):
    frame = inspection.candidates_frame(run_dir)
    assert list(frame["status"]) == ["accepted", "failed", "filtered", "rejected"]
    assert list(frame.columns[:9]) == [
        "source",
        "status",
        "reason",
        "round",
        "seconds",
        "size",
        "program",
        "correspondence",
        "behaviour_observed",
    ]
    assert frame.loc[1, "loss_recovered"] == pytest.approx(0.97)
    assert frame.loc[1, "ablation_loss_recovered"] == 0.9  # the full check's number, not the prefilter's
    assert math.isnan(frame.loc[3, "loss_recovered"])  # filtered: no full check
    assert "p_value" in frame.columns and not any(c.startswith("controls.") for c in frame.columns)
    assert any(c.startswith("controls.") for c in inspection.candidates_frame(run_dir, controls=True).columns)
    assert len(inspection.candidates_frame(run_dir, status="failed")) == 1
    summary = inspection.summary_frame(run_dir)
    assert summary.loc["enumerator", "total"] == 2


def test_correspondence_frame_places_selectors_with_their_aggregate():
    frame = inspection.correspondence_frame(HYP)
    assert frame.loc["out", "location"] == "blocks.0.attn.hook_z[1]"
    assert frame.loc["out", "component"] == "attn" and frame.loc["out", "head"] == 1
    assert frame.loc["sel", "kind"] == "selector" and frame.loc["sel", "used_by"] == "out"
    assert frame.loc["indices", "location"] == ""


def test_controls_frame_from_the_store_and_from_memory(run_dir):
    accepted = inspection.as_run(run_dir).accepted[0]
    stored = inspection.controls_frame(accepted)
    assert bool(stored.loc["random_networks", "passed"]) is True
    assert stored.loc["significance (pooled null)", "p_adjusted"] == pytest.approx(0.008)
    live = inspection.controls_frame(_controls())
    assert bool(live.loc["null_correspondences", "passed"]) is True
    assert "significance (pooled null)" in live.index and "real" not in live.columns
    assert "real" in inspection.controls_frame(_controls(), numbers=True).columns
    decision = decide([_controls()], 1, Thresholds()).decisions[0]
    verdict = inspection.controls_frame(decision).loc["significance (pooled null)"]
    assert "Holm-adjusted" in verdict["reason"] and bool(verdict["passed"]) == decision.accepted


def test_scores_frame_lists_headline_and_per_variable_iia():
    scores = {"behaviour": 1.0, "iia": 0.5, "iia_per_variable": {"x": 0.5}, "junk": [1]}
    frame = inspection.scores_frame(scores)
    assert frame.loc["iia[x]", "value"] == 0.5 and "junk" not in frame.index


def _controls() -> CandidateControls:
    nulls = [0.1, 0.2, float("nan"), 0.3, 0.9]
    return CandidateControls(
        hypothesis=HYP,
        target="toy",
        statistic=0.95,
        real_scores={"loss_recovered": 0.97},
        results=(
            ControlResult("null_correspondences", True, "ok", {"real": 0.95, "draws": nulls}),
            ControlResult("null_programs", True, "ok", {"real": 0.95, "draws": [0.0, 0.05]}),
            ControlResult(
                "random_networks",
                True,
                "ok",
                {"copies": {"reinitialized[0]": {"best": 0.1}, "shuffled[0]": {"best": float("nan")}}},
            ),
        ),
        significance=MonteCarloTest(real=0.95, n_draws=99, n_exceed=0, p_value=0.01, n_planned=99),
        n_tested=1,
        n_required=99,
    )


def test_null_distribution_from_controls_and_from_the_store(run_dir):
    fig = plots.plot_null_distribution(_controls())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0].startswith("same program")
    assert len(ax.collections[0].get_offsets()) == 4  # the NaN draw is counted, not drawn
    fig.savefig(run_dir / "nulls.png")
    stored = plots.plot_null_distribution(inspection.as_run(run_dir))
    labels = [t.get_text() for t in stored.axes[0].get_yticklabels()]
    assert "best re-initialised / shuffled network" in labels


def test_null_distribution_without_controls_is_a_clear_error(run_dir):
    failed = next(c for c in inspection.as_run(run_dir).candidates() if c.status == "failed")
    with pytest.raises(inspection.InspectError, match="no control numbers"):
        plots.plot_null_distribution(failed)


def test_program_graph_labels_each_variable_with_its_location():
    fig = plots.draw_program_graph(HYP)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("blocks.0.attn.hook_z[1]" in t and t.startswith("out") for t in texts)
    assert any(t.startswith("sel") and "(selector)" in t for t in texts)


def _per_input_scores(n: int = 6) -> dict:
    return {
        "loss_recovered": 0.8,
        "n": n,
        "seed": 0,
        "per_input": {
            "loss_scrubbed": [0.0, 0.1, 0.0, 2.0, 0.0, 0.0][:n],
            "loss_resampled": [1.0, 1.0, 0.0, 2.0, 3.0, 1.0][:n],
            "changed": [False, False, False, True, False, False][:n],
        },
    }


def test_per_input_frame_sorts_worst_first_and_handles_zero_resampling_loss():
    frame = inspection.per_input_frame(_per_input_scores())
    assert frame.iloc[0]["loss_scrubbed"] == 2.0 and frame.iloc[0]["changed"]
    assert math.isnan(frame.loc[2, "recovered"]) and frame.loc[0, "recovered"] == 1.0
    fig = plots.plot_scrub_per_input(_per_input_scores())
    assert len(fig.axes) == 2
    with pytest.raises(inspection.InspectError, match="no per-input"):
        inspection.per_input_frame({"loss_recovered": 1.0})


class _Task:
    vocab = (1, 2, 3)

    def sample(self, n, seed, length=None):
        return [[1, 2, 3, 1], [2, 2, 3, 1], [3, 1], [1, 2, 3, 1, 2], [1, 2, 3], [3, 3, 3], [1, 1]][:n]


class _Target:
    """Just what the attention plot and scrub_inputs read: a model, tokens with BOS, a task."""

    position_offset = 1
    task = _Task()

    def __init__(self):
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        torch.manual_seed(0)
        cfg = TransformerBridgeConfig(
            n_layers=1,
            d_model=8,
            d_head=4,
            n_heads=2,
            d_mlp=16,
            d_vocab=5,
            d_vocab_out=4,
            n_ctx=6,
            act_fn="relu",
            normalization_type=None,
            attention_dir="bidirectional",
        )
        self.model = TransformerBridge.boot_native(cfg)
        self.model.eval()

    def tokens(self, inputs):
        return torch.tensor([[0, *x] for x in inputs])


def test_scrub_inputs_rebuild_the_checks_order():
    target = _Target()
    inputs = inspection.scrub_inputs(target, {"n": 7, "seed": 0, "per_input": {"loss_scrubbed": [0] * 6}})
    # ascending lengths, sample order within a length, the lone length-5 input dropped
    assert inputs == [(3, 1), (1, 1), (1, 2, 3), (3, 3, 3), (1, 2, 3, 1), (2, 2, 3, 1)]
    with pytest.raises(inspection.InspectError, match="rebuilds"):
        inspection.scrub_inputs(target, {"n": 7, "seed": 0, "per_input": {"loss_scrubbed": [0] * 3}})


def test_attention_vs_selector_shows_each_claimed_head():
    target = _Target()
    assert [(v, s) for v, s, _ in plots.claimed_heads(HYP)] == [("out", "sel")]
    fig = plots.plot_attention_vs_selector(target, HYP, [[1, 2, 3], [3, 1, 1, 2]])
    assert len(fig.axes) == 4  # 2 inputs x (pattern, selector)
    image = fig.axes[1].images[0].get_array()
    assert image.shape == (3, 4)  # queries x (BOS + keys)
    assert list(image[:, 0]) == [0, 0, 0] and image[1, 2] == 1  # EQ on indices: the diagonal
    assert len(plots.plot_attention_vs_selector(target, HYP, (1, 2)).axes) == 2  # one input on its own
    no_head = Hypothesis(PROGRAM, {"tokens": Location("hook_embed")})
    with pytest.raises(inspection.InspectError, match="no attention head"):
        plots.plot_attention_vs_selector(target, no_head)


def test_control_decision_rederives_holm_over_the_run(run_dir):
    from types import SimpleNamespace

    loop = SimpleNamespace(
        candidates=[_controls()], stage=SimpleNamespace(config=SimpleNamespace(thresholds=Thresholds()))
    )
    decision = inspection.control_decision(loop, HYP, run_dir)
    assert decision.hypothesis == HYP
    assert decision.controls.n_tested == 1 and decision.p_adjusted == pytest.approx(0.03)  # 3 scored
    other = Hypothesis(dsl.parse("out = map(add(1), tokens)"), {})
    assert inspection.control_decision(loop, other, run_dir) is None
