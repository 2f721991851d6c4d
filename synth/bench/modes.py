"""Engine configurations the suites compare: which proposers a run gets and how many rounds.

A benchmark that says "the new search helps and costs no false positives" has to run the
engine with and without it at the same budget on the same targets. Each configuration here
is a name (the key in ``bench.json``), a label (the table's column) and :func:`mode_setup`,
the proposers and run options of one run:

- ``io_only`` — the enumerator alone: it sees the observed inputs and the network's outputs,
  nothing inside (what synthesis from input/output examples achieves);
- ``model_guided`` — the model-guided proposer alone, as shipped: scored matching with
  widening bars, refinement from the checks' feedback, until acceptance or the budget;
- ``exact_walk`` — the engine without the scored/anytime search: one layer walk at the exact
  bars (``MatchThresholds()``: every head, MLP and output matched exactly, as before issue
  #14), no widening, no refinement, no DAS relocation, then the enumerator; one round
  (``RunOptions.rounds=1``). The walk's step functions are today's, so mechanisms added to
  them that still fire at exact bars (an exact output relabelling, say) are in it; what is
  off is everything that makes the search scored and anytime;
- ``engine`` — the shipped default (model-guided search, DAS relocation, enumerator; what
  ``mechsynth run --no-llm`` runs);
- ``llm_only`` / ``both`` — the LLM proposer alone, or with the model-guided one (need an
  LLM endpoint).

The controls are the loop's default in every configuration: only the search differs.
"""

from __future__ import annotations

from typing import Any

from mechsynth.synth.bench.plan import MODE_LABELS, BenchError


def mode_setup(mode: str) -> tuple[list[Any] | None, dict[str, Any]]:
    """(fresh proposers, extra run options) for one configuration; proposers None is the default set.

    Proposers keep per-run state, so each run gets new objects.
    """
    from mechsynth.synth.propose.enumerate import EnumerativeProposer
    from mechsynth.synth.propose.model_guided import ModelGuidedProposer

    if mode == "io_only":
        return [EnumerativeProposer()], {}
    if mode == "model_guided":
        return [ModelGuidedProposer()], {}
    if mode == "exact_walk":
        from mechsynth.synth.propose.guided_state import MatchThresholds

        return [ModelGuidedProposer(thresholds=MatchThresholds()), EnumerativeProposer()], {"rounds": 1}
    if mode == "engine":
        return None, {}
    from mechsynth.synth.propose.llm import LLMProposer

    if mode == "llm_only":
        return [LLMProposer()], {}
    if mode == "both":
        return [ModelGuidedProposer(), LLMProposer()], {}
    raise BenchError(f"unknown proposer configuration {mode!r} (known: {', '.join(MODE_LABELS)})")
