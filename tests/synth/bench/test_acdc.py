"""The ACDC/EAP peer: component naming, comparison, and a clear skip when its venv is missing.

Running auto-circuit needs its own venv (transformer_lens 2.x) and takes tens of seconds,
so the real run is marked slow and skipped where the venv has not been built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mechsynth.synth.bench import acdc_peer
from mechsynth.dsl.location import Location


def test_edge_and_location_components_use_one_naming():
    assert acdc_peer.edge_components("A1.0.Q") == "A1.0"
    assert acdc_peer.edge_components("A3.2") == "A3.2"
    assert acdc_peer.edge_components("MLP 2") == "MLP 2"
    assert acdc_peer.edge_components("Resid Start") is None
    assert acdc_peer.edge_components("Resid End") is None
    assert acdc_peer.location_component(Location("blocks.1.attn.hook_z", head=0)) == "A1.0"
    assert acdc_peer.location_component("blocks.2.hook_mlp_out[dims=3,4]") == "MLP 2"
    assert acdc_peer.location_component(Location("hook_embed", dims=(0, 1))) is None
    assert acdc_peer.components_of(
        ["blocks.0.attn.hook_z[1]", "hook_pos_embed", "blocks.0.hook_mlp_out"]
    ) == {
        "A0.1",
        "MLP 0",
    }


def _worker_output() -> dict:
    edges = [
        ("Resid Start", "A0.0.V", True, 0.9),
        ("A0.0", "MLP 1", True, 0.8),
        ("MLP 1", "Resid End", True, 0.7),
        ("Resid Start", "A0.1.Q", False, 0.6),  # EAP ranks it above a kept edge below
        ("A0.1", "Resid End", False, 0.05),
    ]
    return {
        "n_edges": len(edges),
        "tau": 0.01,
        "faithfulness": "kl_div",
        "acdc_seconds": 1.0,
        "eap_seconds": 0.1,
        "rebuild_max_abs_diff": 0.0,
        "worker_wall_seconds": 3.0,
        "edges": [
            {"edge": f"{s}->{d}", "src": s, "dest": d, "acdc_kept": k, "eap_score": e} for s, d, k, e in edges
        ],
    }


def test_compare_result_scores_components_against_truth_and_ours():
    truth = {"A0.0", "MLP 1"}
    ours = {"A0.0", "MLP 1"}
    c = acdc_peer.compare_result("tracr:x", _worker_output(), truth, ours)
    assert c.acdc_edges == 3 and c.n_edges == 5
    assert c.acdc_components == ("A0.0", "MLP 1")
    assert c.acdc_vs_truth["exact"] and c.acdc_vs_truth["recall"] == 1.0
    # EAP is read at ACDC's size (3 edges): its top 3 are the first three by score.
    assert c.eap_components == ("A0.0", "MLP 1")
    assert c.ours_vs_truth["precision"] == 1.0
    partial = acdc_peer.compare_result("tracr:x", _worker_output(), {"A0.0", "MLP 1", "A1.0"}, None)
    assert partial.acdc_vs_truth["missing"] == ["A1.0"]
    assert partial.ours_components is None
    json.dumps(partial.to_json())


def test_missing_venv_is_one_clear_line_and_a_skip(tmp_path):
    status = acdc_peer.ensure_venv(tmp_path / "no-venv", create=False)
    assert not status.ready and "\n" not in status.message and "missing" in status.message
    result = acdc_peer.run_peer([], {}, tmp_path / "work", venv=tmp_path / "no-venv", create_venv=False)
    assert "skipped" in result and "missing" in result["skipped"]


def test_a_venv_that_cannot_be_created_is_one_line_and_a_skip(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    status = acdc_peer.ensure_venv(blocker / "venv", create=True)
    assert not status.ready and "\n" not in status.message and "ACDC skipped" in status.message


def test_worker_imports_none_of_our_packages():
    # It runs under transformer_lens 2.x; importing dsl/synth/models there would break.
    source = acdc_peer.WORKER.read_text()
    for pkg in ("synth", "dsl", "models"):
        assert f"from {pkg}" not in source and f"import {pkg}" not in source


@pytest.mark.slow
def test_peer_runs_on_a_tracr_target(tmp_path):
    if not acdc_peer.venv_ready(acdc_peer.default_venv_dir()):
        pytest.skip("auto-circuit venv not built (mechsynth bench --with-acdc builds it)")
    from mechsynth.models import load_target

    target = load_target("tracr:reverse")
    result = acdc_peer.run_peer([target], {}, Path(tmp_path), create_venv=False)
    assert result["errors"] == {}
    (row,) = result["rows"]
    assert row["rebuild_max_abs_diff"] < 1e-4  # the rebuilt TL 2.x model computes our function
    assert row["acdc_edges"] >= 1 and row["n_edges"] > row["acdc_edges"]


def test_peer_table_renders_components_times_and_edges():
    from mechsynth.synth.bench.render.acdc import render_acdc

    both = {"A0.0", "MLP 1"}
    row = acdc_peer.compare_result("tracr:x", _worker_output(), both, both).to_json()
    peer = {
        "venv_message": "auto-circuit venv ready at /v",
        "settings": {"n": 128, "seed": 0, "tau": 0.01},
        "rows": [row],
        "errors": {"tracr:y": "auto-circuit worker failed: boom"},
    }
    recovery = {"rows": [{"mode": "model_guided", "target": "tracr:x", "recovered": True, "seconds": 4.0}]}
    md = render_acdc(peer, recovery)
    assert "| tracr:x | 3/5 | A0.0, MLP 1 | A0.0, MLP 1 | A0.0, MLP 1 | A0.0, MLP 1 |" in md
    assert "`Resid Start->A0.0.V`" in md
    assert "tracr:y: auto-circuit worker failed: boom" in md
