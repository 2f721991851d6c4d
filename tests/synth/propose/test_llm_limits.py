"""An LLM reply holding an expression bomb is a recorded rejection, at once (issue 18 item 1)."""

from __future__ import annotations

from mechsynth.synth.propose.llm import parse_reply

BOMB = "```\nprogram:\n    out = map(x + 9**9**9, tokens)\n```\n```\nout = map(x ** 99999999999, tokens)\n```"


def test_bombs_in_a_reply_are_rejections_with_the_limit_named() -> None:
    # Before: parsing this reply never returned, so the proposer's timeout did not hold.
    parsed = parse_reply(BOMB)
    assert len(parsed) == 2 and all(c.hypothesis is None for c in parsed)
    assert "exponent 387420489 is too large" in parsed[0].error
    assert "exponent 99999999999 is too large" in parsed[1].error
