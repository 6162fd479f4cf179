"""Tardis.dev CSV datasets (plain or gzip): ``book_snapshot_25``/``book_snapshot_5`` and
``incremental_book_L2``.

Times are microseconds since the epoch; a book is stamped with its ``local_timestamp`` (when it
arrived) in milliseconds. Snapshot rows of one series within the same millisecond keep the last.
Incremental updates are applied to a rebuilt book, sampled every ``--every`` (default 1 s) from
the first snapshot on.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from wis_monitor.book import make_book
from wis_monitor.errors import Problem
from wis_monitor.sources import Observation
from wis_monitor.sources.rebuild import Grid, ImportOptions, LevelBook
from wis_monitor.sources.replay import open_binary

#: Tardis exchange ids whose ccxt id differs (the rest are the same word).
EXCHANGES = {
    "binance-futures": "binanceusdm", "binance-delivery": "binancecoinm",
    "binance-us": "binanceus", "okex": "okx", "okex-futures": "okx", "okex-swap": "okx",
    "okex-options": "okx", "bybit-spot": "bybit", "bybit-options": "bybit", "huobi": "htx",
    "huobi-dm": "htx", "huobi-dm-swap": "htx", "huobi-dm-linear-swap": "htx", "gate-io": "gate",
    "gate-io-futures": "gate", "kucoin-futures": "kucoinfutures",
    "cryptofacilities": "krakenfutures", "bitfinex-derivatives": "bitfinex",
}
SNAPSHOT_KEYS = ("exchange", "symbol", "timestamp", "local_timestamp")
INCREMENTAL_KEYS = (*SNAPSHOT_KEYS, "is_snapshot", "side", "price", "amount")
_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
DEFAULT_EVERY_MS = 1000


def venue_of(exchange: str) -> str:
    """The ccxt id of a Tardis exchange id (the same word where no mapping is known)."""
    return EXCHANGES.get(exchange, exchange)


def contract_of(exchange: str, symbol: str) -> tuple[float, bool]:
    """Contract size and inverse-ness of the amounts of a Tardis symbol: Binance COIN-M counts
    contracts of 100 USD (BTC) or 10 USD; Deribit's coin-margined amounts are in USD."""
    if exchange == "binance-delivery":
        return (100.0 if symbol.startswith("BTC") else 10.0), True
    if exchange == "deribit" and "_" not in symbol.split("-")[0]:
        return 1.0, True
    return 1.0, False


def _open_text(path: str) -> TextIO:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")


def header_problem(path: str) -> Problem | None:
    """What makes a file no Tardis book dataset, None when it is one."""
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        return Problem(path, 1, f"cannot read: {exc}")
    if all(k in header for k in INCREMENTAL_KEYS):
        return None
    if all(k in header for k in SNAPSHOT_KEYS) and any(_LEVEL.match(h) for h in header):
        return None
    return Problem(path, 1, "not a Tardis book_snapshot_* or incremental_book_L2 header "
                            f"(found: {','.join(header[:8])})")


def read_tardis(path: str, options: ImportOptions, problems: list[Problem]
                ) -> Iterator[Observation]:
    """The books of a Tardis CSV dataset, by its header's kind."""
    with _open_text(path) as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        if "is_snapshot" in header:
            yield from _incremental(path, header, rows, options, problems)
        else:
            yield from _snapshots(path, header, rows, options, problems)


def _time_ms(text: str) -> int:
    us = int(text)
    if not 0 <= us <= 253_402_300_799_999_999:
        raise ValueError
    return us // 1000


def _snapshots(path: str, header: list[str], rows: Iterator[list[str]],
               options: ImportOptions, problems: list[Problem]) -> Iterator[Observation]:
    at = {k: header.index(k) for k in SNAPSHOT_KEYS}
    depth = 1 + max(int(m.group(2)) for h in header if (m := _LEVEL.match(h)))
    cols = {(side, i, field): header.index(f"{side}[{i}].{field}")
            for side in ("bids", "asks") for i in range(depth) for field in ("price", "amount")
            if f"{side}[{i}].{field}" in header}
    last: dict[tuple[str, str], int] = {}
    pending: Observation | None = None
    grid: dict[tuple[str, str], Grid] = {}
    for lineno, row in enumerate(rows, 2):
        item = _snapshot_row(path, lineno, row, at, cols, depth, options)
        if isinstance(item, Problem):
            problems.append(item)
            continue
        key = (item.venue, item.symbol)
        before = last.get(key)
        if before is not None and item.ts_ms < before:
            problems.append(Problem(path, lineno, f"local_timestamp {item.ts_ms} ms is before "
                                                  f"the previous ({before}) of {key[0]} {key[1]}"))
            continue
        last[key] = item.ts_ms
        if options.every_ms:
            g = grid.setdefault(key, Grid(options.every_ms))
            due = g.before(item.ts_ms)
            if due is not None and pending is not None:
                yield _at(pending, due)
            pending = item
            continue
        if pending is not None and (pending.venue, pending.symbol, pending.ts_ms) != (
                item.venue, item.symbol, item.ts_ms):
            yield pending
        pending = item
    if pending is not None and not options.every_ms:
        yield pending


def _at(obs: Observation, ts_ms: int) -> Observation:
    import dataclasses

    book = dataclasses.replace(obs.book, venue_ts_ms=ts_ms) if obs.book else None
    return dataclasses.replace(obs, ts_ms=ts_ms, book=book)


def _snapshot_row(path: str, lineno: int, row: list[str], at: dict[str, int],
                  cols: dict[tuple[str, int, str], int], depth: int, options: ImportOptions
                  ) -> Observation | Problem:
    if len(row) < len(at):
        return Problem(path, lineno, f"{len(row)} fields, expected at least {len(at)}")
    try:
        ts = _time_ms(row[at["local_timestamp"]])
    except ValueError:
        return Problem(path, lineno, "local_timestamp must be microseconds since the epoch")
    sides: dict[str, list[tuple[float, float]]] = {"bids": [], "asks": []}
    for side, levels in sides.items():
        for i in range(depth):
            cells = [row[c] if (c := cols.get((side, i, f), -1)) in range(len(row)) else ""
                     for f in ("price", "amount")]
            if cells == ["", ""]:
                break  # fewer levels than the dataset's depth
            try:
                price, amount = float(cells[0]), float(cells[1])
            except ValueError:
                return Problem(path, lineno, f"{side}[{i}] must be a price and an amount, "
                                             f"not {cells[0]!r}, {cells[1]!r}")
            if not (math.isfinite(price) and math.isfinite(amount)):
                return Problem(path, lineno, f"{side}[{i}] must be finite numbers")
            levels.append((price, amount))
    exchange, symbol = row[at["exchange"]], row[at["symbol"]]
    if not (exchange and symbol):
        return Problem(path, lineno, "exchange and symbol must not be empty")
    contract_size, inverse = contract_of(exchange, symbol)
    book, flags = make_book(np.array(sides["bids"]).reshape(-1, 2),
                            np.array(sides["asks"]).reshape(-1, 2),
                            contract_size=contract_size, inverse=inverse, venue_ts_ms=ts)
    return Observation(options.venue or venue_of(exchange), options.symbol or symbol, ts, book,
                       flags)


def _incremental(path: str, header: list[str], rows: Iterator[list[str]],
                 options: ImportOptions, problems: list[Problem]) -> Iterator[Observation]:
    at = {k: header.index(k) for k in INCREMENTAL_KEYS}
    every = options.every_ms or DEFAULT_EVERY_MS
    books: dict[tuple[str, str], tuple[LevelBook, Grid, bool]] = {}
    for lineno, row in enumerate(rows, 2):
        try:
            exchange, symbol = row[at["exchange"]], row[at["symbol"]]
            ts = _time_ms(row[at["local_timestamp"]])
            snapshot = row[at["is_snapshot"]] == "true"
            side = row[at["side"]]
            price, amount = float(row[at["price"]]), float(row[at["amount"]])
        except (IndexError, ValueError):
            problems.append(Problem(path, lineno, "expected exchange,symbol,timestamp,"
                                                  "local_timestamp,is_snapshot,side,price,amount"))
            continue
        if side not in ("bid", "ask") or not (math.isfinite(price) and math.isfinite(amount)
                                              and price > 0 and amount >= 0):
            problems.append(Problem(path, lineno, "side must be bid or ask, price above 0 and "
                                                  "amount at least 0 (finite numbers)"))
            continue
        key = (exchange, symbol)
        state = books.get(key)
        if state is None:
            if not snapshot:
                continue  # updates before the first snapshot cannot be applied
            state = (LevelBook(), Grid(every), True)
        book, grid, was_snapshot = state
        due = grid.before(ts)
        if due is not None:
            yield _observation(book, due, exchange, symbol, options)
        if snapshot and not was_snapshot:
            book.clear()  # a new snapshot replaces the book
        book.set(side == "bid", price, amount)
        books[key] = (book, grid, snapshot)


def _observation(book: LevelBook, ts: int, exchange: str, symbol: str, options: ImportOptions
                 ) -> Observation:
    contract_size, inverse = contract_of(exchange, symbol)
    b, flags = book.book(ts, contract_size, inverse)
    return Observation(options.venue or venue_of(exchange), options.symbol or symbol, ts, b,
                       flags)
