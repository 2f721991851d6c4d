"""The predict table: a run's accepted hypothesis predicts the network's planted bug, and the row
says so in numbers against random sampling; a reused run gives the same row."""

from __future__ import annotations

import math

from buggy_targets import buggy_hist

from mechsynth.synth.bench.predict_table import PREDICT_TARGETS, format_table, predict_row


def test_the_engine_run_predicts_the_planted_bug_and_is_reused(tmp_path):
    row = predict_row(buggy_hist(), budget=60, out_dir=tmp_path, count=20, n_search=300, steps=2)
    assert row["accepted"] >= 1, row
    assert row["engine"] == "fresh"
    # The network is wrong exactly where a token occurs 4 times; the program explains the network.
    assert row["n_predicted"] > 0 and row["precision"] == 1.0
    assert row["baseline_precision"] < 0.5
    assert row["n_real_errors"] > 0 and row["recall"] >= 0.9
    assert row["baseline_recall"] < row["recall"]
    again = predict_row(buggy_hist(), budget=60, out_dir=tmp_path, count=20, n_search=300, steps=2)
    assert again["engine"] == "reused" and again["candidate"] == row["candidate"]
    assert again["precision"] == row["precision"] and again["recall"] == row["recall"]
    table = format_table([row])
    assert "buggy_hist" in table and "1.000" in table


def test_rows_without_a_number_say_why():
    rows = [{"target": "t:none", "accepted": 0, "note": "no hypothesis accepted (stopped: budget)"},
            {"target": "t:exact", "accepted": 1, "source": "model-guided", "candidate": 3, "n_predicted": 0,
             "n_predicted_real": 0, "precision": math.nan, "baseline_precision": 0.0, "n_baseline": 100,
             "n_real_errors": 0, "n_recall_sample": 2000, "n_program_flags": 0, "recall": math.nan,
             "baseline_recall": math.nan, "note": "no error predicted"}]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert "no hypothesis accepted" in lines[2]
    assert "| - |" in lines[3] and "0 / 2000" in lines[3] and "#3" in lines[3]


def test_the_table_covers_tracr_and_trained_targets():
    assert any(t.startswith("tracr:") for t in PREDICT_TARGETS)
    assert {"trained:reverse", "trained:induction", "trained:unique_reverse"} <= set(PREDICT_TARGETS)
