"""Where books come from: live venues (ccxt), the simulator and recordings, behind one protocol.

A source turns one fetch into an :class:`Observation` — a validated book with its structural
flags, or the error that prevented it. Only :mod:`wis_monitor.sources.ccxt` imports ccxt.
"""

from __future__ import annotations

from dataclasses import dataclass
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
