"""Sending through apprise, the only module that imports it: channel URLs checked, their
secrets registered for redaction, one message sent with a bounded time. It takes plain URLs and
messages, never the config: the outbox decides what to send and when.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise
from apprise.decorators import notify as apprise_plugin

from wis_monitor.message import Message
from wis_monitor.redact import redact, register

log = logging.getLogger("wis_monitor.channel")
EMAIL_SCHEMES = ("mailto", "mailtos")
MARKDOWN_SCHEMES = ("slack", "discord", "mmost", "mmosts", "tgram", "matrix", "matrixs")
#: apprise's notification type per message level: Slack colours its attachment by it (blue,
#: yellow, red, green), email and chat services pick their icon.
NOTIFY_TYPES = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
                "critical": apprise.NotifyType.FAILURE, "resolved": apprise.NotifyType.SUCCESS}
#: A web hook path part this long (in one word), or this long with letters and digits, is
#: taken for a key.
KEY_LENGTH, MIXED_KEY_LENGTH = 16, 8
# apprise's own lines about a send are captured per send (``result.logs()``) and reported in
# the one line the dispatcher logs per failed delivery, which names the alert.
logging.getLogger("apprise").propagate = False


@apprise_plugin(on="console", name="wis-monitor console")  # type: ignore[untyped-decorator,no-untyped-call]
def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """``console://``: print the message to stdout (the demo, development)."""
    sys.stdout.write(f"\n=== {title}\n{body}\n\n")
    sys.stdout.flush()
    return True


def with_timeouts(url: str, timeout_s: float) -> str:
    """The URL with apprise's connect/read timeouts (``cto``/``rto``) set when absent."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("cto", f"{min(timeout_s, 10.0):g}")
    query.setdefault("rto", f"{timeout_s:g}")
    if parts.scheme in EMAIL_SCHEMES:
        query.setdefault("format", "html")
    return urlunsplit(parts._replace(query=urlencode(query)))


def privacy_url(url: str) -> str:
    """apprise's privacy form of a URL (secrets elided), for logs and the database."""
    try:
        obj = apprise.Apprise.instantiate(url)
    except Exception:  # an unparsable URL must still be printable
        obj = None
    if obj is None:
        return redact(urlsplit(url).scheme + "://...")
    return redact(str(obj.url(privacy=True)))  # type: ignore[no-untyped-call]


def url_problem(url: str) -> str | None:
    """Why apprise cannot use ``url`` (never quoting it: it may hold a secret), or None.

    A ``${...}`` left unresolved (no secrets at hand) stands for a placeholder: the scheme and
    the shape around it are still checked; a URL that is one reference is not checked."""
    if "${" in url:
        return _shape_problem(url)
    quiet = logging.getLogger("apprise")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        obj = apprise.Apprise.instantiate(url)
    except Exception:
        obj = None
    finally:
        quiet.setLevel(level)
    if obj is not None:
        return None
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        return "not an apprise URL (SCHEME://...), see docs/channels.md"
    return (f'apprise cannot use this {scheme}:// URL (unknown scheme, or a part it needs is '
            "missing or malformed), see docs/channels.md")


def _shape_problem(url: str) -> str | None:
    if _REFERENCE.fullmatch(url.strip()):
        return None
    problem = url_problem(_REFERENCE.sub(_PLACEHOLDER, url))
    if problem is None or not problem.startswith("apprise cannot use"):
        return problem
    scheme = urlsplit(url).scheme.lower()
    # the placeholder may not fit a token's format: only an unknown scheme is certain
    return None if "${" in scheme or scheme in _schemes() else problem


_REFERENCE = re.compile(r"\$\{[^}]*\}")
_PLACEHOLDER = "Placeholder0123456789"


@functools.cache
def _schemes() -> frozenset[str]:
    found: set[str] = set()
    for plugin in apprise.Apprise().details().get("schemas", []):
        for key in ("protocols", "secure_protocols"):
            value = plugin.get(key) or ()
            found.update([value] if isinstance(value, str) else value)
    return frozenset(s.lower() for s in found)


def register_secrets(urls: Iterable[str]) -> None:
    """Keep the credential parts of every channel URL out of every output: its password, the
    tokens apprise hides in its privacy form (a Slack webhook's), path parts that look like
    keys and secret query values. Host, port, user name and plain path parts stay readable."""
    for url in urls:
        for secret in url_secrets(url):
            register(secret)


def url_secrets(url: str) -> set[str]:
    """The parts of a channel URL that are credentials (see :func:`register_secrets`)."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return set()
    found = {parts.password} if parts.password else set()  # the user name is no secret
    shown = set(_url_tokens(privacy_url(url)))
    for token in _url_tokens(parts.netloc.rpartition("@")[2] + parts.path):
        mixed = any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
        word = any(c in "-._~" for c in token)  # riskdesk-alerts-webhook: a name
        key_like = token.lower() != parts.hostname and (
            (len(token) >= KEY_LENGTH and not word) or (mixed and len(token) >= MIXED_KEY_LENGTH))
        if token not in shown or key_like:
            found.add(token)
    found.update(value for key, value in parse_qsl(parts.query)
                 if key.lower() in ("pass", "password", "token", "secret", "key", "apikey"))
    return found


def _url_tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[/:@?&=#]+", text) if t]


def _send_blocking(url: str, msg: Message, attachment: bytes | None) -> tuple[bool, str]:
    scheme = urlsplit(url).scheme
    ap = apprise.Apprise()  # a fresh object per send: no inter-message throttle
    if not ap.add(url):
        return False, f"apprise cannot use this URL ({privacy_url(url)})"
    if scheme in EMAIL_SCHEMES:
        body, fmt = msg.html, apprise.NotifyFormat.HTML
    elif scheme in MARKDOWN_SCHEMES:
        body, fmt = msg.markdown, apprise.NotifyFormat.MARKDOWN
    else:
        body, fmt = msg.text, apprise.NotifyFormat.TEXT
    attach = None
    tmp: Path | None = None
    try:
        if attachment:
            with tempfile.NamedTemporaryFile(suffix=".png", prefix="wis-chart-",
                                             delete=False) as fh:
                fh.write(attachment)
                tmp = Path(fh.name)
            attach = apprise.AppriseAttachment(str(tmp))
        result = ap.notify(body=body, title=msg.title, body_format=fmt, attach=attach,
                           notify_type=NOTIFY_TYPES.get(msg.level, apprise.NotifyType.INFO))
        if result:
            return True, ""
        errors = [e.message for e in result.logs()
                  if str(e.level).upper() in ("WARNING", "ERROR", "CRITICAL")]
        return False, redact("; ".join(errors[-3:]) or "the service did not accept it")
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


async def send(url: str, timeout_s: float, msg: Message, attachment: bytes | None = None
               ) -> tuple[bool, str]:
    """Send one message to ``url``, bounded by ``timeout_s`` (apprise's connect and read
    timeouts, and twice that plus 5 s in all); never raises."""
    url = with_timeouts(url, timeout_s)
    msg = replace(msg, title=redact(msg.title), text=redact(msg.text), html=redact(msg.html),
                  markdown=redact(msg.markdown))
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_send_blocking, url, msg, attachment), timeout_s * 2 + 5)
    except TimeoutError:
        return False, f"no answer within {timeout_s * 2 + 5:g}s"
    except Exception as exc:  # apprise plugins raise all sorts; the outbox records it
        return False, redact(f"{type(exc).__name__}: {exc}")


TEST_MESSAGE = Message(
    title="[TEST] wis-monitor channel {name}",
    text="This is a test message from wis-monitor. If you can read it, alerts will arrive.",
    html="<p>This is a test message from <b>wis-monitor</b>. If you can read it, alerts "
         "will arrive.</p>",
    markdown="This is a test message from *wis-monitor*. If you can read it, alerts will "
             "arrive.",
)


async def send_test(name: str, url: str, timeout_s: float) -> tuple[bool, str]:
    """``notify-test``: one test message to the channel ``name`` at ``url``."""
    register_secrets([url])
    msg = replace(TEST_MESSAGE, title=TEST_MESSAGE.title.format(name=name))
    ok, err = await send(url, timeout_s, msg)
    return ok, err or privacy_url(url)
