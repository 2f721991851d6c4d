"""Locations: text and JSON round trips, and clear errors on bad input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechsynth.dsl.errors import HypothesisError
from mechsynth.dsl.location import Location

hooks = st.sampled_from(
    [
        "hook_embed",
        "hook_pos_embed",
        "blocks.0.attn.hook_z",
        "blocks.3.hook_mlp_out",
        "blocks.1.hook_resid_pre",
    ]
)
locations = st.builds(
    Location,
    hooks,
    st.one_of(st.none(), st.integers(0, 15)),
    st.one_of(st.none(), st.lists(st.integers(0, 255), min_size=1, max_size=6).map(tuple)),
)


@given(locations)
def test_location_text_round_trip(loc):
    assert Location.parse(str(loc)) == loc


@given(locations)
def test_location_json_round_trip(loc):
    assert Location.from_json(loc.to_json()) == loc


def test_location_layer_and_component():
    assert Location("blocks.2.attn.hook_z", 1).layer == 2
    assert Location("blocks.2.attn.hook_z", 1).component == "attn"
    assert Location("blocks.0.hook_mlp_out").component == "mlp"
    assert Location("hook_embed").layer is None


@pytest.mark.parametrize("text", ["", "blocks.0.attn.hook_z[x]", "blocks 0", "[1]"])
def test_bad_location_text(text):
    with pytest.raises(HypothesisError):
        Location.parse(text)


def test_negative_head_rejected():
    with pytest.raises(HypothesisError, match="head index"):
        Location("blocks.0.attn.hook_z", -1)


def test_act_name_is_transformer_lens_get_act_name():
    from transformer_lens.utilities.components_utils import get_act_name

    from mechsynth.dsl.location import act_name, hook_in_layer

    for name in ("z", "pattern", "q", "k", "v", "result", "attn_scores", "mlp_out", "pre", "post",
                 "resid_pre", "resid_mid", "resid_post", "attn_out"):
        assert act_name(name, 2) == get_act_name(name, 2)
    assert act_name("embed") == get_act_name("embed")
    assert act_name("pos_embed") == get_act_name("pos_embed")
    assert hook_in_layer(act_name("z", 1), 3) == act_name("z", 3)
    with pytest.raises(HypothesisError):
        act_name("z")
    with pytest.raises(HypothesisError):
        act_name("nonsense", 0)


def test_forward_pass_order():
    assert Location("hook_embed").order == -1.0 and Location("blocks.2.attn.hook_z", 0).order == 2.0
    assert Location("blocks.2.hook_mlp_out").order == 2.5
    assert Location("blocks.2.hook_resid_pre").order is None
