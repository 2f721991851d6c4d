"""mechsynth's synthesis engine: one place per stage of the loop.

    observe -> propose -> localize -> check -> control -> accept/report
    observe.py propose/   localize.py check/   control/   loop.py, store.py, report/

``propose/`` (model-guided walk, enumerator, LLM), ``check/`` (patching, behaviour, causal
scrubbing, interchange, scoring), ``control/`` (the frivolous-circuit controls and their
statistics), ``report/`` (report.md, ground-truth comparison, notebook tables and plots);
the benchmark harness is ``bench/``, which the engine never imports; ``cli.py`` is the
command line.

``synth.run(target)`` runs the loop; ``synth.score(target, hypothesis)`` runs the checks on
one hypothesis; ``synth.compare(hypothesis, ground_truth, target)`` says whether a
hypothesis recovers a known program and its locations.
"""

from mechsynth.dsl.errors import HypothesisError
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.accept import Thresholds
from mechsynth.synth.loop import RunError, RunOptions, run
from mechsynth.synth.check.patching import CheckError
from mechsynth.synth.report.recovery import Recovery, compare
from mechsynth.synth.check.scoring import Scores, format_scores, resample_ablation_score, score
from mechsynth.synth.store import Run, RunStoreError, load_run

__all__ = [
    "CheckError", "Hypothesis", "HypothesisError", "Location", "Recovery", "Run",
    "RunError", "RunOptions", "RunStoreError", "Scores", "compare", "format_scores", "load_run",
    "resample_ablation_score", "run", "score", "Thresholds",
]
