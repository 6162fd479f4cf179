"""Streamed venues (``mode: stream``): order books kept from ccxt.pro's websockets, sampled
locally, and never trusted blindly (docs/streaming.md).

The venue's symbols are spread over connections of ``stream.symbols_per_connection``; each
connection is one ccxt.pro exchange instance run by its own task (``watch_order_book`` or
``watch_order_book_for_symbols``), so a connection's trouble never holds up another's, nor
another venue's. :meth:`StreamVenue.fetch` answers at once with the latest book ccxt returned
(never one kept from before an exception), converted at that moment.

What is checked, and what happens (the decisions are the pure :mod:`wis_monitor.streamguard`):

- a book without an update for ``stream.stale_after`` (every message ccxt applies counts), or
  on a connection whose newest message is that far behind the clock, is flagged ``stale``
  and its connection resubscribed — unless it became so only while a long synchronous step
  of the daemon held the event loop up (a late heartbeat): the messages then wait in the
  socket and the book catches up once the loop runs again;
- a sequence or nonce error (ccxt raises it), okx's checksum (verified here after every
  message, since ccxt does not) or a drift from the REST snapshot above ``stream.drift_bps``
  discards the book: the symbol has no book until a fresh snapshot arrives;
- a disconnect reconnects with a capped backoff;
- too many resyncs or drifts within ``stream.fallback_window`` switch the venue to polling
  (the REST fetch of :class:`~wis_monitor.sources.ccxt.CcxtVenue`) until ``stream.quiet``
  has passed, with an operations alert each way.

Every resync is counted by symbol and reason (``resyncs``) and logged once per burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt
import ccxt.pro

from wis_monitor.book import make_book
from wis_monitor.clock import Clock
from wis_monitor.duration import ms
from wis_monitor.errors import SourceError
from wis_monitor.redact import redact
from wis_monitor.settings import Venue
from wis_monitor.sources import Observation, error_observation
from wis_monitor.sources.ccxt import CcxtVenue, classify, deep_merge, notional_contract_size
from wis_monitor.streamguard import (
    Burst,
    Fallback,
    drift_bps,
    number_text,
    okx_checksum,
    staleness,
)

log = logging.getLogger("wis_monitor.stream")
RECONNECT_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BURST_GAP_MS = 60_000  # resyncs closer than this are one burst: logged once
VERIFY_TICK_S = 1.0
NO_BOOK_YET = "no snapshot yet"
SYNC_GRACE = 6  # x stale_after: how long a symbol may wait for its first book
CATCH_UP_POLLS, CATCH_UP_POLL_S = 50, 0.02  # for the stream to reach a snapshot's update id
CATCH_UP_WINDOW_S = 0.25  # after a snapshot without an update id
CONFIRM_AFTER_S = 0.5  # a drift over the threshold is checked again this much later
RECENT_STATES = 64  # top levels of each book's latest updates, for the cross-check
BEAT_MS = 100  # the event loop's heartbeat: a late one means the daemon itself was held up
#: Errors after which ccxt resyncs the book itself at the next watch (a new snapshot).
_RESYNCED_BY_CCXT: tuple[type[BaseException], ...] = (ccxt.InvalidNonce, ccxt.ChecksumError)
Alert = Callable[[str, str], None]  # (title, text)
#: A book's top levels (bids, asks) and its update id.
State = tuple[tuple[list[list[float]], list[list[float]]] | None, Any]


@dataclass
class Watched:
    """One symbol's streamed book and what is known of it."""

    book: Any = None  # the latest order book object ccxt returned; None: none to trust
    updated_ms: int | None = None  # when ccxt last applied an update to it
    broken: str | None = None  # why there is no book to trust (until a fresh one arrives)
    broken_ms: int | None = None
    drift: float | None = None  # of the latest cross-check, for the next sample
    next_verify_ms: int = 0
    states: deque[State] = field(default_factory=lambda: deque(maxlen=RECENT_STATES))


@dataclass
class Connection:
    """One websocket's symbols and the task that watches them."""

    symbols: list[str]
    task: asyncio.Task[None] | None = None
    failures: int = 0  # in a row, for the reconnect backoff
    restarted_ms: int | None = None  # when it was last resubscribed
    latest_ts_ms: int | None = None  # the newest venue time of its books' updates


@dataclass
class Heartbeat:
    """When the event loop was held up: a task beats every BEAT_MS; a late beat means that a
    long synchronous step of the daemon held the loop up, and with it the reading of the
    sockets: what the venue sent meanwhile waits there, and the books are behind until the
    loop has read it."""

    last_ms: int | None = None
    held: tuple[int, int] = (0, 0)  # the latest hold-up: from, to

    def beat(self, now_ms: int) -> None:
        if self.last_ms is not None and now_ms - self.last_ms > BEAT_MS:
            self.held = (self.last_ms + BEAT_MS, now_ms)
        self.last_ms = now_ms

    def free_ms(self, now_ms: int) -> int:
        """Until when the loop is known to have been free to read the streams: ``now_ms``; or,
        while it is held up and for as long again after (to read what waited meanwhile),
        when the hold-up began."""
        if self.last_ms is not None and now_ms > self.last_ms + BEAT_MS:
            return self.last_ms + BEAT_MS  # held up now, or until just now
        start, end = self.held
        return start if now_ms - end < end - start else now_ms


@dataclass
class StreamStats:
    """What ``/metrics`` shows of a streamed venue."""

    resyncs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (symbol, reason)
    drift: dict[str, float] = field(default_factory=dict)
    fallbacks: int = 0


class StreamVenue:
    """A venue whose books are streamed; polled through ``rest`` while it falls back."""

    def __init__(self, venue: Venue, *, rest: CcxtVenue, clock: Clock, timeout_ms: int,
                 alert: Alert | None = None) -> None:
        self.venue = venue.id
        self.symbols = list(venue.symbols)
        self.exchange_id = venue.exchange
        self.rest = rest
        self.clock = clock
        self.alert = alert
        self.settings = venue.stream
        self.stale_after_ms = ms(venue.stream.stale_after)
        # binance's limit is the size of its REST snapshots (their weight); okx's and most
        # others' choose a channel: left to ccxt unless configured
        self.limit = venue.depth or (rest.depth if venue.exchange.startswith("binance")
                                     else None)
        self._cls = getattr(ccxt.pro, venue.exchange)
        self._options = deep_merge({"enableRateLimit": True, "timeout": timeout_ms}, venue.ccxt)
        self.books = {s: Watched() for s in self.symbols}
        per = venue.stream.symbols_per_connection
        self.connections = [Connection(self.symbols[i:i + per])
                            for i in range(0, len(self.symbols), per)]
        self._by_symbol = {s: c for c in self.connections for s in c.symbols}
        self.fallback = Fallback(venue.stream.fallback_after, ms(venue.stream.fallback_window),
                                 ms(venue.stream.quiet))
        self.stats = StreamStats()
        self._burst = Burst(BURST_GAP_MS)
        self._verifier: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self.heartbeat = Heartbeat()
        self._stopping: asyncio.Task[None] | None = None
        self._closing = False
        self._nonces = False  # the venue's books carry update ids

    @property
    def mode(self) -> str:
        return "poll (fallback)" if self.fallback.polling else "stream"

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.rest.start()
        self._start_streams()

    async def close(self) -> None:
        self._closing = True
        if self._stopping is not None:
            await asyncio.gather(self._stopping, return_exceptions=True)
        await self._stop_streams()
        await self.rest.close()

    def _start_streams(self) -> None:
        now = self.clock.now_ms()
        every = ms(self.settings.verify_every)
        for i, symbol in enumerate(self.symbols):  # cross-checks spread over the period
            self.books[symbol] = Watched(next_verify_ms=now + every * (i + 1) // len(self.symbols))
        for conn in self.connections:
            conn.failures = 0
            conn.task = asyncio.create_task(self._run(conn))
        self._verifier = asyncio.create_task(self._verify_loop())
        self.heartbeat = Heartbeat()
        self._heart = asyncio.create_task(self._beat())

    async def _stop_streams(self) -> None:
        tasks = [t for t in (*(c.task for c in self.connections), self._verifier, self._heart)
                 if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self.connections:
            conn.task = None
        self._verifier = self._heart = None

    # -- the connections ----------------------------------------------------------------------

    def _exchange(self) -> Any:
        """A new ccxt.pro instance (its own websocket) with the markets the REST side loaded."""
        exchange = self._cls(self._options)
        markets = self.rest.exchange.markets
        if markets:
            exchange.set_markets(markets, self.rest.exchange.currencies)
        self._stamp_updates(exchange)
        if self.exchange_id == "okx":
            self._verify_okx_checksums(exchange)
        return exchange

    def _stamp_updates(self, exchange: Any) -> None:
        """Note the time of every message ccxt applies to a book (``book_age_ms``), and take
        up a symbol's new book at its first update: a watch over several symbols returns only
        the book that was updated first, so the others of a burst would wait for their turn
        (on a venue that sends every symbol's update at once, for ever)."""
        handle = getattr(exchange, "handle_order_book_message", None)
        if handle is None:
            return

        def stamped(*args: Any, **kwargs: Any) -> Any:
            result = handle(*args, **kwargs)
            book = args[2] if len(args) > 2 else None
            symbol = book.get("symbol") if isinstance(book, dict) else None
            if symbol not in self.books:
                return result
            if self.books[symbol].book is book:
                self._stamp(symbol, book)
            elif exchange.orderbooks.get(symbol) is book and (book["bids"] or book["asks"]):
                self._took(book)  # the current object, with its snapshot applied
            return result

        exchange.handle_order_book_message = stamped

    async def _run(self, conn: Connection) -> None:
        """Watch the connection's symbols until cancelled: reconnect after a failure, resync
        after a sequence error (ccxt fetches the new snapshot at the next watch)."""
        while True:
            while not await self.rest.ready():
                await asyncio.sleep(1.0)
            exchange = self._exchange()
            delay = 0.0
            try:
                while True:
                    try:
                        ob = await self._watch(exchange, conn.symbols)
                    except _RESYNCED_BY_CCXT as exc:
                        self._resynced(conn, _symbol_of(exc, conn.symbols), type(exc).__name__,
                                       restart=False)
                        continue
                    self._took(ob)
                    conn.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                fault = classify(exc)
                self._resynced(conn, None, fault.kind, restart=False,
                               detail=redact(str(exc))[:200])
                delay = RECONNECT_BACKOFF_S[min(conn.failures, len(RECONNECT_BACKOFF_S) - 1)]
                conn.failures += 1
                if fault.retry_after_s:
                    delay = max(delay, fault.retry_after_s)
            finally:
                with contextlib.suppress(Exception):
                    await exchange.close()
            await asyncio.sleep(delay)

    async def _watch(self, exchange: Any, symbols: list[str]) -> Any:
        if len(symbols) == 1:
            return await exchange.watch_order_book(symbols[0], self.limit)
        return await exchange.watch_order_book_for_symbols(symbols, self.limit)

    def _took(self, ob: Any) -> None:
        """Keep the book ccxt returned (the latest object: never one from before an error)."""
        symbol = ob.get("symbol") if isinstance(ob, dict) else None
        if not isinstance(symbol, str) or symbol not in self.books:
            return
        w = self.books[symbol]
        self._nonces = self._nonces or ob.get("nonce") is not None
        w.book = ob
        self._stamp(symbol, ob)
        if w.broken is not None:
            w.broken = w.broken_ms = None

    def _stamp(self, symbol: str, ob: Any) -> None:
        """An update was applied to the symbol's book now."""
        w = self.books[symbol]
        w.updated_ms = self.clock.now_ms()
        conn = self._by_symbol[symbol]
        ts = ob.get("timestamp")
        if isinstance(ts, int) and (conn.latest_ts_ms is None or ts > conn.latest_ts_ms):
            conn.latest_ts_ms = ts
        w.states.append(_state(ob, self.settings.verify_levels))

    def _resynced(self, conn: Connection, symbol: str | None, reason: str, *, restart: bool,
                  detail: str = "") -> None:
        """Discard the books of ``symbol`` (None: the whole connection), count and log the
        resync, and with ``restart`` resubscribe the connection (a new one: fresh snapshots)
        unless that was done less than ``stale_after`` ago. Too many of them switch the venue
        to polling."""
        now = self.clock.now_ms()
        for s in conn.symbols if symbol is None or restart else [symbol]:
            w = self.books[s]
            w.book = None
            if w.broken is None:
                w.broken, w.broken_ms = reason, now
        if restart:
            if conn.restarted_ms is not None and now - conn.restarted_ms < self.stale_after_ms:
                return  # being resubscribed already
            conn.restarted_ms = now
        self.stats.resyncs[(symbol or "*", reason)] += 1
        if self._burst.note(now):
            log.warning("venue %s %s: resyncing the stream (%s%s); further resyncs within a "
                        "minute are counted, not logged (wis_stream_resyncs_total)", self.venue,
                        symbol or ",".join(conn.symbols), reason, f": {detail}" if detail else "")
        if restart and conn.task is not None and not self._closing:
            conn.task.cancel()
            conn.task = asyncio.create_task(self._run(conn))
        if self.fallback.trouble(now) and not self._closing:
            self._fall_back(reason)

    def _verify_okx_checksums(self, exchange: Any) -> None:
        """Check okx's ``checksum`` after every book message ccxt applies (ccxt does not):
        a mismatch discards the book and resubscribes. A checksum of 0 is none (okx
        deprecated the field: it sends 0)."""
        handle = exchange.handle_order_book_message

        def checked(client: Any, message: Any, orderbook: Any, message_hash: Any,
                    market: Any = None) -> Any:
            result = handle(client, message, orderbook, message_hash, market)
            if message_hash not in client.subscriptions:
                return result  # ccxt found a sequence gap: it raises InvalidNonce
            expected = message.get("checksum") if isinstance(message, dict) else None
            symbol = orderbook.get("symbol") if isinstance(orderbook, dict) else None
            if expected and symbol in self._by_symbol and _okx_sum(orderbook) != int(expected):
                self._resynced(self._by_symbol[symbol], symbol, "checksum", restart=True)
            return result

        exchange.handle_order_book_message = checked

    # -- sampling -----------------------------------------------------------------------------

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        now = self.clock.now_ms()
        if self.fallback.polling:
            if not self.fallback.resume(now):
                return await self.rest.fetch(symbol, now_ms)
            self._resume()
        w = self.books[symbol]
        if w.book is None or (self._nonces and w.book.get("nonce") is None):
            return self._no_book(symbol, w, now)  # none, or one waiting for its snapshot
        conn = self._by_symbol[symbol]
        why = staleness(now, w.updated_ms, conn.latest_ts_ms, self.stale_after_ms)
        ts = w.book.get("timestamp")  # a quiet book is current as of its connection's news
        book_ts = max(int(ts), conn.latest_ts_ms or 0) if isinstance(ts, int | float) else None
        market = self.rest.exchange.markets.get(symbol, {}) if self.rest.exchange.markets else {}
        depth = self.rest.depth  # the levels a poll would get
        book, flags = make_book(w.book["bids"][:depth], w.book["asks"][:depth],
                                contract_size=notional_contract_size(self.exchange_id, market),
                                inverse=market.get("inverse") is True, venue_ts_ms=book_ts)
        age = float(now - w.updated_ms) if w.updated_ms is not None else None
        drift, w.drift = w.drift, None
        if why is not None:
            flags = flags | {"stale"}
            # stale already when the loop was last free: not just the daemon's own slowness,
            # which a resubscription would not cure
            if staleness(self.heartbeat.free_ms(now), w.updated_ms, conn.latest_ts_ms,
                         self.stale_after_ms) is not None:
                self._resynced(conn, symbol, why, restart=True)
        return Observation(self.venue, symbol, now, book, flags, book_age_ms=age, drift_bps=drift)

    async def _beat(self) -> None:
        while True:
            self.heartbeat.beat(self.clock.now_ms())
            await asyncio.sleep(BEAT_MS / 1000)

    def _no_book(self, symbol: str, w: Watched, now: int) -> Observation:
        """No book to trust (starting, or resyncing): flagged ``stale``; an error once it has
        lasted ``stale_after`` (the venue is down), and a resubscription — before the first
        book of the symbol only after SYNC_GRACE times as long (many symbols take a while to
        get their snapshots, and a resubscription would start them all over)."""
        since = w.broken_ms if w.broken_ms is not None else now
        if w.broken is None:
            w.broken, w.broken_ms = NO_BOOK_YET, now
        if now - since < self.stale_after_ms:
            return Observation(self.venue, symbol, now, None, frozenset({"stale"}))
        reason = w.broken
        error = error_observation(self.venue, symbol, now, SourceError(
            f"no streamed book for {(now - since) / 1000:.1f}s ({reason})", kind="StreamStale"))
        if reason == NO_BOOK_YET and now - since < SYNC_GRACE * self.stale_after_ms:
            return error
        self._resynced(self._by_symbol[symbol], symbol, "no snapshot", restart=True)
        w.broken, w.broken_ms = reason, now  # the next resubscription after as long again
        return error

    # -- the REST cross-check and the fallback ------------------------------------------------

    async def _verify_loop(self) -> None:
        while True:
            await asyncio.sleep(VERIFY_TICK_S)
            now = self.clock.now_ms()
            for symbol, w in self.books.items():
                if now >= w.next_verify_ms and self._fresh(symbol, w, now):
                    w.next_verify_ms = now + ms(self.settings.verify_every)
                    await self._verify(symbol)

    def _fresh(self, symbol: str, w: Watched, now: int) -> bool:
        """Whether a book is worth cross-checking (a stale one is resubscribed anyway)."""
        conn = self._by_symbol[symbol]
        return w.book is not None and staleness(now, w.updated_ms, conn.latest_ts_ms,
                                                self.stale_after_ms) is None

    async def _verify(self, symbol: str) -> None:
        """Cross-check a streamed book with a REST snapshot; a drift over the threshold
        twice in a row (the second check right after the first) resyncs the book."""
        w = self.books[symbol]
        for attempt in range(2):
            drift = await self._drift(symbol)
            if drift is None:
                return
            w.drift = self.stats.drift[symbol] = drift
            if drift <= self.settings.drift_bps:
                return
            if not attempt:
                await asyncio.sleep(CONFIRM_AFTER_S)
        log.warning("venue %s %s: the streamed book is %.2f bps from a REST snapshot (over "
                    "%.2f): resyncing", self.venue, symbol, w.drift, self.settings.drift_bps)
        self._resynced(self._by_symbol[symbol], symbol, "drift", restart=True)

    async def _drift(self, symbol: str) -> float | None:
        """The drift from a REST snapshot of the same moment: against the streamed state of
        the snapshot's update id when it has one (binance; None if the stream did not go
        through it: inconclusive), else the nearest of the book's recent states, up to
        CATCH_UP_WINDOW_S after the answer (okx)."""
        w = self.books[symbol]
        try:
            snap = await self.rest.exchange.fetch_order_book(symbol, self.rest.depth)
        except Exception as exc:
            log.debug("venue %s %s: cross-check skipped: %s", self.venue, symbol, exc)
            return None
        nonce = snap.get("nonce")
        if nonce is None:
            await asyncio.sleep(CATCH_UP_WINDOW_S)
        for _ in range(CATCH_UP_POLLS):  # the stream may deliver that update a bit later
            if not _behind(w.book, nonce):
                break
            await asyncio.sleep(CATCH_UP_POLL_S)
        states = [levels for levels, n in w.states if levels is not None
                  and (nonce is None or n == nonce)]
        theirs = (snap.get("bids") or [], snap.get("asks") or [])
        drifts = [d for levels in states
                  if (d := drift_bps(levels, theirs, self.settings.verify_levels)) is not None]
        return min(drifts) if drifts else None

    def _fall_back(self, reason: str) -> None:
        self.stats.fallbacks += 1
        text = (f"venue {self.venue}: {self.settings.fallback_after} stream resyncs or drifts "
                f"within {self.settings.fallback_window} (the last: {reason}); polling for "
                f"{self.settings.quiet} before streaming again")
        log.error("%s", text)
        if self.alert is not None:
            self.alert(f"wis-monitor venue {self.venue} falls back to polling", text)
        for w in self.books.values():
            w.book = None
        self._stopping = asyncio.create_task(self._stop_streams())

    def _resume(self) -> None:
        text = f"venue {self.venue}: streaming again after {self.settings.quiet} of polling"
        log.warning("%s", text)
        if self.alert is not None:
            self.alert(f"wis-monitor venue {self.venue} streams again", text)
        self._start_streams()


def _symbol_of(exc: BaseException, symbols: list[str]) -> str | None:
    """The symbol a ccxt error names, when it names one of ``symbols``."""
    text = str(exc)
    return next((s for s in symbols if s in text), None)


def _behind(ob: Any, nonce: Any) -> bool:
    """Whether a streamed book has not yet reached a snapshot's update id."""
    have = ob.get("nonce") if ob is not None else None
    return isinstance(nonce, int) and isinstance(have, int) and have < nonce


def _state(ob: Any, n: int) -> State:
    """The top ``n`` levels of a ccxt book (copied) and its update id."""
    if ob is None:
        return None, None
    return ([list(lv[:2]) for lv in ob["bids"][:n]],
            [list(lv[:2]) for lv in ob["asks"][:n]]), ob.get("nonce")


def _okx_sum(orderbook: Any) -> int:
    bids = [[number_text(p), number_text(q)] for p, q, *_ in orderbook["bids"][:25]]
    asks = [[number_text(p), number_text(q)] for p, q, *_ in orderbook["asks"][:25]]
    return okx_checksum(bids, asks)
