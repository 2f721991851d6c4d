"""Two recovery results side by side (synth.bench.render.compare): verdicts, times, ratio, gains, losses."""

from __future__ import annotations

import json

from mechsynth.synth.bench.render.compare import compare_recovery, main


def _results(rows, commit, load):
    return {"command": "mechsynth bench --suite recovery", "created": "now", "git": {"commit": commit},
            "machine": {"load_average_at_start": load},
            "recovery": {"budget_seconds": 20.0, "mode_labels": {"model_guided": "(b) model-guided"},
                         "rows": [dict(target=t, mode="model_guided", recovered=r, seconds=s, why=w)
                                  for t, r, s, w in rows]}}


def test_pairs_in_both_runs_are_compared_and_gains_and_losses_named(tmp_path, capsys):
    before = _results([("tracr:a", True, 5.0, None), ("tracr:b", False, 1.0, "x"),
                       ("tracr:old", True, 1.0, None)], "abc", [0.3])
    after = _results([("tracr:b", True, 2.0, None), ("tracr:a", False, 20.0, "rejected by random_networks"),
                      ("tracr:new", True, 1.0, None)], "def", [8.0])
    md = compare_recovery(before, after)
    lines = md.splitlines()
    assert "gained: tracr:b [model_guided]; lost: tracr:a [model_guided]." in md
    assert "load average at start 0.30" in md and "load average at start 8.00" in md
    rows = [line for line in lines if line.startswith("| tracr:")]
    # Only pairs both runs have, in the later run's order.
    assert [r.split(" | ")[0] for r in rows] == ["| tracr:b", "| tracr:a"]
    assert rows[1] == ("| tracr:a | (b) model-guided | **yes** | no | 5.000 | 20.0 | 4.000 | "
                       "rejected by random_networks |")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(before))
    b.write_text(json.dumps(after))
    assert main([str(a), str(b)]) == 0 and "tracr:a" in capsys.readouterr().out
    b.write_text("{}")
    assert main([str(a), str(b)]) == 1 and "cannot read" in capsys.readouterr().err
