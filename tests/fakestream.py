"""A local fake streaming venue: the REST venue of ``fakevenue.py`` plus aiohttp WebSocket
endpoints speaking the real stream formats ccxt.pro reads for order books, with a scripted book
per symbol, a plain-Python reference rebuild, and scripted faults settable at run time.

- binance (spot), binanceusdm (USDT-M) and binancecoinm (COIN-M): the diff-depth stream
  (``<symbol>@depth@100ms``: ``depthUpdate`` events with ``U``/``u``, and ``pu`` on futures) and
  the REST snapshot (``/api/v3/depth``, ``/fapi/v1/depth``, ``/dapi/v1/depth`` with
  ``lastUpdateId``) that ccxt.pro fetches to sync;
- okx: the ``books`` channel on ``/ws/v5/public`` (a snapshot on subscribe, then updates, with
  ``seqId``/``prevSeqId`` and the CRC32 ``checksum`` of the top 25 levels), text ping/pong, and
  unsubscribe (ccxt.pro resubscribes that way after a nonce gap).

Every symbol's book moves by a seeded random walk, one event per ``tick_s`` whether anyone
listens or not, so a run is reproducible event by event. ``reference(exchange_id, symbol,
nonce)`` is the correct book after update id ``nonce``, rebuilt without ccxt from the messages
the venue generated; ``sent(...)`` is what it actually sent (after faults).

Stream faults (``set_stream_fault``), per symbol: ``gap`` (an update is not sent), ``bad_checksum``
(okx: right levels, wrong checksum), ``bad_levels`` (okx: a phantom level, original checksum),
``silent`` (nothing more is sent on the symbol's connections and their pings go unanswered, the
socket stays open), ``drop`` (the TCP connection is cut without a close frame: 1006),
``delay`` (messages are delivered ``seconds`` late, so books lag the clock). REST faults on the
snapshot (a burst of 429s with ``Retry-After``) are fakevenue's ``set_fault``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import WSMsgType, web
from fakevenue import FakeVenue, FakeVenueThread, Levels, Request

from wis_monitor.clock import SYSTEM, Clock

STREAM_VENUES = ("binance", "binanceusdm", "binancecoinm", "okx")
STREAM_FAULTS = ("gap", "bad_checksum", "bad_levels", "silent", "drop", "delay")
DEPTH_PATHS = {"binance": "/api/v3/depth", "binanceusdm": "/fapi/v1/depth",
               "binancecoinm": "/dapi/v1/depth"}
#: the WebSocket path (after the venue's prefix) each venue's ccxt.pro connects to
WS_PREFIXES = {"binance": "ws/", "binanceusdm": "public/ws/", "binancecoinm": "ws/",
               "okx": "ws/v5/public"}
OKX_CHECKSUM_DEPTH = 25
PHANTOM_SIZE = "9.999"  # the size of the level ``bad_levels`` adds (the walk never makes it)
STREAM_MARKETS: dict[str, list[str]] = {
    "binance": ["BTC/USDT", "ETH/BTC"], "binanceusdm": ["BTC/USDT:USDT"],
    "binancecoinm": ["BTC/USD:BTC"], "okx": ["BTC/USDT", "ETH/BTC"]}
Side = dict[str, str]  # price -> size, both as the venue writes them
Pairs = list[list[str]]


def fmt(x: float) -> str:
    """A number as the venues write it: plain decimal, no trailing zeros."""
    text = f"{x:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def okx_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """okx's checksum: CRC32 (signed) of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top 25
    levels of each side, the longer side's extra levels appended in turn."""
    parts: list[str] = []
    for i in range(OKX_CHECKSUM_DEPTH):
        if i < len(bids):
            parts += [bids[i][0], bids[i][1]]
        if i < len(asks):
            parts += [asks[i][0], asks[i][1]]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def okx_checksum_of(bids: Levels, asks: Levels) -> int:
    """okx's checksum of a book held as floats (a ccxt book), written as the venue writes it."""
    return okx_checksum([[fmt(p), fmt(q)] for p, q in bids], [[fmt(p), fmt(q)] for p, q in asks])


class GapError(Exception):
    """The messages do not chain: an update id is missing."""


class ChecksumMismatch(Exception):
    """An okx update's checksum does not match the book it leaves."""


class RefBook:
    """A plain order book rebuilt from the venue's messages: price -> size per side."""

    def __init__(self, bids: Pairs | None = None, asks: Pairs | None = None,
                 nonce: int | None = None) -> None:
        self.bids: Side = {}
        self.asks: Side = {}
        self.nonce = nonce
        self.apply(bids or [], asks or [])

    def apply(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            for row in rows:
                if float(row[1]) == 0:
                    side.pop(row[0], None)
                else:
                    side[row[0]] = row[1]

    def pairs(self) -> tuple[Pairs, Pairs]:
        """Both sides sorted best first, as strings."""
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        return [list(kv) for kv in bids], [list(kv) for kv in asks]

    def levels(self) -> tuple[Levels, Levels]:
        """Both sides sorted best first, as floats (comparable with a ccxt book)."""
        bids, asks = self.pairs()
        return ([[float(p), float(q)] for p, q in bids], [[float(p), float(q)] for p, q in asks])

    def checksum(self) -> int:
        return okx_checksum(*self.pairs())


def rebuild_binance(snapshot: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> RefBook:
    """Binance's recipe: the REST snapshot, then the diff events after its ``lastUpdateId``; the
    first applied must straddle it, each next must chain (``U == u + 1`` on spot, ``pu == u`` on
    futures) or GapError."""
    book = RefBook(snapshot["bids"], snapshot["asks"], int(snapshot["lastUpdateId"]))
    first = True
    for e in events:
        nonce = cast(int, book.nonce)
        U, u, pu = int(e["U"]), int(e["u"]), e.get("pu")
        if u < nonce or (pu is None and u == nonce):
            continue
        if first:
            ok = U <= nonce + 1 <= u + 1 if pu is None else U <= nonce <= u or pu == nonce
        else:
            ok = nonce + 1 == U if pu is None else pu == nonce
        if not ok:
            raise GapError(f"update {U}..{u} does not follow {nonce}")
        book.apply(e["b"], e["a"])
        book.nonce = u
        first = False
    return book


def rebuild_okx(messages: Sequence[Mapping[str, Any]], *, verify: bool = True) -> RefBook:
    """okx's recipe: the last ``snapshot`` and the ``update``s after it, each chaining by
    ``prevSeqId``; with ``verify`` each message's checksum is checked (ChecksumMismatch)."""
    book: RefBook | None = None
    for m in messages:
        data = m["data"][0]
        if m["action"] == "snapshot":
            book = RefBook(data["bids"], data["asks"])
        elif book is None:
            continue
        else:
            if int(data["prevSeqId"]) != book.nonce:
                raise GapError(f"prevSeqId {data['prevSeqId']} does not follow {book.nonce}")
            book.apply(data["bids"], data["asks"])
        book.nonce = int(data["seqId"])
        if verify and book.checksum() != int(data["checksum"]):
            raise ChecksumMismatch(f"checksum {data['checksum']} at seqId {data['seqId']}")
    if book is None:
        raise GapError("no snapshot")
    return book


class Script:
    """One symbol's book: a seeded random walk of levels on a tick grid around a moving mid."""

    def __init__(self, seed: int, mid: float = 60_000.0, tick: float = 0.5,
                 depth: int = 40) -> None:
        self.rng = random.Random(seed)
        self.tick = tick
        self.depth = depth
        self.mid = round(mid / tick)
        self.bids: dict[int, str] = {}
        self.asks: dict[int, str] = {}
        for i in range(1, depth + 1):
            if i <= 3 or self.rng.random() < 0.8:
                self.bids[self.mid - i] = self._size()
            if i <= 3 or self.rng.random() < 0.8:
                self.asks[self.mid + i] = self._size()

    def _size(self) -> str:
        return fmt(self.rng.randint(1, 5000) / 1000)

    def price(self, t: float) -> str:
        return fmt(round(t * self.tick, 8))

    def pairs(self) -> tuple[Pairs, Pairs]:
        return ([[self.price(t), s] for t, s in sorted(self.bids.items(), reverse=True)],
                [[self.price(t), s] for t, s in sorted(self.asks.items())])

    def step(self) -> tuple[Pairs, Pairs]:
        """Move the book one event on; the changed levels of each side (size "0": removed)."""
        self.mid += self.rng.choice((-1, 0, 0, 0, 1))
        bids = {t: s for t, s in self.bids.items() if self.mid - self.depth <= t < self.mid}
        asks = {t: s for t, s in self.asks.items() if self.mid < t <= self.mid + self.depth}
        for _ in range(self.rng.randint(1, 4)):
            away = 1 + min(int(self.rng.expovariate(0.25)), self.depth - 1)
            side, t = (bids, self.mid - away) if self.rng.random() < 0.5 else \
                (asks, self.mid + away)
            if t in side and away > 1 and self.rng.random() < 0.3:
                del side[t]
            else:
                side[t] = self._size()
        bids.setdefault(self.mid - 1, self._size())
        asks.setdefault(self.mid + 1, self._size())
        delta = (_diff(self.bids, bids, self.price, reverse=True),
                 _diff(self.asks, asks, self.price, reverse=False))
        self.bids, self.asks = bids, asks
        return delta


def _diff(old: dict[int, str], new: dict[int, str], price: Any, *, reverse: bool) -> Pairs:
    keys = sorted(set(old) | set(new), reverse=reverse)
    return [[price(t), new.get(t, "0")] for t in keys if old.get(t) != new.get(t)]


@dataclass
class _Stream:
    exchange_id: str
    symbol: str  # unified
    market_id: str
    script: Script
    rng: random.Random  # update-id increments
    first: dict[str, Any]  # the book before the first event, as a snapshot message
    nonce: int
    history: int | None  # events kept (None: all)
    events: list[dict[str, Any]] = field(default_factory=list)  # as generated
    sent: deque[dict[str, Any]] = field(default_factory=deque)  # as sent (after faults)
    snapshots: deque[dict[str, Any]] = field(default_factory=deque)  # as served

    def __post_init__(self) -> None:
        self.sent = deque(maxlen=self.history)
        self.snapshots = deque(maxlen=self.history)

    def record(self, event: dict[str, Any]) -> None:
        """Keep a generated event; past twice the history, the oldest are folded into
        ``first`` so that memory stays bounded on long runs."""
        self.events.append(event)
        if self.history is None or len(self.events) <= 2 * self.history:
            return
        old, self.events = self.events[:-self.history], self.events[-self.history:]
        if self.exchange_id == "okx":
            book = rebuild_okx([self.first, *old], verify=False)
            bids, asks = book.pairs()
            self.first = _okx_message(self.market_id, "snapshot", bids, asks, 0, -1,
                                      cast(int, book.nonce))
        else:
            book = rebuild_binance(self.first, old)
            bids, asks = book.pairs()
            self.first = {"lastUpdateId": book.nonce, "bids": bids, "asks": asks}
    faults: dict[str, float] = field(default_factory=dict)  # kind -> remaining count / seconds


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    exchange_id: str
    outbox: asyncio.Queue[tuple[float, str]]
    transport: asyncio.BaseTransport | None
    symbols: set[str] = field(default_factory=set)  # unified


class FakeStreamVenue(FakeVenue):
    """The REST venue plus its streams; the control methods may be called from any thread."""

    def __init__(self, markets: Mapping[str, Sequence[str]] | None = None, port: int = 0,
                 clock: Clock = SYSTEM, *, seed: int = 17, tick_s: float = 0.05,
                 history: int | None = None) -> None:
        super().__init__(markets or STREAM_MARKETS, port, clock)
        self.tick_s = tick_s
        self.history = history  # events, sent messages and snapshots kept per symbol
        self.streams: dict[tuple[str, str], _Stream] = {}
        for venue, symbols in self.markets.items():
            if venue in STREAM_VENUES:
                for symbol in symbols:
                    self.streams[venue, symbol] = self._new_stream(venue, symbol, seed)
        self._conns: list[_Conn] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _new_stream(self, venue: str, symbol: str, seed: int) -> _Stream:
        key = zlib.crc32(f"{venue} {symbol} {seed}".encode())
        mid = 60_000.0 if symbol.startswith("BTC") else 0.05
        script = Script(key, mid=mid, tick=0.5 if mid > 1 else 0.00001)
        nonce = 1_000 + key % 1_000
        bids, asks = script.pairs()
        first = ({"lastUpdateId": nonce, "bids": bids, "asks": asks} if venue != "okx" else
                 _okx_message(self.ids[venue][symbol], "snapshot", bids, asks, 0, -1, nonce))
        return _Stream(venue, symbol, self.ids[venue][symbol], script, random.Random(key),
                       first, nonce, self.history)

    # -- control ------------------------------------------------------------------------------

    def set_stream_fault(self, exchange_id: str, symbol: str, fault: str | None,
                         value: float = 1) -> None:
        """Start ``fault`` on the symbol's stream: ``gap``, ``bad_checksum``, ``bad_levels`` and
        ``drop`` apply to the next ``value`` events (default one), ``silent`` until cleared,
        ``delay`` delivers every message ``value`` seconds late until cleared. ``None`` clears
        all its faults."""
        if fault is not None and fault not in STREAM_FAULTS:
            raise ValueError(f"unknown stream fault {fault!r}; one of {', '.join(STREAM_FAULTS)}")
        with self._lock:
            stream = self.streams[exchange_id, symbol]
            if fault is None:
                stream.faults.clear()
            else:
                stream.faults[fault] = value

    def stream_faults(self, exchange_id: str, symbol: str) -> dict[str, float]:
        """The symbol's stream faults still pending (one-shot ones leave once sent)."""
        with self._lock:
            return dict(self.streams[exchange_id, symbol].faults)

    def nonce(self, exchange_id: str, symbol: str) -> int:
        """The update id (binance ``u``, okx ``seqId``) of the venue's latest event."""
        with self._lock:
            return self.streams[exchange_id, symbol].nonce

    def reference(self, exchange_id: str, symbol: str, nonce: int | None = None
                  ) -> tuple[Levels, Levels]:
        """The correct book after update id ``nonce`` (default: the latest), rebuilt from the
        messages the venue generated; ValueError if no event ends at ``nonce`` (or it is older
        than the history kept)."""
        with self._lock:
            stream = self.streams[exchange_id, symbol]
            events = list(stream.events)
            first = stream.first
        if exchange_id == "okx":
            upto = [e for e in events if nonce is None or int(e["data"][0]["seqId"]) <= nonce]
            book = rebuild_okx([first, *upto])
        else:
            upto = [e for e in events if nonce is None or int(e["u"]) <= nonce]
            book = rebuild_binance(first, upto)
        if nonce is not None and book.nonce != nonce:
            raise ValueError(f"no {exchange_id} {symbol} event ends at update id {nonce}")
        return book.levels()

    def sent(self, exchange_id: str, symbol: str) -> list[dict[str, Any]]:
        """The messages the venue put on the symbol's stream (each went to every subscriber
        then), after faults, okx snapshots included."""
        with self._lock:
            return list(self.streams[exchange_id, symbol].sent)

    def snapshots(self, exchange_id: str, symbol: str) -> list[dict[str, Any]]:
        """The snapshots served for the symbol: binance REST bodies, okx snapshot messages."""
        with self._lock:
            return list(self.streams[exchange_id, symbol].snapshots)

    def connections(self, exchange_id: str | None = None) -> int:
        """How many stream connections are open now."""
        return sum(1 for c in self._conns
                   if exchange_id in (None, c.exchange_id) and not c.ws.closed)

    def ccxt_config(self, exchange_id: str) -> dict[str, Any]:
        """fakevenue's REST config plus the venue's WebSocket urls."""
        config = super().ccxt_config(exchange_id)
        ws = f"ws://127.0.0.1:{self.port}"
        if exchange_id.startswith("binance"):
            config["urls"]["api"]["ws"] = {
                "spot": f"{ws}/binance/ws", "margin": f"{ws}/binance/ws",
                "linear": f"{ws}/binanceusdm/ws", "inverse": f"{ws}/binancecoinm/ws"}
        elif exchange_id == "okx":
            config["urls"]["api"]["ws"] = f"{ws}/okx/ws/v5"
        return config

    # -- serving ------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        await super().start(port)
        self._spawn(self._ticker())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            await conn.ws.close()
        await super().stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        venue = request.match_info["venue"]
        tail = request.match_info["tail"]
        if request.headers.get("Upgrade", "").lower() == "websocket" and venue in WS_PREFIXES \
                and tail.startswith(WS_PREFIXES[venue]):
            return await self._serve_ws(request, venue)
        symbol = request.query.get("symbol", "")
        if DEPTH_PATHS.get(venue) == "/" + tail and self._stream_by_id(venue, symbol):
            return await self._binance_snapshot(request, venue, symbol)
        return await super()._handle(request)

    def _stream_by_id(self, venue: str, market_id: str) -> _Stream | None:
        return next((s for (v, _), s in self.streams.items()
                     if v == venue and s.market_id == market_id), None)

    def _next_book(self, venue: str, unified: str, fault: str | None) -> tuple[Levels, Levels]:
        stream = self.streams.get((venue, unified))
        if stream is None or fault is not None:
            return super()._next_book(venue, unified, fault)
        bids, asks = stream.script.pairs()  # okx REST books: the streamed book now
        return ([[float(p), float(q)] for p, q in bids], [[float(p), float(q)] for p, q in asks])

    async def _binance_snapshot(self, request: web.Request, venue: str, market_id: str
                                ) -> web.StreamResponse:
        path = DEPTH_PATHS[venue]
        with self._lock:
            self._log.append(Request(self.clock.now_ms(), venue, path, dict(request.query), True))
        fault = self._take_fault(venue, market_id)
        if fault is not None:
            response = await self._fault_response(venue, fault, request)
            if response is not None:
                return response
        stream = cast(_Stream, self._stream_by_id(venue, market_id))
        limit = int(request.query.get("limit") or 1000)
        bids, asks = stream.script.pairs()
        now = self.clock.now_ms()
        body: dict[str, Any] = {"lastUpdateId": stream.nonce}
        if venue != "binance":
            body.update(E=now, T=now, symbol=market_id)
            if venue == "binancecoinm":
                body["pair"] = market_id.split("_")[0]
        body.update(bids=bids[:limit], asks=asks[:limit])
        with self._lock:
            stream.snapshots.append(body)
        return web.json_response(body)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            for stream in list(self.streams.values()):
                self._tick(stream)

    def _tick(self, stream: _Stream) -> None:
        """One event of the stream's book, sent (or not, per its faults) to its subscribers."""
        bids, asks = stream.script.step()
        if not bids and not asks:
            return
        now = self.clock.now_ms()
        with self._lock:
            prev = stream.nonce
            if stream.exchange_id == "okx":
                stream.nonce = prev + 1
                full = stream.script.pairs()
                event = _okx_message(stream.market_id, "update", bids, asks, now, prev,
                                     stream.nonce, okx_checksum(*full))
            else:
                stream.nonce = prev + stream.rng.randint(1, 3)
                event = {"e": "depthUpdate", "E": now, "s": stream.market_id, "U": prev + 1,
                         "u": stream.nonce, "b": bids, "a": asks}
                if stream.exchange_id != "binance":
                    event = {"e": "depthUpdate", "E": now, "T": now, "s": stream.market_id,
                             "U": prev + 1, "u": stream.nonce, "pu": prev, "b": bids, "a": asks}
                    if stream.exchange_id == "binancecoinm":
                        event["ps"] = stream.market_id.split("_")[0]
            stream.record(event)
            drop = "drop" in stream.faults
            self._consume(stream, "drop")
            out = None if drop else self._faulted(stream, event)
            if out is not None:
                stream.sent.append(out)
            delay = stream.faults.get("delay", 0.0)
        conns = [c for c in self._conns if stream.symbol in c.symbols
                 and c.exchange_id == stream.exchange_id]
        for conn in conns:
            if drop:
                _abort(conn)
            elif out is not None:
                self._post(conn, out, delay)

    def _faulted(self, stream: _Stream, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event as the venue sends it under the stream's faults (None: not sent)."""
        if "silent" in stream.faults:
            return None
        if "gap" in stream.faults:
            self._consume(stream, "gap")
            return None
        out = event
        if stream.exchange_id == "okx" and ("bad_checksum" in stream.faults
                                            or "bad_levels" in stream.faults):
            out = json.loads(json.dumps(event))
            data = out["data"][0]
            if "bad_checksum" in stream.faults:
                self._consume(stream, "bad_checksum")
                data["checksum"] = data["checksum"] ^ 0x5A5A
            else:
                self._consume(stream, "bad_levels")
                best = max(stream.script.bids)  # a phantom level off the grid, never touched
                data["bids"] = [*data["bids"], [stream.script.price(best - 0.5),
                                                PHANTOM_SIZE, "0", "1"]]
        return out

    @staticmethod
    def _consume(stream: _Stream, kind: str) -> None:
        left = stream.faults.get(kind)
        if left is not None:
            if left <= 1:
                del stream.faults[kind]
            else:
                stream.faults[kind] = left - 1

    def _post(self, conn: _Conn, message: Mapping[str, Any], delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        conn.outbox.put_nowait((due, json.dumps(message)))

    def _silent(self, conn: _Conn) -> bool:
        with self._lock:
            return any("silent" in self.streams[conn.exchange_id, s].faults
                       for s in conn.symbols if (conn.exchange_id, s) in self.streams)

    async def _serve_ws(self, request: web.Request, venue: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=0)
        await ws.prepare(request)
        conn = _Conn(ws, venue, asyncio.Queue(), request.transport)
        self._conns.append(conn)
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    if not self._silent(conn):
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
        finally:
            sender.cancel()
            self._conns.remove(conn)
        return ws

    async def _sender(self, conn: _Conn) -> None:
        """Send the connection's messages when due; those due together (a tick's updates of
        every symbol) in one TCP segment, as a busy venue does: the client reads them at once."""
        loop = asyncio.get_running_loop()
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        pending: tuple[float, str] | None = None
        while not conn.ws.closed:
            due, text = pending or await conn.outbox.get()
            pending = None
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            batch = [text]
            while not conn.outbox.empty():
                item = conn.outbox.get_nowait()
                if item[0] > loop.time():
                    pending = item
                    break
                batch.append(item[1])
            try:
                _cork(sock, True)
                for text in batch:
                    await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            finally:
                _cork(sock, False)

    def _on_text(self, conn: _Conn, text: str) -> None:
        if text == "ping":  # okx's keepalive
            if not self._silent(conn):
                conn.outbox.put_nowait((0.0, "pong"))
            return
        request = json.loads(text)
        if conn.exchange_id == "okx":
            self._okx_request(conn, request)
        else:
            self._binance_request(conn, request)

    def _binance_request(self, conn: _Conn, request: Mapping[str, Any]) -> None:
        method = request.get("method")
        for name in request.get("params", []):
            stream = self._stream_by_id(conn.exchange_id, name.split("@")[0].upper())
            if stream is None:
                continue
            if method == "SUBSCRIBE":
                conn.symbols.add(stream.symbol)
            elif method == "UNSUBSCRIBE":
                conn.symbols.discard(stream.symbol)
        self._post(conn, {"result": None, "id": request.get("id")}, 0.0)

    def _okx_request(self, conn: _Conn, request: Mapping[str, Any]) -> None:
        op = request.get("op")
        for arg in request.get("args", []):
            stream = self._stream_by_id("okx", arg.get("instId", ""))
            if stream is None or arg.get("channel") != "books":
                self._post(conn, {"event": "error", "code": "60018", "connId": "fake",
                                  "msg": f"Wrong URL or channel:{arg.get('channel')},"
                                         f"instId:{arg.get('instId')} doesn't exist"}, 0.0)
                continue
            self._post(conn, {"event": op, "arg": arg, "connId": "fake"}, 0.0)
            if op == "unsubscribe":
                conn.symbols.discard(stream.symbol)
            elif op == "subscribe":
                conn.symbols.add(stream.symbol)
                self._okx_snapshot(conn, stream)

    def _okx_snapshot(self, conn: _Conn, stream: _Stream) -> None:
        with self._lock:
            bids, asks = stream.script.pairs()
            snapshot = _okx_message(stream.market_id, "snapshot", bids, asks,
                                    self.clock.now_ms(), -1, stream.nonce,
                                    okx_checksum(bids, asks))
            stream.snapshots.append(snapshot)
            stream.sent.append(snapshot)
            delay = stream.faults.get("delay", 0.0)
        self._post(conn, snapshot, delay)


def _okx_message(inst_id: str, action: str, bids: Pairs, asks: Pairs, ts: int, prev: int,
                 seq: int, checksum: int | None = None) -> dict[str, Any]:
    four = [_okx_row(row) for row in bids], [_okx_row(row) for row in asks]
    if checksum is None:
        checksum = okx_checksum(bids, asks)
    return {"arg": {"channel": "books", "instId": inst_id}, "action": action,
            "data": [{"asks": four[1], "bids": four[0], "ts": str(ts), "checksum": checksum,
                      "prevSeqId": prev, "seqId": seq}]}


def _okx_row(row: list[str]) -> list[str]:
    """price, size, "0" (deprecated), number of orders ("0" for a removed level)."""
    return [*row, "0", "0" if float(row[1]) == 0 else "1"]


def _abort(conn: _Conn) -> None:
    """Cut the TCP connection without a close frame: the client sees 1006."""
    if isinstance(conn.transport, asyncio.Transport):
        conn.transport.abort()


class FakeStreamVenueThread(FakeVenueThread):
    """Run a FakeStreamVenue in a background thread with its own loop."""

    def __init__(self, markets: Mapping[str, Sequence[str]] | None = None, port: int = 0,
                 clock: Clock = SYSTEM, *, seed: int = 17, tick_s: float = 0.05,
                 history: int | None = None) -> None:
        super().__init__(markets, port, clock)
        self.venue = FakeStreamVenue(markets, clock=clock, seed=seed, tick_s=tick_s,
                                     history=history)

    def __enter__(self) -> FakeStreamVenue:
        super().__enter__()
        return cast(FakeStreamVenue, self.venue)



def main() -> None:
    parser = argparse.ArgumentParser(description="a local fake streaming venue for ccxt.pro")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--symbols", type=int, default=0,
                        help="stream S0/USDT..S{N-1}/USDT on binance instead of the defaults")
    parser.add_argument("--tick-ms", type=float, default=100.0, help="time between events")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--history", type=int, default=10_000,
                        help="events kept per symbol for reference()")
    args = parser.parse_args()
    markets = {"binance": [f"S{i}/USDT" for i in range(args.symbols)]} if args.symbols else None
    with FakeStreamVenueThread(markets, port=args.port, seed=args.seed,
                               tick_s=args.tick_ms / 1000, history=args.history) as fv:
        print(json.dumps({v: fv.ccxt_config(v) for v in fv.markets if v in STREAM_VENUES},
                         indent=2), flush=True)
        print(f"streaming on {fv.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


def _cork(sock: Any, on: bool) -> None:
    """Hold back (or let go of) a socket's partial segments (Linux' TCP_CORK)."""
    if sock is not None and hasattr(socket, "TCP_CORK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
