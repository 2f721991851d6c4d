"""Reading hypothesis files strictly: nothing is misread silently (issue 18 items 9 and 10)."""

from __future__ import annotations

import json

import pytest

from mechsynth import dsl
from mechsynth.dsl.errors import HypothesisError, ParseError
from mechsynth.dsl.hypothesis import Hypothesis

ONE = "program:\n    y = map(add(1), tokens)\n"


def _error(text: str) -> str:
    with pytest.raises(HypothesisError) as info:
        Hypothesis.parse(text)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_second_program_section_is_refused_not_appended() -> None:
    assert "line 3: a second 'program:' section" in _error(ONE + "program:\n    z = map(add(2), tokens)\n")


def test_a_second_correspondence_section_is_refused() -> None:
    text = ONE + "correspondence:\n    y: hook_embed\ncorrespondence:\n    tokens: hook_embed\n"
    assert "a second 'correspondence:' section" in _error(text)


def test_a_duplicate_correspondence_line_is_refused_not_overwritten() -> None:
    text = ONE + "correspondence:\n    y: hook_embed\n    y: blocks.0.hook_mlp_out\n"
    assert "line 5: 'y' already has a location (line 4)" in _error(text)


def test_a_byte_order_mark_is_ignored() -> None:
    assert Hypothesis.parse("\ufeff" + ONE) == Hypothesis.parse(ONE)
    as_json = json.dumps({"program": "y = map(add(1), tokens)"})
    assert Hypothesis.parse("\ufeff" + as_json) == Hypothesis.parse(ONE)


def test_a_non_ascii_name_is_reported_where_it_is_assigned() -> None:
    error = _error("program:\n    \u00e9 = map(add(1), tokens)\n    y = map(add(1), \u00e9)\n")
    assert "line 1, column 0: '\u00e9' is not a valid variable name" in error


def test_columns_count_characters_not_utf8_bytes() -> None:
    line = "y = map(table({'\u00e9\u00e9\u00e9': 1}), zz)"
    with pytest.raises(ParseError) as info:
        dsl.parse(line)
    assert info.value.col == line.index("zz")


@pytest.mark.parametrize("data, fragment", [
    ({"program": "y = map(add(1), tokens)", "correspondence": [1, 2]}, "must be an object"),
    ({"program": "y = map(add(1), tokens)", "correspondence": {"y": {"hook": "hook_embed", "dims": 3}}},
     "cannot read the location of 'y'"),
    ({"program": "y = map(add(1), tokens)", "correspondence": {"y": 5}}, "location of 'y'"),
    ({"program": 5}, "'program' must be the program text"),
])
def test_malformed_json_fields_are_one_line_errors(data: dict, fragment: str) -> None:
    assert fragment in _error(json.dumps(data))


def test_deeply_nested_json_is_a_one_line_error() -> None:
    assert "nests too deeply" in _error('{"a":' * 5000 + "1" + "}" * 5000)
