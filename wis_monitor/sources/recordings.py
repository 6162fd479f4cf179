"""Every recording format ``replay`` and ``calibrate`` read, chosen by suffix or header.

``json`` (SPEC §11, ``.jsonl[.gz]``), ``parquet`` (``.parquet``), ``tardis`` (Tardis.dev
``book_snapshot_*`` or ``incremental_book_L2`` CSV, ``.csv[.gz]``), ``hftbacktest`` (its raw
``TIMESTAMP JSON`` lines, ``.gz``) and ``hftbacktest-npz`` (its normalised ``.npz`` events).
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from collections.abc import Iterator

from wis_monitor.errors import Problem, Remedy, SourceError, WisMonitorError
from wis_monitor.sources import Observation, error_observation, hftbacktest, tardis
from wis_monitor.sources.rebuild import ImportOptions
from wis_monitor.sources.replay import LOGGED_PROBLEMS, file_problem, read_recording, skipped

__all__ = ["FORMATS", "ImportOptions", "RecordingVenue", "UnreadableRecording", "check",
           "detect", "holding", "is_json", "read_books", "recorded_symbols"]
log = logging.getLogger("wis_monitor.replay")

FORMATS = ("json", "parquet", "tardis", "hftbacktest", "hftbacktest-npz")
#: ``check`` reads the symbols of this many books of a recording at most (Parquet: all).
SYMBOLS_READ = 10_000


class UnreadableRecording(WisMonitorError):
    """Recordings that cannot be read at all (not a line here or there): every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


def _first_line(path: str) -> bytes:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
        return fh.readline(1 << 16)


def detect(path: str) -> str:
    """The format of a recording, from its suffix, else from its first line."""
    name = path.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".npz"):
        return "hftbacktest-npz"
    if name.endswith((".csv", ".csv.gz")):
        return "tardis"
    head = _first_line(path).lstrip()
    if head[:1].isdigit() and b" {" in head[:40]:
        return "hftbacktest"
    return "json"


def check(paths: tuple[str, ...] | list[str], options: ImportOptions) -> None:
    """Raise UnreadableRecording (or MissingExtra) before reading what cannot be read."""
    problems: list[Problem] = []
    for path in paths:
        try:
            open(path, "rb").close()
            fmt = options.format or detect(path)
        except OSError:
            continue  # reading it says why, as for any file that cannot be opened
        if fmt == "parquet":
            from wis_monitor.sources.recordings_parquet import columns_problem, pyarrow

            pyarrow()
            if problem := columns_problem(path):
                problems.append(problem)
        elif fmt == "tardis":
            problems.extend(filter(None, [tardis.header_problem(path)]))
        elif fmt.startswith("hftbacktest"):
            problems.extend(filter(None, [hftbacktest.file_problem(path, fmt, options)]))
        else:
            problems.extend(filter(None, [file_problem(path)]))
    if problems:
        raise UnreadableRecording(problems)


def read_books(path: str, options: ImportOptions, problems: list[Problem]
               ) -> Iterator[Observation]:
    """The books of one recording of any format, with the venue and symbol options applied."""
    fmt = options.format or detect(path)
    if fmt == "parquet":
        from wis_monitor.sources.recordings_parquet import read_parquet

        books = read_parquet(path, problems)
    elif fmt == "tardis":
        books = tardis.read_tardis(path, options, problems)
    elif fmt == "hftbacktest":
        books = hftbacktest.read_raw(path, options, problems)
    elif fmt == "hftbacktest-npz":
        books = hftbacktest.read_npz(path, options, problems)
    else:
        books = read_recording(path, problems)
    if fmt in ("json", "parquet") and (options.venue or options.symbol):
        return _renamed(books, options)
    return books


def _renamed(books: Iterator[Observation], options: ImportOptions) -> Iterator[Observation]:
    for obs in books:
        yield dataclasses.replace(obs, venue=options.venue or obs.venue,
                                  symbol=options.symbol or obs.symbol)


def recorded_symbols(path: str, limit: int = SYMBOLS_READ) -> tuple[list[str], bool]:
    """The symbols a replay venue finds in ``path`` (sorted), and whether only its first
    ``limit`` books were read for them (a Parquet file's symbol column is read whole). Raise
    UnreadableRecording, MissingExtra or OSError as serving it would fail."""
    check([path], ImportOptions())
    if detect(path) == "parquet":
        from wis_monitor.sources.recordings_parquet import parquet_symbols

        return sorted(parquet_symbols(path)), False
    seen: set[str] = set()
    for n, obs in enumerate(read_books(path, ImportOptions(), [])):
        if n == limit:
            return sorted(seen), True
        seen.add(obs.symbol)
    return sorted(seen), False


def holding(symbols: list[str], shown: int = 10) -> str:
    """``BTCUSDT, ETHUSDT``: the symbols of a recording, the first ``shown`` of them."""
    if not symbols:
        return "no books"
    more = f" and {len(symbols) - shown} more" if len(symbols) > shown else ""
    return ", ".join(symbols[:shown]) + more


def is_json(path: str, options: ImportOptions) -> bool:
    try:
        return (options.format or detect(path)) == "json"
    except OSError:
        return False


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
        problems: list[Problem] = []
        try:  # any recording format; one that cannot be read serves nothing, logged
            check([self.path], ImportOptions())
            for obs in read_books(self.path, ImportOptions(), problems):
                self._books.setdefault(obs.symbol, []).append(obs)
        except WisMonitorError as exc:
            log.error("venue %s: %s", self.venue, exc)
        for p in problems[:LOGGED_PROBLEMS]:
            log.warning("%s", p)
        if problems:
            log.warning("venue %s: %s", self.venue, skipped(problems))

    async def close(self) -> None:
        return None

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        books = self._books.get(symbol)
        if not books:
            exc = SourceError(f"{symbol} is not in {self.path}, the recording holds: "
                              f"{holding(sorted(self._books))}", Remedy.FIX_CONFIG,
                              kind="BadSymbol")
            return error_observation(self.venue, symbol, now_ms, exc)
        i = self._pos.get(symbol, 0)
        self._pos[symbol] = (i + 1) % len(books)
        rec = books[i]
        book = dataclasses.replace(rec.book, venue_ts_ms=None) if rec.book else None
        return Observation(self.venue, symbol, now_ms, book, rec.flags, 0.0)
