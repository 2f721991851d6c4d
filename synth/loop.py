"""The synthesis loop: observe -> propose -> localize -> check -> controls -> accept, all stored.

One *run* explains one target. The stages are plain objects passed in (or defaulted):

* **observe** (:mod:`synth.observe`): activations and attention patterns on every input
  of each length (or a seeded sample);
* **propose** — a list of proposers (:mod:`synth.propose.interface` interface): the model-guided
  proposer (:mod:`synth.propose.model_guided`), the I/O-only enumerator
  (:class:`synth.propose.enumerate.EnumerativeProposer`) and, unless ``no_llm``, the LLM proposer
  (:mod:`synth.propose.llm`). Exhaustive proposers (the enumerator) run once; the others
  are asked again each round with the best candidates so far (the model-guided walk widens
  its match bars and re-explains the components whose variables failed interchange), until no
  proposer has anything more to offer (:func:`synth.propose.interface.has_more`), the
  optional round cap or the budget;
* **localize** (:mod:`synth.localize`): proposals without a correspondence get one;
* **check** — first a cheap *prefilter* (the program's output against the network's on
  the observed inputs, then the checks' node-level resample ablation), then the full
  checks (:func:`synth.check.scoring.score`: behaviour, causal scrubbing, interchange) on
  fresh inputs;
* **controls** — a pluggable stage (:class:`Controls`); the default is the full
  frivolous-circuit controls (:class:`synth.control.stage.LoopControls` seeded with the run's
  seed); :class:`NoControls` (opt-in, for exploration) passes everything through and says
  so in the report;
* **accept** — every named threshold in :class:`synth.accept.Thresholds` must hold.

Every candidate, whatever happens to it, is a row of the run store (:mod:`synth.store`)
with its source, status and reason, and every number is stored with it, committed as
soon as it exists. The loop stops at the first accepted hypothesis (``stop_on_accept``)
or when the time budget runs out. Rerunning with the same arguments resumes: stored
candidates are not scored again. Ctrl-C leaves the store consistent; the CLI's ``run``
turns it into one line and exit code 130.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.synth.accept import (
    SCORED, UNDEFINED, CandidateStatus, ControlVerdict, Thresholds, number, strength, undefined_note,
)
from mechsynth.synth.propose.interface import Proposal, ProposalContext, ScoredCandidate, has_more
from mechsynth.synth.store import EXPLANATION_PREFIX, Run, RunStore, candidate_key, config_hash, load_run

if TYPE_CHECKING:
    from mechsynth.models import Target

EXIT_INTERRUPTED = 130


class RunError(ValueError):
    """A run that cannot start (bad options)."""


# --- options ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """Everything that determines what a run proposes and how it scores (stored with the run)."""

    seed: int = 0
    budget_seconds: float = 300.0
    no_llm: bool = False
    per_length: int = 256  # observed inputs per length (all of them when fewer exist)
    n_score: int = 256  # inputs per full check
    max_candidates: int = 500  # candidates (of all proposers) per run
    rounds: int | None = None  # cap on rounds; None: until the budget or no proposer has more
    stop_on_accept: bool = True
    threads: int = 1  # torch threads for the synthesis stages (small tensors: 1 is fastest)
    thresholds: Thresholds = field(default_factory=Thresholds)
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_max_calls: int = 8
    llm_max_tokens: int = 200_000
    residual_seconds: float = 120.0  # time for the residual stage after the search (0: no residual stage)

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "thresholds"}
        out["thresholds"] = _thresholds_json(self.thresholds)
        return out

    def check_config(self) -> str:
        """What decides a candidate's verdict: a stored verdict is reused only under the same config."""
        return config_hash(
            {
                "n_score": self.n_score,
                "seed": self.seed,
                "thresholds": self.thresholds.check_json(),
                "per_length": self.per_length,
            }
        )


# --- controls (pluggable) ---------------------------------------------------------------------------
class Controls(Protocol):
    """The controls stage: every candidate that meets the thresholds goes through it."""

    name: str

    def check(
        self,
        target: Target,
        hypothesis: Hypothesis,
        scores: Mapping[str, Any],
        *,
        n_tested: int,
        deadline: float | None,
    ) -> ControlVerdict: ...


@dataclass(frozen=True)
class NoControls:
    """Pass-through: no frivolous-circuit controls are run (the report says so)."""

    name: str = "no-controls (pass-through)"

    def check(
        self,
        target: Target,
        hypothesis: Hypothesis,
        scores: Mapping[str, Any],
        *,
        n_tested: int,
        deadline: float | None,
    ) -> ControlVerdict:
        return ControlVerdict(True, "no controls configured: pass-through")


# --- the loop -----------------------------------------------------------------------------------
def safe_name(target_name: str) -> str:
    """A target's name as a folder name (``tracr:reverse`` -> ``tracr_reverse``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", target_name).strip("_")


def default_out(target_name: str, seed: int) -> Path:
    return Path("runs") / f"{safe_name(target_name)}-seed{seed}"


def default_proposers(options: RunOptions) -> tuple[list[Any], str]:
    """Model-guided, coarsening and DAS relocation of failing variables, I/O enumeration, then
    (unless ``no_llm``) the LLM. Returns a status line."""
    from mechsynth.synth.propose.enumerate import EnumerativeProposer
    from mechsynth.synth.propose.model_guided import ModelGuidedProposer

    from mechsynth.synth.propose.coarsen import CoarsenProposer
    from mechsynth.synth.propose.das_location import DASLocationProposer

    # Feedback proposers first: they refine a scored candidate and have nothing in round 0, so the
    # walk still opens the run; in later rounds they go before the walk's re-run, which can take the
    # whole remaining budget (trained:dyck1_next: 149 s at load 3.4, leaving DAS no turn).
    # Coarsening is cheap (no fit): its proposals are scored before DAS reads the feedback.
    proposers: list[Any] = [
        CoarsenProposer(), DASLocationProposer(), ModelGuidedProposer(), EnumerativeProposer()
    ]
    status = "LLM proposer off (--no-llm)"
    if not options.no_llm:
        from mechsynth.synth.propose.llm import LLMProposer

        llm = LLMProposer(
            model=options.llm_model,
            base_url=options.llm_base_url,
            max_calls=options.llm_max_calls,
            max_tokens=options.llm_max_tokens,
        )
        status = llm.status_line
        if llm.enabled:
            proposers.append(llm)
    return proposers, status


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    # The synthesis stages run many small tensor ops, for which intra-op threads cost more
    # than they give (and contend with other processes); restore the setting afterwards.
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


ProgressFn = Callable[[str], None]


def run(
    target: Target | str,
    *,
    out: str | Path | None = None,
    proposers: Sequence[Any] | None = None,
    controls: Controls | None = None,
    score_fn: Callable[..., Mapping[str, Any]] | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Run:
    """Synthesise hypotheses for ``target`` and return the stored run (see the module docstring).

    ``options`` are :class:`RunOptions` fields (``seed``, ``budget_seconds``, ``no_llm``,
    ``thresholds``, ...). ``proposers``/``controls``/``score_fn`` replace the default stages
    (for experiments and tests); ``controls`` defaults to every frivolous-circuit control
    (``NoControls()`` opts out). ``progress`` receives one-line status updates.
    """
    from mechsynth.models import load_target

    unknown = sorted(set(options) - set(RunOptions.__dataclass_fields__))
    if unknown:
        raise RunError(f"unknown run option {unknown[0]!r}")
    opts = RunOptions(**options)
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
        raise RunError(f"seed must be an integer >= 0, got {opts.seed!r}")  # numpy refuses negative seeds
    if isinstance(target, str):
        target = load_target(target)
    out_dir = Path(out) if out is not None else default_out(target.name, opts.seed)
    if controls is None:
        from mechsynth.synth.control.stage import loop_controls

        controls = loop_controls(opts.seed, opts.thresholds)
    say = progress or (lambda _msg: None)
    store = RunStore(out_dir)
    try:
        args = {
            "target": target.name,
            "options": opts.to_json(),
            "proposers": [p.name for p in proposers] if proposers is not None else "default",
            "controls": controls.name,
        }
        resumed = store.begin(args)
        with torch_threads(opts.threads):
            _Loop(target, store, opts, proposers, controls, score_fn, say, resumed).run()
    finally:
        try:
            write_report(store)
        finally:
            store.close()
    return load_run(out_dir)


class _Loop:
    def __init__(
        self,
        target: Target,
        store: RunStore,
        opts: RunOptions,
        proposers: Sequence[Any] | None,
        controls: Controls,
        score_fn: Callable[..., Mapping[str, Any]] | None,
        say: ProgressFn,
        resumed: bool,
    ) -> None:
        self.target = target
        self.store = store
        self.opts = opts
        self.controls = controls
        self.say = say
        self.resumed = resumed
        self.usage_before: dict[str, list[Any]] = {}  # proposer usage stored by earlier invocations
        self.check_config = opts.check_config()
        self._score_fn = score_fn
        self._proposers = proposers
        self.best: list[ScoredCandidate] = []
        self.accepted = 0
        self.seen: set[str] = set()
        self.round = 0
        self.start = time.monotonic()
        self.deadline = self.start + opts.budget_seconds

    # --- stages --------------------------------------------------------------------------------
    def run(self) -> None:
        from mechsynth.synth.observe import observe

        store, opts = self.store, self.opts
        if self._proposers is None:
            proposers, status = default_proposers(opts)
        else:
            proposers, status = list(self._proposers), "proposers given by the caller"
        store.set_meta(proposer_status=status, controls=self.controls.name)
        self.say(status)
        if self.resumed:
            self.say(f"resuming: {store.count()} candidates already stored")
        stopped = "proposers exhausted"
        try:
            t0 = time.monotonic()
            self.say("observe: running the target on sampled inputs")
            self.observations = observe(self.target, per_length=opts.per_length, seed=opts.seed)
            store.add_timing(
                "observe",
                time.monotonic() - t0,
                f"{self.observations.n_inputs} inputs, {self.observations.n_positions} positions",
            )
            for rnd in itertools.count():
                if opts.rounds is not None and rnd >= max(1, opts.rounds):
                    break
                self.round = rnd
                active = [p for p in proposers if has_more(p, self.context(rnd))]
                if not active:
                    break
                offered = new = 0  # proposals made this round (new or already seen), new ones
                for proposer in active:
                    t0 = time.monotonic()
                    for proposal in proposer.propose(self.context(rnd)):
                        offered += 1
                        new += self.handle(proposal, rnd)
                        if self.done():
                            break
                    store.add_timing(f"propose:{proposer.name}", time.monotonic() - t0, f"round {rnd}")
                    self.record_usage(proposer)
                    self.record_explanation(proposer)
                    if self.done():
                        break
                best = _fmt(self.best[0].scores.get("strength")) if self.best else "-"
                self.say(f"round {rnd}: {offered} proposals ({new} new); best so far {best}")
                # A round that offers nothing is no reason to stop: a later one may widen or refine.
                if self.done():
                    break
            if opts.residual_seconds > 0:
                self.residual_stage()
            if self.accepted and opts.stop_on_accept:
                stopped = "accepted"
            elif time.monotonic() > self.deadline:
                stopped = "budget"
            elif store.count() >= opts.max_candidates:
                stopped = "candidate limit"
        except KeyboardInterrupt:
            stopped = "interrupted"
            raise
        finally:
            for proposer in proposers:
                self.record_usage(proposer)  # an interrupted round's calls are kept too
            seconds = time.monotonic() - self.start
            store.add_timing("total", seconds, stopped)
            store.set_meta(stopped=stopped, last_seconds=seconds)

    def residual_stage(self) -> None:
        """Explain what the best hypothesis leaves unexplained (:mod:`synth.propose.residual`).

        The accepted hypothesis (else the best one whose behaviour passed the prefilter) is
        compared with the network on broad inputs; a significant trigger rule over the disagreement
        becomes the candidate ``out = rule ? forced : clean``, scored by the same checks and controls
        (its new variables localized, the clean part keeping its correspondence). The search's
        numbers are stored in the run's meta (``residual``) and shown in the report.
        """
        from mechsynth.synth.propose.residual import BRANCH_PREFIX, residual_search, with_trigger_branch

        th = self.opts.thresholds
        pool = [c for c in self.best if c.accepted] or [
            c for c in self.best if c.scores.get("behaviour_observed", 0.0) >= th.prefilter_behaviour]
        if not pool:
            return
        top = pool[0]
        if any(n.startswith(BRANCH_PREFIX) for n in top.hypothesis.program.variables):
            return  # already a branch (a resumed run)
        self.deadline = max(self.deadline, time.monotonic() + self.opts.residual_seconds)
        t0 = time.monotonic()
        self.say("residual: comparing the best hypothesis with the network on broad inputs")
        residual = residual_search(self.target, top.hypothesis, seed=self.opts.seed)
        info = {"of": str(top.hypothesis.program.output), "accepted": top.accepted, **residual.to_json()}
        self.store.set_meta(residual=info)
        self.store.add_timing("residual", time.monotonic() - t0, residual.reason)
        self.say(f"residual: {residual.found_by()}; {residual.reason}")
        if residual.rule is None:
            return
        values = list(self.target.task.output_vocab) or sorted(
            {v for g in self.observations.groups for row in g.outputs for v in row if v is not None}, key=str)
        branch = with_trigger_branch(top.hypothesis, residual.rule, values)
        new = [n for n in branch.program.variables if n not in top.hypothesis.program.variables]
        located = self.localize(Hypothesis(branch.program))
        corr = dict(top.hypothesis.correspondence)
        corr.update({n: loc for n, loc in located.correspondence.items() if n in new})
        options = [corr]
        clean_out, out = top.hypothesis.program.output, branch.program.output
        if clean_out in corr and out not in corr:
            # The component that wrote the clean output writes the network's output, trigger included:
            # the second reading claims the branch there (the clean output then lives nowhere in particular).
            moved = {k: v for k, v in corr.items() if k != clean_out}
            options.append({**moved, out: corr[clean_out]})
        elif out not in corr and not getattr(self.target.model.cfg, "attn_only", False):
            # Neither output is located (the clean one lives nowhere in particular): the third reading
            # claims the branch at the last MLP, which writes into the residual stream last before the
            # unembedding. Without a located branch, no edit can act on it; the checks decide.
            from mechsynth.dsl.location import Location, act_name

            last = int(self.target.model.cfg.n_layers) - 1
            options.append({**corr, out: Location(act_name("mlp_out", last))})
        for c in options:
            self.handle(Proposal("residual", Hypothesis(branch.program, c), meta={"residual": info}),
                        self.round + 1)

    def context(self, rnd: int) -> ProposalContext:
        """What a proposer sees in round ``rnd``: the best candidates scored so far."""
        opts = self.opts
        best = tuple(self.best[:8])
        return ProposalContext(self.target, self.observations, best, self.deadline, opts.seed, rnd)

    def record_usage(self, proposer: Any) -> None:
        """Store what a proposer reports it used (``usage()``), one entry per invocation of the run."""
        usage = getattr(proposer, "usage", None)
        if usage is None:
            return
        key = f"usage:{proposer.name}"
        if key not in self.usage_before:
            self.usage_before[key] = list(self.store.meta().get(key) or []) if self.resumed else []
        self.store.set_meta(**{key: [*self.usage_before[key], usage()]})

    def record_explanation(self, proposer: Any) -> None:
        """Store a proposer's partial explanation (``explanation()``), component by component.

        It is what a run reports when no whole hypothesis is accepted: which components the
        proposer explained, with what and how well, and why the others are not.
        """
        explain = getattr(proposer, "explanation", None)
        parts = explain() if explain is not None else None
        if parts:
            self.store.set_meta(**{EXPLANATION_PREFIX + proposer.name: [p.to_json() for p in parts]})

    def done(self) -> bool:
        if self.accepted and self.opts.stop_on_accept:
            return True
        return time.monotonic() > self.deadline or self.store.count() >= self.opts.max_candidates

    def handle(self, proposal: Proposal, rnd: int) -> int:
        """Store one proposal with its verdict; returns 1 when it was new to this invocation."""
        store = self.store
        hyp = proposal.hypothesis
        if hyp is None:
            text = proposal.text or proposal.error or ""
            key = candidate_key("rejected:" + proposal.source + ":" + text, self.check_config)
            if key in self.seen:
                return 0
            self.seen.add(key)
            if store.lookup(key) is None:
                store.add_candidate(
                    key,
                    program=text,
                    correspondence={},
                    source=proposal.source,
                    status=CandidateStatus.REJECTED,
                    reason=proposal.error or "no hypothesis",
                    round=rnd,
                    meta=_json_meta(proposal.meta),
                )
            return 1
        if not hyp.correspondence:
            hyp = self.localize(hyp)
        key = candidate_key(str(hyp), self.check_config)
        if key in self.seen:
            return 0
        self.seen.add(key)
        stored = store.lookup(key)
        if stored is not None:
            self.remember(hyp, stored.source, stored.flat_scores(), stored.status, stored.reason)
            if stored.status == CandidateStatus.ACCEPTED:
                self.accepted += 1
            return 1
        t0 = time.monotonic()
        status, reason, scores = self.check(hyp)
        if status == CandidateStatus.PASSED:
            verdict = self.controls.check(
                self.target,
                hyp,
                scores.get("check", {}),
                n_tested=self.n_tested() + 1,
                deadline=self.deadline,
            )
            scores["controls"] = dict(verdict.numbers)
            status = CandidateStatus.ACCEPTED if verdict.passed else CandidateStatus.FAILED
            reason = verdict.reason
        store.add_candidate(
            key,
            program=str(hyp.program),
            correspondence={k: str(v) for k, v in hyp.correspondence.items()},
            source=proposal.source,
            status=status,
            reason=reason,
            round=rnd,
            seconds=time.monotonic() - t0,
            scores=scores,
            meta=_json_meta(proposal.meta),
        )
        flat = {**scores.get("prefilter", {}), **scores.get("check", {})}
        self.remember(hyp, proposal.source, flat, status, reason)
        if status == CandidateStatus.ACCEPTED:
            self.accepted += 1
        self.say(
            f"[{self.n_tested()} scored] {proposal.source}: {status} ({reason}); "
            f"best {_fmt(self.best[0].scores.get('strength')) if self.best else '-'}"
        )
        return 1

    def n_tested(self) -> int:
        return self.store.count(*SCORED)

    def remember(
        self, hyp: Hypothesis, source: str, scores: Mapping[str, Any], status: str, reason: str
    ) -> None:
        s = _numeric_scores(scores)  # with iia[VAR] per variable: the proposers' feedback
        s["strength"] = strength(s)
        self.best.append(ScoredCandidate(hyp, source, s, status == CandidateStatus.ACCEPTED, reason or None))
        self.best.sort(key=lambda c: -c.scores["strength"])
        del self.best[16:]

    def localize(self, hyp: Hypothesis) -> Hypothesis:
        from mechsynth.synth.localize import default_thresholds, localize

        t0 = time.monotonic()
        located, _ = localize(hyp.program, self.observations, default_thresholds(self.target))
        self.store.add_timing("localize", time.monotonic() - t0)
        return located

    def check(self, hyp: Hypothesis) -> tuple[str, str, dict[str, dict[str, Any]]]:
        """Prefilter, then full checks. Status 'passed' means every threshold held (controls next)."""
        th = self.opts.thresholds
        scores: dict[str, dict[str, Any]] = {}
        t0 = time.monotonic()
        try:
            agreement = self.observed_behaviour(hyp)
        except ValueError as e:
            return CandidateStatus.REJECTED, f"cannot evaluate the program: {_one_line(e)}", scores
        scores["prefilter"] = {"behaviour_observed": agreement}
        if agreement < th.prefilter_behaviour:
            self.store.add_timing("prefilter", time.monotonic() - t0)
            return (
                CandidateStatus.FILTERED,
                f"behaviour on observed inputs {agreement:.3f} < {th.prefilter_behaviour}",
                scores,
            )
        if self._score_fn is None:
            try:
                from mechsynth.synth.check.scoring import resample_ablation_score

                pre = resample_ablation_score(
                    self.target, hyp, n=min(128, self.opts.n_score), seed=self.opts.seed
                )
                ablation = number(pre.get("ablation_loss_recovered"))
                scores["prefilter"]["ablation_loss_recovered"] = ablation
                if ablation < th.prefilter_ablation:
                    self.store.add_timing("prefilter", time.monotonic() - t0)
                    return (
                        CandidateStatus.FILTERED,
                        f"ablation loss recovered {_fmt(ablation)} < {th.prefilter_ablation}",
                        scores,
                    )
            except ValueError as e:
                self.store.add_timing("prefilter", time.monotonic() - t0)
                return CandidateStatus.ERROR, f"prefilter failed: {_one_line(e)}", scores
        self.store.add_timing("prefilter", time.monotonic() - t0)
        t0 = time.monotonic()
        try:
            full = self.score(hyp)
        except ValueError as e:
            self.store.add_timing("check", time.monotonic() - t0)
            return CandidateStatus.ERROR, f"check failed: {_one_line(e)}", scores
        self.store.add_timing("check", time.monotonic() - t0)
        scores["check"] = _numeric_scores(full)
        failures = th.failures(scores["check"])
        if failures:
            return CandidateStatus.FAILED, "; ".join(failures), scores
        return CandidateStatus.PASSED, "every threshold holds", scores

    def score(self, hyp: Hypothesis) -> Mapping[str, Any]:
        if self._score_fn is not None:
            return self._score_fn(self.target, hyp)
        from mechsynth.synth.check.scoring import score

        return score(self.target, hyp, n=self.opts.n_score, seed=self.opts.seed + 1)

    def observed_behaviour(self, hyp: Hypothesis) -> float:
        """Agreement of the program's output with the network's on the observed inputs."""
        from mechsynth.dsl.interpret import decode, dtypes, encode
        from mechsynth.dsl.interpret import run as run_program
        from mechsynth.synth.check.behaviour import compare_outputs

        obs = self.observations
        batch = encode(obs.all_inputs(), symbols=hyp.program.literals())
        values = run_program(hyp.program, batch)
        got = decode(values[hyp.program.output], dtypes(hyp.program)[hyp.program.output], batch)
        net = [list(row) for g in obs.groups for row in g.outputs]
        # The observations hold the network's output at the read positions only (None elsewhere).
        readouts = [[i for i, v in enumerate(row) if v is not None] for row in net]
        c = compare_outputs(net, got, readouts, obs.output_kind)
        read, total = sum(c.read), sum(c.compared)
        if not read or total < 0.5 * read:
            return 0.0
        return sum(c.agree) / total


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _numeric_scores(scores: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in scores.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
        elif k in UNDEFINED.values() and isinstance(v, str) and v:
            out[k] = v  # the reason a score is undefined, in words (synth.accept.undefined_scores)
        elif k == "iia_per_variable" and isinstance(v, Mapping):
            for var, x in v.items():
                if isinstance(x, (int, float)):
                    out[f"iia[{var}]"] = float(x)
    return out


def _json_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(meta), default=str))
    except (TypeError, ValueError):
        return {}


# --- reporting ------------------------------------------------------------------------------------
def write_report(store: RunStore) -> Path:
    from mechsynth.synth.report.markdown import render_report

    path = store.dir / "report.md"
    try:
        path.write_text(render_report(store))
    except OSError as e:
        from mechsynth.synth.store import RunStoreError, is_disk_full

        if is_disk_full(e):  # the database keeps what it committed; say what happened in one line
            raise RunStoreError(f"disk full: cannot write {path}; every candidate committed is kept in "
                                "run.sqlite (free space and rerun the same command)") from None
        raise
    return path


def summary_text(result: Run) -> str:
    lines = [
        f"target {result.target}: {len(result.accepted)} accepted, {result.n_scored} scored "
        f"({result.n_candidates} candidates) in {result.seconds:.1f}s; stopped: {result.stopped}",
        f"run directory: {result.dir}",
    ]
    for a in result.accepted:
        s = a.scores
        note = undefined_note(s)
        loss = f"({note})" if note else f"loss recovered {_fmt(s.get('loss_recovered'))}"
        lines.append(
            f"accepted ({a.source}): behaviour {_fmt(s.get('behaviour'))}, {loss}, iia {_fmt(s.get('iia'))}"
        )
        lines += ["    " + line for line in str(a.hypothesis).splitlines()]
    if not result.accepted:
        for source, parts in result.explanations.items():
            unexplained = [p for p in parts if p.get("status") != "explained"]
            lines.append(
                f"partial explanation ({source}): {len(parts) - len(unexplained)} of {len(parts)} "
                "components explained (report.md lists each)"
                + "".join(f"\n    {p.get('component')}: {p.get('reason')}" for p in unexplained[:4])
            )
    return "\n".join(lines)


def _thresholds_json(thresholds: Thresholds) -> dict[str, Any]:
    """The check thresholds, and every other threshold the run changed from its default.

    What a run records (and must match on resume): the defaults add nothing, so a run made
    before the thresholds were one type resumes unchanged.
    """
    default = Thresholds().to_json()
    changed = {k: v for k, v in thresholds.to_json().items() if v != default[k]}
    return thresholds.check_json() | changed
