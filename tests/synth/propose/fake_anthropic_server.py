"""A scripted stand-in for the Anthropic Messages API, on the loopback interface.

The tests of the LLM proposer must exercise the real ``anthropic`` SDK (its request
building, retries, timeouts and response parsing) without the internet. This module
runs a tiny HTTP server on ``127.0.0.1`` (stdlib ``http.server`` in a daemon thread,
ephemeral port) that speaks the Messages API wire format: ``POST /v1/messages`` with a
JSON body, answered by a JSON ``message`` object with text content blocks and a
``usage`` record, or by a JSON ``error`` object with the status code the real API uses.

Replies are *scripted*: each HTTP request (retries included) takes the next
:class:`Reply` from the script, so a test can say "429, then success" or "a reply
slower than the client timeout". Prompt caching is emulated so usage numbers behave
like the real API's: the first request that carries a ``cache_control`` breakpoint
pays ``cache_creation_input_tokens`` for the prefix up to it, later requests with the
same prefix get ``cache_read_input_tokens`` instead.

The server is bounded: it answers at most ``max_requests`` requests (then 503 with
``x-should-retry: false``) and shuts itself down after ``lifetime_s`` seconds even if a
test forgets to stop it. It records every request body and whether credentials were
present, but never keeps the credential itself: tests compare against a hash.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

# Error types of the Messages API, by status code (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``status`` 200 sends ``text`` as the assistant message."""

    text: str = ""
    status: int = 200
    delay_s: float = 0.0  # sleep before answering (a slow reply past the client timeout)
    headers: Mapping[str, str] = field(default_factory=dict)
    stop_reason: str = "end_turn"
    raw_body: str | None = None  # send this body verbatim (a broken JSON reply)

    @classmethod
    def error(cls, status: int, message: str = "", **headers: str) -> Reply:
        # Tell the SDK to retry after 1 ms: real servers send retry-after on 429/529, and it keeps
        # the tests from sleeping through the SDK's exponential backoff.
        hdrs = {"retry-after-ms": "1", **{k.replace("_", "-"): v for k, v in headers.items()}}
        return cls(status=status, text=message or f"scripted {status}", headers=hdrs)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    body: Mapping[str, Any]
    has_credentials: bool
    credential_sha256: str | None  # hash of the key as sent; the key itself is never stored
    retry_count: int  # the SDK's x-stainless-retry-count header


def _approx_tokens(obj: Any) -> int:
    """A deterministic token estimate (~4 characters per token), enough for ledger arithmetic."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True)
    return max(1, (len(text) + 3) // 4)


def _prompt_blocks(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's prompt as a flat list of blocks in API order: tools, system, messages."""
    blocks: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    elif isinstance(system, list):
        blocks.extend(b for b in system if isinstance(b, dict))
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content, "role": message.get("role")})
        elif isinstance(content, list):
            blocks.extend({**b, "role": message.get("role")} for b in content if isinstance(b, dict))
    return blocks


class FakeAnthropicServer:
    """Context manager: ``with FakeAnthropicServer([Reply(...), ...]) as server: server.base_url``."""

    def __init__(
        self,
        script: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        max_requests: int = 64,
        lifetime_s: float = 120.0,
    ) -> None:
        self._script = list(script)
        self._default = default
        self._max_requests = max_requests
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cached_prefixes: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeAnthropicServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        # Stop by itself: a forgotten server must not outlive the test session.
        self._timer = threading.Timer(self._lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes any handler sleeping in a slow reply
        if self._timer is not None:
            self._timer.cancel()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    # --- request handling -----------------------------------------------------------------------
    def _next_reply(self) -> Reply:
        with self._lock:
            if len(self.requests) > self._max_requests:
                return Reply(
                    status=503, text="fake server request limit reached", headers={"x-should-retry": "false"}
                )
            if self._script:
                return self._script.pop(0)
            if self._default is not None:
                return self._default
        return Reply(status=500, text="fake server script exhausted", headers={"x-should-retry": "false"})

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        key = handler.headers.get("x-api-key") or (handler.headers.get("authorization") or "").removeprefix(
            "Bearer "
        )
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    path=handler.path,
                    body=body,
                    has_credentials=bool(key),
                    credential_sha256=hashlib.sha256(key.encode()).hexdigest() if key else None,
                    retry_count=int(handler.headers.get("x-stainless-retry-count") or 0),
                )
            )
            n = len(self.requests)
        reply = self._next_reply()
        if handler.path.split("?")[0] != "/v1/messages":
            reply = Reply(status=404, text=f"no route {handler.path}")
        if reply.delay_s and self._stop.wait(reply.delay_s):
            return  # server stopping: drop the connection
        if reply.raw_body is not None:
            payload = reply.raw_body.encode()
        elif reply.status == 200:
            payload = json.dumps(self._message(body, reply, n)).encode()
        else:
            payload = json.dumps(
                {
                    "type": "error",
                    "error": {"type": _ERROR_TYPES.get(reply.status, "api_error"), "message": reply.text},
                }
            ).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.send_header("request-id", f"req_fake_{n:04d}")
            for k, v in reply.headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer

    def _message(self, body: Mapping[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        usage = self._usage(body)
        usage["output_tokens"] = _approx_tokens(reply.text)
        return {
            "id": f"msg_fake_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "unknown"),
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _usage(self, body: Mapping[str, Any]) -> dict[str, int]:
        """Input tokens split into uncached / cache-written / cache-read, like the real API."""
        blocks = _prompt_blocks(body)
        total = sum(_approx_tokens(b.get("text", b)) for b in blocks)
        # The longest prefix ending at a cache_control breakpoint that was seen before is read
        # from cache; the prefix up to the last breakpoint is (re)written.
        read = created = 0
        prefix_tokens = 0
        prefix_hash = hashlib.sha256()
        with self._lock:
            for block in blocks:
                prefix_tokens += _approx_tokens(block.get("text", block))
                prefix_hash.update(
                    json.dumps(
                        {k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True
                    ).encode()
                )
                if block.get("cache_control"):
                    key = prefix_hash.hexdigest()
                    if key in self._cached_prefixes:
                        read = prefix_tokens
                        created = 0
                    else:
                        self._cached_prefixes.add(key)
                        created = prefix_tokens - read
        return {
            "input_tokens": total - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }


def texts_sent(requests: Sequence[RecordedRequest]) -> list[str]:
    """All prompt text of each recorded request, joined (for assertions on what was sent)."""
    return ["\n".join(str(b.get("text", "")) for b in _prompt_blocks(r.body)) for r in requests]
