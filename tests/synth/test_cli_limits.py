"""Bad values the CLI used to accept (or crash on) are one line and exit 2 (issue 18 items 6, 9, 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mechsynth import models
from mechsynth.synth.cli import main
from mechsynth.synth.loop import RunError, run

DATA = Path(__file__).parents[1] / "data"
HYP = str(DATA / "reverse_ground_truth.hyp")


def one_line_error(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize("argv, needles", [
    (["run", "tracr:reverse", "--seed", "-1"], ["--seed", ">= 0"]),
    (["score", "tracr:reverse", HYP, "--seed", "-1"], ["--seed"]),
    (["train", "reverse", "--seed", "-1"], ["--seed"]),
    (["score", "tracr:reverse", HYP, "--n", "20000000"], ["--n", "100,000"]),
    (["bench", "--jobs", "0"], ["--jobs", ">= 1"]),
    (["bench", "--jobs", "-3"], ["--jobs", ">= 1"]),
])
def test_out_of_range_values_are_refused_before_any_work(argv: list[str], needles: list[str], capsys) -> None:
    rc = main(argv)
    one_line_error(rc, capsys.readouterr().err, *needles)


def test_the_api_refuses_a_negative_seed_before_loading_anything(tmp_path: Path) -> None:
    # Before: a traceback after scoring, the candidate lost, and "proposers exhausted" recorded.
    with pytest.raises(RunError, match="seed must be an integer >= 0"):
        run("tracr:reverse", out=tmp_path / "r", seed=-1)
    assert not (tmp_path / "r").exists()


def test_a_target_file_calling_sys_exit_is_an_error_not_a_silent_exit(tmp_path: Path, capsys) -> None:
    target = tmp_path / "quits.py"
    target.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(models.TargetError, match=r"called sys.exit\(0\)"):
        models.load_target(f"file:{target}")
    rc = main(["score", f"file:{target}", str(DATA / "reverse_ground_truth.hyp")])
    one_line_error(rc, capsys.readouterr().err, "sys.exit(0)")


def test_a_hostile_hypothesis_file_is_one_line(tmp_path: Path, capsys) -> None:
    bomb = tmp_path / "bomb.hyp"
    bomb.write_text("program:\n    out = map(x + 9**9**9, tokens)\n")  # issue 18 item 1, as reported
    rc = main(["score", "tracr:reverse", str(bomb)])
    one_line_error(rc, capsys.readouterr().err, "line 2, column", "exponent 387420489 is too large")
