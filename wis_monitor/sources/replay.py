"""Book recordings (SPEC §11): JSON Lines, plain or gzip, one book per line."""

from __future__ import annotations

import gzip
import json
import logging
import math
import zlib
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO, cast

from wis_monitor.book import make_book
from wis_monitor.errors import Problem
from wis_monitor.sources import Observation

log = logging.getLogger("wis_monitor.replay")
#: How many bad lines of a recording the daemon logs before it only counts the rest.
LOGGED_PROBLEMS = 100
#: The latest ``ts`` a recording may hold: the last millisecond of the year 9999.
MAX_TS_MS = 253_402_300_799_999
_REAL = frozenset({int, float})


def skipped(problems: list[Problem]) -> str:
    """``N bad lines skipped`` (the count that follows the listed bad lines)."""
    n = len(problems)
    return f"{n} bad line{'s' if n != 1 else ''} skipped"


def open_binary(path: str | Path) -> BinaryIO:
    """Open a recording, transparently gunzipping it."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(x: Any) -> bool:
    """True for a JSON number (not a bool) that is a finite double."""
    if type(x) not in _REAL:
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer beyond the doubles
        return False


def _levels_ok(levels: Any) -> bool:
    """True for ``[[price, amount], ...]`` of finite numbers (not strings or booleans).

    Only the types: non-positive or unsorted levels make a book ``invalid``, not a bad line.
    Checked at C speed (``map``), as a recording may hold thousands of levels per line.
    """
    if type(levels) is not list:
        return False
    if not levels:
        return True
    if set(map(type, levels)) != {list} or min(map(len, levels)) < 2:
        return False
    cells = list(chain.from_iterable(levels))
    if not set(map(type, cells)) <= _REAL:
        return False
    try:
        return all(map(math.isfinite, cells))
    except OverflowError:  # an integer beyond the doubles
        return False


def _record_problem(rec: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a decoded line, None when nothing."""
    missing = [k for k in ("ts", "venue", "symbol", "bids", "asks") if k not in rec]
    if missing:
        return "missing " + ", ".join(f'"{k}"' for k in missing)
    ts = rec["ts"]
    if not (_finite(ts) and 0 <= ts <= MAX_TS_MS):
        return '"ts" must be milliseconds since the epoch (a number from 0 to the year 9999)'
    for key in ("venue", "symbol"):
        if not (isinstance(rec[key], str) and rec[key]):
            return f'"{key}" must be a non-empty string'
    for key in ("bids", "asks"):
        if not _levels_ok(rec[key]):
            return f'"{key}" must be a list of [price, amount] pairs of finite numbers'
    cs = rec.get("contract_size")
    if cs is not None and not _finite(cs):
        return '"contract_size" must be a finite number'
    if rec.get("inverse") is not None and type(rec["inverse"]) is not bool:
        return '"inverse" must be true or false'
    latency = rec.get("latency_ms")
    if latency is not None and not (_finite(latency) and latency >= 0):
        return '"latency_ms" must be a number of milliseconds, at least 0'
    return None


def parse_line(path: str, lineno: int, line: str) -> Observation | Problem:
    """One recording line as an observation, or the problem with it.

    Every field is checked for its type before it is used: numbers must be finite JSON numbers
    (not ``NaN``, ``Infinity``, strings or booleans), levels lists of ``[price, amount]``
    pairs. A book whose values no book can have (non-positive, unsorted) is returned with its
    quality flags, as a venue's would be.
    """
    try:
        rec: Any = json.loads(line, parse_constant=_constant)
    except RecursionError:
        return Problem(path, lineno, "not JSON: nested too deeply")
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return Problem(path, lineno, f"not JSON: {reason}")
    if not isinstance(rec, dict):
        return Problem(path, lineno, "a book must be a JSON object")
    if problem := _record_problem(rec):
        return Problem(path, lineno, problem)
    ts = int(rec["ts"])
    cs = rec.get("contract_size")
    book, flags = make_book(
        rec["bids"],
        rec["asks"],
        contract_size=1.0 if cs is None else float(cs),
        inverse=rec.get("inverse") is True,
        venue_ts_ms=ts,
    )
    latency = rec.get("latency_ms")
    return Observation(rec["venue"], rec["symbol"], ts, book, flags,
                       None if latency is None else float(latency))


#: How many non-empty lines of a file are read to tell whether it is a book recording at all.
SNIFFED_LINES = 20
#: What a file that is no book recording looks like, by its first bytes.
_LOOKS_LIKE = (
    (b"SQLite format 3\x00", "a SQLite database, not a book recording (did you mean --db?)"),
    (b"PAR1", "a Parquet file: name it .parquet or give --format parquet"),
    (b"PK\x03\x04", "a zip archive (an .npz?), not a book recording"),
)


def file_problem(path: str | Path) -> Problem | None:
    """What makes a file no book recording at all, None when it may be one: a known binary
    format, or none of its first SNIFFED_LINES non-empty lines a book (bad lines of a genuine
    recording are reported one by one when it is read)."""
    name = str(path)
    with open(name, "rb") as fh:
        magic = fh.read(16)
    for prefix, what in _LOOKS_LIKE:
        if magic.startswith(prefix):
            return Problem(name, None, what)
    first: Problem | None = None
    try:
        with open_binary(name) as fh:
            lines = ((n, raw) for n, raw in enumerate(fh, 1) if raw.strip())
            for lineno, raw in islice(lines, SNIFFED_LINES):
                item = _decoded(name, lineno, raw)
                if isinstance(item, Observation) or _is_record(raw):
                    return None
                first = first or item
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return None  # reading it reports where it breaks
    if first is None:
        return None  # an empty recording: nothing to replay
    return Problem(name, None, "not a book recording: no book in its first lines "
                               f"(line {first.line}: {first.message})")


def _is_record(raw: bytes) -> bool:
    """True for a line that is a JSON object with a field of a book: a recording's bad line."""
    try:
        rec = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(rec, dict) and any(k in rec for k in ("ts", "bids", "asks"))


def read_recording(path: str | Path, problems: list[Problem] | None = None
                   ) -> Iterator[Observation]:
    """Yield the books of a recording in file order; bad lines go to ``problems``.

    Per series, time only moves forward: a book whose ``ts`` is not after the previous book of
    its (venue, symbol) in the file is a bad line too.
    """
    name = str(path)
    last: dict[tuple[str, str], int] = {}
    lineno = 0
    with open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                item = _decoded(name, lineno, raw)
                if isinstance(item, Observation):
                    key = (item.venue, item.symbol)
                    before = last.get(key)
                    if before is None or item.ts_ms > before:
                        last[key] = item.ts_ms
                        yield item
                        continue
                    item = Problem(name, lineno, f"ts {item.ts_ms} is not after the previous "
                                                 f"({before}) of {item.venue} {item.symbol}")
                if problems is not None:
                    problems.append(item)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a truncated or corrupt .gz
            if problems is not None:
                problems.append(Problem(name, lineno + 1, f"cannot read further: {exc}"))


def _decoded(path: str, lineno: int, raw: bytes) -> Observation | Problem:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(path, lineno, f"not UTF-8 (byte {exc.start + 1})")
    return parse_line(path, lineno, line)


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
