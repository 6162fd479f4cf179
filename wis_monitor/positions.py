"""The desk's positions: a file of (venue, symbol, signed size) that ``unwind_bps`` and the
alert messages read (docs/metrics.md, "The cost of unwinding a position").

The file is YAML (a list of ``{venue, symbol, size}``) or, when its name ends in ``.csv``, CSV
with the header ``venue,symbol,size``. A size is signed (long > 0, short < 0) and counted in
the unit the venue's book quotes amounts in: the base currency for spot, contracts of the
market's ``contract_size`` for futures and swaps (inverse ones included). It is refused like a
bad config: every problem at once, as ``PATH:LINE: what is wrong``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from wis_monitor import yamlsource
from wis_monitor.errors import ConfigError, Problem

log = logging.getLogger("wis_monitor.positions")
#: What identifies a version of the file: its modification time (ns) and size.
Stamp = tuple[int, int]
Series = tuple[str, str]
GONE: Stamp = (0, -1)
COLUMNS = ("venue", "symbol", "size")
MAX_FILE_BYTES = yamlsource.MAX_FILE_BYTES


@dataclass(frozen=True)
class Positions:
    """The positions read from ``path`` (None: the config names no file) as it was at
    ``stamp``, by series."""

    path: str | None = None
    sizes: Mapping[Series, float] = field(default_factory=dict)
    stamp: Stamp | None = None

    def size(self, venue: str, symbol: str) -> float | None:
        return self.sizes.get((venue, symbol))

    def changed(self) -> Stamp | None:
        """The file's stamp when it differs from the one read (edited, replaced or gone)."""
        if self.path is None:
            return None
        now = file_stamp(self.path)
        return now if now != self.stamp else None


class PositionsWatch:
    """Takes a positions file's new version when it changes, and keeps the last good positions
    while a new version is refused (saying why once per version)."""

    def __init__(self) -> None:
        self.refused: Stamp | None = None

    def poll(self, held: Positions, series: Collection[Series]) -> Positions:
        """The positions to use now: ``held``, or the file's new version."""
        stamp = held.changed()
        if held.path is None or stamp in (None, self.refused):
            return held
        try:
            new = load_positions(held.path, series)
        except ConfigError as exc:
            self.refused = stamp
            for p in exc.problems:
                log.error("positions rejected: %s", p)
            log.error("positions rejected: %d problem(s); the last good positions are kept",
                      len(exc.problems))
            return held
        log.info("positions %s reloaded: %d position(s)", held.path, len(new.sizes))
        return new


def file_stamp(path: str) -> Stamp:
    """The file's stamp; ``GONE`` when it cannot be found."""
    try:
        st = os.stat(path)
    except OSError:
        return GONE
    return st.st_mtime_ns, st.st_size


def unreadable(path: str) -> str | None:
    """Why the file at ``path`` cannot be read at all (the OS's words), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None if os.access(path, os.R_OK) else "Permission denied"


def load_positions(path: str, series: Collection[Series] | None, origin: str | None = None
                   ) -> Positions:
    """Read the positions of ``path``; ``series``: those a position may name (None: any).
    Raise ConfigError listing every problem. ``origin`` (``PATH:LINE`` of the config's
    ``positions:``) is named in the problems of a file that cannot be read."""
    stamp = file_stamp(path)  # before reading: a change while reading is seen next time
    rows, problems = (_csv_rows if path.lower().endswith(".csv") else _yaml_rows)(path, origin)
    sizes: dict[Series, float] = {}
    first: dict[Series, int | None] = {}
    for line, row in rows:
        parsed = _row(row, problems, path, line)
        if parsed is None:
            continue
        key, size = parsed
        name = f"{key[0]}:{key[1]}"
        if series is not None and key not in series:
            problems.append(Problem(path, line, f'"{name}" is not a series the configuration '
                                    "samples"))
        elif key in first:
            problems.append(Problem(path, line, f'"{name}" has a position already (line '
                                    f"{first[key]}): one row per series"))
        else:
            first[key] = line
            sizes[key] = size
    if problems:
        raise ConfigError(problems)
    return Positions(path, sizes, stamp)


Row = tuple[int | None, Mapping[str, Any]]


def _row(row: Mapping[str, Any], problems: list[Problem], path: str, line: int | None
         ) -> tuple[Series, float] | None:
    """One position, or None after saying what is wrong with it."""
    found = len(problems)
    for key in row:
        if key not in COLUMNS:
            problems.append(Problem(path, line, f'unknown key "{key}": a position has venue, '
                                    "symbol and size"))
    for key in COLUMNS:
        if row.get(key) in (None, ""):
            problems.append(Problem(path, line, f'a position needs "{key}"'))
    venue, symbol = (row.get(k) for k in ("venue", "symbol"))
    for key, text in (("venue", venue), ("symbol", symbol)):
        if text not in (None, "") and not isinstance(text, str):
            problems.append(Problem(path, line, f"{key} should be a name, not "
                                    f"{yamlsource.kind_of(text)}"))
    size = _size(row.get("size"))
    if isinstance(size, str):
        problems.append(Problem(path, line, size))
    if len(problems) > found or not isinstance(size, float):
        return None
    return (str(venue), str(symbol)), size


def _size(raw: Any) -> float | str | None:
    """A size as a float, or what is wrong with it (None: not given)."""
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return f"size should be a number, not {yamlsource.kind_of(raw)}"
    try:
        size = float(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError):
        return f'size "{raw}" is not a number'
    if not math.isfinite(size):
        return f'size "{raw}" is not a finite number'
    return size


def _yaml_rows(path: str, origin: str | None) -> tuple[list[Row], list[Problem]]:
    doc = yamlsource.load(path, {}, origin=origin)
    if doc.data is None or doc.data == {}:  # unreadable, or empty (no position)
        return [], doc.problems
    if not isinstance(doc.data, list):
        doc.problem((), "a positions file is a list of {venue, symbol, size} (or a CSV file "
                    "named *.csv)")
        return [], doc.problems
    rows: list[Row] = []
    for i, item in enumerate(doc.data):
        if isinstance(item, dict):
            rows.append((doc.line((i,)), item))
        else:
            doc.problem((i,), f"a position is a mapping {{venue, symbol, size}}, not "
                        f"{yamlsource.kind_of(item)}")
    return rows, doc.problems


def _csv_rows(path: str, origin: str | None) -> tuple[list[Row], list[Problem]]:
    try:
        text = _read_text(path)
    except ValueError as exc:
        return [], [Problem(path, None, f"{exc} (included from {origin})" if origin else str(exc))]
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    problems: list[Problem] = []
    header: list[str] | None = None
    try:
        for fields in reader:
            if not fields or not "".join(fields).strip() or fields[0].startswith("#"):
                continue  # blank lines and comments
            cells = [f.strip() for f in fields]
            if header is None:
                header = [c.lower() for c in cells]
                if sorted(header) != sorted(COLUMNS):
                    return [], [Problem(path, reader.line_num, "the first line must name the "
                                        f"columns {','.join(COLUMNS)}, not {','.join(cells)}")]
                continue
            if len(cells) != len(header):
                problems.append(Problem(path, reader.line_num, f"{len(cells)} fields, the "
                                        f"header has {len(header)}: {','.join(header)}"))
                continue
            rows.append((reader.line_num, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        problems.append(Problem(path, reader.line_num, f"invalid CSV: {exc}"))
    return rows, problems


def _read_text(path: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES; ValueError says why not."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ValueError(f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("file is not UTF-8 text") from None
