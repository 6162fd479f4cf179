"""Secret text kept out of everything the monitor prints, stores or sends.

The config loader registers every value it substitutes for ``${VAR}`` or ``${credential:NAME}``,
and the dispatcher the credential parts of channel URLs. :func:`redact` replaces those values,
the userinfo of any URL (``user:password@``) and the values of secret-looking query parameters
(``token=``, ``apikey=``, ``signature=``...) by ``***``. It is applied where text leaves the
process or enters the database: log records, fetch errors, messages, delivery errors, ``status``,
``/healthz`` and ``/metrics``. The real values are used only where they are needed: in the
requests to venues and channels.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: Shorter values are not secrets worth the name, and masking them would garble every number.
MIN_LENGTH = 4
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s\"'<>]+@", re.IGNORECASE)
_QUERY_VALUE = re.compile(r"(?P<key>[?&;][\w.-]+=)(?P<value>[^&#\s\"'<>]+)")
_SECRET_KEYS = ("token", "secret", "pass", "pwd", "key", "sig", "auth", "credential", "session")

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()  # deliveries redact their errors in worker threads


def register(value: str) -> None:
    """Never show ``value`` (nor its URL-, HTML- or JSON-escaped forms) in any output."""
    global _pattern
    if len(value) < MIN_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), html.escape(value),
             json.dumps(value)[1:-1]}
    with _lock:
        if forms - _secrets:
            _secrets.update(forms)
            _pattern = None


def redact(text: str) -> str:
    """``text`` with registered secrets, URL userinfo and secret query values masked."""
    pattern = _secret_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    return _QUERY_VALUE.sub(_mask_query_value, text)


def redact_values(data: Any) -> Any:
    """``data`` (JSON-like: mappings, lists, scalars) with every string in it redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {key: redact_values(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_values(value) for value in data]
    return data


def redact_exposition(body: bytes) -> bytes:
    """A Prometheus text exposition with secrets masked in its names and labels only: the
    sample values (after the last space) stay numbers even if a secret is made of digits."""
    lines = []
    for line in body.decode().split("\n"):
        head, space, value = line.rpartition(" ")
        lines.append(redact(head) + space + value if head and not line.startswith("#")
                     else redact(line))
    return "\n".join(lines).encode()


def _secret_pattern() -> re.Pattern[str] | None:
    """One alternation of every registered form, longest first (no part of a longer secret
    is left behind), compiled once per change of the registry."""
    global _pattern
    with _lock:
        if _pattern is None and _secrets:
            _pattern = re.compile("|".join(
                re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
        return _pattern


def _mask_query_value(m: re.Match[str]) -> str:
    name = m.group("key")[1:-1].lower()
    if any(word in name for word in _SECRET_KEYS):
        return m.group("key") + MASK
    return m.group(0)
