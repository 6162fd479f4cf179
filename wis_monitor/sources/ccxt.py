"""Live venues through ccxt's async API — the only module that imports ccxt.

One exchange instance per venue with ``enableRateLimit`` on and the venue's ``ccxt:`` block
deep-merged into the constructor config. ``load_markets`` failures are not fatal: the venue
reports error samples and retries with capped backoff. Every fetch becomes an
:class:`~wis_monitor.sources.Observation`, including failures, which carry the error class and
message; ``Retry-After`` on 429/418 is read from the response headers (ccxt ignores it).
Every failure is classified here, once, from ccxt's exception classes: a
:class:`~wis_monitor.errors.SourceError` whose remedy is to retry, to back off or to fix the
configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import json
import logging
from collections.abc import Mapping
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from wis_monitor.book import Book, make_book
from wis_monitor.clock import SYSTEM, Clock
from wis_monitor.depths import DEFAULT_DEPTH, request_depth
from wis_monitor.errors import Remedy, SourceError
from wis_monitor.redact import redact
from wis_monitor.selection import Selection, choose, reference_symbol
from wis_monitor.settings import Venue
from wis_monitor.sources import Observation, error_observation

log = logging.getLogger("wis_monitor.ccxt")

MARKETS_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

#: Errors only an operator can fix: unknown symbol or bad request, bad credentials or
#: permissions (a suspended account, a restricted location), a feature the venue lacks.
_FIX_CONFIG: tuple[type[BaseException], ...] = (
    ccxt.BadRequest, ccxt.ArgumentsRequired, ccxt.AuthenticationError, ccxt.NotSupported,
    ccxt.RestrictedLocation, ccxt.ExchangeClosedByUser,
)
#: The venue asks for fewer requests (a 429, or a block that ccxt reports as such).
_BACK_OFF: tuple[type[BaseException], ...] = (ccxt.RateLimitExceeded, ccxt.DDoSProtection)


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def classify(exc: BaseException, message: str | None = None, *,
             retry_after_s: float | None = None) -> SourceError:
    """The SourceError for anything a ccxt call raised (its class names the kind).

    Fix the configuration for the classes in ``_FIX_CONFIG``; back off for a rate limit, or
    for any error that came with a ``Retry-After``; retry everything else (network errors,
    timeouts, 5xx, maintenance, malformed answers)."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, _FIX_CONFIG):
        remedy = Remedy.FIX_CONFIG
    elif isinstance(exc, _BACK_OFF) or retry_after_s:
        remedy = Remedy.BACK_OFF
    else:
        remedy = Remedy.RETRY
    return SourceError(str(exc) if message is None else message, remedy,
                       kind=type(exc).__name__, retry_after_s=retry_after_s)


def unreachable(exc: SourceError) -> bool:
    """Whether a failure is the network's: the venue's API could not be reached or did not
    answer in time (no network, a closed port), as opposed to an answer that refused."""
    return exc.remedy is Remedy.RETRY and isinstance(exc.__cause__, ccxt.NetworkError)


def _retry_after(headers: Mapping[str, Any] | None, clock: Clock) -> float | None:
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
        return max(when.timestamp() - clock.now_ms() / 1000.0, 0.0)
    return None


#: Venues whose books give the amounts of inverse futures and swaps in USD already, while
#: ccxt's market says what one contract is worth: deribit (BTC-PERPETUAL: amounts in USD,
#: ``contractSize`` 10). Their notional is the amount itself.
USD_AMOUNTS = frozenset({"deribit"})


def notional_contract_size(exchange_id: str, market: dict[str, Any]) -> float:
    """What an amount of this market's book is multiplied by for its notional: the market's
    ``contractSize``, or 1 where the venue gives inverse amounts in USD already."""
    if exchange_id in USD_AMOUNTS and market.get("inverse") is True and \
            market.get("type") in ("swap", "future"):
        return 1.0
    return float(market.get("contractSize") or 1.0)


def exchange_class(exchange_id: str) -> Any:
    """The ccxt async class for an exchange id, or None if ccxt has no such exchange."""
    if exchange_id not in ccxt.exchanges:
        return None
    return getattr(ccxt_async, exchange_id)


class CcxtVenue:
    """A venue sampled through ccxt."""

    def __init__(self, venue: Venue, *, timeout_ms: int, band_bps: float = 50.0,
                 clock: Clock = SYSTEM) -> None:
        self.venue = venue.id
        self.clock = clock
        self.symbols = list(venue.symbols)
        self.exchange_id = venue.exchange
        cls = exchange_class(venue.exchange)
        if cls is None:
            raise SourceError(f"ccxt has no exchange {venue.exchange!r}", Remedy.FIX_CONFIG)
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

    async def ready(self) -> bool:
        """Whether the markets are loaded (loading them now if due)."""
        return await self._load_markets()

    async def _load_markets(self) -> bool:
        async with self._markets_lock:
            if self._markets_ok:
                return True
            if self.clock.monotonic() < self._markets_next:
                return False
            try:
                await self.exchange.load_markets()
            except Exception as exc:
                self._markets_error = exc
                delay = MARKETS_BACKOFF_S[min(self._markets_attempts, len(MARKETS_BACKOFF_S) - 1)]
                self._markets_attempts += 1
                self._markets_next = self.clock.monotonic() + delay
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
        started = self.clock.monotonic()
        if not await self._load_markets():
            err = self._markets_error or SourceError("markets not loaded yet")
            return error_observation(self.venue, symbol, self.clock.now_ms(),
                                     _markets_failed(err))
        try:
            market = self.exchange.market(symbol)
            ob = await self.exchange.fetch_order_book(symbol, self.depth)
        except Exception as exc:
            latency = (self.clock.monotonic() - started) * 1000.0
            retry = None
            # ccxt maps a 429 to DDoSProtection, RateLimitExceeded or (okx)
            # ExchangeNotAvailable; a 503 may carry Retry-After too. A timeout has no
            # response of its own, so the headers at hand would be an earlier response's.
            if isinstance(exc, ccxt.NetworkError) and not isinstance(exc, ccxt.RequestTimeout):
                retry = _retry_after(getattr(self.exchange, "last_response_headers", None),
                                     self.clock)
            return error_observation(self.venue, symbol, self.clock.now_ms(),
                                     classify(exc, retry_after_s=retry), latency)
        received = self.clock.now_ms()
        latency = (self.clock.monotonic() - started) * 1000.0
        ts = ob.get("timestamp") if isinstance(ob, dict) else None
        book, flags = make_book(
            ob.get("bids") if isinstance(ob, dict) else None,
            ob.get("asks") if isinstance(ob, dict) else None,
            contract_size=notional_contract_size(self.exchange_id, market),
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


def _markets_failed(exc: BaseException) -> SourceError:
    return classify(exc, f"markets not loaded: {type(exc).__name__}: {exc}")


async def load_markets(exchange_id: str, options: Mapping[str, Any], *,
                       timeout_ms: int = 30_000) -> dict[str, dict[str, Any]]:
    """The markets of one exchange, loaded as the daemon loads them (the venue's ``ccxt:``
    options merged in), keyed by unified symbol; raise SourceError."""
    cls = exchange_class(exchange_id)
    if cls is None:
        raise SourceError(f"ccxt has no exchange {exchange_id!r}", Remedy.FIX_CONFIG)
    exchange = cls(deep_merge({"enableRateLimit": True, "timeout": timeout_ms}, options))
    try:
        return dict(await exchange.load_markets())
    except Exception as exc:
        raise classify(exc, f"{type(exc).__name__}: {redact(str(exc))[:200]}") from exc
    finally:
        with contextlib.suppress(Exception):
            await exchange.close()


async def select_markets(venue: Venue, select: Selection, now_ms: int, *, timeout_ms: int
                         ) -> tuple[list[str], dict[str, dict[str, Any]], float | None, float]:
    """Resolve a selection against the venue's markets now: the symbols it takes, the markets,
    the underlying's price (the mid of the reference market; options only) and the venue's
    rate limit (ms per request, ccxt's ``rateLimit``); raise SourceError."""
    cls = exchange_class(venue.exchange)
    if cls is None:
        raise SourceError(f"ccxt has no exchange {venue.exchange!r}", Remedy.FIX_CONFIG)
    exchange = cls(deep_merge({"enableRateLimit": True, "timeout": timeout_ms}, venue.ccxt))
    try:
        markets = dict(await exchange.load_markets(reload=True))
        price = None
        if select.type == "option":
            reference = reference_symbol(markets, select)
            if reference is None:
                raise SourceError(f"no reference market for the price of {select.base} (set "
                                  "select.reference)", Remedy.FIX_CONFIG)
            ob = await exchange.fetch_order_book(reference, request_depth(venue.exchange, 5))
            book, _ = make_book(ob.get("bids"), ob.get("asks"))
            price = book.mid
        return choose(markets, select, now_ms, price), markets, price, float(exchange.rateLimit)
    except SourceError:
        raise
    except ValueError as exc:
        raise SourceError(str(exc), Remedy.RETRY) from exc
    except Exception as exc:
        raise classify(exc, f"{type(exc).__name__}: {redact(str(exc))[:200]}") from exc
    finally:
        with contextlib.suppress(Exception):
            await exchange.close()
