"""mechsynth predict / edit / replace on a stored run (a run store holding an accepted hypothesis)."""

from __future__ import annotations

import json

import pytest

from mechsynth.synth.cli import main
from mechsynth.synth.store import RunStore, candidate_key


def _run_dir(tmp_path, target_named, spec="tracr:hist", status="accepted"):
    hyp = target_named(spec).ground_truth
    out = tmp_path / "run"
    with RunStore(out) as store:
        store.begin({"target": spec, "options": {"seed": 0}})
        store.add_candidate(candidate_key(str(hyp), "cfg"), program=str(hyp.program),
                            correspondence={k: str(v) for k, v in hyp.correspondence.items()},
                            source="test", status=status)
    return out


def test_predict_edit_replace_json(tmp_path, target_named, capsys):
    run = str(_run_dir(tmp_path, target_named))
    assert main(["predict", run, "--n", "200", "--count", "5", "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predicted"] == []
    assert main(["edit", run, "same_tok = select(tokens, tokens, NEQ)", "--n", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["follows_edited"] >= 0.99
    assert main(["replace", run, "--n", "100"]) == 0
    assert "compiled back with tracr" in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["edit", "{run}", "nope = tokens"], "not assigned"),
    (["edit", "{run}", "what"], "expected 'VARIABLE = EXPRESSION'"),
    (["predict", "{run}", "--candidate", "99"], "not accepted"),
])
def test_bad_use_is_one_line(tmp_path, target_named, capsys, argv, says):
    run = str(_run_dir(tmp_path, target_named))
    assert main([a.format(run=run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_run_without_an_accepted_hypothesis_is_refused(tmp_path, target_named, capsys):
    run = str(_run_dir(tmp_path, target_named, status="failed"))
    assert main(["replace", run]) == 2
    assert "accepted no hypothesis" in capsys.readouterr().err
