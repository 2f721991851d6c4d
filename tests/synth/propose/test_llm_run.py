"""The LLM proposer inside a whole run: the loop accepts a correct LLM proposal and stores the rest.

The run is given the LLM proposer alone (``proposers=[...]``) so that the model-guided
proposer, which explains tracr targets by itself, cannot find the answer first; the
scripted loopback server plays the model, through the real SDK.
"""

from __future__ import annotations

import pytest
from fake_anthropic_server import FakeAnthropicServer, Reply

from mechsynth.synth.propose.llm import ENV_KEY, LLMProposer

KEY = "sk-ant-test-run-SECRET-1111111111"
TARGET = "tracr:reverse"
MALFORMED = "program:\n    x = = map(add(1), tokens\n"
ILL_TYPED = "program:\n    x = aggregate(tokens, tokens)\n"
# Valid but wrong: copies each token in place (the network reverses).
WRONG = (
    "program:\n    same = aggregate(select(indices, indices, EQ), tokens)\n"
    "correspondence:\n    same: blocks.3.attn.hook_z[0]\n"
)


@pytest.fixture(scope="module")
def target(target_named):
    return target_named(TARGET)


def fenced(*texts: str) -> str:
    return "\n\n".join(f"```hypothesis\n{t.rstrip()}\n```" for t in texts)


def llm(server: FakeAnthropicServer, **kw) -> LLMProposer:
    kw.setdefault("max_retries", 1)
    return LLMProposer(api_key=KEY, base_url=server.base_url, **kw)


def run_options(**kw):
    return {"budget_seconds": 600.0, "rounds": 4, "n_score": 128, "per_length": 64, **kw}


def test_run_accepts_the_correct_llm_proposal_and_stores_the_rest_with_reasons(target, tmp_path):
    from mechsynth.synth.loop import run

    script = [
        Reply("First guesses.\n" + fenced(WRONG, MALFORMED, ILL_TYPED)),  # round 0
        Reply.error(429, "slow down"),  # round 1: rate limited, retried by the SDK...
        Reply("Reversal through the mirrored index.\n" + fenced(str(target.ground_truth))),  # ...then right
    ]
    with FakeAnthropicServer(script) as server:
        proposer = llm(server)
        result = run(target, out=tmp_path / "run", proposers=[proposer], **run_options())
        requests = list(server.requests)

    assert result.stopped == "accepted"
    (accepted,) = result.accepted
    assert accepted.source == "llm"
    assert accepted.hypothesis == target.ground_truth
    assert result.sources == {"llm": 4}
    rejected = [c for c in result.candidates() if c.status == "rejected"]
    (wrong,) = [c for c in result.candidates() if c.status in ("filtered", "failed")]
    assert wrong.source == "llm" and "behaviour" in wrong.reason
    assert sorted(c.reason.split(":")[0] for c in rejected) == ["parse error", "parse error"]
    assert any("aggregate() argument 'selector' must be a selector" in c.reason for c in rejected)
    assert any("invalid syntax" in c.reason for c in rejected)
    # The per-call record is stored with every LLM candidate.
    for c in result.candidates():
        assert c.meta["llm"]["outcome"] == "ok" and c.meta["llm"]["model"] == proposer.model
    assert result.candidates()[-1].meta["llm"]["retries"] == 1
    # Refinement: the second call carried the wrong candidate's verdict and the rejections.
    assert len(requests) == 3
    feedback = requests[2].body["messages"][0]["content"][0]["text"]
    assert "Refinement round 1" in feedback
    assert "same = aggregate(" in feedback and "Failure:" in feedback
    assert "Counterexamples (where the program and the network disagree)" in feedback
    assert "rejected before scoring" in feedback
    # The key is nowhere in the run directory.
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()


def test_failed_calls_lose_no_stored_work_and_a_rerun_resumes(target, tmp_path):
    from mechsynth.synth.loop import run

    out = tmp_path / "run"
    first = [Reply(fenced(WRONG, MALFORMED)), Reply.error(500, "down"), Reply.error(500, "down")]
    with FakeAnthropicServer(first) as server:
        result = run(target, out=out, proposers=[llm(server)], **run_options())
    assert result.accepted == ()
    assert result.n_candidates == 2  # the failed round added nothing and removed nothing
    before = {c.key: c.status for c in result.candidates()}

    with FakeAnthropicServer([Reply(fenced(str(target.ground_truth)))]) as server:
        result = run(target, out=out, proposers=[llm(server)], **run_options())
    after = {c.key: c.status for c in result.candidates()}
    assert all(after[k] == v for k, v in before.items())  # everything stored before is still there
    assert [a.source for a in result.accepted] == ["llm"]
    # Every call, failed ones included, is stored with the run: one ledger per invocation.
    from mechsynth.synth.store import open_run

    with open_run(out) as store:
        usage = store.meta()["usage:llm"]
    assert len(usage) == 2
    first_calls = [c["outcome"] for c in usage[0]["calls"]]
    assert first_calls[0] == "ok" and "http 500" in first_calls
    assert usage[0]["summary"]["calls"] == len(first_calls)
    assert [c["outcome"] for c in usage[1]["calls"]] == ["ok"]
    report = (out / "report.md").read_text()
    assert "## Proposer usage: llm (invocation 2)" in report and "http 500" in report


def test_without_a_key_the_run_says_so_once_and_uses_the_other_proposers(monkeypatch):
    from mechsynth.synth.loop import RunOptions, default_proposers

    monkeypatch.delenv(ENV_KEY, raising=False)
    proposers, status = default_proposers(RunOptions())
    assert status == "LLM proposer off: ANTHROPIC_API_KEY not set; the other proposers run"
    assert "llm" not in [p.name for p in proposers] and proposers


def test_default_proposers_include_the_llm_when_a_key_is_set(monkeypatch):
    from mechsynth.synth.loop import RunOptions, default_proposers

    monkeypatch.setenv(ENV_KEY, KEY)
    with FakeAnthropicServer() as server:
        proposers, status = default_proposers(RunOptions(llm_base_url=server.base_url, llm_max_calls=3))
    (llm_proposer,) = [p for p in proposers if p.name == "llm"]
    assert status == llm_proposer.status_line
    assert status.startswith("LLM proposer on: ") and "(budget 3 calls, 200000 tokens)" in status
    assert KEY not in status


def test_cli_run_ends_with_an_llm_sourced_accepted_hypothesis(monkeypatch, tmp_path, capsys):
    """The issue's acceptance check through the CLI: `mechsynth run tracr:reverse --llm-base-url ...`.

    With every default proposer the model-guided one explains tracr targets before the LLM
    is asked (round 0 runs it first), so the check needs the run restricted to the LLM.
    """
    import json

    from mechsynth.models import load_target
    from mechsynth.synth.cli import build_parser, main

    try:
        build_parser().parse_args(["run", TARGET, "--proposers", "llm"])
    except SystemExit:
        pytest.skip("needs a CLI hook to choose proposers: `mechsynth run TARGET --proposers llm` (lead)")
    truth = load_target(TARGET).ground_truth
    monkeypatch.setenv(ENV_KEY, KEY)
    with FakeAnthropicServer(default=Reply(fenced(str(truth)))) as server:
        argv = ["run", TARGET, "--proposers", "llm", "--llm-base-url", server.base_url]
        code = main([*argv, "--out", str(tmp_path / "run"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stopped"] == "accepted"
    assert [a["source"] for a in result["accepted"]] == ["llm"]
