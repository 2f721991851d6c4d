"""The acceptance rule (synth.accept): one set of thresholds, one statistic, and the README says the same."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from mechsynth.synth.accept import SCORED, CandidateStatus, ControlError, Thresholds, statistic, strength
from mechsynth.synth.store import STATUSES

README = Path(__file__).parents[2] / "README.md"


def _readme_thresholds() -> dict[str, str]:
    text = README.read_text()
    block = text[text.index("Acceptance needs every one of these"):]
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", block.split("\n\n", 2)[1], flags=re.M)
    return {name: value for name, value in rows if name != "threshold" and not set(name) <= {"-", "|"}}


def test_the_readme_table_is_the_default_thresholds():
    th = Thresholds()
    table = _readme_thresholds()
    expected = {
        "behaviour": f"≥ {th.behaviour}",
        "loss_recovered": f"≥ {th.loss_recovered}",
        "iia": f"≥ {th.iia}",
        "Holm-adjusted p (over **every** hypothesis the run scored)": f"< alpha = {th.alpha}",
        "necessity": f"≥ {th.min_necessity}",
        "minimality: each located node's removal costs": f"≥ {th.min_node_cost}",
        "broader-distribution behaviour (where the network itself is right)": f"≥ {th.min_behaviour_broader}",
        "gap to the best re-initialised / weight-shuffled copy": f"≥ {th.min_gap_random_networks}",
        f"gap to the {th.null_quantile:.0%} quantile q of other placements / random programs":
            f"> 0 and ≥ min({th.min_gap_null}, (1 − q)/{1 / th.null_gap_share:g})",
    }
    assert table == expected


def test_the_checks_and_the_controls_share_one_behaviour_bar():
    th = Thresholds()
    assert th.checks == {"behaviour": 0.98, "loss_recovered": 0.8, "iia": 0.8}
    assert th.failures({"behaviour": 0.97, "loss_recovered": 0.9, "iia": float("nan")}) == [
        "behaviour 0.970 < 0.98", "iia nan < 0.8"]


def test_statistic_and_strength():
    scores = {"behaviour": 1.0, "loss_recovered": 0.7, "iia": 0.9}
    assert statistic(scores) == 0.7 and statistic(scores, ("iia",)) == 0.9
    assert math.isnan(statistic({"behaviour": 1.0})) and math.isnan(statistic(None))
    assert strength({"behaviour": 1.0, "loss_recovered": None, "iia": 0.5}) == -1.0


def test_statuses():
    assert set(STATUSES) == {s.value for s in CandidateStatus} - {"passed"}
    assert CandidateStatus.ACCEPTED == "accepted" and set(SCORED) == {"filtered", "failed", "accepted"}


def test_bad_thresholds_are_one_line_errors():
    with pytest.raises(ControlError, match="alpha"):
        Thresholds(alpha=1.5)


UNDEFINED_LR = {
    "behaviour": 1.0, "loss_recovered": math.nan, "iia": 0.95,
    "loss_recovered_undefined": "resampling the whole input even across lengths changes nothing",
}


def test_an_undefined_loss_recovered_with_a_reason_is_decided_on_behaviour_and_iia() -> None:
    from mechsynth.synth.accept import undefined_note

    th = Thresholds()
    assert th.failures(UNDEFINED_LR) == []
    assert statistic(UNDEFINED_LR, th.statistic) == 0.95 and strength(UNDEFINED_LR) == 0.95
    note = undefined_note(UNDEFINED_LR)
    assert note.startswith("loss recovered undefined: resampling") and "behaviour and interchange" in note
    # Behaviour and IIA still decide: a null that matches neither fails without the loss.
    assert th.failures({**UNDEFINED_LR, "iia": 0.3}) == ["iia 0.300 < 0.8"]
    assert th.failures({**UNDEFINED_LR, "behaviour": 0.5})[0].startswith("behaviour")


def test_a_bare_nan_loss_recovered_still_fails() -> None:
    scores = {k: v for k, v in UNDEFINED_LR.items() if k != "loss_recovered_undefined"}
    assert Thresholds().failures(scores) == ["loss_recovered nan < 0.8"]
    assert math.isnan(statistic(scores, Thresholds().statistic))
