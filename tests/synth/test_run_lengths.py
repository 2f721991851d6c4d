"""End to end: `mechsynth run` on a length-degenerate target and on trained:dyck1_next.

Both are slow (a real run: about 60 s for tracr:length with the controls, about 110 s for
dyck1_next, whose run overshoots a 20 s budget in observation and checks)."""

from __future__ import annotations

import json
import re

import pytest

from mechsynth.synth.cli import main


@pytest.mark.slow
def test_tracr_length_is_accepted_with_a_defined_loss_recovered(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(["run", "tracr:length", "--no-llm", "--budget-seconds", "120", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accepted"], summary
    scores = summary["accepted"][0]["scores"]
    assert scores["loss_recovered"] >= 0.8 and scores["iia"] >= 0.8 and scores["behaviour"] >= 0.98
    report = (out / "report.md").read_text()
    assert "nan < 0.8" not in report


@pytest.mark.slow
def test_mechsynth_run_reports_on_dyck1_next(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = main(["run", "trained:dyck1_next", "--no-llm", "--no-controls", "--budget-seconds", "20",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "target trained:dyck1_next:" in text
    report = (out / "report.md").read_text()
    assert report.startswith("# mechsynth run: trained:dyck1_next")
    # Either an accepted hypothesis with its numbers, or the best candidate's numbers and why it failed,
    # or the partial explanation saying which components are unexplained.
    numbers = re.search(r"behaviour \d\.\d{3}.*iia \d\.\d{3}", report)
    assert numbers or "Partial explanation" in report, report[:2000]
