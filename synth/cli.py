"""The `mechsynth` command line.

Each subcommand is a thin shell over the Python API (the same calls a notebook
makes): parse arguments, call the stage, print a table or ``--json``. Bad input
(unknown target, unreadable hypothesis file, corrupt run directory, ...) is
reported as one line on stderr with exit code 2 — never a traceback; ``--debug``
shows the traceback for bug reports. Ctrl-C exits with code 130 after the run
store has committed everything already scored.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from collections.abc import Callable, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(ValueError):
    """A user-facing error raised by the CLI itself."""


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# --- subcommands ------------------------------------------------------------------------------


def cmd_targets(args: argparse.Namespace) -> int:
    from models import list_targets

    rows = [row.to_json() for row in list_targets()]
    if args.json:
        _print_json(rows)
        return 0
    columns = ["name", "kind", "layers", "heads", "d_model", "accuracy", "train_seconds", "description"]
    table = [[_fmt(r.get(c)) for c in columns] for r in rows]
    print(_format_table(columns, table))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from models import load_target
    from synth.hypothesis import Hypothesis
    from synth.scoring import format_scores, score

    path = Path(args.hypothesis)
    try:
        text = path.read_text()
    except OSError as e:
        raise CLIError(f"cannot read hypothesis file {path}: {e.strerror}") from None
    hypothesis = Hypothesis.parse(text)
    target = load_target(args.target)
    scores = score(target, hypothesis, n=args.n, seed=args.seed, ablation=args.ablation)
    if args.json:
        _print_json({"target": args.target, "hypothesis": hypothesis.to_json(), "scores": scores.to_json()})
    else:
        print(format_scores(scores))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from synth.loop import cmd_run as run_command

    return run_command(args)


def cmd_show(args: argparse.Namespace) -> int:
    from synth.loop import cmd_show as show_command

    return show_command(args)


def cmd_train(args: argparse.Namespace) -> int:
    from models.train import cmd_train as train_command

    return train_command(args.name, seed=args.seed, out=args.out)


def cmd_bench(args: argparse.Namespace) -> int:
    from synth.bench import cmd_bench as bench_command

    return bench_command(args)


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
    return "\n".join(lines)


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mechsynth",
        description="Automated mechanistic hypothesis generation for transformers.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="synthesise hypotheses for a target and check them")
    p.add_argument("target", help="target spec, e.g. tracr:reverse, trained:sort, file:my_target.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-seconds", type=float, default=300.0, help="wall-clock budget for the run")
    p.add_argument("--out", default=None, help="run directory (default: runs/<target>-seed<S>)")
    p.add_argument("--no-llm", action="store_true", help="do not use the LLM proposer")
    p.add_argument("--llm-model", default=None, help="model for the LLM proposer (env MECHSYNTH_LLM_MODEL)")
    p.add_argument("--llm-base-url", default=None, help="Messages API base URL (env ANTHROPIC_BASE_URL)")
    p.add_argument("--llm-max-calls", type=int, default=8)
    p.add_argument("--llm-max-tokens", type=int, default=200_000)
    p.add_argument("--edge-popup", action="store_true", help="also run the costly edge-popup control")
    p.add_argument("--alpha", type=float, default=0.01, help="familywise significance level")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("score", help="score a hand-written hypothesis file against a target")
    p.add_argument("target")
    p.add_argument("hypothesis", help="hypothesis file (program: / correspondence: sections, or JSON)")
    p.add_argument("--n", type=int, default=512, help="inputs per check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation", choices=["resample", "mean", "zero"], default="resample")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("show", help="print a stored run")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("targets", help="list the available targets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("train", help="retrain a trained:<name> target deterministically")
    p.add_argument("name", help="zoo task name, e.g. sort")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="checkpoint directory (default: the shipped checkpoints)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="measure recovery, false positives and speed; write BENCHMARKS.md")
    p.add_argument("--suite", choices=["recovery", "controls", "perf", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="a representative subset in a few minutes")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--with-acdc", action="store_true", help="also run ACDC/EAP from auto-circuit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input, not a bug: printed as one line."""
    types: list[type[BaseException]] = [CLIError, OSError]
    for module, name in (
        ("dsl", "DSLError"),
        ("models", "TargetError"),
        ("synth.hypothesis", "HypothesisError"),
        ("synth.patching", "CheckError"),
        ("synth.store", "RunStoreError"),
        ("synth.loop", "RunError"),
        ("synth.observe", "ObserveError"),
        ("synth.enumerate", "EnumerationError"),
        ("synth.control", "ControlError"),
        ("synth.statistics", "StatisticsError"),
        ("synth.edge_popup", "EdgePopupError"),
        ("synth.bench", "BenchError"),
    ):
        try:
            mod = __import__(module, fromlist=[name])
            types.append(getattr(mod, name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # tracr logs style advice through absl while compiling its own library examples.
    logging.getLogger("absl").setLevel(logging.ERROR)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("mechsynth: interrupted; everything scored so far is stored", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - classified below
        if args.debug or not isinstance(e, _user_error_types()):
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"mechsynth {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
