"""The synthesis loop: recovery on small tracr targets, the run store, resume, bad input."""

from __future__ import annotations

import sqlite3

import pytest

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.loop import NoControls, RunError, load_run, run, summary_text
from mechsynth.synth.propose.interface import Proposal
from mechsynth.synth.store import RunStore, RunStoreError, candidate_key, open_run


@pytest.fixture(scope="module")
def hist(target_named):
    return target_named("tracr:hist")


@pytest.fixture(scope="module")
def reverse(target_named):
    return target_named("tracr:reverse")


def test_recovers_hist_and_stores_everything(hist, tmp_path):
    from mechsynth.synth.report.recovery import compare

    result = run(hist, out=tmp_path / "run", no_llm=True, budget_seconds=120)
    assert result.accepted, "the model-guided proposer should recover tracr:hist"
    best = result.accepted[0]
    assert best.source == "model-guided"
    assert best.scores["behaviour"] >= 0.98 and best.scores["loss_recovered"] >= 0.8
    assert compare(best.hypothesis, hist.ground_truth, hist).recovered
    # The store holds the candidate, its scores, timings and the arguments.
    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    rows = db.execute("SELECT source, status FROM candidates").fetchall()
    assert ("model-guided", "accepted") in rows
    names = {r[0] for r in db.execute("SELECT name FROM scores")}
    assert {"behaviour", "loss_recovered", "iia", "behaviour_observed"} <= names
    stages = {r[0] for r in db.execute("SELECT stage FROM timings")}
    assert {"observe", "check", "total"} <= stages
    assert (tmp_path / "run" / "report.md").read_text().count("Accepted") >= 1
    summary = result.to_json()
    assert summary["target"] == "tracr:hist" and summary["n_scored"] >= 1
    assert summary["accepted"][0]["correspondence"]


@pytest.mark.slow
def test_recovers_reverse(reverse, tmp_path):
    from mechsynth.synth.report.recovery import compare

    result = run(reverse, out=tmp_path / "run", no_llm=True, budget_seconds=300)
    assert result.accepted
    rec = compare(result.accepted[0].hypothesis, reverse.ground_truth, reverse)
    assert rec.recovered, rec.summary()


class _Scripted:
    """A proposer yielding fixed hypotheses, raising KeyboardInterrupt after ``interrupt_after``."""

    name = "scripted"
    exhaustive = True

    def __init__(self, hypotheses, interrupt_after=None):
        self.hypotheses = hypotheses
        self.interrupt_after = interrupt_after

    def propose(self, context):
        for i, h in enumerate(self.hypotheses):
            if self.interrupt_after is not None and i == self.interrupt_after:
                raise KeyboardInterrupt
            yield Proposal(source=self.name, hypothesis=h)


def _wrong_hypotheses(n):
    from mechsynth.dsl import parse

    out = []
    for k in range(n):
        program = parse(f"out = map(add({k + 1}), tokens)")
        out.append(Hypothesis(program, {}))
    return out


def test_interrupt_then_resume_does_not_rescore(hist, tmp_path):
    calls = []

    def fake_score(target, hypothesis):
        calls.append(str(hypothesis))
        return {"behaviour": 0.5, "loss_recovered": 0.1, "iia": 0.2}

    hyps = _wrong_hypotheses(4)
    strict = Thresholds(prefilter_behaviour=0.0)
    with pytest.raises(KeyboardInterrupt):
        run(
            hist,
            out=tmp_path / "r",
            proposers=[_Scripted(hyps, interrupt_after=2)],
            score_fn=fake_score,
            thresholds=strict,
        )
    assert len(calls) == 2
    stored = load_run(tmp_path / "r")
    assert stored.n_scored == 2 and stored.stopped == "interrupted"
    result = run(
        hist, out=tmp_path / "r", proposers=[_Scripted(hyps)], score_fn=fake_score, thresholds=strict
    )
    assert len(calls) == 4, "stored candidates must not be scored again"
    assert result.n_scored == 4 and not result.accepted
    with open_run(tmp_path / "r") as store:
        assert store.meta()["resumed"] == 1
        assert {c.status for c in store.candidates()} == {"failed"}


def test_rejected_proposals_are_counted(hist, tmp_path):
    class Bad:
        name = "bad"
        exhaustive = True

        def propose(self, context):
            yield Proposal(source="bad", text="out = nonsense(", error="parse error: unexpected EOF")

    result = run(hist, out=tmp_path / "b", proposers=[Bad()])
    assert result.n_candidates == 1 and result.n_scored == 0
    assert result.counts == {"rejected": 1}


def test_different_arguments_refuse_the_directory(hist, tmp_path):
    run(hist, out=tmp_path / "d", proposers=[], seed=0)
    with pytest.raises(RunStoreError, match="different arguments"):
        run(hist, out=tmp_path / "d", proposers=[], seed=1)


def test_bad_input_errors(hist, tmp_path):
    with pytest.raises(RunError, match="unknown run option"):
        run(hist, out=tmp_path / "x", colour="blue")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStoreError, match="corrupt"):
        load_run(corrupt)
    with pytest.raises(RunStoreError, match="not a run directory"):
        load_run(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunStoreError):
        RunStore(blocker / "sub")


def test_store_round_trip(tmp_path):
    with RunStore(tmp_path / "s") as store:
        assert store.begin({"target": "t", "options": {"seed": 0}}) is False
        key = candidate_key("program text", "cfg")
        cid = store.add_candidate(
            key,
            program="out = map(add(1), tokens)",
            correspondence={"out": "x"},
            source="test",
            status="failed",
            reason="low",
            scores={"check": {"iia": 0.5}},
        )
        again = store.lookup(key)
        assert again is not None and again.id == cid and again.scores == {"check": {"iia": 0.5}}
        assert store.count("failed") == 1 and store.count("accepted") == 0
    with open_run(tmp_path / "s") as store:
        assert store.begin({"target": "t", "options": {"seed": 0}}) is True
        assert [c.status for c in store.candidates()] == ["failed"]


def test_cli_run_and_show_json(hist, tmp_path, capsys, monkeypatch):
    import json

    from mechsynth import models
    from mechsynth.synth.cli import main

    monkeypatch.setattr(models, "load_target", lambda spec, device=None: hist)
    out = str(tmp_path / "c")
    assert main(["run", "tracr:hist", "--seed", "0", "--budget-seconds", "120", "--out", out, "--no-llm",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "tracr:hist" and data["accepted"] and data["n_scored"] >= 1
    assert set(data["accepted"][0]) >= {"program", "correspondence", "scores"}
    assert main(["show", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_scored"] == data["n_scored"]


def test_report_shows_a_control_that_could_not_apply_as_not_applicable():
    from mechsynth.synth.report.markdown import _controls_block

    numbers = {"p_value": 0.01, "broader_distribution.passed": None, "necessity.passed": 1.0,
               "null_programs.passed": 0.0, "null_programs.gap": 0.05}
    table = "\n".join(_controls_block(numbers, "rejected by null_programs"))
    assert "| broader_distribution | n/a |" in table
    assert "| necessity | pass |" in table and "| null_programs | FAIL | gap 0.05 |" in table


def test_a_run_that_accepts_nothing_reports_its_partial_explanation(hist, tmp_path):
    """No whole hypothesis: the run still says which components are explained, how well, and why not."""
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import ModelGuidedProposer

    # An R^2 bar no candidate can reach leaves hist's MLP (the counter) unexplained.
    walker = ModelGuidedProposer(thresholds=MatchThresholds(explain=1.01))
    result = run(hist, out=tmp_path / "p", proposers=[walker], controls=NoControls(), budget_seconds=30)
    assert result.n_candidates == 0 and not result.accepted
    parts = {p["component"]: p for p in result.explanations["model-guided"]}
    assert parts["head 0.0"]["explanation"].endswith("select(tokens, tokens, EQ)")
    mlp = parts["MLP 0"]
    assert mlp["status"] == "unexplained"
    assert mlp["explanation"].startswith("selector_width(") and mlp["score"] > 0.99
    assert "bar 1.01" in mlp["reason"]
    assert parts["output"]["status"] == "unexplained" and "agrees on" in parts["output"]["reason"]
    # ... in the store (load_run, --json), the summary line and report.md.
    assert load_run(tmp_path / "p").to_json()["explanations"] == result.to_json()["explanations"]
    assert "partial explanation (model-guided): 0 of 3 components explained" in summary_text(result)
    report = (tmp_path / "p" / "report.md").read_text()
    assert "## Partial explanation (no whole hypothesis accepted): model-guided" in report
    assert "| MLP 0 | unexplained |" in report


def test_the_walk_widens_round_by_round_then_stops(hist, tmp_path):
    """While nothing is accepted the walk is asked again with looser bars; out of bars, the run ends."""
    from mechsynth.synth.propose.model_guided import ModelGuidedProposer, widening

    class Recording(ModelGuidedProposer):
        def __init__(self):
            super().__init__()
            self.asked: list[int] = []
            self.walked: list[float] = []

        def propose(self, context):
            self.asked.append(context.round)
            for proposal in super().propose(context):
                self.walked.append(self.last_state.thresholds.selector)
                yield proposal

    def failing_score(target, hypothesis):
        return {"behaviour": 0.5, "loss_recovered": 0.1, "iia": 0.2}

    walker = Recording()
    said: list[str] = []
    result = run(
        hist, out=tmp_path / "w", proposers=[walker], score_fn=failing_score, controls=NoControls(),
        thresholds=Thresholds(prefilter_behaviour=0.0), rounds=6, budget_seconds=120, progress=said.append,
    )
    rounds_said = [m for m in said if m.startswith("round ")]
    assert rounds_said[0].startswith("round 0: 1 proposals (1 new); best so far ")
    assert rounds_said[-1].startswith("round 3: ")
    bars = widening(exact=True)
    # After round 3 no bars are left and no variable's interchange failed (no feedback): the run ends.
    assert walker.asked == [0, 1, 2, 3]
    assert sorted(set(walker.walked), reverse=True) == [b.selector for b in bars]
    assert result.stopped == "proposers exhausted" and not result.accepted
    with open_run(tmp_path / "w") as store:
        rounds = [c.meta.get("walk_round") for c in store.candidates()]
        programs = [(c.program, str(c.correspondence)) for c in store.candidates()]
    assert rounds[0] == 0 and set(rounds) <= {0, 1, 2, 3}
    assert len(programs) == len(set(programs))  # a proposal repeated by a later round is not stored twice
    # Every round's bars are no stricter than the last's.
    for strict, loose in zip(bars, bars[1:]):
        for f in ("selector", "decode", "explain", "available", "output"):
            assert getattr(loose, f) <= getattr(strict, f)
        assert loose.conflict >= strict.conflict


def test_the_checks_refute_a_wrong_first_candidate_and_the_search_refines_it(hist, tmp_path):
    """A first candidate claiming hist's counter at dims of the MLP output that do not hold it fails
    interchange there; the proposer excludes that explanation and walks again (a round it has
    only because of the feedback: its bars are fixed), and the refined candidate is accepted."""
    import dataclasses

    from mechsynth.dsl.location import Location
    from mechsynth.synth.propose.guided_state import MatchThresholds
    from mechsynth.synth.propose.model_guided import ModelGuidedProposer

    class WrongFirst(ModelGuidedProposer):
        """Round 0 offers only its first hypothesis, its MLP variable claimed at the wrong dims."""

        moved: tuple[str, Location] | None = None

        def propose(self, context):
            for proposal in super().propose(context):
                if context.round > 0:
                    yield proposal
                    continue
                hyp = proposal.hypothesis
                program = str(hyp.program)
                name, loc = next((n, c) for n, c in hyp.correspondence.items() if c.component == "mlp")
                d_model = context.observations.flat(loc.hook).shape[1]
                wrong = Location(loc.hook, dims=tuple(d for d in range(d_model) if d not in loc.dims)[:2])
                claims, bars = self._claims[program]
                own = dataclasses.replace(claims[name][0], location=wrong)
                self._claims[program] = ({**claims, name: (own,)}, bars)
                self.moved = (name, wrong)
                wrong_hyp = Hypothesis(hyp.program, {**hyp.correspondence, name: wrong})
                yield dataclasses.replace(proposal, hypothesis=wrong_hyp)
                return

    walker = WrongFirst(thresholds=MatchThresholds())
    said: list[str] = []
    result = run(
        hist, out=tmp_path / "r", proposers=[walker], controls=NoControls(), budget_seconds=300,
        thresholds=Thresholds(prefilter_ablation=0.0), progress=said.append,  # every candidate fully checked
    )
    with open_run(tmp_path / "r") as store:
        first, *later = store.candidates()
    name, wrong = walker.moved
    assert first.round == 0 and first.correspondence[name] == str(wrong)
    assert first.status != "accepted" and first.scores["check"][f"iia[{name}]"] < Thresholds().iia
    assert [e.location for e in walker.excluded] == [wrong]  # the refuted explanation
    assert result.accepted and [c.round for c in later if c.status == "accepted"] == [1]  # the refined one
    assert any(m.startswith("round 1: ") for m in said)


def test_a_budget_spent_in_round_0_starts_no_round_1_and_scores_nothing_more(hist, tmp_path, monkeypatch):
    """The run's one deadline: a proposal offered after it is not scored, no later round starts, the
    residual stage is skipped, what was scored is kept and the run says it stopped on its budget.
    The clock is the run's own (interface.now), moved past the deadline by the first score."""
    from mechsynth.synth.propose import interface

    late = {"on": False}
    real_now = interface.now
    monkeypatch.setattr(interface, "now", lambda: real_now() + (1e6 if late["on"] else 0.0))

    class EveryRound:
        name = "every-round"

        def __init__(self):
            self.rounds = []

        def propose(self, context):
            self.rounds.append(context.round)
            for h in _wrong_hypotheses(3):
                yield Proposal(source=self.name, hypothesis=h)

    scored = []

    def fake_score(target, hypothesis):
        scored.append(str(hypothesis))
        late["on"] = True  # this unit finishes; nothing after it starts
        return {"behaviour": 0.5, "loss_recovered": 0.1, "iia": 0.2}

    proposer = EveryRound()
    result = run(hist, out=tmp_path / "b", proposers=[proposer], score_fn=fake_score, controls=NoControls(),
                 thresholds=Thresholds(prefilter_behaviour=0.0), budget_seconds=300)
    assert proposer.rounds == [0] and len(scored) == 1
    assert result.n_scored == 1 and result.stopped == "budget"
    with open_run(tmp_path / "b") as store:
        assert "residual" in store.timings()
        notes = [r[0] for r in store._db.execute("SELECT note FROM timings WHERE stage = 'residual'")]
    assert notes == ["skipped: the run's budget is spent"]


def test_feedback_proposers_go_before_the_walk_and_have_nothing_in_round_0(hist):
    """The walk's re-run can take a whole round's budget, so the proposers that refine a scored
    candidate (coarsen, DAS) must get their turn first; with no scored candidate yet they offer
    nothing, so round 0 still opens with the walk."""
    from mechsynth.synth.loop import RunOptions, default_proposers
    from mechsynth.synth.propose.interface import ProposalContext, has_more

    proposers, _ = default_proposers(RunOptions(no_llm=True))
    names = [p.name for p in proposers]
    walk = next(i for i, p in enumerate(proposers) if type(p).__name__ == "ModelGuidedProposer")
    for feedback in ("CoarsenProposer", "DASLocationProposer"):
        at = next(i for i, p in enumerate(proposers) if type(p).__name__ == feedback)
        assert at < walk, names
        assert not has_more(proposers[at], ProposalContext(hist, None)), feedback
