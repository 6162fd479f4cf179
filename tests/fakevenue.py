"""A local fake venue: an aiohttp server on 127.0.0.1 that answers the REST endpoints real ccxt
calls for ``load_markets`` and ``fetch_order_book`` — binance (spot, USDT-M, COIN-M), okx, bybit,
kraken, deribit and coinbase — each in the venue's own response format, with scripted books and
every fault of SPEC §12.

Market lists come from the response fixtures in ``../shared/venues/fixtures`` (MIT, ccxt), so
ccxt parses exactly what the venue would send. ``python tests/fakevenue.py --port 8765`` runs it
standalone and prints each venue's ccxt config.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from wis_monitor.clock import SYSTEM, Clock

#: Venue responses recorded from ccxt's own test data (MIT, see venues/LICENSE-ccxt.txt).
FIXTURES = Path(__file__).resolve().parent / "venues"
VENUES: tuple[str, ...] = ("binance", "binanceusdm", "binancecoinm", "okx", "bybit", "kraken",
                           "deribit", "coinbase")
FAULTS = ("http500", "http502", "http503", "http504", "http429", "hang", "reset", "malformed",
          "html", "error_body", "empty", "crossed", "one_sided")
Levels = list[list[float]]

#: unified symbol -> the venue's market id, for the markets the fixtures list.
MARKET_IDS: dict[str, dict[str, str]] = {
    "binance": {"BTC/USDT": "BTCUSDT", "ETH/BTC": "ETHBTC"},
    "binanceusdm": {"BTC/USDT:USDT": "BTCUSDT"},
    "binancecoinm": {"BTC/USD:BTC": "BTCUSD_PERP"},
    "okx": {"BTC/USDT": "BTC-USDT", "ETH/BTC": "ETH-BTC"},
    "bybit": {"BTC/USDT": "BTCUSDT"},
    "kraken": {"BTC/USDT": "XBTUSDT", "ETH/BTC": "XETHXXBT"},
    "deribit": {"BTC/USD:BTC": "BTC-PERPETUAL"},
    "coinbase": {"BTC/USDT": "BTC-USDT", "BTC/USD": "BTC-USD"},
}
DEFAULT_MARKETS: dict[str, list[str]] = {v: list(ids) for v, ids in MARKET_IDS.items()}
#: the fixture file and the path prefix each ccxt exchange id is served under.
FIXTURE_OF = {"binance": "binance", "binanceusdm": "binance", "binancecoinm": "binance",
              "okx": "okx", "bybit": "bybit", "kraken": "kraken", "deribit": "deribit",
              "coinbase": "coinbase"}


@dataclass
class Request:
    ts_ms: int
    exchange_id: str
    path: str
    query: dict[str, str]
    book: bool  # a fetch_order_book call (else load_markets)


@dataclass
class _Fault:
    kind: str
    count: int | None
    retry_after: float | None
    symbol: str | None


@dataclass(frozen=True)
class Listing:
    """A dated market the venue lists from ``listed_ms`` until its expiry (by its clock)."""

    exchange_id: str  # deribit or okx
    symbol: str  # unified, as ccxt names it
    id: str  # the venue's instrument name
    kind: str  # option or future
    base: str
    expiry_ms: int
    listed_ms: int
    strike: float | None = None
    option_type: str | None = None  # call or put

    def live(self, now_ms: int) -> bool:
        return self.listed_ms <= now_ms < self.expiry_ms


@dataclass
class _Series:
    queue: deque[tuple[Levels, Levels]] = field(default_factory=deque)
    current: tuple[Levels, Levels] | None = None
    ts_ms: int | None = None


def default_book(price: float = 60_000.0, levels: int = 100, tick: float = 0.5
                 ) -> tuple[Levels, Levels]:
    bids = [[round(price - tick * (i + 1), 8), round(0.1 + 0.01 * i, 8)] for i in range(levels)]
    asks = [[round(price + tick * (i + 1), 8), round(0.12 + 0.01 * i, 8)] for i in range(levels)]
    return bids, asks


class FakeVenue:
    """The server; its set_* methods may be called from any thread while it runs."""

    def __init__(self, markets: Mapping[str, Sequence[str]] | None = None, port: int = 0,
                 clock: Clock = SYSTEM) -> None:
        self.clock = clock  # the time in its books and its request log
        self.markets = {v: list(s) for v, s in (markets or DEFAULT_MARKETS).items()}
        self.fixtures = {name: json.loads((FIXTURES / f"{name}.json").read_text())
                         for name in set(FIXTURE_OF.values())}
        self.ids: dict[str, dict[str, str]] = {}  # exchange -> unified -> id
        for venue, symbols in self.markets.items():
            known = MARKET_IDS.get(venue, {})
            self.ids[venue] = {s: known.get(s) or _generated_id(venue, s) for s in symbols}
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._log: list[Request] = []
        self.served: dict[tuple[str, str], list[tuple[Levels, Levels]]] = {}
        self.listings: list[Listing] = []
        self._runner: web.AppRunner | None = None
        self._hang = asyncio.Event()
        self.port = port

    # -- control ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_book(self, exchange_id: str, symbol: str, bids: Levels, asks: Levels,
                 ts_ms: int | None = None) -> None:
        with self._lock:
            s = self._series.setdefault((exchange_id, symbol), _Series())
            s.queue.clear()
            s.current = (bids, asks)
            s.ts_ms = ts_ms

    def list_chain(self, exchange_id: str, base: str, expiry_ms: int, strikes: Iterable[float],
                   *, listed_ms: int | None = None, index: float = 60_000.0) -> list[Listing]:
        """List an expiry of ``base`` on deribit or okx: its future and a call and a put per
        strike, from ``listed_ms`` (default: now by the venue's clock) until ``expiry_ms``;
        their books are priced around ``index`` (options in the base currency, as both venues
        quote them)."""
        if exchange_id not in ("deribit", "okx"):
            raise ValueError(f"dated markets are served for deribit and okx, not {exchange_id}")
        listed = self.clock.now_ms() if listed_ms is None else listed_ms
        new = [_listing(exchange_id, base, expiry_ms, listed, None, None)]
        new += [_listing(exchange_id, base, expiry_ms, listed, float(k), kind)
                for k in strikes for kind in ("call", "put")]
        with self._lock:
            self.listings.extend(new)
            for m in new:
                self.ids.setdefault(exchange_id, {})[m.symbol] = m.id
                self._series.setdefault((exchange_id, m.symbol), _Series()).current = \
                    _listing_book(m, index)
        return new

    def live_listings(self, exchange_id: str) -> list[Listing]:
        """The dated markets the venue lists now, by its clock."""
        now = self.clock.now_ms()
        with self._lock:
            return [m for m in self.listings if m.exchange_id == exchange_id and m.live(now)]

    def queue_books(self, exchange_id: str, symbol: str,
                    books: Iterable[tuple[Levels, Levels]]) -> None:
        with self._lock:
            self._series.setdefault((exchange_id, symbol), _Series()).queue.extend(books)

    def serve_recording(self, exchange_id: str, symbol: str, path: str | Path) -> None:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as fh:
            books = [(rec["bids"], rec["asks"]) for rec in map(json.loads, fh) if rec]
        self.queue_books(exchange_id, symbol, books)

    def set_fault(self, exchange_id: str, fault: str | None, *, count: int | None = None,
                  retry_after: float | None = None, symbol: str | None = None) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            if fault is None:
                self._faults.pop(exchange_id, None)
            else:
                self._faults[exchange_id] = [_Fault(fault, count, retry_after, symbol)]

    def requests(self, exchange_id: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._log if exchange_id in (None, r.exchange_id)]

    def ccxt_config(self, exchange_id: str) -> dict[str, Any]:
        base = f"{self.base_url}/{exchange_id}"
        urls: dict[str, Any]
        options: dict[str, Any] = {}
        if exchange_id.startswith("binance"):
            urls = {"public": f"{base}/api/v3", "fapiPublic": f"{base}/fapi/v1",
                    "dapiPublic": f"{base}/dapi/v1", "sapi": f"{base}/sapi/v1"}
            kind = {"binance": "spot", "binanceusdm": "linear", "binancecoinm": "inverse"}
            options = {"fetchMarkets": {"types": [kind[exchange_id]]}}
        elif exchange_id == "okx":
            urls = {"rest": base}
            dated = ["swap", "future", "option"] if any(
                m.exchange_id == "okx" for m in self.listings) else []
            options = {"fetchMarkets": {"types": ["spot", *dated]},
                       "defaultUnderlying": sorted({f"{m.base}-USD" for m in self.listings
                                                    if m.exchange_id == "okx"})}
        elif exchange_id == "bybit":
            urls = {k: base for k in ("spot", "futures", "v2", "public", "private")}
            options = {"fetchMarkets": {"types": ["spot"]}}
        elif exchange_id == "kraken":
            urls = {"public": base, "private": base}
        else:
            urls = {"rest": base}
        return {"urls": {"api": urls}, "options": options, "has": {"fetchCurrencies": False}}

    # -- serving ------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{venue}/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._hang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        venue = request.match_info["venue"]
        path = "/" + request.match_info["tail"]
        query = dict(request.query)
        book_symbol = self._book_request(venue, path, query)
        with self._lock:
            self._log.append(Request(self.clock.now_ms(), venue, path, query,
                                     book_symbol is not None))
        if venue not in FIXTURE_OF:
            return web.Response(status=404, text="unknown venue")
        if book_symbol is None:
            return self._market_route(venue, path, request.query_string)
        fault = self._take_fault(venue, book_symbol)
        if fault is not None:
            response = await self._fault_response(venue, fault, request)
            if response is not None:
                return response
        limit = _int(query.get("limit") or query.get("sz") or query.get("count")
                     or query.get("depth") or query.get("len"))
        unified = self._unified(venue, book_symbol)
        if self._expired(venue, book_symbol):
            status, body = _error_body(venue)
            return web.json_response(body, status=status)
        bids, asks = self._next_book(venue, unified, fault.kind if fault else None)
        if limit:
            bids, asks = bids[:limit], asks[:limit]
        with self._lock:
            self.served.setdefault((venue, unified), []).append((bids, asks))
        return web.json_response(_book_body(venue, book_symbol, bids, asks, self.clock.now_ms()))

    def _book_request(self, venue: str, path: str, query: Mapping[str, str]) -> str | None:
        if path in ("/api/v3/depth", "/fapi/v1/depth", "/dapi/v1/depth",
                    "/v5/market/orderbook"):
            return query.get("symbol", "")
        if path in ("/api/v5/market/books", "/api/v5/market/books-full"):
            return query.get("instId", "")
        if path == "/0/public/Depth":
            return query.get("pair", "")
        if path == "/api/v2/public/get_order_book":
            return query.get("instrument_name", "")
        if path == "/api/v3/brokerage/market/product_book":
            return query.get("product_id", "")
        return None

    def _expired(self, venue: str, market_id: str) -> bool:
        """A dated market not listed now: the venue answers as for an unknown instrument."""
        now = self.clock.now_ms()
        with self._lock:
            dated = [m for m in self.listings if m.exchange_id == venue and m.id == market_id]
        return bool(dated) and not any(m.live(now) for m in dated)

    def _unified(self, venue: str, market_id: str) -> str:
        for unified, mid in self.ids.get(venue, {}).items():
            if mid == market_id:
                return unified
        return market_id

    def _next_book(self, venue: str, unified: str, fault: str | None) -> tuple[Levels, Levels]:
        with self._lock:
            s = self._series.setdefault((venue, unified), _Series())
            if s.queue:
                s.current = s.queue.popleft()
            if s.current is None:
                s.current = default_book()
            bids, asks = copy.deepcopy(s.current)
        if fault == "empty":
            return [], []
        if fault == "one_sided":
            return bids, []
        if fault == "crossed" and bids and asks:
            bids[0][0] = asks[0][0] + (asks[0][0] - bids[0][0]) + 1.0
        return bids, asks

    def _take_fault(self, venue: str, symbol: str) -> _Fault | None:
        with self._lock:
            faults = self._faults.get(venue)
            if not faults:
                return None
            f = faults[0]
            if f.symbol is not None and self.ids.get(venue, {}).get(f.symbol, f.symbol) != symbol:
                return None
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    del self._faults[venue]
            return f

    async def _fault_response(self, venue: str, f: _Fault, request: web.Request
                              ) -> web.StreamResponse | None:
        kind = f.kind
        if kind.startswith("http"):
            status = int(kind[4:])
            headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else {}
            return web.Response(status=status, text=f"{status} error", headers=headers)
        if kind == "hang":
            await self._hang.wait()
            return web.Response(status=503)
        if kind == "reset":
            transport = request.transport
            if transport is not None:
                transport.abort()  # RST: the client sees a reset connection
            return web.Response(status=500)
        if kind == "malformed":
            return web.Response(status=200, text='{"bids": [["1.0", "2',
                                content_type="application/json")
        if kind == "html":
            return web.Response(status=200, content_type="text/html",
                                text="<html><body><h1>Down for maintenance</h1></body></html>")
        if kind == "error_body":
            status, body = _error_body(venue)
            return web.json_response(body, status=status)
        return None  # empty, crossed, one_sided: a valid response with a bad book

    def _market_route(self, venue: str, path: str, query_string: str) -> web.Response:
        fixture = self.fixtures[FIXTURE_OF[venue]]
        routes: dict[str, Any] = fixture["routes"]
        key = f"GET {path}" + (f"?{query_string}" if query_string else "")
        body = routes.get(key)
        if body is None:
            body = routes.get(f"GET {path}")
        if body is None and path.startswith("/api/v5/public/instruments"):
            body = {"code": "0", "msg": "", "data": []}
        if body is None:
            return web.json_response({"error": f"no route {key}"}, status=404)
        body = self._with_listings(venue, path, query_string, copy.deepcopy(body))
        return web.json_response(self._with_generated(venue, path, body))

    def _with_listings(self, venue: str, path: str, query_string: str, body: Any) -> Any:
        """Add the dated markets listed now to the instruments of deribit and okx."""
        live = self.live_listings(venue)
        if venue == "deribit" and path == "/api/v2/public/get_instruments":
            body["result"] += [_deribit_instrument(m) for m in live]
        elif venue == "okx" and path == "/api/v5/public/instruments":
            kind = {"instType=OPTION": "option", "instType=FUTURES": "future"}
            wanted = next((k for q, k in kind.items() if q in query_string), None)
            body["data"] += [_okx_instrument(m) for m in live if m.kind == wanted]
        return body

    def _with_generated(self, venue: str, path: str, body: Any) -> Any:
        """Add the generated markets (benchmarks) and the COIN-M market to exchangeInfo."""
        if not venue.startswith("binance") or not path.endswith("/exchangeInfo"):
            return body
        want = self.ids.get(venue, {})
        if path.startswith("/dapi") and venue == "binancecoinm":
            template = copy.deepcopy(self.fixtures["binance"]["routes"]["GET /fapi/v1/exchangeInfo"]
                                     ["symbols"][0])
            for unified, mid in want.items():
                base = unified.split("/")[0]
                entry = copy.deepcopy(template)
                entry.update(symbol=mid, pair=f"{base}USD", baseAsset=base, quoteAsset="USD",
                             marginAsset=base, contractType="PERPETUAL", contractSize=100,
                             contractStatus="TRADING")
                body["symbols"].append(entry)
            return body
        existing = {s["symbol"] for s in body.get("symbols", [])}
        if not body.get("symbols"):
            return body
        template = body["symbols"][0]
        for unified, mid in want.items():
            if mid in existing:
                continue
            base, quote = unified.split(":")[0].split("/")
            entry = copy.deepcopy(template)
            entry.update(symbol=mid, baseAsset=base, quoteAsset=quote)
            if "pair" in entry:
                entry["pair"] = mid
            body["symbols"].append(entry)
        return body


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _listing(exchange_id: str, base: str, expiry_ms: int, listed_ms: int,
             strike: float | None, option_type: str | None) -> Listing:
    """A dated market named as the venue and as ccxt name it."""
    t = time.gmtime(expiry_ms / 1000)
    yymmdd = time.strftime("%y%m%d", t)
    k = f"{strike:g}" if strike is not None else ""
    letter = (option_type or "")[:1].upper()
    if exchange_id == "deribit":  # BTC-3JAN25, BTC-3JAN25-60000-C; inverse, settled in base
        day = f"{t.tm_mday}{_MONTHS[t.tm_mon - 1]}{t.tm_year % 100:02d}"
        mid = f"{base}-{day}" + (f"-{k}-{letter}" if strike is not None else "")
    else:  # okx: BTC-USD-250103, BTC-USD-250103-60000-C (coin-margined)
        mid = f"{base}-USD-{yymmdd}" + (f"-{k}-{letter}" if strike is not None else "")
    symbol = f"{base}/USD:{base}-{yymmdd}" + (f"-{k}-{letter}" if strike is not None else "")
    return Listing(exchange_id, symbol, mid, "option" if strike is not None else "future", base,
                   expiry_ms, listed_ms, strike, option_type)


def _listing_book(m: Listing, index: float) -> tuple[Levels, Levels]:
    """A plausible book: a future near the index (in USD), an option's premium in the base
    (intrinsic value plus some time value, at least 0.0005)."""
    if m.strike is None:
        return default_book(index, levels=50, tick=0.5)
    intrinsic = max(index - m.strike, 0.0) if m.option_type == "call" else \
        max(m.strike - index, 0.0)
    premium = intrinsic / index + 0.01
    return default_book(round(premium, 4), levels=10, tick=0.0005)


def _deribit_instrument(m: Listing) -> dict[str, Any]:
    """``public/get_instruments`` as deribit sends it (options quoted in the base currency)."""
    out: dict[str, Any] = {
        "tick_size": 0.0005 if m.kind == "option" else 2.5, "tick_size_steps": [],
        "taker_commission": 0.0003 if m.kind == "option" else 0.0005,
        "settlement_period": "week", "settlement_currency": m.base, "rfq": False,
        "quote_currency": m.base if m.kind == "option" else "USD",
        "price_index": f"{m.base.lower()}_usd", "min_trade_amount": 0.1 if m.kind == "option"
        else 10, "max_liquidation_commission": 0.0075, "max_leverage": 50,
        "maker_commission": 0.0003 if m.kind == "option" else 0.0, "kind": m.kind,
        "is_active": True, "instrument_name": m.id, "instrument_id": abs(hash(m.id)) % 10**6,
        "expiration_timestamp": m.expiry_ms, "creation_timestamp": m.listed_ms,
        "counter_currency": "USD", "contract_size": 1.0 if m.kind == "option" else 10.0,
        "base_currency": m.base, "block_trade_commission": 0.0003,
        "block_trade_min_trade_amount": 25, "block_trade_tick_size": 0.0001,
    }
    if m.kind == "option":
        out.update(strike=m.strike, option_type=m.option_type)
    return out


def _okx_instrument(m: Listing) -> dict[str, str]:
    """``/api/v5/public/instruments`` as okx sends a coin-margined future or option."""
    option = m.kind == "option"
    return {
        "alias": "" if option else "this_week", "baseCcy": "", "category": "1",
        "ctMult": "1", "ctType": "" if option else "inverse",
        "ctVal": "0.01" if option else "100", "ctValCcy": m.base if option else "USD",
        "expTime": str(m.expiry_ms), "instFamily": f"{m.base}-USD", "instId": m.id,
        "instType": "OPTION" if option else "FUTURES", "lever": "" if option else "100",
        "listTime": str(m.listed_ms), "lotSz": "1", "maxLmtSz": "10000", "maxMktSz": "1000",
        "minSz": "1", "optType": (m.option_type or "")[:1].upper() if option else "",
        "quoteCcy": "", "settleCcy": m.base, "state": "live",
        "stk": f"{m.strike:g}" if m.strike is not None else "",
        "tickSz": "0.0005" if option else "0.1", "uly": f"{m.base}-USD",
    }


def _generated_id(venue: str, symbol: str) -> str:
    base, quote = symbol.split(":")[0].split("/")
    if venue in ("okx", "coinbase"):
        return f"{base}-{quote}"
    return f"{base}{quote}"


def _int(x: str | None) -> int | None:
    try:
        return int(x) if x else None
    except ValueError:
        return None


def _s(levels: Levels) -> list[list[str]]:
    return [[repr(float(p)), repr(float(q))] for p, q in levels]


def _book_body(venue: str, market_id: str, bids: Levels, asks: Levels, now: int) -> Any:
    if venue == "binance":
        return {"lastUpdateId": now, "bids": _s(bids), "asks": _s(asks)}
    if venue in ("binanceusdm", "binancecoinm"):
        return {"lastUpdateId": now, "E": now, "T": now, "symbol": market_id,
                "bids": _s(bids), "asks": _s(asks)}
    if venue == "okx":
        def four(levels: Levels) -> list[list[str]]:
            return [[*row, "0", "1"] for row in _s(levels)]
        return {"code": "0", "msg": "", "data": [{"asks": four(asks), "bids": four(bids),
                                                  "ts": str(now)}]}
    if venue == "bybit":
        return {"retCode": 0, "retMsg": "OK", "result": {"s": market_id, "a": _s(asks),
                "b": _s(bids), "ts": now, "u": now}, "retExtInfo": {}, "time": now}
    if venue == "kraken":
        def three(levels: Levels) -> list[list[Any]]:
            return [[*row, now // 1000] for row in _s(levels)]
        return {"error": [], "result": {market_id: {"asks": three(asks), "bids": three(bids)}}}
    if venue == "deribit":
        return {"jsonrpc": "2.0", "result": {
            "timestamp": now, "instrument_name": market_id, "state": "open", "change_id": now,
            "bids": bids, "asks": asks,
            "best_bid_price": bids[0][0] if bids else None,
            "best_ask_price": asks[0][0] if asks else None}, "usIn": now * 1000,
            "usOut": now * 1000, "usDiff": 1, "testnet": False}
    return {"pricebook": {"product_id": market_id,
                          "bids": [{"price": p, "size": q} for p, q in _s(bids)],
                          "asks": [{"price": p, "size": q} for p, q in _s(asks)],
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z",
                                                time.gmtime(now / 1000))}}


def _error_body(venue: str) -> tuple[int, Any]:
    if venue.startswith("binance"):
        return 400, {"code": -1121, "msg": "Invalid symbol."}
    if venue == "okx":
        return 200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
    if venue == "bybit":
        return 200, {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {},
                     "retExtInfo": {}, "time": int(time.time() * 1000)}
    if venue == "kraken":
        return 200, {"error": ["EQuery:Unknown asset pair"]}
    if venue == "deribit":
        return 400, {"jsonrpc": "2.0", "error": {"message": "instrument_not_found",
                                                 "code": 13020}, "testnet": False}
    return 404, {"error": "NOT_FOUND", "error_details": "ProductID is invalid",
                 "message": "ProductID is invalid"}


class FakeVenueThread:
    """Run a FakeVenue in a background thread with its own loop (for subprocess tests)."""

    def __init__(self, markets: Mapping[str, Sequence[str]] | None = None, port: int = 0,
                 clock: Clock = SYSTEM) -> None:
        self.venue = FakeVenue(markets, clock=clock)
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeVenue:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.venue.start(self.port), self._loop).result(10)
        return self.venue

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.venue.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a local fake venue for ccxt")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--symbols", type=int, default=0,
                        help="serve S0/USDT..S{N-1}/USDT on binance instead of the defaults")
    parser.add_argument("--levels", type=int, default=100, help="levels of the default books")
    args = parser.parse_args()
    markets = {"binance": [f"S{i}/USDT" for i in range(args.symbols)]} if args.symbols else None
    with FakeVenueThread(markets, port=args.port) as fv:
        for venue, symbols in fv.markets.items():
            for symbol in symbols:
                fv.set_book(venue, symbol, *default_book(levels=args.levels, tick=0.1))
        print(json.dumps({v: fv.ccxt_config(v) for v in VENUES}, indent=2), flush=True)
        print(f"serving on {fv.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
