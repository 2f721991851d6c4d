"""The `mechsynth` command line.

Each subcommand is a thin shell over the Python API (the same calls a notebook
makes): parse arguments, call the stage, print a table or ``--json``. Bad input
(unknown target, unreadable hypothesis file, corrupt run directory, ...) is
reported as one line on stderr with exit code 2 — never a traceback; ``--debug``
shows the traceback for bug reports. Ctrl-C exits with code 130 after the run
store has committed everything already scored; rerunning the same command resumes.

Argument values are checked here, before any slow work (loading a tracr target takes
seconds): a negative budget or a run directory that cannot be written fails at once.
Errors raised deeper down (the DSL parser, the target loaders, the checks, the run store)
are typed exceptions whose first line is already the message; the CLI only prefixes the
subcommand, and for hypothesis files names the file and turns the program block's
line/column into the file's own (1-based, as editors count).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn
from collections.abc import Callable, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(ValueError):
    """A user-facing error raised by the CLI itself."""


def _strict_json(data: Any) -> Any:
    # NaN/inf are not JSON; strict readers (jq, JSON.parse) reject them, so they become null.
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(k): _strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_strict_json(v) for v in data]
    if data is None or isinstance(data, (str, int, bool)):
        return data
    return str(data)


def _print_json(data: object) -> None:
    print(json.dumps(_strict_json(data), indent=2, sort_keys=False, allow_nan=False))


# --- subcommands ------------------------------------------------------------------------------


def cmd_targets(args: argparse.Namespace) -> int:
    from mechsynth.models import list_targets

    rows = [row.to_json() for row in list_targets()]
    if args.json:
        _print_json(rows)
        return 0
    columns = ["name", "kind", "layers", "heads", "d_model", "accuracy", "train_seconds", "description"]
    table = [[_fmt(r.get(c)) for c in columns] for r in rows]
    print(_format_table(columns, table))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """What a user must see before synthesis: architecture, encoding, accuracy, mistakes."""
    from mechsynth.models import load_target
    from mechsynth.models.preflight import format_preflight, preflight

    target = load_target(args.target, device=args.device)
    report = preflight(target, n=args.n, seed=args.seed, n_wrong=args.wrong)
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_preflight(report))
    return 0


def read_hypothesis_file(path: str | Path) -> Any:
    """Parse a hypothesis file; every failure is a CLIError naming the file (and line, column)."""
    from mechsynth.dsl.errors import HypothesisError
    from mechsynth.dsl.hypothesis import Hypothesis

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the text
    except OSError as e:
        raise CLIError(f"cannot read hypothesis file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CLIError(f"hypothesis file {path} is not UTF-8 text") from None
    try:
        return Hypothesis.parse(text)
    except (HypothesisError, ValueError) as e:
        raise CLIError(f"{path}: {_hypothesis_error_text(e, text)}") from None


def _hypothesis_error_text(e: BaseException, text: str) -> str:
    """The error's first line, with a program parse error placed at its line/column in the file.

    Hypothesis.parse hands the program block (dedented) to the DSL parser, whose ParseError
    counts lines from the block's first line and columns from 0; a user reading the file
    wants the file's line and the 1-based column their editor shows.
    """
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    cause = e.__cause__ or e.__context__
    line, col, detail = (getattr(cause, k, None) for k in ("line", "col", "detail"))
    if not isinstance(line, int) or not detail:
        return message
    lines = text.splitlines()
    header = next((i for i, raw in enumerate(lines) if raw.split("#", 1)[0].strip() == "program:"), None)
    if header is None or header + line >= len(lines) + 1:
        return message
    body: list[str] = []
    for raw in lines[header + 1:]:
        if raw.split("#", 1)[0].strip() == "correspondence:":
            break
        body.append(raw.split("#", 1)[0].rstrip())
    indent = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
    where = f"line {header + line + 1}"
    if isinstance(col, int):
        where += f", column {col + indent + 1}"
    return f"{where}: {detail}"


def cmd_score(args: argparse.Namespace) -> int:
    from mechsynth.models import load_target
    from mechsynth.synth.loop import torch_threads
    from mechsynth.synth.check.scoring import format_scores, score

    hypothesis = read_hypothesis_file(args.hypothesis)
    target = load_target(args.target, device=args.device)
    with torch_threads(1):  # as in the loop: small batched passes, where extra threads only cost
        scores = score(target, hypothesis, n=args.n, seed=args.seed, ablation=args.ablation)
    if args.json:
        _print_json({"target": args.target, "hypothesis": hypothesis.to_json(), "scores": scores.to_json()})
    else:
        print(format_scores(scores))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Synthesise, check and control hypotheses for one target; the run directory is the record."""
    from mechsynth.models import load_target
    from mechsynth.synth.heartbeat import Heartbeat
    from mechsynth.synth.interrupt import reliable_sigint
    from mechsynth.synth.loop import default_out, run, summary_text

    created = _prepare_run_dir(Path(args.out)) if args.out is not None else []
    quiet = bool(args.json)

    def say(msg: str) -> None:
        if not quiet:
            print(f"mechsynth run: {msg}", file=sys.stderr, flush=True)

    # Speaks up when a phase is silent for long: loading (tens of seconds for some tracr targets),
    # observation, enumeration, the controls. Silent otherwise, so a bad spec stays one line.
    progress = Heartbeat(say)
    progress.phase(f"loading {args.target}")
    try:
        with progress:
            target = load_target(args.target, device=args.device)
    except BaseException:
        _remove_empty(created)  # a typo in the target spec leaves no empty run directory behind
        raise
    out = Path(args.out) if args.out is not None else default_out(target.name, args.seed)
    options: dict[str, Any] = {
        "seed": args.seed,
        "budget_seconds": args.budget_seconds,
        "no_llm": args.no_llm,
    }
    for name in ("llm_model", "llm_base_url", "llm_max_calls", "llm_max_tokens"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    proposers = None
    if args.proposers:
        proposers, status = _proposers(args.proposers, options)
        progress(f"proposers {','.join(p.name for p in proposers)}; {status}")  # is the LLM on?
    try:
        with reliable_sigint(), progress:  # one Ctrl-C always stops the run, even inside jax's gc callback
            result = run(target, out=out, proposers=proposers, controls=_controls(args), progress=progress,
                         **options)
    except KeyboardInterrupt:
        print(
            f"mechsynth run: interrupted; everything scored so far is stored in {out} "
            "(rerun the same command to resume)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if quiet:
        _print_json(result.to_json())
    else:
        print(summary_text(result))
        print(f"controls: {result.args.get('controls', '-')}")  # what "accepted" was conditional on
    return 0


PROPOSER_NAMES = ("model-guided", "coarsen", "das", "enumerator", "llm")


def _proposers(names: Sequence[str], options: dict[str, Any]) -> tuple[list[Any], str]:
    """The default proposers restricted to ``names`` (in the default order), and the LLM's status."""
    from mechsynth.synth.loop import RunOptions, default_proposers

    proposers, status = default_proposers(RunOptions(**options))
    available = {p.name for p in proposers}
    missing = [n for n in names if n not in available]
    if "llm" in missing:
        raise CLIError(f"--proposers asks for llm, which is not available ({status})")
    if missing:
        raise CLIError(f"proposer {missing[0]!r} is not available (have: {', '.join(sorted(available))})")
    return [p for p in proposers if p.name in names], status


def _proposer_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PROPOSER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(PROPOSER_NAMES)}, got {text!r}"
        )
    return names


def _controls(args: argparse.Namespace) -> Any:
    """The frivolous-circuit controls stage (the loop's pass-through for --no-controls)."""
    if args.no_controls:
        from mechsynth.synth.loop import NoControls

        return NoControls()
    from mechsynth.synth.accept import Thresholds
    from mechsynth.synth.control.stage import loop_controls

    return loop_controls(args.seed, Thresholds(alpha=args.alpha), edge_popup=args.edge_popup)


def _prepare_run_dir(out: Path) -> list[Path]:
    """Fail fast on a run directory that cannot be used, before the target loads (seconds).

    Creates what is missing and proves it writable (permission bits say nothing for root);
    returns the directories it created so a failed start can remove them again. The run
    store re-checks all of this when it opens.
    """
    from mechsynth.synth.store import DB_NAME, RunStore

    if out.exists() and not out.is_dir():
        raise CLIError(f"run directory {out} is a file, not a directory")
    if (out / DB_NAME).exists():
        RunStore(out, create=False).close()  # corrupt or foreign database: RunStoreError
        return []
    return _writable_dir(out, "run directory")


def _remove_empty(directories: list[Path]) -> None:
    for d in directories:  # deepest first
        try:
            d.rmdir()
        except OSError:
            return


def cmd_show(args: argparse.Namespace) -> int:
    """A run's report.md (or, before the run wrote one, its summary); ``--json``: the run as JSON."""
    from mechsynth.synth.loop import load_run, summary_text

    result = load_run(args.run)
    if args.json:
        _print_json(result.to_json())
        return 0
    report = Path(args.run) / "report.md"
    print(report.read_text() if report.exists() else summary_text(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mechsynth.models.train import cmd_train as train_command
    from mechsynth.models.zoo import recipe

    from mechsynth.models.train import DEFAULT_OUT, output_path

    recipe(args.name)  # an unknown name is a TargetError naming the closest ones
    output_path(args.name, args.out, force=args.force)  # never the shipped checkpoint unasked
    _writable_dir(Path(args.out) if args.out is not None else DEFAULT_OUT, "checkpoint directory")
    return train_command(args.name, seed=args.seed, out=args.out, force=args.force)


def cmd_bench(args: argparse.Namespace) -> int:
    from mechsynth.synth.bench.suite import cmd_bench as bench_command

    _writable_dir(Path(args.out), "benchmark directory")  # before the suites run
    return bench_command(args)


def _writable_dir(path: Path, what: str) -> list[Path]:
    """Create ``path`` if needed and prove it writable; returns the directories it created."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"{what} {path} is a file, not a directory")
    missing = [d for d in (path, *path.parents) if not d.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _remove_empty(missing)
        raise CLIError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return missing


# --- using an accepted hypothesis (synth.use): predict, edit, replace ------------------------------


def _use_source(args: argparse.Namespace) -> tuple[Any, Any]:
    """(target, accepted hypothesis) of the run in ``args.run``."""
    from mechsynth.models import load_target
    from mechsynth.synth.use.inputs import accepted_hypothesis

    spec, hypothesis = accepted_hypothesis(args.run, args.candidate)
    return load_target(spec, device=args.device), hypothesis


def _use_command(args: argparse.Namespace, use: Callable[..., Any], fmt: Callable[[Any], str],
                 **kwargs: Any) -> int:
    """Run one synth.use stage on the run's accepted hypothesis and print its result."""
    from mechsynth.synth.loop import torch_threads

    target, hypothesis = _use_source(args)
    with torch_threads(1):  # as in the loop: small batched passes, where extra threads only cost
        result = use(target, hypothesis, seed=args.seed, **kwargs)
    if args.json:
        _print_json(result.to_json())
    else:
        print(fmt(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mechsynth.synth.use.predict import format_prediction, predict

    return _use_command(args, predict, format_prediction, count=args.count, n_search=args.n,
                        n_recall=args.n, steps=args.steps)


def cmd_edit(args: argparse.Namespace) -> int:
    from mechsynth.synth.use.edit import edit, format_edit, parse_edits

    edits = parse_edits(args.edit)  # before the target loads: a typo fails at once
    code = _use_command(args, edit, format_edit, edits=edits, n=args.n)
    if args.weights is None:
        return code
    from mechsynth.synth.use.weights import format_weight_edit, weight_edit

    def weights(target: Any, hypothesis: Any, **kw: Any) -> Any:
        return weight_edit(target, hypothesis, save=args.weights, **kw)[0]

    return _use_command(args, weights, format_weight_edit, edits=edits, n_eval=args.n)


def cmd_replace(args: argparse.Namespace) -> int:
    from mechsynth.synth.use.replace import format_replacement, replace

    return _use_command(args, replace, format_replacement, n=args.n, tracr=not args.no_tracr)


_EDIT_SYNTAX = """\
edit syntax (several edits separated by ';'; parsed by the DSL parser, never evaluated):
  VAR = EXPRESSION   redefine VAR, e.g. "reverse_selector = select(indices, indices, EQ)"
  VAR = OTHER        delete the branch computing VAR: it becomes a copy of the variable OTHER"""


def _add_use_parsers(sub: Any) -> None:
    """predict, edit and replace: each reads a run's accepted hypothesis (synth.use)."""

    def common(p: argparse.ArgumentParser, n: int) -> None:
        p.add_argument("run", metavar="RUN", help="run directory with an accepted hypothesis")
        p.add_argument("--candidate", type=_at_least(1), default=None, metavar="ID",
                       help="which accepted candidate (default: the first accepted)")
        p.add_argument("--n", type=_between(2, MAX_SCORE_INPUTS), default=n, help=f"inputs (default {n})")
        p.add_argument("--seed", type=_at_least(0), default=0, help="seed for the inputs, >= 0 (default 0)")
        p.add_argument("--json", action="store_true", help="print every number as JSON")
        _add_device(p)

    p = sub.add_parser(
        "predict", help="inputs on which the accepted program predicts the network is wrong, checked",
        description="Search inputs beyond the run's distribution (longer lengths, other token mixtures, "
        "program-guided mutation) for inputs where the accepted program differs from the task label, run "
        "the network on them, and report precision and recall against random sampling.")
    common(p, 4000)
    p.add_argument("--count", type=_at_least(1), default=100, metavar="K",
                   help="most predicted errors reported (default 100)")
    p.add_argument("--steps", type=_at_least(0), default=30,
                   help="program-guided mutation rounds (default 30)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "edit", help="change the accepted program and apply the change to the network at its locations",
        description="Apply EDIT to the accepted program and to the network at the claimed locations "
        "(activation patching from the edited program's values); report how often the edited network follows "
        "the edited program, and the original where the edit changes nothing.",
        epilog=_EDIT_SYNTAX, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p, 1000)
    p.add_argument("edit", metavar="EDIT", help="the edit, e.g. 'sel = select(indices, indices, EQ)'")
    p.add_argument("--weights", metavar="STEM", default=None,
                   help="also refit the MLP at the edit's location (synth.use.weights) and save the edited "
                   "network as STEM.safetensors/.json with a STEM.py loader (use it as file:STEM.py)")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser(
        "replace", help="the accepted program as a drop-in: agreement, cost, tracr compiled back",
        description="Compare the accepted program with the network on fresh, broader and beyond-the-task "
        "inputs, time both, and where the program is in tracr's fragment compile it and compare that too.")
    common(p, 1000)
    p.add_argument("--no-tracr", action="store_true", help="do not compile the program with tracr")
    p.set_defaults(func=cmd_replace)


# --- formatting helpers -------------------------------------------------------------------------


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _format_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# --- parser -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _seconds(text: str) -> float:
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


# Inputs per `score` check: each costs a few batched forward passes and their activations, so
# millions exhaust memory after minutes; far more than any statistic here needs.
MAX_SCORE_INPUTS = 100_000


def _between(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(text, int)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum} and <= {maximum:,}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def _probability(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text!r}")
    return value


def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


_EPILOG = """\
target specs:
  tracr:<name>     a tracr library program compiled to a transformer (ground truth known)
  trained:<name>   a small transformer trained by mechsynth (see 'mechsynth train')
  file:<path.py>   your own module defining target() -> models.Target

examples:
  mechsynth targets
  mechsynth check trained:palindrome
  mechsynth run tracr:reverse --budget-seconds 120 --no-llm --out runs/reverse
  mechsynth show runs/reverse
  mechsynth score tracr:reverse my_hypothesis.txt --json

Bad input exits with code 2 and one line on stderr; Ctrl-C during 'run' exits with 130
and keeps everything scored (rerun the same command to resume)."""

_HYPOTHESIS_FORMAT = """\
hypothesis file format (or the same as JSON: {"program": "...", "correspondence": {...}}):
  program:
      same = select(indices, indices, EQ)
      out = aggregate(same, tokens)
  correspondence:
      tokens: hook_embed
      out: blocks.0.attn.hook_z[1]            # head 1 of layer 0
      # MLP outputs / embeddings may name residual dims: blocks.0.hook_mlp_out[dims=5,6,7]"""


def _add_device(p: argparse.ArgumentParser) -> None:
    """``--device``, on every command that runs a network (models.device resolves it)."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="where the network runs: auto (cuda when available, else cpu; env "
                   "MECHSYNTH_DEVICE overrides), cpu, cuda, cuda:N (default auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mechsynth",
        description="Automated mechanistic hypothesis generation for transformers: propose programs that "
        "say what a network computes and where, check them against its activations, and keep only "
        "those that beat frivolous-circuit controls.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="synthesise hypotheses for a target, check and control them, store everything",
        description="Synthesise hypotheses for TARGET (model-guided search, enumeration and, with an API "
        "key, an LLM), check each against the network (behaviour, causal scrubbing, interchange), run "
        "the frivolous-circuit controls and accept what survives. Every candidate and score is stored in "
        "the run directory; rerunning the same command resumes there.",
    )
    p.add_argument("target", help="target spec: tracr:<name>, trained:<name> or file:<path.py>")
    p.add_argument("--seed", type=_at_least(0), default=0,
                   help="seed for sampling, search and controls, >= 0 (default 0)")
    p.add_argument("--budget-seconds", type=_seconds, default=300.0, metavar="N",
                   help="wall-clock budget for the search, > 0 (default 300)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory, created or resumed (default: runs/<target>-seed<S>)")
    p.add_argument("--no-llm", action="store_true", help="do not use the LLM proposer")
    p.add_argument("--proposers", type=_proposer_list, default=None, metavar="NAMES",
                   help=f"only these proposers, comma-separated from {','.join(PROPOSER_NAMES)} "
                   "(default: all that are available; llm needs ANTHROPIC_API_KEY)")
    p.add_argument("--llm-model", default=None, help="model for the LLM proposer (env MECHSYNTH_LLM_MODEL)")
    p.add_argument("--llm-base-url", default=None, help="Messages API base URL (env ANTHROPIC_BASE_URL)")
    p.add_argument("--llm-max-calls", type=_at_least(0), default=None, metavar="K",
                   help="most LLM calls in the run (default 8)")
    p.add_argument("--llm-max-tokens", type=_at_least(1), default=None, metavar="T",
                   help="most LLM tokens in the run (default 200000)")
    p.add_argument("--alpha", type=_probability, default=0.01,
                   help="familywise significance level over every hypothesis scored (default 0.01)")
    p.add_argument("--edge-popup", action="store_true", help="also run the costly edge-popup control")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the frivolous-circuit controls (exploration only: accepted means 'passed the "
                   "checks', and the report says the controls did not run)")
    p.add_argument("--json", action="store_true",
                   help="print a machine-readable summary (target, accepted, n_scored, seconds, ...)")
    _add_device(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "score",
        help="score a hand-written hypothesis file against a target",
        description="Score the hypothesis in HYPOTHESIS_FILE on TARGET: behaviour (program vs network "
        "output), causal scrubbing (loss recovered) and interchange intervention accuracy.",
        epilog=_HYPOTHESIS_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="target spec: tracr:<name>, trained:<name> or file:<path.py>")
    p.add_argument("hypothesis", metavar="HYPOTHESIS_FILE",
                   help="hypothesis file (program: / correspondence: sections, or JSON)")
    p.add_argument("--n", type=_between(2, MAX_SCORE_INPUTS), default=512,
                   help=f"inputs per check, 2..{MAX_SCORE_INPUTS:,} (default 512)")
    p.add_argument("--seed", type=_at_least(0), default=0,
                   help="seed for the sampled inputs, >= 0 (default 0)")
    p.add_argument("--ablation", choices=["resample", "mean", "zero"], default="resample",
                   help="how unclaimed activations are replaced (default resample)")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    _add_device(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("show", help="print a stored run (finished, interrupted or running)",
                       description="Print the report of the run stored in RUN (a 'mechsynth run' "
                       "--out directory).")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "check", help="show a target before synthesis: architecture, encoding, accuracy, mistakes",
        description="Load TARGET and print what to verify before running synthesis on it: the architecture, "
        "the encoding of one example input (tokens, ids, the positions read), the network's accuracy on "
        "fresh inputs from the task and from its broader distribution, and the first inputs it gets wrong.",
    )
    p.add_argument("target", help="target spec: tracr:<name>, trained:<name> or file:<path.py>")
    p.add_argument("--n", type=_at_least(1), default=1000,
                   help="fresh inputs per distribution (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for the sampled inputs (default 0)")
    p.add_argument("--wrong", type=_at_least(0), default=5, metavar="K",
                   help="how many wrong inputs to show per distribution (default 5)")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    _add_device(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("targets", help="list the available targets",
                       description="List every tracr and trained target with its size and accuracy.")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("train", help="retrain a trained:<name> target deterministically",
                       description="Retrain the trained:NAME target from its recipe and seed and write its "
                       "checkpoint.")
    p.add_argument("name", help="zoo task name, e.g. sort (see 'mechsynth targets')")
    p.add_argument("--seed", type=_at_least(0), default=0, help="training seed, >= 0 (default 0)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="checkpoint directory (default: ./checkpoints; never the shipped models/checkpoints "
                   "unless named here with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="measure recovery, false positives and speed; write BENCHMARKS.md",
                       description="Run the benchmark suites and write BENCHMARKS.md and JSON under --out.")
    p.add_argument("--suite", choices=["recovery", "controls", "perf", "all"], default="all",
                   help="which suite to run (default all)")
    p.add_argument("--quick", action="store_true", help="a representative subset in a few minutes")
    p.add_argument("--out", default="bench-out", metavar="DIR", help="output directory (default bench-out)")
    p.add_argument("--with-acdc", action="store_true", help="also run ACDC/EAP from auto-circuit")
    p.add_argument("--budget-seconds", type=float, default=None, metavar="N",
                   help="search budget per synthesis run (default: 300 s, 30 s with --quick; the "
                   "false-positive suite caps it at 120 s, 15 s with --quick)")
    p.add_argument("--jobs", type=_at_least(1), default=1, metavar="J",
                   help="runs of the recovery and false-positive suites at once, each in its own process "
                   "(default 1: one after another in this process)")
    p.add_argument("--ray", action="store_true",
                   help="run the suites' runs as Ray tasks on a local cluster of J CPUs (mechsynth[ray])")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run them on the existing Ray cluster at ADDR (e.g. ray://head:10001 or auto)")
    p.add_argument("--targets", default=None, metavar="SPECS",
                   help="only these targets, comma-separated specs or the groups tracr, trained "
                   "(default: every target, or the --quick subset)")
    p.add_argument("--modes", default=None, metavar="NAMES",
                   help="engine configurations of the recovery and false-positive suites, comma-separated "
                   "from io_only, model_guided, exact_walk (no scored/anytime search), engine (the "
                   "default engine), llm_only, both (default: io_only,model_guided for recovery, engine "
                   "for controls)")
    p.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="the false-positive suite's copy seeds, comma-separated "
                   "(default 0,1,2; 0 with --quick)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_device(p)
    p.set_defaults(func=cmd_bench)
    _add_use_parsers(sub)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input, not a bug: printed as one line."""
    types: list[type[BaseException]] = [CLIError, OSError]
    for module, name in (
        ("dsl", "DSLError"),
        ("models", "TargetError"),
        ("mechsynth.models.target", "TargetError"),  # DeviceError too
        ("mechsynth.dsl.errors", "HypothesisError"),
        ("mechsynth.synth.check.patching", "CheckError"),
        ("mechsynth.synth.store", "RunStoreError"),
        ("mechsynth.synth.loop", "RunError"),
        ("mechsynth.synth.observe", "ObserveError"),
        ("mechsynth.synth.propose.enumerate", "EnumerationError"),
        ("mechsynth.synth.control.config", "ControlError"),
        ("mechsynth.synth.control.statistics", "StatisticsError"),
        ("mechsynth.synth.control.edge_popup", "EdgePopupError"),
        ("mechsynth.synth.bench.plan", "BenchError"),
        ("mechsynth.synth.use.inputs", "UseError"),
    ):
        try:
            mod = __import__(module, fromlist=[name])
            types.append(getattr(mod, name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit code (argparse's own exits, --help included, too)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    # tracr logs style advice through absl while compiling its own library examples.
    logging.getLogger("absl").setLevel(logging.ERROR)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"mechsynth {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`mechsynth targets | head`): nothing to report; point stdout
        # at /dev/null so the interpreter's final flush does not print a second error.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # noqa: BLE001 - classified below
        if args.debug or not isinstance(e, _user_error_types()):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"mechsynth {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
