"""The benchmark harness (``mechsynth bench``): suites that run the engine, never part of it.

The engine never imports this package; only the CLI does.

Claims about the engine are only as good as the measurement behind them, so one
command measures everything the README quotes and writes it twice: ``BENCHMARKS.md``
(tables for people) and ``bench.json`` (every number, plus the machine, the library
versions and the git commit, for anyone who wants to check or re-plot).

Suites:

- **recovery** — for each target, run the synthesis loop under each *proposer
  configuration* with the same budget: (a) I/O-only enumeration (the same enumerator,
  no activations: what synthesis from input/output examples alone achieves), (b) the
  model-guided proposer, and, when an LLM endpoint is configured, (c) LLM only and
  (d) both; every run goes through the frivolous-circuit controls. A tracr run
  *recovers* when its top accepted hypothesis is equivalent to the ground truth at the
  right components (``synth.compare``); a trained target has no ground truth, so it
  counts when a hypothesis is accepted that clears the behaviour and loss-recovered
  bars of the synthesis issue. Optionally the ACDC/EAP peer (``synth.bench.acdc_peer``) runs
  on the same tracr targets.
- **controls** — the false-positive suite: what the engine accepts on networks that
  implement nothing (re-initialised and weight-shuffled copies), and the score gap.
- **perf** — each figure next to a ratio measured in the same process moments apart
  (a ratio survives a slower machine; a bare figure does not): enumerator distinct
  programs/s, interpreter throughput, the cost of one causal-scrubbing score as a
  multiple of one clean batched forward pass, time to recovery, peak RSS, and how
  time grows with model depth (1, 2, 4 layers) and with program size; and the Scale
  part: cost growth of observe, one score, the control stage and one run to GPT-2-small's
  shape (``growth``), scoring throughput vs workers, the suite's wall time per back end.

The suites' runs are jobs submitted to one executor (``executor``): inline, local
processes (``--jobs J``) or Ray (``--ray`` starts a local cluster, ``--ray-address``
joins one); every run's outcome is the same whichever back end ran it. ``--device``
puts every network on a device (``models.device``).

``--quick`` is a representative subset for CI; its recovery count is checked against
the committed floor in ``synth/bench/baseline.json`` (a measured number, written
from a real run by ``baseline.update_baseline``), so a regression fails CI without any
timed assertion.

Modules:

- ``suite`` — the bench as one run: ``cmd_bench`` (``mechsynth bench``), ``run_bench``,
  ``write_outputs``, the thin ``acdc_suite`` and ``controls_suite``, and ``main``
  (``python -m mechsynth.synth.bench.suite update-baseline DIR/bench.json``);
- ``plan`` — ``BenchPlan`` and ``make_plan``, the suites, proposer configurations and
  ``--quick`` targets, ``BenchError``, and the machine, versions, git commit and RSS;
- ``recovery`` — the recovery suite: ``recovery_suite``, ``run_one``, ``RecoveryResult``;
- ``perf`` — the perf suite: ``perf_suite`` and each of its measurements;
- ``executor`` — ``Job``, ``Executor`` and its back ends (inline, processes, Ray), ``make_executor``;
- ``growth`` — cost growth with network shape, throughput vs workers, suite wall time per back end;
- ``baseline`` — the CI floor: ``load_baseline``, ``check_baseline``, ``update_baseline``;
- ``render`` — BENCHMARKS.md from the results (``render_markdown``), one module per section;
- ``numeric`` — numbers in the results: parsing, finiteness, ratios, table formatting;
- ``log`` — progress lines on stderr and one-line error text;
- ``acdc_peer`` (ours) and ``acdc_worker`` (run in the auto-circuit venv) — the ACDC/EAP peer;
- ``baseline.json`` — the committed floor.
"""
