"""Book recordings (SPEC §11): JSON Lines, plain or gzip, one book per line."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wis_monitor.book import make_book
from wis_monitor.errors import PermanentSourceError, Problem
from wis_monitor.sources import Observation, error_observation


def open_text(path: str | Path) -> IO[str]:
    """Open a recording, transparently gunzipping it."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_line(path: str, lineno: int, line: str) -> Observation | Problem:
    """One recording line as an observation, or the problem with it."""
    try:
        rec: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return Problem(path, lineno, f"not JSON: {exc.msg}")
    if not isinstance(rec, dict):
        return Problem(path, lineno, "a book must be a JSON object")
    missing = [k for k in ("ts", "venue", "symbol", "bids", "asks") if k not in rec]
    if missing:
        return Problem(path, lineno, "missing " + ", ".join(f'"{k}"' for k in missing))
    ts = rec["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return Problem(path, lineno, '"ts" must be milliseconds since the epoch')
    book, flags = make_book(
        rec["bids"],
        rec["asks"],
        contract_size=rec.get("contract_size") or 1.0,
        inverse=bool(rec.get("inverse", False)),
        venue_ts_ms=int(ts),
    )
    return Observation(str(rec["venue"]), str(rec["symbol"]), int(ts), book, flags,
                       rec.get("latency_ms"))


def read_recording(path: str | Path, problems: list[Problem] | None = None
                   ) -> Iterator[Observation]:
    """Yield the books of a recording in file order; bad lines go to ``problems``."""
    name = str(path)
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            item = parse_line(name, lineno, line)
            if isinstance(item, Problem):
                if problems is not None:
                    problems.append(item)
                continue
            yield item


def book_record(obs: Observation) -> dict[str, Any]:
    """The recording-format dict of an observation's book."""
    if obs.book is None:
        raise ValueError("an observation without a book cannot be recorded")
    bids, asks = obs.book.levels()
    rec: dict[str, Any] = {"ts": obs.ts_ms, "venue": obs.venue, "symbol": obs.symbol,
                           "bids": bids, "asks": asks}
    if obs.book.contract_size != 1.0:
        rec["contract_size"] = obs.book.contract_size
    if obs.book.inverse:
        rec["inverse"] = True
    return rec


class RecordingVenue:
    """A venue (``exchange: replay``) that serves a recording's books one fetch at a time.

    Each fetch of a symbol returns that symbol's next recorded book, stamped with the fetch
    time; at the end of the recording it starts over.
    """

    def __init__(self, venue: str, symbols: list[str], path: str) -> None:
        self.venue = venue
        self.symbols = list(symbols)
        self.path = path
        self._books: dict[str, list[Observation]] = {}
        self._pos: dict[str, int] = {}

    async def start(self) -> None:
        for obs in read_recording(self.path):
            self._books.setdefault(obs.symbol, []).append(obs)

    async def close(self) -> None:
        return None

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        books = self._books.get(symbol)
        if not books:
            exc = PermanentSourceError(f"{symbol} is not in {self.path}")
            return error_observation(self.venue, symbol, now_ms, exc)
        i = self._pos.get(symbol, 0)
        self._pos[symbol] = (i + 1) % len(books)
        rec = books[i]
        book = dataclasses.replace(rec.book, venue_ts_ms=None) if rec.book else None
        return Observation(self.venue, symbol, now_ms, book, rec.flags, 0.0)
