"""The `mechsynth` command line, as a user meets it.

Every bad input must end in exactly one line on stderr and exit code 2 (never a
traceback); good input must give the documented output (`--json` is strict JSON with the
documented fields). Most cases fail before any network is built, so they are cheap. The
ones that need a network share the in-process target cache (`models.load_target` caches
tracr targets), so each tracr target is compiled at most once per test session; runs use
the smallest targets with small budgets. A real Ctrl-C on a subprocess and a run with
the full controls are `slow`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mechsynth.synth.cli import main

DATA = Path(__file__).parents[1] / "data"
REVERSE_HYP = DATA / "reverse_ground_truth.hyp"


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line, no traceback, containing every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--help"], ["run", "score", "show", "targets", "train", "bench", "tracr:<name>", "file:<path.py>"]),
        (["run", "--help"], ["--budget-seconds", "--out", "--no-llm", "--json", "--seed", "resume"]),
        (["score", "--help"], ["HYPOTHESIS_FILE", "--json", "correspondence:", "program:"]),
        (["show", "--help"], ["RUN", "--json"]),
        (["targets", "--help"], ["--json"]),
        (["check", "--help"], ["TARGET", "--json", "--n", "--wrong", "encoding"]),
        (["train", "--help"], ["name", "--seed"]),
        (["bench", "--help"], ["--suite", "--quick"]),
    ],
)
def test_help_is_clear(argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(argv, capsys)
    assert rc == 0 and not err
    for needle in needles:
        assert needle in out, needle


def test_targets_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(["targets", "--json"], capsys)
    assert rc == 0, err
    rows = json.loads(out)
    names = {r["name"] for r in rows}
    assert {"tracr:reverse", "tracr:hist", "trained:sort"} <= names
    for row in rows:
        assert {"kind", "layers", "heads", "d_model", "accuracy"} <= set(row)
    rc, out, err = cli(["targets"], capsys)
    assert rc == 0, err
    header, rule, *body = out.splitlines()
    assert header.split()[:6] == ["name", "kind", "layers", "heads", "d_model", "accuracy"]
    assert set(rule) <= {"-", " "} and len(body) == len(rows)
    assert any(line.startswith("tracr:reverse ") for line in body)


# --- argument values: rejected before any slow work ------------------------------------------------


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["run", "tracr:hist", "--budget-seconds", "-1"], ["--budget-seconds", "positive", "'-1'"]),
        (["run", "tracr:hist", "--budget-seconds", "0"], ["--budget-seconds", "positive"]),
        (["run", "tracr:hist", "--budget-seconds", "nan"], ["--budget-seconds", "positive"]),
        (["run", "tracr:hist", "--budget-seconds", "soon"], ["--budget-seconds", "must be a number"]),
        (["run", "tracr:hist", "--alpha", "1.5"], ["--alpha", "between 0 and 1"]),
        (["run", "tracr:hist", "--llm-max-calls", "-3"], ["--llm-max-calls", ">= 0"]),
        (["run", "tracr:hist", "--proposers", "oracle"],
         ["--proposers", "model-guided,coarsen,das,enumerator,llm"]),
        (["score", "tracr:reverse", str(REVERSE_HYP), "--n", "1"], ["--n", ">= 2"]),
        (["score", "tracr:reverse", str(REVERSE_HYP), "--n", "-5"], ["--n", ">= 2"]),
        (["score", "tracr:reverse", str(REVERSE_HYP), "--n", "many"], ["--n", "integer"]),
        (["score", "tracr:reverse", str(REVERSE_HYP), "--ablation", "dropout"], ["--ablation"]),
        (["score", "tracr:reverse"], ["HYPOTHESIS_FILE"]),
        (["frobnicate"], ["invalid choice", "frobnicate"]),
        ([], ["COMMAND"]),
    ],
)
def test_bad_arguments(argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(argv, capsys)
    assert_one_line_error(rc, err, "error:", *needles)


# --- target specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, needles",
    [
        ("tracr:revers", ["unknown target 'tracr:revers'", "did you mean tracr:reverse"]),
        ("reverse", ["unknown target 'reverse'", "tracr:reverse"]),
        ("trained:srot", ["unknown target", "trained:sort"]),
        ("tracr:zzz", ["unknown target", "tracr targets:", "reverse"]),
        ("bogus:thing", ["unknown target", "file:<path.py>"]),
    ],
)
def test_unknown_target_lists_closest_names(
    spec: str, needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(["score", spec, str(REVERSE_HYP)], capsys)
    assert_one_line_error(rc, err, "mechsynth score: error:", *needles)


@pytest.fixture(scope="module")
def bad_target_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("targets")
    shipped = Path(__file__).parents[2] / "models" / "checkpoints" / "sort"
    # A checkpoint whose weights file is cut short, and one whose metadata is not JSON.
    (d / "cut.json").write_bytes(shipped.with_suffix(".json").read_bytes())
    (d / "cut.safetensors").write_bytes(shipped.with_suffix(".safetensors").read_bytes()[:1000])
    (d / "badmeta.json").write_text('{"format": "mechsynth-checkpoint/1", "name": ')
    (d / "badmeta.safetensors").write_bytes(shipped.with_suffix(".safetensors").read_bytes())
    loader = "from models import byo\n\ndef target():\n    return byo.from_checkpoint({!r})\n"
    files = {
        "no_target": write(d / "no_target.py", "x = 1\n"),
        "returns_int": write(d / "returns_int.py", "def target():\n    return 42\n"),
        "import_fails": write(d / "import_fails.py", "import no_such_module_xyz\n"),
        "raises": write(d / "raises.py", "def target():\n    raise RuntimeError('boom')\n"),
        "syntax": write(d / "syntax.py", "def target(:\n"),
        "not_py": write(d / "target.txt", "def target(): pass\n"),
        "cut_checkpoint": write(d / "cut_ck.py", loader.format(str(d / "cut.json"))),
        "bad_metadata": write(d / "badmeta_ck.py", loader.format(str(d / "badmeta.json"))),
        "missing_checkpoint": write(d / "missing_ck.py", loader.format(str(d / "nothing.json"))),
    }
    files["missing"] = d / "does_not_exist.py"
    return files


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing", ["does_not_exist.py does not exist"]),
        ("not_py", ["is not a .py module"]),
        ("no_target", ["defines no function target()"]),
        ("returns_int", ["target() returned int, not a models.Target"]),
        ("import_fails", ["importing", "ModuleNotFoundError", "no_such_module_xyz"]),
        ("raises", ["target() failed: RuntimeError: boom"]),
        ("syntax", ["importing", "SyntaxError"]),
        ("cut_checkpoint", ["cannot read checkpoint weights", "cut.safetensors"]),
        ("bad_metadata", ["badmeta.json is not JSON"]),
        ("missing_checkpoint", ["nothing.json does not exist"]),
    ],
)
def test_bad_target_file(
    case: str, needles: list[str], bad_target_files: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    rc, _, err = cli(["run", f"file:{bad_target_files[case]}", "--out", str(out), "--no-llm"], capsys)
    assert_one_line_error(rc, err, "mechsynth run: error:", *needles)
    assert not out.exists()  # a target that does not load leaves no empty run directory behind


def test_missing_trained_checkpoint_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mechsynth.models import zoo

    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path)  # no checkpoints at all
    monkeypatch.setattr(zoo, "load_trained", zoo.load_trained.__wrapped__)  # bypass the cache
    rc, _, err = cli(["score", "trained:modadd", str(REVERSE_HYP)], capsys)
    assert_one_line_error(rc, err, "no checkpoint for trained:modadd", "mechsynth train modadd")


def test_check_prints_what_to_verify_before_synthesis(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(["check", "trained:modadd", "--n", "50"], capsys)
    assert rc == 0, err
    for needle in ("architecture: 1 layer(s), 4 head(s)", "token ", "id ", "read at model positions [2]",
                   "accuracy on the task distribution (50 fresh inputs", "broader distribution: none"):
        assert needle in out, needle
    rc, out, err = cli(["check", "trained:induction", "--n", "50", "--wrong", "2", "--json"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    assert data["target"] == "trained:induction" and data["example"]["tokens"][0] == "BOS"
    assert data["accuracy"]["accuracy"] >= 0.99 and len(data["broader"]["wrong"]) <= 2


def test_check_on_an_outside_transformer_lens_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user's file: target around a HookedTransformer-layout .pt with no config at all.
    import torch

    from mechsynth.models.bridge import build_bridge
    from outside_files import classic_state_dict

    config = dict(n_layers=1, d_model=16, d_head=8, n_heads=2, d_vocab=4, d_vocab_out=4, n_ctx=6,
                  attn_only=True, normalization_type="LN", attention_dir="causal", seed=0)
    torch.save(classic_state_dict(build_bridge(config)), tmp_path / "model.pt")
    target_file = write(tmp_path / "mine.py", (
        "from models import Task, byo\n\n"
        "def target():\n"
        "    task = Task('copy', vocab=(0, 1, 2, 3), min_len=1, max_len=6, labeller=list,\n"
        "                output_vocab=(0, 1, 2, 3))\n"
        f"    return byo.from_transformer_lens({str(tmp_path / 'model.pt')!r}, task)\n"))
    rc, out, err = cli(["check", f"file:{target_file}", "--n", "20", "--wrong", "1"], capsys)
    assert rc == 0, err
    assert "config from: inferred from weight shapes: n_layers=1, d_model=16, n_heads=2" in out
    assert "assumed (not in the weights; pass them if wrong): attention_dir='causal'" in out
    assert "wrong: " in out  # an untrained network does not copy
    (tmp_path / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:100])
    rc, _, err = cli(["check", f"file:{target_file}"], capsys)
    assert_one_line_error(rc, err, "mechsynth check: error", "model.pt", "truncated")


def test_check_bad_target_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(["check", "trained:revrse"], capsys)
    assert_one_line_error(rc, err, "mechsynth check: error", "did you mean", "trained:reverse")
    rc, _, err = cli(["check", "trained:reverse", "--n", "0"], capsys)
    assert rc == 2 and "--n" in err


def test_train_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(["train", "sortt"], capsys)
    assert_one_line_error(rc, err, "mechsynth train: error:", "did you mean sort")


# --- hypothesis files: read before the target loads ----------------------------------------------

GOOD_CORRESPONDENCE = "correspondence:\n    out: blocks.0.attn.hook_z[0]\n"


@pytest.mark.parametrize(
    "text, needles",
    [
        # program text errors are placed at the file's line and (1-based) column
        ("program:\n    s = select(tokens, tokens, TRUE)\n    w = selector_width(s\n",
         ["line 3, column 23", "'(' was never closed"]),
        ("# a comment\nprogram:\n    out = frobnicate(tokens)\n" + GOOD_CORRESPONDENCE,
         ["line 3, column 11", "unknown primitive 'frobnicate'", "expected one of", "select"]),
        ("program:\n    s = select(tokens, tokens)\n    out = aggregate(s, tokens)\n" + GOOD_CORRESPONDENCE,
         ["line 2", "select() takes", "missing predicate"]),
        ("program:\n    s = select(tokens, tokens, EQ)\n    out = aggregate(s, s)\n" + GOOD_CORRESPONDENCE,
         ["line 3, column 24", "must be a sequence", "'s' is a selector"]),
        ("program:\n    out = map(add(1), tokens)\ncorrespondence:\n    ghost: blocks.0.hook_mlp_out\n",
         ["'ghost'", "not a variable of the program", "variables: tokens"]),
        ("program:\n    out = map(add(1), tokens)\ncorrespondence:\n    out blocks.0.hook_mlp_out\n",
         ["line 4", "expected 'variable: location'"]),
        ("program:\n    out = map(add(1), tokens)\ncorrespondence:\n    out: blocks.0.attn.hook_z[-1]\n",
         ["line 4", "head index must be a non-negative int"]),
        ("correspondence:\n    out: blocks.0.hook_mlp_out\n", ["no 'program:' section"]),
        ("", ["no 'program:' section"]),
        ('{"program": "out = map(add(1), tokens)", ', ["bad JSON at line 1"]),
        ('{"correspondence": {}}', ["needs a 'program' field"]),
    ],
)
def test_bad_hypothesis_file(
    text: str, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "h.txt", text)
    rc, _, err = cli(["score", "tracr:reverse", str(path)], capsys)
    assert_one_line_error(rc, err, "mechsynth score: error:", str(path), *needles)


def test_unreadable_hypothesis_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(["score", "tracr:reverse", str(tmp_path / "nope.txt")], capsys)
    assert_one_line_error(rc, err, "cannot read hypothesis file", "No such file or directory")
    rc, _, err = cli(["score", "tracr:reverse", str(tmp_path)], capsys)
    assert_one_line_error(rc, err, "cannot read hypothesis file", "Is a directory")
    binary = tmp_path / "binary.hyp"
    binary.write_bytes(b"\xff\xfe\x00program:")
    rc, _, err = cli(["score", "tracr:reverse", str(binary)], capsys)
    assert_one_line_error(rc, err, "is not UTF-8 text")


def test_reverse_data_file_is_the_ground_truth() -> None:
    """tests/data/reverse_ground_truth.hyp is what `str(ground_truth)` prints (plus comments)."""
    from mechsynth.dsl.hypothesis import Hypothesis

    hyp = Hypothesis.parse(REVERSE_HYP.read_text())
    assert hyp.program.output == "reverse"
    assert str(hyp.correspondence["reverse"]) == "blocks.3.attn.hook_z[0]"
    assert Hypothesis.parse(str(hyp)) == hyp


# --- score on tracr:reverse (the network loads once per session) --------------------------------


@pytest.fixture(scope="module")
def reverse_target(target_named):
    return target_named("tracr:reverse")


def test_score_ground_truth_json(reverse_target: object, capsys: pytest.CaptureFixture[str]) -> None:
    from mechsynth.dsl.hypothesis import Hypothesis

    assert Hypothesis.parse(REVERSE_HYP.read_text()) == reverse_target.ground_truth  # type: ignore[attr-defined]
    rc, out, err = cli(["score", "tracr:reverse", str(REVERSE_HYP), "--n", "64", "--json"], capsys)
    assert rc == 0, err
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in --json output"))
    assert data["target"] == "tracr:reverse"
    assert data["hypothesis"]["correspondence"]["reverse"] == "blocks.3.attn.hook_z[0]"
    scores = data["scores"]
    assert scores["behaviour"] == 1.0
    assert scores["loss_recovered"] >= 0.99
    assert scores["iia"] >= 0.99
    # every number is there, not just the headline ones
    for key in ("behaviour_broader", "accuracy_recovered", "frac_changed", "loss_clean", "loss_scrubbed",
                "loss_resampled", "iia_per_variable"):
        assert key in scores, key
    assert set(scores["iia_per_variable"]) >= {"tokens", "reverse"}


def test_score_table_from_json_hypothesis_file(
    reverse_target: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON form of a hypothesis file scores like the text form; without --json, a table."""
    gt = reverse_target.ground_truth  # type: ignore[attr-defined]
    path = write(tmp_path / "gt.json", json.dumps(gt.to_json()))
    rc, out, err = cli(["score", "tracr:reverse", str(path), "--n", "16"], capsys)
    assert rc == 0, err
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert float(rows["behaviour"]) == 1.0
    assert float(rows["loss_recovered"]) >= 0.99 and float(rows["iia"]) >= 0.99


@pytest.mark.parametrize(
    "old, new, needles",
    [
        ("blocks.3.attn.hook_z[0]", "blocks.9.attn.hook_z[0]",
         ["no hook 'blocks.9.attn.hook_z'", "did you mean"]),
        ("blocks.3.attn.hook_z[0]", "blocks.3.attn.hook_zz[0]", ["no hook 'blocks.3.attn.hook_zz'"]),
        ("blocks.3.attn.hook_z[0]", "blocks.3.attn.hook_z[7]", ["head 7 out of range", "layer has 1"]),
        ("dims=36,37,38", "dims=36,37,99", ["dim 99 out of range", "has 41"]),
        ("blocks.0.hook_mlp_out[dims=5,6,7,8,9,10]", "blocks.0.hook_mlp_out[0]", ["has no head axis"]),
    ],
)
def test_location_not_in_model(
    old: str, new: str, needles: list[str], reverse_target: object, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = REVERSE_HYP.read_text()
    assert old in text
    path = write(tmp_path / "h.hyp", text.replace(old, new))
    rc, _, err = cli(["score", "tracr:reverse", str(path), "--n", "16"], capsys)
    assert_one_line_error(rc, err, "mechsynth score: error:", *needles)


def test_selector_given_a_location(
    reverse_target: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ("program:\n    s = select(indices, indices, EQ)\n    out = aggregate(s, tokens)\n"
            "correspondence:\n    s: blocks.0.attn.hook_z[0]\n")
    rc, _, err = cli(["score", "tracr:reverse", str(write(tmp_path / "h.hyp", text)), "--n", "16"], capsys)
    assert_one_line_error(rc, err, "'s' is a selector and cannot have a location", "locate the aggregate")


# --- show: corrupt and foreign run directories ------------------------------------------------------


def test_show_bad_run_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    rc, _, err = cli(["show", str(tmp_path / "absent")], capsys)
    assert_one_line_error(rc, err, "mechsynth show: error:", "no run directory")
    rc, _, err = cli(["show", str(write(tmp_path / "file", "x"))], capsys)
    assert_one_line_error(rc, err, "not a run directory")
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(["show", str(tmp_path / "empty")], capsys)
    assert_one_line_error(rc, err, "not a run directory (no run.sqlite)")
    (tmp_path / "corrupt").mkdir()
    write(tmp_path / "corrupt" / "run.sqlite", "not a database " * 40)
    for extra in ([], ["--json"]):
        rc, _, err = cli(["show", str(tmp_path / "corrupt"), *extra], capsys)
        assert_one_line_error(rc, err, "corrupt run database")
    (tmp_path / "foreign").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "foreign" / "run.sqlite")) as db:
        db.execute("CREATE TABLE other (x)")
        db.commit()
    rc, _, err = cli(["show", str(tmp_path / "foreign")], capsys)
    assert_one_line_error(rc, err, "not a mechsynth run database")  # refused, and left as it was


# --- run --out: refused before the target loads ------------------------------------------------------


def test_run_out_unusable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = write(tmp_path / "a_file", "x")
    rc, _, err = cli(["run", "tracr:hist", "--out", str(a_file)], capsys)
    assert_one_line_error(rc, err, "mechsynth run: error:", "is a file, not a directory")
    rc, _, err = cli(["run", "tracr:hist", "--out", str(a_file / "run")], capsys)
    assert_one_line_error(rc, err, "cannot write run directory", "Not a directory")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    write(corrupt / "run.sqlite", "not a database " * 40)
    rc, _, err = cli(["run", "tracr:hist", "--out", str(corrupt)], capsys)
    assert_one_line_error(rc, err, "corrupt run database")


def test_train_and_bench_out_unusable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = write(tmp_path / "a_file", "x")
    rc, _, err = cli(["train", "sort", "--out", str(a_file)], capsys)
    assert_one_line_error(rc, err, "mechsynth train: error:", "checkpoint directory", "is a file")
    rc, _, err = cli(["bench", "--quick", "--out", str(a_file / "sub")], capsys)
    assert_one_line_error(rc, err, "mechsynth bench: error:", "cannot write benchmark directory")
    assert not (a_file.parent / "sub").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write a read-only directory")
def test_run_out_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cli(["run", "tracr:hist", "--out", str(ro / "run")], capsys)
    finally:
        ro.chmod(0o755)
    assert_one_line_error(rc, err, "cannot write run directory")


# --- run, show and resume on tracr:reverse (already loaded; the run stops at its first acceptance) --


@pytest.fixture(scope="module")
def reverse_run(
    reverse_target: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], Path, int, str, str]:
    out = tmp_path_factory.mktemp("runs") / "reverse"
    argv = ["run", "tracr:reverse", "--no-llm", "--no-controls", "--budget-seconds", "120", "--out", str(out),
            "--json"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    return argv, out, rc, stdout.getvalue(), stderr.getvalue()


def test_run_json(reverse_run: tuple[list[str], Path, int, str, str]) -> None:
    _, out, rc, stdout, stderr = reverse_run
    assert rc == 0, stderr
    data = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["target"] == "tracr:reverse"
    assert isinstance(data["n_scored"], int) and data["n_scored"] >= 1
    assert isinstance(data["seconds"], (int, float)) and data["seconds"] >= 0
    assert data["accepted"], data
    acc = data["accepted"][0]
    assert "aggregate(" in acc["program"]
    assert acc["correspondence"] and all(isinstance(v, str) for v in acc["correspondence"].values())
    assert acc["scores"]["behaviour"] >= 0.98
    assert (out / "run.sqlite").exists() and (out / "report.md").exists()


def test_show_run(
    reverse_run: tuple[list[str], Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _, run_stdout, _ = reverse_run
    rc, stdout, err = cli(["show", str(out), "--json"], capsys)
    assert rc == 0, err
    shown, ran = json.loads(stdout), json.loads(run_stdout)
    assert shown["accepted"] == ran["accepted"] and shown["n_scored"] == ran["n_scored"]
    rc, stdout, err = cli(["show", str(out)], capsys)
    assert rc == 0 and "tracr:reverse" in stdout


def test_llm_proposer_asked_for_but_off(
    reverse_target: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(["run", "tracr:reverse", "--proposers", "llm", "--no-llm", "--out", str(tmp_path / "r")],
                     capsys)
    assert_one_line_error(rc, err, "--proposers asks for llm", "not available", "--no-llm")


def test_rerun_resumes_without_rescoring(
    reverse_run: tuple[list[str], Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, out, _, run_stdout, _ = reverse_run
    rc, stdout, err = cli([a for a in argv if a != "--json"], capsys)
    assert rc == 0, err
    assert "resuming" in err
    assert "1 accepted" in stdout and "controls: no-controls" in stdout
    rc, stdout, err = cli(["show", str(out), "--json"], capsys)
    assert json.loads(stdout)["n_candidates"] == json.loads(run_stdout)["n_candidates"]


def test_resume_with_other_arguments_is_refused(
    reverse_run: tuple[list[str], Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _, _, _, _ = reverse_run
    rc, _, err = cli([*argv, "--seed", "3"], capsys)  # another seed proposes other candidates
    assert_one_line_error(rc, err, "mechsynth run: error:", "different arguments", "another --out")


def test_resume_with_a_larger_budget(
    reverse_run: tuple[list[str], Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _, _, _, _ = reverse_run
    rc, _, err = cli([a if a != "120" else "240" for a in argv if a != "--json"], capsys)
    assert rc == 0, err
    assert "resuming" in err  # the same run, given more time: not "different arguments"


# --- slow: a real Ctrl-C, and a run with the full controls ----------------------------------------


def _interrupt_when(argv: list[str], marker: str) -> tuple[int, str, str]:
    """Start `argv`, send SIGINT once a stderr line contains `marker`; (rc, that line, the rest)."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            proc.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"{marker!r} never appeared (rc {proc.wait()})")
    rest = proc.stderr.read()
    return proc.wait(), line, rest


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resumes(tmp_path: Path) -> None:
    """SIGINT after the first candidate is scored: exit 130, one line, the candidate is kept
    and the same command resumes from it."""
    from mechsynth.synth.loop import load_run

    out = tmp_path / "run"
    # tracr:length is never accepted (its output is constant within a length, so scrubbing
    # has nothing to recover), so the run is still searching when the signal arrives.
    argv = [sys.executable, "-m", "mechsynth.synth.cli", "run", "tracr:length", "--no-llm", "--no-controls",
            "--budget-seconds", "300", "--out", str(out)]
    rc, _, rest = _interrupt_when(argv, "scored]")
    assert rc == 130
    assert "Traceback" not in rest
    tail = [line for line in rest.splitlines() if line.startswith("mechsynth")]
    assert tail == [f"mechsynth run: interrupted; everything scored so far is stored in {out} "
                    "(rerun the same command to resume)"]
    stored = load_run(out)
    assert stored.n_scored >= 1 and stored.stopped == "interrupted"

    rc, line, rest = _interrupt_when(argv, "resuming:")
    assert rc == 130 and "Traceback" not in rest
    assert int(line.split("resuming:")[1].split()[0]) >= stored.n_candidates


@pytest.mark.slow
def test_run_with_controls_accepts_hist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(["run", "tracr:hist", "--no-llm", "--budget-seconds", "240", "--out",
                        str(tmp_path / "run"), "--json"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    assert data["accepted"], data
    rc, out, _ = cli(["show", str(tmp_path / "run")], capsys)
    assert "frivolous-circuit controls" in out


@pytest.mark.parametrize("command", [
    ["score", "tracr:reverse", "tests/data/reverse_ground_truth.hyp"],
    ["run", "tracr:reverse", "--budget-seconds", "1"],
    ["check", "tracr:reverse"],
    ["bench", "--suite", "perf", "--quick"],
])
@pytest.mark.parametrize("device", ["cuda:7", "tpu"])
def test_an_unavailable_device_is_one_line(
    command: list[str], device: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mechsynth.models.device as dev

    monkeypatch.setattr(dev, "cuda_available", lambda: False)
    monkeypatch.chdir(Path(__file__).parents[2])
    extra = ["--out", str(tmp_path / "out")] if command[0] in ("run", "bench") else []
    assert main([*command, *extra, "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device" in err, err


def test_score_runs_on_the_named_device(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parents[2])
    argv = ["score", "tracr:reverse", "tests/data/reverse_ground_truth.hyp", "--n", "32", "--device", "cpu",
            "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["scores"]["behaviour"] == 1.0
