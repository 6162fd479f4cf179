"""hftbacktest recordings: its raw ``TIMESTAMP_NS JSON`` lines (gzip) and normalised ``.npz``.

Raw lines hold what the venue sent: Binance depth diffs (``<sym>@depth``) after one REST
snapshot (``lastUpdateId``), or Hyperliquid ``l2Book`` snapshots; other streams are ignored. The
``.npz`` holds hftbacktest's event array (``ev, exch_ts, local_ts, px, qty, ...``): depth,
snapshot and clear events rebuild the book. Books are rebuilt and sampled every ``--every``
(default 1 s) on the local (receive) time.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from wis_monitor.errors import Problem
from wis_monitor.sources import Observation
from wis_monitor.sources.rebuild import Grid, ImportOptions, LevelBook
from wis_monitor.sources.replay import open_binary

DEFAULT_EVERY_MS = 1000
# hftbacktest's event codes and flags.
DEPTH_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT = 1, 3, 4
LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 30, 1 << 29, 1 << 28


def file_problem(path: str, fmt: str, options: ImportOptions) -> Problem | None:
    """What must be given or fixed before the file can be read, None when nothing."""
    if fmt == "hftbacktest-npz" and not (options.venue and options.symbol):
        return Problem(path, None, "an .npz holds neither venue nor symbol: give --venue and "
                                   "--symbol (e.g. --venue binance --symbol BTC/USDT)")
    if fmt == "hftbacktest-npz":
        try:
            with np.load(path) as npz:
                names = npz["data"].dtype.names or ()
        except (OSError, KeyError, ValueError, zlib.error) as exc:
            return Problem(path, None, f"not an hftbacktest .npz (an array 'data'): {exc}")
        if not {"ev", "local_ts", "px", "qty"} <= set(names):
            return Problem(path, None, "not an hftbacktest event array (ev, local_ts, px, qty)")
    return None


def _venue(data: dict[str, Any]) -> str:
    """Binance's market from the fields of its depth stream: ``ps`` only on COIN-M, ``pu``
    only on futures."""
    if "ps" in data:
        return "binancecoinm"
    return "binanceusdm" if "pu" in data else "binance"


def _contract(venue: str, symbol: str) -> tuple[float, bool]:
    if venue == "binancecoinm":  # contracts of 100 USD (BTC) or 10 USD
        return (100.0 if symbol.upper().startswith("BTC") else 10.0), True
    return 1.0, False


class _Series:
    def __init__(self, every_ms: int) -> None:
        self.book = LevelBook()
        self.grid = Grid(every_ms)
        self.synced: int | None = None  # the snapshot's lastUpdateId once one arrived
        self.venue = "binance"
        self.symbol = ""


def read_raw(path: str, options: ImportOptions, problems: list[Problem]
             ) -> Iterator[Observation]:
    """Books rebuilt from a raw recording, one per ``every`` of receive time."""
    every = options.every_ms or DEFAULT_EVERY_MS
    series: dict[str, _Series] = {}
    lineno = 0
    with open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                head, _, body = raw.partition(b" ")
                try:
                    ts = int(head) // 1_000_000
                    msg = json.loads(body)
                except ValueError as exc:
                    problems.append(Problem(path, lineno, f"expected TIMESTAMP_NS JSON: {exc}"))
                    continue
                try:
                    yield from _message(msg, ts, series, every, options)
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    problems.append(Problem(path, lineno, f"unexpected message: {exc!r}"))
        except (EOFError, zlib.error, OSError) as exc:
            problems.append(Problem(path, lineno + 1, f"cannot read further: {exc}"))


def _message(msg: dict[str, Any], ts: int, series: dict[str, _Series], every: int,
             options: ImportOptions) -> Iterator[Observation]:
    if "lastUpdateId" in msg:  # Binance REST snapshot: applies to the series of this file
        s = series.setdefault("", _Series(every))
        s.synced = int(msg["lastUpdateId"])
        due = s.grid.before(ts)
        if due is not None and s.symbol:
            yield _observation(s, due, options)
        s.book.clear()
        _apply(s.book, msg["bids"], msg["asks"])
        return
    data = msg.get("data")
    if not isinstance(data, dict):
        return
    if msg.get("channel") == "l2Book":  # Hyperliquid: every message is the whole book
        s = series.setdefault("", _Series(every))
        s.venue, s.symbol, s.synced = "hyperliquid", f"{data['coin']}/USDC:USDC", 0
        due = s.grid.before(ts)
        if due is not None:
            yield _observation(s, due, options)
        s.book.clear()
        bids, asks = data["levels"]
        _apply(s.book, [(x["px"], x["sz"]) for x in bids], [(x["px"], x["sz"]) for x in asks])
        return
    if data.get("e") != "depthUpdate":
        return
    s = series.setdefault("", _Series(every))
    s.venue, s.symbol = _venue(data), str(data["s"])
    if s.synced is None or int(data["u"]) <= s.synced:
        return  # before the snapshot, or already in it
    due = s.grid.before(ts)
    if due is not None:
        yield _observation(s, due, options)
    _apply(s.book, data["b"], data["a"])


def _apply(book: LevelBook, bids: list[Any], asks: list[Any]) -> None:
    for bid, levels in ((True, bids), (False, asks)):
        for px, qty in levels:
            price, amount = float(px), float(qty)
            if not (math.isfinite(price) and math.isfinite(amount)):
                raise ValueError(f"level {px!r}, {qty!r} is not finite")
            book.set(bid, price, amount)


def _observation(s: _Series, ts: int, options: ImportOptions) -> Observation:
    venue = options.venue or s.venue
    contract_size, inverse = _contract(s.venue, s.symbol)
    book, flags = s.book.book(ts, contract_size, inverse)
    return Observation(venue, options.symbol or s.symbol, ts, book, flags)


def read_npz(path: str, options: ImportOptions, problems: list[Problem]
             ) -> Iterator[Observation]:
    """Books rebuilt from hftbacktest's normalised events, one per ``every`` of local time."""
    with np.load(path) as npz:
        data = npz["data"]
    assert options.venue and options.symbol  # checked before reading
    every = options.every_ms or DEFAULT_EVERY_MS
    book, grid = LevelBook(), Grid(every)
    contract_size, inverse = _contract(options.venue, options.symbol)
    evs = data["ev"].tolist()
    times = (data["local_ts"] // 1_000_000).tolist()
    pxs, qtys = data["px"].tolist(), data["qty"].tolist()
    for i, (ev, ts, px, qty) in enumerate(zip(evs, times, pxs, qtys, strict=True)):
        kind = ev & 0xFF
        if kind not in (DEPTH_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT):
            continue
        if ev & (LOCAL_EVENT | (1 << 31)) and not ev & LOCAL_EVENT:
            continue  # seen by the exchange only, never by the recorder
        bid = bool(ev & BUY_EVENT)
        if not (bid or ev & SELL_EVENT) or not (math.isfinite(px) and math.isfinite(qty)):
            problems.append(Problem(path, i + 1, "a depth event needs a side and a finite "
                                                 "price and amount"))
            continue
        due = grid.before(ts)
        if due is not None:
            b, flags = book.book(due, contract_size, inverse)
            yield Observation(options.venue, options.symbol, due, b, flags)
        if kind == DEPTH_CLEAR_EVENT:
            _clear_upto(book.side(bid), bid, px)
        else:
            book.set(bid, px, qty)


def _clear_upto(levels: dict[float, float], bid: bool, px: float) -> None:
    """hftbacktest's clear: a side's levels from the best up to ``px`` (all when px is 0)."""
    for price in [p for p in levels if px == 0.0 or (p >= px if bid else p <= px)]:
        del levels[price]
