"""Live venues through ccxt's async API — the only module that imports ccxt.

One exchange instance per venue with ``enableRateLimit`` on and the venue's ``ccxt:`` block
deep-merged into the constructor config. ``load_markets`` failures are not fatal: the venue
reports error samples and retries with capped backoff. Every fetch becomes an
:class:`~wis_monitor.sources.Observation`, including failures, which carry the error class and
message; ``Retry-After`` on 429/418 is read from the response headers (ccxt ignores it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from wis_monitor.book import Book, make_book
from wis_monitor.errors import PermanentSourceError, SourceError, TransientSourceError
from wis_monitor.redact import redact
from wis_monitor.settings import Venue
from wis_monitor.sources import Observation, error_observation
from wis_monitor.sources.limits import request_depth

log = logging.getLogger("wis_monitor.ccxt")

#: Levels requested first when the config sets no depth; doubled while the book the venue
#: returns is truncated short of the band (up to what the venue allows).
DEFAULT_DEPTH = 100
MARKETS_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

#: Errors an operator must fix; everything else from ccxt is worth retrying.
_PERMANENT: tuple[type[BaseException], ...] = (
    ccxt.BadSymbol, ccxt.BadRequest, ccxt.AuthenticationError, ccxt.NotSupported,
)


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def classify(exc: BaseException) -> type[SourceError]:
    """Transient (retry) or permanent (needs an operator)."""
    return PermanentSourceError if isinstance(exc, _PERMANENT) else TransientSourceError


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() != "retry-after":
            continue
        try:
            return max(float(value), 0.0)
        except (TypeError, ValueError):
            pass
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)
    return None


def exchange_class(exchange_id: str) -> Any:
    """The ccxt async class for an exchange id, or None if ccxt has no such exchange."""
    if exchange_id not in ccxt.exchanges:
        return None
    return getattr(ccxt_async, exchange_id)


class CcxtVenue:
    """A venue sampled through ccxt."""

    def __init__(self, venue: Venue, *, timeout_ms: int, band_bps: float = 50.0) -> None:
        self.venue = venue.id
        self.symbols = list(venue.symbols)
        self.exchange_id = venue.exchange
        cls = exchange_class(venue.exchange)
        if cls is None:
            raise PermanentSourceError(f"ccxt has no exchange {venue.exchange!r}")
        params = deep_merge({"enableRateLimit": True, "timeout": timeout_ms}, venue.ccxt)
        self.exchange: Any = cls(params)
        self.depth = request_depth(venue.exchange, venue.depth or DEFAULT_DEPTH, self.symbols)
        self.adaptive = venue.depth is None
        self.band_bps = band_bps
        self._markets_ok = False
        self._markets_error: BaseException | None = None
        self._markets_attempts = 0
        self._markets_next = 0.0
        self._markets_lock = asyncio.Lock()
        self._warmup: asyncio.Task[bool] | None = None

    async def start(self) -> None:
        """Begin loading the markets in the background: a venue that hangs here must not
        hold up the start (READY) or any other venue; the first fetch waits for it."""
        self._warmup = asyncio.create_task(self._load_markets())

    async def close(self) -> None:
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        try:
            await self.exchange.close()
        except Exception as exc:  # closing must never fail a shutdown
            log.debug("venue %s: close failed: %s", self.venue, exc)

    async def _load_markets(self) -> bool:
        async with self._markets_lock:
            if self._markets_ok:
                return True
            if time.monotonic() < self._markets_next:
                return False
            try:
                await self.exchange.load_markets()
            except Exception as exc:
                self._markets_error = exc
                delay = MARKETS_BACKOFF_S[min(self._markets_attempts, len(MARKETS_BACKOFF_S) - 1)]
                self._markets_attempts += 1
                self._markets_next = time.monotonic() + delay
                log.warning("venue %s: cannot load markets (%s: %s); retrying in %.0fs",
                            self.venue, type(exc).__name__, redact(str(exc))[:200], delay)
                return False
            self._markets_ok = True
            self._markets_attempts = 0
            if self._markets_error is not None:
                log.info("venue %s: markets loaded", self.venue)
            self._markets_error = None
            return True

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        started = time.perf_counter()
        if not await self._load_markets():
            err = self._markets_error or TransientSourceError("markets not loaded yet")
            return error_observation(self.venue, symbol, _wall_ms(), _markets_failed(err))
        try:
            market = self.exchange.market(symbol)
            ob = await self.exchange.fetch_order_book(symbol, self.depth)
        except Exception as exc:
            latency = (time.perf_counter() - started) * 1000.0
            retry = None
            # ccxt maps a 429 to DDoSProtection, RateLimitExceeded or (okx)
            # ExchangeNotAvailable; a 503 may carry Retry-After too. A timeout has no
            # response of its own, so the headers at hand would be an earlier response's.
            if isinstance(exc, ccxt.NetworkError) and not isinstance(exc, ccxt.RequestTimeout):
                retry = _retry_after(getattr(self.exchange, "last_response_headers", None))
            return error_observation(self.venue, symbol, _wall_ms(), exc, latency, retry)
        received = _wall_ms()
        latency = (time.perf_counter() - started) * 1000.0
        ts = ob.get("timestamp") if isinstance(ob, dict) else None
        book, flags = make_book(
            ob.get("bids") if isinstance(ob, dict) else None,
            ob.get("asks") if isinstance(ob, dict) else None,
            contract_size=market.get("contractSize") or 1.0,
            inverse=market.get("inverse") is True,
            venue_ts_ms=int(ts) if isinstance(ts, int | float) else None,
        )
        if self.adaptive and not flags:
            self._grow_depth(book)
        note = _why_empty(self.exchange) if "empty" in flags else None
        return Observation(self.venue, symbol, received, book, flags, latency, note)

    def _grow_depth(self, book: Book) -> None:
        """Ask for more levels next time when the venue cut the book short of the band."""
        mid = book.mid
        if mid is None:
            return
        reach_b = (mid - float(book.bid_px[-1])) / mid * 1e4
        reach_a = (float(book.ask_px[-1]) - mid) / mid * 1e4
        truncated = max(book.bid_px.size, book.ask_px.size) >= self.depth
        if truncated and min(reach_b, reach_a) < self.band_bps:
            bigger = request_depth(self.exchange_id, self.depth * 2, self.symbols)
            if bigger > self.depth:
                log.info("venue %s: %d levels reach only %.1f bps; requesting %d",
                         self.venue, self.depth, min(reach_b, reach_a), bigger)
                self.depth = bigger


def _why_empty(exchange: Any) -> str | None:
    """ccxt turns a status-200 HTML page or broken JSON into an empty book: say which it was."""
    body = getattr(exchange, "last_http_response", None)
    if not isinstance(body, str) or not body.strip():
        return None
    text = body.lstrip()
    if text[:1] == "<":
        return "the venue answered with an HTML page, not JSON (maintenance or a proxy?)"
    try:
        json.loads(text)
    except ValueError:
        return f"the venue answered with malformed JSON ({len(body)} bytes)"
    return None


def _markets_failed(exc: BaseException) -> BaseException:
    kind = classify(exc)
    return kind(f"markets not loaded: {type(exc).__name__}: {exc}")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def load_markets(exchange_id: str, options: Mapping[str, Any], *,
                       timeout_ms: int = 30_000) -> dict[str, dict[str, Any]]:
    """The markets of one exchange, loaded as the daemon loads them (the venue's ``ccxt:``
    options merged in), keyed by unified symbol; raise SourceError."""
    cls = exchange_class(exchange_id)
    if cls is None:
        raise PermanentSourceError(f"ccxt has no exchange {exchange_id!r}")
    exchange = cls(deep_merge({"enableRateLimit": True, "timeout": timeout_ms}, options))
    try:
        return dict(await exchange.load_markets())
    except Exception as exc:
        raise classify(exc)(f"{type(exc).__name__}: {redact(str(exc))[:200]}") from exc
    finally:
        with contextlib.suppress(Exception):
            await exchange.close()
