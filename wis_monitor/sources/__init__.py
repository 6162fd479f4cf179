"""Where books come from: live venues (ccxt), the simulator and recordings, behind one protocol.

A source turns one fetch into an :class:`Observation` — a validated book with its structural
flags, or the error that prevented it. Only :mod:`wis_monitor.sources.ccxt` imports ccxt.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

from wis_monitor.book import Book
from wis_monitor.redact import redact


@dataclass(frozen=True, slots=True)
class Observation:
    """One fetch attempt of one (venue, symbol)."""

    venue: str
    symbol: str
    ts_ms: int
    book: Book | None
    flags: frozenset[str] = frozenset()
    latency_ms: float | None = None
    error: str | None = None  # "ErrorClass: message" of a failed fetch
    retry_after_s: float | None = None


_set_venue, _set_symbol, _set_ts_ms, _set_book, _set_flags, _set_latency_ms, _set_error, \
    _set_retry_after_s = (getattr(Observation, f.name).__set__ for f in fields(Observation))


def recorded(venue: str, symbol: str, ts_ms: int, book: Book, flags: frozenset[str],
             latency_ms: float | None) -> Observation:
    """``Observation(venue, symbol, ts_ms, book, flags, latency_ms)`` for a reader of many books:
    the slots set directly (a frozen dataclass's ``__init__`` costs twice as much)."""
    obs: Observation = object.__new__(Observation)
    _set_venue(obs, venue)
    _set_symbol(obs, symbol)
    _set_ts_ms(obs, ts_ms)
    _set_book(obs, book)
    _set_flags(obs, flags)
    _set_latency_ms(obs, latency_ms)
    _set_error(obs, None)
    _set_retry_after_s(obs, None)
    return obs


class Source(Protocol):
    """A venue the daemon samples on a schedule."""

    venue: str
    symbols: list[str]

    async def start(self) -> None:
        """Prepare (load markets); must not raise for venue faults, only report them."""

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        """Fetch one book; never raises for venue faults: they become error observations."""

    async def close(self) -> None: ...


def error_observation(venue: str, symbol: str, ts_ms: int, exc: BaseException,
                      latency_ms: float | None = None,
                      retry_after_s: float | None = None) -> Observation:
    """An observation recording a failed fetch: flag ``error`` and ``Class: message``, its
    secrets masked (it is stored, logged, served and sent in feed-stale alerts)."""
    message = redact(str(exc)).strip().replace("\n", " ")
    if len(message) > 300:
        message = message[:297] + "..."
    return Observation(
        venue, symbol, ts_ms, None, frozenset({"error"}), latency_ms,
        f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
        retry_after_s,
    )
