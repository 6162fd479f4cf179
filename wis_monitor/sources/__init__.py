"""Where books come from: live venues (ccxt), the simulator and recordings, behind one protocol.

A source turns one fetch into an :class:`Observation` — a validated book with its structural
flags, or the error that prevented it. Only :mod:`wis_monitor.sources.ccxt` and
:mod:`wis_monitor.sources.stream` (ccxt.pro) import ccxt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

from wis_monitor.book import Book
from wis_monitor.clock import Clock
from wis_monitor.errors import SourceError
from wis_monitor.redact import redact

if TYPE_CHECKING:
    from wis_monitor.config import Config
    from wis_monitor.settings import Venue


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
    fault: SourceError | None = None  # the failure itself, with its remedy
    book_age_ms: float | None = None  # since the last update applied to a streamed book
    drift_bps: float | None = None  # a streamed book's difference from a REST snapshot


_set_venue, _set_symbol, _set_ts_ms, _set_book, _set_flags, _set_latency_ms, _set_error, \
    _set_fault, _set_book_age_ms, _set_drift_bps = (
        getattr(Observation, f.name).__set__ for f in fields(Observation))


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
    _set_fault(obs, None)
    _set_book_age_ms(obs, None)
    _set_drift_bps(obs, None)
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
                      latency_ms: float | None = None) -> Observation:
    """An observation recording a failed fetch: flag ``error`` and ``Kind: message``, its
    secrets masked (it is stored, logged, served and sent in feed-stale alerts). An exception
    that is not a SourceError (a source's defect) is one to retry."""
    fault = exc if isinstance(exc, SourceError) else SourceError(str(exc), kind=type(exc).__name__)
    message = redact(str(fault)).strip().replace("\n", " ")
    if len(message) > 300:
        message = message[:297] + "..."
    return Observation(
        venue, symbol, ts_ms, None, frozenset({"error"}), latency_ms,
        f"{fault.kind}: {message}" if message else fault.kind, fault,
    )


def make_source(venue: Venue, config: Config, clock: Clock,
                alert: Callable[[str, str], None] | None = None) -> Source:
    """The source behind a configured venue (ccxt is imported only for live venues);
    ``alert(title, text)`` tells the operators when a streamed venue falls back to polling."""
    if venue.exchange == "sim":
        from wis_monitor.sources.sim import SimVenue

        return SimVenue(venue.id, venue.symbols, seed=venue.sim.seed, price=venue.sim.price,
                        tick=venue.sim.tick, levels=venue.sim.levels,
                        calm_s=venue.sim.calm.total_seconds())
    if venue.exchange == "replay":
        from wis_monitor.sources.recordings import RecordingVenue

        return RecordingVenue(venue.id, venue.symbols, venue.books or "")
    from wis_monitor.sources.ccxt import CcxtVenue

    band = max((k.band_bps for sym in venue.symbols
                for k in config.metrics_for(venue.id, sym).kernels().values()),
               default=config.settings.metrics.wis.band_bps)  # a selection not resolved yet
    rest = CcxtVenue(venue, timeout_ms=config.timeout_ms(venue), band_bps=band, clock=clock)
    if venue.mode == "poll":
        return rest
    from wis_monitor.sources.stream import StreamVenue

    return StreamVenue(venue, rest=rest, clock=clock, timeout_ms=config.timeout_ms(venue),
                       alert=alert)
