"""Secrets never reach the run record: what is stored is redacted first.

A run directory is meant to be shared (attached to an issue, committed beside a paper),
so nothing secret may be written into ``run.sqlite`` or ``report.md``. Secrets reach the
engine in three ways, and :func:`redact` removes each from any text, or any JSON-shaped
value, before the run store writes it:

* credentials inside a URL (``--llm-base-url http://user:SECRET@host/``): the user-info
  part becomes ``***@``;
* the API key itself, wherever it appears (a gateway that echoes the key inside its reply,
  an error message quoting a header): every value of the key variables in
  :data:`SECRET_ENV` is replaced by ``[redacted]``;
* anything shaped like an Anthropic key (``sk-ant-...``), even one we were never given.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 8  # shorter values would redact ordinary words
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]+@")
_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def strip_url_credentials(text: str) -> str:
    """``http://u:p@host/x`` -> ``http://***@host/x`` (every URL in ``text``)."""
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)


def _secrets() -> list[str]:
    values = (os.environ.get(name) or "" for name in SECRET_ENV)
    return [v for v in values if len(v) >= _MIN_SECRET_CHARS]


def redact(value: Any) -> Any:
    """``value`` with every secret removed (strings, and the strings inside dicts, lists and tuples)."""
    return _redact(value, _secrets())


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return _KEY_SHAPE.sub(REDACTED, strip_url_credentials(value))
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, secrets) for v in value)
    return value
