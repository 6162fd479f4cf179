"""Reaching a PostgreSQL server: its URL as shown (no password), errors as shown, and the
connection test of ``check --online``."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

from wis_monitor.errors import StoreError
from wis_monitor.redact import redact
from wis_monitor.store import pgschema

_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}")
        return _PASSWORD_PARAM.sub(r"\1***", urlunsplit(parts))
    except ValueError:
        return "postgresql://***"


def password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def error_text(exc: psycopg.Error, password: str | None) -> str:
    """The error on one line, without the password."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return redact(text.replace(password, "***") if password else text) or type(exc).__name__


def probe(url: str, connect_timeout_s: float = 10.0) -> str:
    """Connect to ``url`` and describe the server and the schema found there, changing
    nothing (``check --online``); StoreError when it cannot be used."""
    path = masked_url(url)
    try:
        with psycopg.connect(url, autocommit=True, application_name="wis-monitor check",
                             connect_timeout=max(2, round(connect_timeout_s))) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            done = pgschema.applied(conn)
    except psycopg.Error as exc:
        raise StoreError(f"{path}: cannot connect to PostgreSQL: "
                         f"{error_text(exc, password_of(url))}") from exc
    pgschema.refuse_newer(done, path)
    schema = (f"schema with {len(done)} of {len(pgschema.NAMES)} migration(s)" if done else
              "no tables yet (the daemon creates them)")
    return f"{path}: PostgreSQL {row[0] if row else '?'}; {schema}"
