"""`train` never overwrites a shipped checkpoint (issue 18 item 3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mechsynth.models import train
from mechsynth.models.target import TargetError
from mechsynth.models.zoo import CHECKPOINT_DIR
from mechsynth.synth.cli import main


def _digest(stem: Path) -> str:
    files = (stem.with_suffix(".json"), stem.with_suffix(".safetensors"))
    return "".join(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


def test_the_default_output_is_not_the_shipped_directory(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert train.output_path("reverse").resolve() == (tmp_path / "checkpoints" / "reverse.json").resolve()


def test_the_shipped_directory_needs_out_and_force() -> None:
    with pytest.raises(TargetError, match="refusing to overwrite the shipped checkpoint"):
        train.output_path("reverse", CHECKPOINT_DIR)
    assert train.output_path("reverse", CHECKPOINT_DIR, force=True) == CHECKPOINT_DIR / "reverse.json"


def test_the_default_cannot_reach_the_shipped_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CHECKPOINT_DIR.parent)  # ./checkpoints is then the shipped directory itself
    with pytest.raises(TargetError, match="shipped"):
        train.output_path("reverse", force=True)


def test_an_existing_checkpoint_needs_force(tmp_path: Path) -> None:
    (tmp_path / "reverse.json").write_text("{}")
    with pytest.raises(TargetError, match="exists; pass --force"):
        train.output_path("reverse", tmp_path)
    assert train.output_path("reverse", tmp_path, force=True) == tmp_path / "reverse.json"


def test_the_cli_refuses_before_training_and_leaves_the_shipped_files(capsys: pytest.CaptureFixture) -> None:
    before = _digest(CHECKPOINT_DIR / "reverse")
    assert main(["train", "reverse", "--seed", "7", "--out", str(CHECKPOINT_DIR)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite the shipped checkpoint" in err
    assert _digest(CHECKPOINT_DIR / "reverse") == before


def test_training_writes_where_asked(tmp_path: Path) -> None:
    path = train.train("reverse", seed=7, out=tmp_path, steps=2)
    assert path == tmp_path / "reverse.json" and path.exists()
    with pytest.raises(TargetError, match="exists"):
        train.train("reverse", seed=7, out=tmp_path, steps=2)
