"""Every recording format ``replay`` and ``calibrate`` read, chosen by suffix or header.

``json`` (SPEC §11, ``.jsonl[.gz]``), ``parquet`` (``.parquet``), ``tardis`` (Tardis.dev
``book_snapshot_*`` or ``incremental_book_L2`` CSV, ``.csv[.gz]``), ``hftbacktest`` (its raw
``TIMESTAMP JSON`` lines, ``.gz``) and ``hftbacktest-npz`` (its normalised ``.npz`` events).
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from dataclasses import dataclass

from wis_monitor.errors import Problem, WisMonitorError
from wis_monitor.sources import Observation

FORMATS = ("json", "parquet", "tardis", "hftbacktest", "hftbacktest-npz")


@dataclass(frozen=True)
class ImportOptions:
    """How to read recordings that are not in the book-recording format."""

    format: str | None = None  # None: by suffix and header
    venue: str | None = None  # the venue of every book (default: the file's, mapped)
    symbol: str | None = None  # the symbol of every book (default: the file's)
    every_ms: int | None = None  # sample rebuilt books on this grid (incremental formats)


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
    from wis_monitor.sources import hftbacktest, tardis

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
    if problems:
        raise UnreadableRecording(problems)


def read_books(path: str, options: ImportOptions, problems: list[Problem]
               ) -> Iterator[Observation]:
    """The books of one recording of any format, with the venue and symbol options applied."""
    from wis_monitor.sources import hftbacktest, tardis
    from wis_monitor.sources.replay import read_recording

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


def is_json(path: str, options: ImportOptions) -> bool:
    try:
        return (options.format or detect(path)) == "json"
    except OSError:
        return False

