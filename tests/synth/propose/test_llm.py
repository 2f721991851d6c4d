"""The LLM proposer end to end at its own boundary: real prompt, real SDK, real DSL parsing.

A compiled tracr target (``tracr:reverse``) supplies the architecture, task, network outputs
and ground truth; the scripted loopback server plays the model. The "correct program"
reply is the target's ground-truth hypothesis printed in the answer format, as a perfect
model would write it.
"""

from __future__ import annotations

import ast
import json

import pytest
from fake_anthropic_server import FakeAnthropicServer, Reply, texts_sent
from hypothesis import given, settings
from hypothesis import strategies as st

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth.propose.llm_prompt import (
    EXAMPLE_HYPOTHESIS,
    feedback_prompt,
    observation_lines,
    static_prompt,
)
from mechsynth.synth.propose.interface import ProposalContext, ScoredCandidate
from mechsynth.synth.propose.llm import LLMProposer, extract_blocks, parse_candidate, parse_reply

KEY = "sk-ant-test-proposer-SECRET-0000000000"
TARGET = "tracr:reverse"


@pytest.fixture(scope="module")
def target(target_named):
    return target_named(TARGET)


@pytest.fixture(scope="module")
def observations(target):
    from mechsynth.synth.observe import observe

    return observe(target, per_length=64, seed=0)


@pytest.fixture(scope="module")
def truth(target) -> Hypothesis:
    assert target.ground_truth is not None, f"{TARGET} must carry its ground-truth hypothesis"
    return target.ground_truth


def fenced(text: str) -> str:
    return f"```hypothesis\n{text.rstrip()}\n```"


ILL_TYPED = "program:\n    x = aggregate(tokens, tokens)\n"
MALFORMED = "program:\n    x = = map(add(1), tokens\n"
UNKNOWN_FN = "program:\n    x = map(frobnicate(3), tokens)\n"


def scripted_reply(truth: Hypothesis) -> str:
    return "\n\n".join(
        [
            "The last layer's head attends to the mirrored position, so:",
            fenced(str(truth)),
            "A variant with an ill-typed aggregate:",
            fenced(ILL_TYPED),
            fenced(MALFORMED),
            fenced(UNKNOWN_FN),
        ]
    )


def make(server, **kw) -> LLMProposer:
    kw.setdefault("max_retries", 0)
    return LLMProposer(api_key=KEY, base_url=server.base_url, **kw)


# --- proposals from a reply ----------------------------------------------------------------------


def test_correct_program_is_a_valid_llm_proposal_and_the_rest_are_rejected_with_reasons(
    target, observations, truth
):
    with FakeAnthropicServer([Reply(scripted_reply(truth))]) as server:
        p = make(server)
        proposals = list(p.propose(ProposalContext(target, observations)))
    assert [pr.source for pr in proposals] == ["llm"] * 4
    good, ill, bad, unknown = proposals
    assert good.error is None and good.hypothesis == truth
    assert "program:" in good.text
    assert ill.hypothesis is None and ill.error.startswith("parse error:") and "selector" in ill.error
    assert bad.hypothesis is None and bad.error.startswith("parse error:") and "syntax" in bad.error
    assert unknown.hypothesis is None and "unknown function 'frobnicate'" in unknown.error
    (call,) = p.ledger
    assert call.outcome == "ok" and (call.candidates, call.valid, call.rejected) == (4, 1, 3)
    assert all(pr.meta["llm"]["index"] == 0 for pr in proposals)
    assert [pr.meta["llm"]["candidate"] for pr in proposals] == [0, 1, 2, 3]
    json.dumps([dict(pr.meta) for pr in proposals])


def test_the_prompt_is_built_from_registry_target_and_observations_without_the_answer(
    target, observations, truth
):
    from mechsynth import dsl

    with FakeAnthropicServer([Reply("nothing")]) as server:
        p = make(server)
        list(p.propose(ProposalContext(target, observations)))
        (sent,) = texts_sent(server.requests)
        system = server.requests[0].body["system"]
    assert dsl.reference().strip() in system[0]["text"]  # generated DSL reference, static block
    assert "blocks.3.attn.hook_z[0]" in system[1]["text"]  # architecture, per-target block
    assert "reverse the input" in sent  # task description
    # Attention summaries from the observations: the last layer's head reads the mirrored position.
    (l3,) = [line for line in sent.splitlines() if line.startswith("  L3 head 0:")]
    assert "positional, query->key" in l3 and "[key index = length - 1 - query index] on 100%" in l3
    assert "L1 head 0" not in sent  # all-zero heads are listed as unused, not described
    # Examples show the network's outputs (not the task labels) for the inputs they list.
    examples = [line for line in sent.splitlines() if line.startswith("[") and " -> " in line]
    assert len(examples) >= 10
    for line in examples:
        x, y = (ast.literal_eval(part) for part in line.split("   (")[0].split(" -> "))
        assert target.predict([x])[0] == y
    # The answer is not in the prompt: neither the ground-truth program nor its variable names.
    assert str(truth.program) not in sent
    secret_names = set(truth.program.variables) - {"tokens", "indices", "length"}
    assert not [name for name in secret_names if f"{name} =" in sent]


def test_user_registered_function_appears_in_the_prompt():
    from mechsynth import dsl
    from mechsynth.dsl import registry

    with registry.scope():

        @dsl.register.function("triple_plus", 1, ("k",), doc="3*x + k, a user-registered family")
        def _triple_plus(x, k):
            return 3 * x + k

        text = static_prompt(4)
    assert "triple_plus" in text
    assert "triple_plus" not in static_prompt(4)


def test_refinement_round_feeds_back_scores_failures_counterexamples_and_rejections(
    target, observations, truth
):
    wrong = Hypothesis.parse("program:\n    out = aggregate(select(indices, indices, EQ), tokens)\n")
    best = [
        ScoredCandidate(
            hypothesis=wrong,
            source="enumerate",
            scores={"behaviour": 0.21, "loss_recovered": 0.05, "iia": 0.1, "per_input": [1, 0]},
            failure="behaviour 0.21 < 0.95",
            counterexamples=[{"input": ["a", "b"], "network": ["b", "a"], "program": ["a", "b"]}],
        )
    ]
    with FakeAnthropicServer([Reply(fenced(MALFORMED)), Reply(fenced(str(truth)))]) as server:
        p = make(server)
        first = list(p.propose(ProposalContext(target, observations, round=0)))
        second = list(p.propose(ProposalContext(target, observations, best=best, round=1)))
        sent = texts_sent(server.requests)
    assert first[0].error and second[0].hypothesis == truth
    assert "No hypotheses have been scored yet" in sent[0]
    feedback = server.requests[1].body["messages"][0]["content"][0]["text"]
    assert "Refinement round 1" in feedback
    assert "behaviour=0.21" in feedback and "per_input" not in feedback
    assert "Failure: behaviour 0.21 < 0.95" in feedback
    assert "input ['a', 'b']; network output ['b', 'a']; program output ['a', 'b']" in feedback
    assert "rejected before scoring" in feedback and "parse error" in feedback
    # The stable parts are identical, so the second call reads them from the cache.
    assert server.requests[0].body["system"] == server.requests[1].body["system"]
    assert p.ledger[1].cache_read_input_tokens > 0 and p.ledger[1].cache_creation_input_tokens == 0


def test_duplicates_are_not_proposed_twice(target, truth):
    reply = Reply(fenced(str(truth)) + "\n" + fenced(str(truth)))
    with FakeAnthropicServer([reply, reply]) as server:
        p = make(server)
        first = list(p.propose(ProposalContext(target, None)))
        second = list(p.propose(ProposalContext(target, None, round=1)))
    assert len(first) == 1 and second == []
    assert [c.duplicates for c in p.ledger] == [1, 2]


def test_truncated_reply_says_so(target, truth):
    text = fenced(str(truth)) + "\n```hypothesis\nprogram:\n    x = map(add(1), tok"
    with FakeAnthropicServer([Reply(text, stop_reason="max_tokens")]) as server:
        proposals = list(make(server).propose(ProposalContext(target, None)))
    assert proposals[0].hypothesis == truth
    assert proposals[1].error.endswith("(reply cut off at max_tokens)")


# --- reading candidates (no server) --------------------------------------------------------------


def test_bad_locations_are_rejected_with_the_reason(target):
    base = "program:\n    x = aggregate(select(indices, indices, EQ), tokens)\ncorrespondence:\n    x: "
    assert parse_candidate(base + "blocks.0.attn.hook_z[0]", target).hypothesis is not None
    cases = {
        "blocks.9.attn.hook_z[0]": "names layer 9, the model has 4 layer(s)",
        "blocks.0.attn.hook_z[5]": "names head 5, the model has 1 head(s) per layer",
        "blocks.0.hook_mlp_out[dims=999]": "names dimension 999",
        "blocks.0.attn.hook_nothing": "is not a hook of this model",
    }
    for loc, reason in cases.items():
        cand = parse_candidate(base + loc, target)
        assert cand.hypothesis is None and cand.error.startswith("bad location: x:") and reason in cand.error


def test_selector_output_is_ill_typed():
    cand = parse_candidate("program:\n    s = select(tokens, tokens, EQ)\n")
    assert cand.error == "ill-typed program: the output 's' is a selector, not a sequence"


def test_bare_program_and_unknown_correspondence_variable():
    bare = parse_candidate("x = map(add(1), tokens)")
    assert bare.hypothesis is not None and dict(bare.hypothesis.correspondence) == {}
    cand = parse_candidate(
        "program:\n    x = map(add(1), tokens)\ncorrespondence:\n    y: blocks.0.hook_mlp_out\n"
    )
    assert cand.error.startswith("malformed hypothesis:") and "'y'" in cand.error


def test_extract_blocks():
    assert extract_blocks("a\n```\nx\n```\nb\n```python\ny\n```") == ["x", "y"]
    assert extract_blocks("no fences\nprogram:\n    x = map(add(1), tokens)") == [
        "program:\n    x = map(add(1), tokens)"
    ]
    assert extract_blocks("```hypothesis\nopen") == ["open"]
    assert extract_blocks("nothing at all") == []


def test_reply_without_blocks_is_one_rejection():
    (cand,) = parse_reply("I cannot help with that.")
    assert cand.error == "reply contained no fenced hypothesis block"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_reply_text_gives_candidates_never_an_exception(text):
    for cand in parse_reply(text):
        assert (cand.hypothesis is None) != (cand.error is None)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "x = map(add(1), tokens)",
                "y = select(indices, indices, LT)",
                "z = aggregate(y, x)",
                "w = seqmap(add, x, indices)",
                "v = selector_width(y)",
                "program:",
                "correspondence:",
                "    x: blocks.0.hook_mlp_out",
                "```",
                "```hypothesis",
                "garbage (",
                "",
            ]
        ),
        max_size=12,
    )
)
def test_fragments_of_valid_syntax_never_raise(lines):
    for cand in parse_reply("\n".join(lines)):
        assert (cand.hypothesis is None) != (cand.error is None)


# --- prompt pieces -------------------------------------------------------------------------------


def test_example_in_the_prompt_parses_with_the_current_dsl():
    assert Hypothesis.parse(EXAMPLE_HYPOTHESIS).correspondence["shifted"] == Location(
        "blocks.0.attn.hook_z", head=0
    )


def test_observation_adapter_tolerates_anything():
    class Described:
        def describe(self):
            return "layer 0: head 0 copies the previous token\nlayer 1: nothing"

    class Broken:
        groups = "not groups"

    assert observation_lines(None) == []
    assert observation_lines(object()) == []
    assert observation_lines(Broken()) == []
    assert observation_lines(Described()) == ["layer 0: head 0 copies the previous token", "layer 1: nothing"]
    assert observation_lines(type("O", (), {"decodable": {0: ["tokens"], 1: ["length"]}})()) == [
        "Variables decodable from the residual stream:",
        "  before layer 0: tokens",
        "  before layer 1: length",
    ]


def test_feedback_marks_accepted_and_handles_odd_counterexamples():
    h = Hypothesis.parse("program:\n    x = map(add(1), tokens)\n")
    text = feedback_prompt(
        [ScoredCandidate(h, "llm", {"behaviour": 1.0}, accepted=True, counterexamples=[[1, 2], "odd"])],
        [],
        round=2,
        n_candidates=3,
    )
    assert "(from llm, ACCEPTED)" in text and "- input [1, 2]" in text and "- odd" in text
    assert text.endswith("Propose 3 new candidate hypotheses in the answer format.")


def test_feedback_finds_its_own_counterexamples_when_the_loop_gives_none(target, truth):
    from mechsynth.synth.propose.llm_prompt import Probe

    probe = Probe.sample(target, n=32, seed=0)
    identity = Hypothesis.parse("program:\n    same = aggregate(select(indices, indices, EQ), tokens)\n")
    mislocated = Hypothesis(truth.program, {})  # right program, no correspondence: fails elsewhere
    best = [
        ScoredCandidate(identity, "enumerate", {"behaviour": 0.4}, failure="behaviour 0.4 < 0.98"),
        ScoredCandidate(mislocated, "llm", {"behaviour": 1.0, "iia": 0.3}, failure="iia 0.3 < 0.8"),
    ]
    text = feedback_prompt(best, [], round=1, n_candidates=2, probe=probe)
    first, second = text.split("### Candidate 2")
    lines = [line for line in first.splitlines() if line.startswith("- input ")]
    assert 1 <= len(lines) <= 3
    for line in lines:  # each is a real disagreement: the network's output is the reversed input
        x = ast.literal_eval(line.split("; ")[0].removeprefix("- input "))
        net = ast.literal_eval(line.split("; ")[1].removeprefix("network output "))
        assert net == target.predict([x])[0] == x[::-1] and x != x[::-1]
    assert f"equal the network's on all {len(probe.inputs)} sampled inputs" in second
