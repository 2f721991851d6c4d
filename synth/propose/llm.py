"""Propose with an LLM: candidate hypotheses from the Anthropic Messages API.

The enumerator is exhaustive but blind; a language model can guess the structure a
person would guess ("this head attends to the mirrored position", "this MLP computes
x mod 3"). This proposer asks one, through the official ``anthropic`` SDK, and turns
its answer into :class:`~synth.propose.interface.Proposal` objects that go through exactly the
same localize -> check -> control path as enumerated candidates.

One call per round (by default). Each call sends the prompt built by
:mod:`synth.propose.llm_prompt`: a static part (role, the DSL reference generated from the
registry, the hypothesis syntax) and a per-target part (architecture, task, the
network's outputs, observations), both marked for prompt caching, then a user message
with the best candidates so far, their failures and counterexamples, and this
proposer's own rejected candidates with the reasons. The reply's fenced blocks are
read with the hypothesis parser (the DSL parser underneath; text is never evaluated).
Each block becomes one proposal: valid ones carry a hypothesis, malformed or ill-typed
ones carry ``error`` with the reason so the loop counts and stores them.

Budgets: at most ``max_calls`` calls and ``max_tokens`` tokens (input, cached input and
output together), no call after ``context.deadline`` and none once a candidate has
been accepted. Rate limits and server errors are retried by the SDK (``max_retries``
with backoff, honouring ``retry-after`` up to ``max_retry_wait_s``); what still fails is
recorded as a failed call, and two failed calls in a row turn the proposer off.
The proposer never raises into the loop and never blocks past its timeout: without a
key, or when the API cannot be reached or rejects the key, it yields nothing more and
says why in :attr:`LLMProposer.status_line`, one line the loop prints.

Every call is recorded in :attr:`LLMProposer.ledger` (tokens in/out, cache read and
creation tokens, latency, retries, outcome, candidates parsed/rejected); the same
record, as JSON, is attached to each proposal's ``meta["llm"]`` so the run store keeps
it with the candidate. The API key is held only by the SDK client: it is never part of
a ledger entry, a proposal, a log line or a status line (error text is redacted).
"""

from __future__ import annotations

import dataclasses

import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from mechsynth.synth.propose.llm_prompt import (
    Probe,
    PromptParts,
    feedback_prompt,
    static_prompt,
    target_prompt,
)
from mechsynth.synth.propose.interface import Proposal, ProposalContext

if TYPE_CHECKING:
    from mechsynth.models import Target
    from mechsynth.dsl.hypothesis import Hypothesis

log = logging.getLogger(__name__)

ENV_KEY = "ANTHROPIC_API_KEY"
ENV_MODEL = "MECHSYNTH_LLM_MODEL"
ENV_BASE_URL = "ANTHROPIC_BASE_URL"
# A current Sonnet model listed in the installed SDK (anthropic 2.14, types.ModelParam) and not in
# its deprecation table; override with --llm-model / MECHSYNTH_LLM_MODEL.
DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"

# Rough characters per token, only to keep a call inside the remaining token budget before
# the API reports the true count.
_CHARS_PER_TOKEN = 3.5
_MIN_OUTPUT_TOKENS = 512


@dataclass(frozen=True)
class LLMCall:
    """One Messages API call: what it cost, how long it took, what came of it.

    ``outcome`` is "ok", "timeout", "connection error", "auth error", "http <status>"
    or "bad response". ``retries`` counts the SDK's retries inside this call (429/5xx).
    ``candidates`` fenced blocks were found in the reply; ``valid`` parsed into
    hypotheses, ``rejected`` did not (with reasons in the proposals), ``duplicates``
    repeated an earlier candidate of this proposer and were not proposed again.
    """

    index: int
    round: int
    model: str
    outcome: str
    latency_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    retries: int = 0
    stop_reason: str | None = None
    request_id: str | None = None
    candidates: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParsedCandidate:
    """One fenced block of a reply: its text and either a hypothesis or the reason it was rejected."""

    text: str
    hypothesis: Hypothesis | None = None
    error: str | None = None


class LLMProposer:
    """Proposer ``"llm"``: asks a model for hypotheses, one Messages API call per round.

    Arguments left as None come from the environment: ``api_key`` from
    ``ANTHROPIC_API_KEY``, ``model`` from ``MECHSYNTH_LLM_MODEL`` (default
    :data:`DEFAULT_MODEL`), ``base_url`` from ``ANTHROPIC_BASE_URL`` (default the
    public API). ``timeout_s`` bounds one HTTP attempt; ``max_retries`` is the SDK's
    retry count for 408/409/429/5xx and connection errors; ``max_retry_wait_s`` caps the
    wait a ``retry-after`` header may ask for between them.
    """

    name = "llm"

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        max_calls: int = 8,
        max_tokens: int = 200_000,
        max_output_tokens: int = 4096,
        candidates_per_call: int = 4,
        calls_per_round: int = 1,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        max_consecutive_failures: int = 2,
        max_retry_wait_s: float = 20.0,
        n_examples: int = 12,
    ) -> None:
        if max_calls < 0 or max_tokens < 0 or candidates_per_call < 1 or calls_per_round < 1:
            raise ValueError("LLM budgets must be non-negative and candidates/calls per round at least 1")
        self.model = model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL
        self.base_url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.max_output_tokens = max_output_tokens
        self.candidates_per_call = candidates_per_call
        self.calls_per_round = calls_per_round
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self.max_retry_wait_s = max_retry_wait_s
        self.n_examples = n_examples
        self.ledger: list[LLMCall] = []
        self.enabled = False
        self.stopped: str | None = None  # why the proposer stopped (budget, acceptance, deadline)
        self._client: Any = None
        self._static: str | None = None
        self._target_text: tuple[Any, str, Probe | None] | None = None  # (target, prompt part, probe)
        self._seen: set[str] = set()
        self._rejected: list[tuple[str, str]] = []
        self._consecutive_failures = 0
        self._status = ""

        key = api_key if api_key is not None else os.environ.get(ENV_KEY)
        if not key:
            self._status = f"LLM proposer off: {ENV_KEY} not set; the other proposers run"
            return
        try:
            import anthropic
        except ImportError:
            self._status = "LLM proposer off: the anthropic package is not installed; the other proposers run"
            return
        self._client = anthropic.Anthropic(
            api_key=key,
            base_url=self.base_url,
            max_retries=max_retries,
            timeout=anthropic.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [self._clamp_retry_after]}),
        )
        self.enabled = True
        self._status = (
            f"LLM proposer on: {self.model} via {self.endpoint} "
            f"(budget {max_calls} calls, {max_tokens} tokens)"
        )

    @classmethod
    def from_args(cls, args: Any) -> LLMProposer:
        """Build from the CLI's ``run`` arguments (``--llm-model``, ``--llm-base-url``, budgets)."""
        kwargs: dict[str, Any] = {
            "model": getattr(args, "llm_model", None),
            "base_url": getattr(args, "llm_base_url", None),
        }
        for arg, kw in (
            ("llm_max_calls", "max_calls"),
            ("llm_max_tokens", "max_tokens"),
            ("llm_timeout", "timeout_s"),
        ):
            if getattr(args, arg, None) is not None:
                kwargs[kw] = getattr(args, arg)
        return cls(**kwargs)

    # --- state the loop reads ------------------------------------------------------------------
    @property
    def status_line(self) -> str:
        """One line for the run log: on (model, endpoint, budget), off and why, or done and why."""
        return self._status

    @property
    def endpoint(self) -> str:
        """scheme://host[:port] of the API, without any path or credentials."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or self.base_url
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    @property
    def tokens_used(self) -> int:
        return sum(c.total_tokens for c in self.ledger)

    def summary(self) -> dict[str, Any]:
        """Totals over the ledger, for the run report."""
        led = self.ledger
        outcomes: dict[str, int] = {}
        for c in led:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        return {
            "model": self.model,
            "endpoint": self.endpoint,
            "calls": len(led),
            "outcomes": outcomes,
            "input_tokens": sum(c.input_tokens for c in led),
            "output_tokens": sum(c.output_tokens for c in led),
            "cache_creation_input_tokens": sum(c.cache_creation_input_tokens for c in led),
            "cache_read_input_tokens": sum(c.cache_read_input_tokens for c in led),
            "latency_s": round(sum(c.latency_s for c in led), 3),
            "candidates": sum(c.candidates for c in led),
            "valid": sum(c.valid for c in led),
            "rejected": sum(c.rejected for c in led),
            "duplicates": sum(c.duplicates for c in led),
            "status": self.status_line,
        }

    def usage(self) -> dict[str, Any]:
        """The summary and every call of the ledger, JSON-safe (stored with the run)."""
        return {"summary": self.summary(), "calls": [dataclasses.asdict(c) for c in self.ledger]}

    def __repr__(self) -> str:  # never shows the key
        return f"LLMProposer(model={self.model!r}, endpoint={self.endpoint!r}, enabled={self.enabled})"

    # --- proposing -----------------------------------------------------------------------------
    def propose(self, context: ProposalContext) -> Iterator[Proposal]:
        """Make up to ``calls_per_round`` calls and yield every candidate of their replies."""
        for _ in range(self.calls_per_round):
            if not self.enabled:
                return
            reason = self._budget_stop(context)
            if reason:
                self._stop(reason)
                return
            yield from self._call(context)

    def has_more(self, context: ProposalContext) -> bool:
        """Another round while enabled and within the call, token and time budgets."""
        return self.enabled and self._budget_stop(context) is None

    def build_prompt(self, context: ProposalContext) -> PromptParts:
        """The prompt of the next call (static and target parts are built once and reused)."""
        if self._static is None:
            self._static = static_prompt(self.candidates_per_call)
        if self._target_text is None or self._target_text[0] is not context.target:
            text = target_prompt(
                context.target, context.observations, n_examples=self.n_examples, seed=context.seed
            )
            try:
                probe: Probe | None = Probe.sample(context.target, seed=context.seed)
            except Exception as e:  # noqa: BLE001 - counterexamples are a hint; the prompt works without
                log.warning("LLM proposer: no probe inputs for counterexamples (%s)", _one_line(e))
                probe = None
            self._target_text = (context.target, text, probe)
        _, text, probe = self._target_text
        feedback = feedback_prompt(
            context.best,
            self._rejected,
            round=context.round,
            n_candidates=self.candidates_per_call,
            probe=probe,
        )
        return PromptParts(self._static, text, feedback)

    def _budget_stop(self, context: ProposalContext) -> str | None:
        if any(c.accepted for c in context.best):
            return "a hypothesis was accepted"
        if len(self.ledger) >= self.max_calls:
            return f"call budget spent ({len(self.ledger)} of {self.max_calls} calls)"
        if self.max_tokens - self.tokens_used < _MIN_OUTPUT_TOKENS:
            return f"token budget spent ({self.tokens_used} of {self.max_tokens} tokens)"
        if context.deadline is not None and time.monotonic() >= context.deadline:
            return "run deadline reached"
        return None

    def _stop(self, reason: str) -> None:
        self.enabled = False
        self.stopped = reason
        self._status = f"LLM proposer done: {reason}"
        log.info(self._status)

    def _off(self, reason: str) -> None:
        self.enabled = False
        self.stopped = reason
        self._status = f"LLM proposer off: {reason}; the run continues without it"
        log.warning(self._status)

    def _call(self, context: ProposalContext) -> Iterator[Proposal]:
        try:
            parts = self.build_prompt(context)
        except Exception as e:  # noqa: BLE001 - a prompt we cannot build is a reason to stop, not to crash
            self._off(f"cannot build the prompt ({type(e).__name__}: {self._redact(str(e))})")
            return
        remaining = self.max_tokens - self.tokens_used
        est_input = int(len(parts.static + parts.target + parts.feedback) / _CHARS_PER_TOKEN)
        out_tokens = min(self.max_output_tokens, remaining - est_input)
        if out_tokens < _MIN_OUTPUT_TOKENS:
            self._stop(f"token budget spent ({self.tokens_used} used, next prompt ~{est_input} tokens)")
            return
        timeout, retries = self.timeout_s, self.max_retries
        if context.deadline is not None:
            # Never block past the run's deadline: shrink the timeout and drop retries near it.
            left = context.deadline - time.monotonic()
            if left < timeout * (retries + 1):
                timeout, retries = max(0.5, left), 0
        index, t0 = len(self.ledger), time.monotonic()
        fields, text = self._send(parts, out_tokens, timeout, retries)
        latency = time.monotonic() - t0

        if fields["outcome"] != "ok":
            call = LLMCall(index=index, round=context.round, model=self.model, latency_s=latency, **fields)
            self.ledger.append(call)
            log.warning("LLM call %d failed: %s (%s)", index, call.outcome, call.error)
            self._after_failure(call)
            return
        self._consecutive_failures = 0

        parsed = parse_reply(text, context.target, truncated=fields["stop_reason"] == "max_tokens")
        fresh, duplicates = [], 0
        for cand in parsed:
            if cand.hypothesis is not None:
                key = str(cand.hypothesis)
                if key in self._seen:
                    duplicates += 1
                    continue
                self._seen.add(key)
            else:
                self._rejected.append((cand.text, cand.error or "rejected"))
            fresh.append(cand)
        call = LLMCall(
            index=index,
            round=context.round,
            model=self.model,
            latency_s=latency,
            candidates=len(parsed),
            valid=sum(c.hypothesis is not None for c in fresh),
            rejected=sum(c.hypothesis is None for c in fresh),
            duplicates=duplicates,
            **fields,
        )
        self.ledger.append(call)
        log.info(
            "LLM call %d: %d candidates (%d valid, %d rejected, %d duplicates), %d tokens in, %d out, %.2f s",
            index,
            call.candidates,
            call.valid,
            call.rejected,
            duplicates,
            call.input_tokens + call.cache_read_input_tokens + call.cache_creation_input_tokens,
            call.output_tokens,
            latency,
        )
        record = call.to_json()
        for j, cand in enumerate(fresh):
            meta = {"llm": {**record, "candidate": j}}
            if cand.hypothesis is not None:
                yield Proposal(source=self.name, hypothesis=cand.hypothesis, text=cand.text, meta=meta)
            else:
                yield Proposal(source=self.name, text=cand.text, error=cand.error, meta=meta)

    def _send(self, parts: PromptParts, out_tokens: int, timeout: float, retries: int) -> tuple[dict, str]:
        """One Messages API request (with the SDK's retries): ledger fields and the reply text."""
        import anthropic

        client = self._client.with_options(timeout=timeout, max_retries=retries)
        try:
            raw = client.messages.with_raw_response.create(
                model=self.model,
                max_tokens=out_tokens,
                system=parts.system_blocks(),
                messages=parts.messages(),
            )
        except anthropic.APITimeoutError:
            return dict(outcome="timeout", retries=retries, error=f"no reply within {timeout:.3g} s"), ""
        except anthropic.APIConnectionError as e:
            # The SDK's message is generic ("Connection error."); the cause says what failed.
            error = _one_line(e.__cause__) if e.__cause__ is not None else _one_line(e)
            return dict(outcome="connection error", retries=retries, error=self._redact(error)), ""
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as e:
            return dict(outcome="auth error", error=f"HTTP {e.status_code}", request_id=e.request_id), ""
        except anthropic.APIStatusError as e:
            return dict(
                outcome=f"http {e.status_code}",
                error=self._redact(_api_error_message(e)),
                request_id=e.request_id,
                retries=retries if _sdk_retries(e) else 0,
            ), ""
        except anthropic.AnthropicError as e:
            return dict(outcome="bad response", error=self._redact(_one_line(e))), ""
        request_id = raw.headers.get("request-id")
        try:
            # A 200 with a body that is not a Message (broken JSON, missing fields) is a failed
            # call, not a crash: the SDK raises JSON errors here and leaves missing fields None.
            message = raw.parse()
            text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
            usage = message.usage
            fields = dict(
                outcome="ok",
                input_tokens=int(usage.input_tokens or 0),
                output_tokens=int(usage.output_tokens or 0),
                cache_creation_input_tokens=int(usage.cache_creation_input_tokens or 0),
                cache_read_input_tokens=int(usage.cache_read_input_tokens or 0),
                retries=raw.retries_taken,
                stop_reason=message.stop_reason,
                request_id=request_id,
            )
        except (ValueError, TypeError, AttributeError, anthropic.AnthropicError) as e:
            error = f"unreadable response body ({type(e).__name__}: {_one_line(e)})"
            return dict(outcome="bad response", error=self._redact(error), request_id=request_id), ""
        return fields, text

    def _clamp_retry_after(self, response: Any) -> None:
        """httpx response hook: cap the server's ``retry-after`` before the SDK sleeps on it.

        The SDK sleeps as long as the header says (no upper bound in this version), so a
        gateway answering "retry after an hour" would hang the run; a date-form header is
        dropped, which makes the SDK fall back to its bounded exponential backoff.
        """
        for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            value = response.headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value) / scale
            except ValueError:
                del response.headers[name]
                continue
            if seconds > self.max_retry_wait_s:
                response.headers[name] = f"{self.max_retry_wait_s * scale:g}"

    def _after_failure(self, call: LLMCall) -> None:
        self._consecutive_failures += 1
        if call.outcome == "connection error":
            self._off(f"cannot reach {self.endpoint} ({call.error})")
        elif call.outcome == "auth error":
            self._off(f"the API rejected the key ({call.error})")
        elif self._consecutive_failures >= self.max_consecutive_failures:
            self._off(f"{self._consecutive_failures} calls failed in a row (last: {call.outcome})")

    def _redact(self, text: str) -> str:
        key = getattr(self._client, "api_key", None)
        if key:
            text = text.replace(key, "[redacted]")
        return _KEY_RE.sub("[redacted]", text)


# Anthropic keys have a recognisable prefix; redact any that appears in error text.
_KEY_RE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def _sdk_retries(e: Any) -> bool:
    """Whether the SDK retried this status before giving up (its rule: 408/409/429/5xx unless told not to)."""
    hint = e.response.headers.get("x-should-retry")
    if hint in ("true", "false"):
        return hint == "true"
    return e.status_code in (408, 409, 429) or e.status_code >= 500


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _api_error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return " ".join(str(err["message"]).split())[:200]
    return _one_line(e)


# --- reading replies ------------------------------------------------------------------------------

# A fenced block: ``` with an optional info string, up to the closing fence or the end of the
# text (a reply cut at max_tokens leaves the last block open).
_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)


def extract_blocks(text: str) -> list[str]:
    """The fenced blocks of a reply, in order; a reply without fences but with 'program:' is one block."""
    blocks = [b for b in _FENCE_RE.findall(text) if b.strip()]
    if not blocks:
        at = text.find("program:")
        if at >= 0:
            blocks = [text[at:]]
    return blocks


def parse_reply(text: str, target: Target | None = None, *, truncated: bool = False) -> list[ParsedCandidate]:
    """Every candidate of a reply, parsed; a reply with no candidate gives one rejected entry."""
    blocks = extract_blocks(text)
    if not blocks:
        reason = "reply contained no fenced hypothesis block"
        if truncated:
            reason += " (reply cut off at max_tokens)"
        return [ParsedCandidate(text=text, error=reason)]
    out = []
    for i, block in enumerate(blocks):
        cand = parse_candidate(block, target)
        if cand.error and truncated and i == len(blocks) - 1:
            cand = ParsedCandidate(cand.text, None, cand.error + " (reply cut off at max_tokens)")
        out.append(cand)
    return out


def parse_candidate(block: str, target: Target | None = None) -> ParsedCandidate:
    """One block -> a hypothesis, or the one-line reason it is rejected (never raises)."""
    from mechsynth.dsl import DSLError, parse
    from mechsynth.dsl.errors import HypothesisError
    from mechsynth.dsl.hypothesis import Hypothesis

    try:
        if re.search(r"^\s*program:\s*$", block, re.MULTILINE):
            hypothesis = Hypothesis.parse(block)
        else:
            # A bare program (no sections): the correspondence is left to the localize stage.
            hypothesis = Hypothesis(parse(block.strip()), {})
    except HypothesisError as e:
        # Hypothesis.parse reports DSL errors in the program section as "in program ...";
        # those are parse/type errors of the program, the rest are errors of the file format.
        kind = "parse error" if str(e).startswith("in program") else "malformed hypothesis"
        return ParsedCandidate(block, error=f"{kind}: {_one_line(e, 300)}")
    except DSLError as e:
        return ParsedCandidate(block, error=f"{_dsl_error_kind(e)}: {_one_line(e, 300)}")
    except Exception as e:  # noqa: BLE001 - model text must never crash the run
        return ParsedCandidate(block, error=f"unreadable candidate ({type(e).__name__}: {_one_line(e)})")
    output = hypothesis.program.output
    if hypothesis.program.kind(output) == "selector":
        return ParsedCandidate(
            block, error=f"ill-typed program: the output {output!r} is a selector, not a sequence"
        )
    if target is not None:
        problem = location_problem(hypothesis, target)
        if problem:
            return ParsedCandidate(block, error=f"bad location: {problem}")
    return ParsedCandidate(block, hypothesis=hypothesis)


def _dsl_error_kind(e: Exception) -> str:
    name = type(e).__name__
    return {"ParseError": "parse error", "RegistryError": "unknown name"}.get(name, "DSL error")


def location_problem(hypothesis: Hypothesis, target: Target) -> str | None:
    """Why a correspondence cannot be read in this model (unknown hook, head or dim), or None."""
    cfg = target.model.cfg
    n_layers, n_heads, d_model = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model)
    hooks = getattr(target.model, "hook_dict", None)
    for var, loc in hypothesis.correspondence.items():
        if loc.layer is not None and loc.layer >= n_layers:
            return f"{var}: {loc} names layer {loc.layer}, the model has {n_layers} layer(s)"
        if hooks is not None and loc.hook not in hooks:
            return f"{var}: {loc.hook} is not a hook of this model"
        if loc.head is not None and loc.head >= n_heads:
            return f"{var}: {loc} names head {loc.head}, the model has {n_heads} head(s) per layer"
        if loc.dims is not None and max(loc.dims) >= d_model:
            return f"{var}: {loc} names dimension {max(loc.dims)}, d_model is {d_model}"
    return None


def ledger_table(ledger: Sequence[LLMCall]) -> str:
    """The ledger as a fixed-width table (for reports and ``mechsynth show``)."""
    cols = [
        "#",
        "round",
        "outcome",
        "in",
        "cache_w",
        "cache_r",
        "out",
        "retries",
        "latency_s",
        "valid",
        "rejected",
    ]
    rows = [
        [
            str(c.index),
            str(c.round),
            c.outcome,
            str(c.input_tokens),
            str(c.cache_creation_input_tokens),
            str(c.cache_read_input_tokens),
            str(c.output_tokens),
            str(c.retries),
            f"{c.latency_s:.2f}",
            str(c.valid),
            str(c.rejected),
        ]
        for c in ledger
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(cols)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
