"""The LLM proposer's transport: the real anthropic SDK against the scripted loopback server.

These tests are about calls, not candidates: retries, timeouts, failures, budgets, the
ledger and the status line. The prompt is a fixed one (a subclass overrides
``build_prompt``) so they need neither the DSL nor a compiled target; replies carry no
fenced block, so each successful call yields exactly one rejected proposal.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from fake_anthropic_server import FakeAnthropicServer, Reply

from mechsynth.synth.propose.llm_prompt import PromptParts
from mechsynth.synth.propose.interface import ProposalContext, ScoredCandidate
from mechsynth.synth.propose.llm import DEFAULT_MODEL, ENV_KEY, ENV_MODEL, LLMCall, LLMProposer, ledger_table

KEY = "sk-ant-test-0123456789abcdefSECRET"


class FixedPromptProposer(LLMProposer):
    def build_prompt(self, context: ProposalContext) -> PromptParts:
        return PromptParts("static part " * 400, "target part " * 200, f"round {context.round}")


def make(server: FakeAnthropicServer, **kw) -> FixedPromptProposer:
    kw.setdefault("max_retries", 1)
    kw.setdefault("timeout_s", 5.0)
    return FixedPromptProposer(api_key=KEY, base_url=server.base_url, **kw)


def ctx(round: int = 0, **kw) -> ProposalContext:
    return ProposalContext(target=None, observations=None, round=round, **kw)  # type: ignore[arg-type]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_no_key_falls_back_with_one_line_and_no_request(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    with FakeAnthropicServer([Reply("never sent")]) as server:
        p = FixedPromptProposer(base_url=server.base_url)
        assert not p.enabled
        assert p.status_line == "LLM proposer off: ANTHROPIC_API_KEY not set; the other proposers run"
        assert list(p.propose(ctx())) == []
        assert server.requests == [] and p.ledger == []


def test_model_and_key_from_environment(monkeypatch):
    monkeypatch.setenv(ENV_KEY, KEY)
    monkeypatch.setenv(ENV_MODEL, "claude-test-model")
    with FakeAnthropicServer([Reply("hello")]) as server:
        p = FixedPromptProposer(base_url=server.base_url)
        assert p.enabled and p.model == "claude-test-model"
        list(p.propose(ctx()))
        req = server.requests[0]
        assert req.body["model"] == "claude-test-model"
        assert req.has_credentials
    monkeypatch.delenv(ENV_MODEL)
    assert FixedPromptProposer(base_url="http://127.0.0.1:1").model == DEFAULT_MODEL


def test_ok_call_is_in_the_ledger_and_in_proposal_meta():
    with FakeAnthropicServer([Reply("no candidates here, sorry")]) as server:
        p = make(server)
        (proposal,) = list(p.propose(ctx(round=3)))
        (call,) = p.ledger
    assert call.outcome == "ok" and call.ok and call.round == 3 and call.retries == 0
    assert call.output_tokens > 0 and call.cache_creation_input_tokens > 0
    assert call.request_id == "req_fake_0001"
    assert (call.candidates, call.valid, call.rejected) == (1, 0, 1)
    assert proposal.source == "llm" and proposal.hypothesis is None
    assert proposal.error == "reply contained no fenced hypothesis block"
    assert proposal.meta["llm"]["index"] == 0 and proposal.meta["llm"]["outcome"] == "ok"
    json.dumps(proposal.meta)  # the store writes meta as JSON
    # Both stable prompt parts are sent as cached system blocks; the feedback is the user turn.
    body = server.requests[0].body
    assert [b.get("cache_control") for b in body["system"]] == [{"type": "ephemeral"}] * 2
    assert body["messages"][0]["role"] == "user"


def test_second_call_reads_the_cache():
    with FakeAnthropicServer([Reply("a"), Reply("b")]) as server:
        p = make(server)
        list(p.propose(ctx(0)))
        list(p.propose(ctx(1)))
    first, second = p.ledger
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0


def test_rate_limit_is_retried_by_the_sdk_then_succeeds():
    with FakeAnthropicServer([Reply.error(429, "slow down"), Reply("fine now")]) as server:
        p = make(server, max_retries=2)
        proposals = list(p.propose(ctx()))
        assert [r.retry_count for r in server.requests] == [0, 1]
    (call,) = p.ledger
    assert call.outcome == "ok" and call.retries == 1
    assert len(proposals) == 1 and p.enabled


def test_server_error_after_retries_is_a_counted_failure_and_repeated_failures_turn_it_off():
    script = [Reply.error(500, "boom")] * 4
    with FakeAnthropicServer(script) as server:
        p = make(server, max_retries=1, max_consecutive_failures=2)
        assert list(p.propose(ctx(0))) == []
        assert p.enabled  # one failure is not a reason to give up
        assert list(p.propose(ctx(1))) == []
        assert len(server.requests) == 4  # two calls, each tried twice
    assert [c.outcome for c in p.ledger] == ["http 500", "http 500"]
    assert all(c.retries == 1 and c.error == "boom" for c in p.ledger)
    assert not p.enabled
    assert p.status_line.startswith("LLM proposer off: 2 calls failed in a row (last: http 500)")
    assert list(p.propose(ctx(2))) == []  # stays off


def test_success_resets_the_failure_count():
    with FakeAnthropicServer([Reply.error(500), Reply("ok"), Reply.error(500), Reply("ok")]) as server:
        p = make(server, max_retries=0, max_consecutive_failures=2)
        for r in range(4):
            list(p.propose(ctx(r)))
    assert [c.outcome for c in p.ledger] == ["http 500", "ok", "http 500", "ok"]
    assert p.enabled


def test_slow_reply_past_the_timeout_is_a_timeout_not_a_hang():
    with FakeAnthropicServer([Reply("too late", delay_s=30), Reply("in time")]) as server:
        p = make(server, timeout_s=0.3, max_retries=0)
        assert list(p.propose(ctx(0))) == []
        (call,) = p.ledger
        assert call.outcome == "timeout" and "no reply within" in call.error
        assert p.enabled  # a timeout may be transient: the next round tries again
        assert len(list(p.propose(ctx(1)))) == 1
    assert [c.outcome for c in p.ledger] == ["timeout", "ok"]


def test_timeout_is_retried_when_retries_are_allowed():
    with FakeAnthropicServer([Reply("too late", delay_s=30), Reply("in time")]) as server:
        p = make(server, timeout_s=0.3, max_retries=1)
        assert len(list(p.propose(ctx()))) == 1
    assert p.ledger[0].outcome == "ok" and p.ledger[0].retries == 1


def test_unreachable_api_turns_the_proposer_off_in_one_line():
    p = FixedPromptProposer(api_key=KEY, base_url=f"http://127.0.0.1:{closed_port()}", max_retries=0)
    assert list(p.propose(ctx())) == []
    assert p.ledger[0].outcome == "connection error"
    assert not p.enabled
    assert p.status_line.startswith("LLM proposer off: cannot reach http://127.0.0.1:")
    assert "\n" not in p.status_line
    assert list(p.propose(ctx(1))) == [] and len(p.ledger) == 1


def test_rejected_key_turns_the_proposer_off():
    with FakeAnthropicServer([Reply.error(401, "invalid x-api-key")]) as server:
        p = make(server)
        assert list(p.propose(ctx())) == []
    assert p.ledger[0].outcome == "auth error"
    assert p.status_line == (
        "LLM proposer off: the API rejected the key (HTTP 401); the run continues without it"
    )


@pytest.mark.parametrize("body", ["not json {", '{"type": "message"}'])
def test_unreadable_response_body_is_a_bad_response(body):
    with FakeAnthropicServer([Reply(raw_body=body)]) as server:
        p = make(server)
        assert list(p.propose(ctx())) == []
    assert p.ledger[0].outcome == "bad response"
    assert p.ledger[0].error.startswith("unreadable response body")


def test_call_budget():
    with FakeAnthropicServer([Reply("a"), Reply("b"), Reply("c")]) as server:
        p = make(server, max_calls=2)
        for r in range(3):
            list(p.propose(ctx(r)))
        assert len(server.requests) == 2
    assert p.status_line == "LLM proposer done: call budget spent (2 of 2 calls)"


def test_token_budget_counts_input_cache_and_output_tokens():
    with FakeAnthropicServer(default=Reply("x" * 400)) as server:
        p = make(server, max_tokens=6000, max_output_tokens=512)
        for r in range(20):
            list(p.propose(ctx(r)))
        n = len(server.requests)
    assert 1 <= n < 20
    assert p.tokens_used <= 6000
    assert p.status_line.startswith("LLM proposer done: token budget spent")
    # The output cap of each request never exceeds what is left of the budget.
    assert all(r.body["max_tokens"] <= 512 for r in server.requests)


def test_deadline_passed_means_no_call():
    with FakeAnthropicServer([Reply("a")]) as server:
        p = make(server)
        assert list(p.propose(ctx(deadline=time.monotonic() - 1))) == []
        assert server.requests == []
    assert p.status_line == "LLM proposer done: run deadline reached"


def test_near_deadline_the_timeout_shrinks_and_retries_stop():
    with FakeAnthropicServer([Reply("late", delay_s=30), Reply("unused")]) as server:
        p = make(server, timeout_s=60, max_retries=3)
        list(p.propose(ctx(deadline=time.monotonic() + 0.5)))
        assert len(server.requests) == 1
    assert p.ledger[0].outcome == "timeout" and p.ledger[0].retries == 0


def test_acceptance_stops_the_proposer():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class _H:  # stands in for a Hypothesis; the proposer only reads `accepted` here
        text: str = "h"

    best = [ScoredCandidate(hypothesis=_H(), source="enumerate", scores={}, accepted=True)]  # type: ignore[arg-type]
    with FakeAnthropicServer([Reply("a")]) as server:
        p = make(server)
        assert list(p.propose(ctx(best=best))) == []
        assert server.requests == []
    assert p.status_line == "LLM proposer done: a hypothesis was accepted"


def test_calls_per_round():
    with FakeAnthropicServer(default=Reply("a")) as server:
        p = make(server, calls_per_round=3, max_calls=5)
        assert len(list(p.propose(ctx(0)))) == 3
        assert len(list(p.propose(ctx(1)))) == 2
        assert len(server.requests) == 5


def test_key_never_in_ledger_meta_status_logs_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    script = [
        Reply("ok"),
        Reply.error(400, f"bad request for key {KEY}"),
        Reply.error(401, f"key {KEY} revoked"),
    ]
    with FakeAnthropicServer(script) as server:
        p = make(server, max_retries=0, max_consecutive_failures=5)
        proposals = []
        for r in range(3):
            proposals += list(p.propose(ctx(r)))
        # The key did reach the server (as a credential header), and only there.
        assert server.requests[0].has_credentials
    assert [c.outcome for c in p.ledger] == ["ok", "http 400", "auth error"]
    assert "[redacted]" in p.ledger[1].error
    texts = [
        json.dumps([c.to_json() for c in p.ledger]),
        json.dumps([dict(pr.meta) for pr in proposals]),
        repr(p),
        p.status_line,
        json.dumps(p.summary()),
        ledger_table(p.ledger),
        caplog.text,
    ]
    for text in texts:
        assert KEY not in text
        assert "SECRET" not in text


def test_ledger_entries_are_immutable_records():
    call = LLMCall(index=0, round=0, model="m", outcome="ok", latency_s=0.1, input_tokens=5, output_tokens=7)
    assert call.total_tokens == 12
    with pytest.raises(AttributeError):
        call.outcome = "changed"  # type: ignore[misc]
    assert "outcome" in ledger_table([call])


def test_status_line_when_on_names_model_endpoint_and_budget():
    p = FixedPromptProposer(api_key=KEY, base_url="http://user:pw@127.0.0.1:9/some/path", max_calls=3)
    assert p.status_line == (
        f"LLM proposer on: {DEFAULT_MODEL} via http://127.0.0.1:9 (budget 3 calls, 200000 tokens)"
    )


def test_server_stops_by_itself():
    server = FakeAnthropicServer([Reply("a")], lifetime_s=0.2).start()
    url = server.base_url
    deadline = time.monotonic() + 30
    while server._httpd is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server._httpd is None
    p = FixedPromptProposer(api_key=KEY, base_url=url, max_retries=0)
    assert list(p.propose(ctx())) == [] and p.ledger[0].outcome == "connection error"


def test_a_huge_retry_after_is_capped_instead_of_hanging_the_run():
    import threading

    script = [Reply(status=429, text="come back in an hour", headers={"retry-after": "3600"}), Reply("ok")]
    with FakeAnthropicServer(script) as server:
        p = make(server, max_retries=1, max_retry_wait_s=0.01)
        out: list = []
        worker = threading.Thread(target=lambda: out.extend(p.propose(ctx())), daemon=True)
        worker.start()
        worker.join(60)  # a watchdog against a hang, not a speed assertion
        assert not worker.is_alive()
    assert p.ledger[0].outcome == "ok" and p.ledger[0].retries == 1 and len(out) == 1


def test_from_cli_arguments(monkeypatch):
    import argparse

    monkeypatch.setenv(ENV_KEY, KEY)
    args = argparse.Namespace(
        llm_model="claude-x", llm_base_url="http://127.0.0.1:9", llm_max_calls=3, llm_max_tokens=1234
    )
    p = LLMProposer.from_args(args)
    assert (p.model, p.base_url, p.max_calls, p.max_tokens) == ("claude-x", "http://127.0.0.1:9", 3, 1234)
    assert p.enabled
    q = LLMProposer.from_args(argparse.Namespace())  # flags absent: defaults and environment
    assert q.max_calls == 8 and q.max_tokens == 200_000
