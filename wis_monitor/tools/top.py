"""``wis-monitor top``: a live view of a running monitor, read from its database alone.

:func:`read_view` reads a :class:`View` (every series' latest numbers, firing alerts, the
outbox, venue health) through a read-only connection, so it never disturbs the daemon;
:func:`frame` turns a view into the lines of one screen and is pure; :func:`live` redraws
them with plain ANSI sequences until ``q`` or Ctrl-C, and restores the terminal.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from wis_monitor.clock import SYSTEM
from wis_monitor.redact import redact
from wis_monitor.store import Store

#: The numbers of a series, those after ``wis_z`` only where the database has their column.
METRICS = ("mid", "spread_bps", "wis", "wis_z", "ofi", "coverage_bps")
OPTIONAL_METRICS = ("ofi", "coverage_bps")
#: A venue is down when its newest sample is older than this (without a config to say).
DEFAULT_STALE_AFTER_MS = 30_000
# Alternate screen and hidden cursor while live; home, clear to end of line / of screen.
ENTER, LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


@dataclass(frozen=True)
class SeriesRow:
    venue: str
    symbol: str
    last_ts: int | None = None  # the newest sample, of any quality
    quality: str = ""
    error: str | None = None
    good_ts: int | None = None  # the newest good sample, the source of ``values``
    values: Mapping[str, float | None] = field(default_factory=dict)
    firing: tuple[str, ...] = ()  # rules firing on this series (``name (shadow)`` if so)


@dataclass(frozen=True)
class VenueHealth:
    venue: str
    up: bool
    last_ts: int | None
    error: str | None  # the newest error of its series, when down


@dataclass(frozen=True)
class Backlog:
    channel: str
    pending: int
    oldest_ts: int | None
    failed: int


@dataclass(frozen=True)
class View:
    database: str
    now_ms: int
    metrics: tuple[str, ...]  # the METRICS the database has columns for
    series: tuple[SeriesRow, ...]
    venues: tuple[VenueHealth, ...]
    outbox: tuple[Backlog, ...]
    #: Firing alerts not on one series (group rules): (rule, key, since_ms, mode).
    other_firing: tuple[tuple[str, str, int | None, str], ...] = ()


# -- reading ---------------------------------------------------------------------------------


def read_view(store: Store, now_ms: int, configured: Sequence[tuple[str, str]] = (),
              stale_after_ms: Mapping[str, int] | None = None) -> View:
    """What the database says now: the ``configured`` series first, then any other with
    samples; a venue is up when one of its series has a sample without a fetch error less
    than its ``stale_after_ms`` (default 30 s) old."""
    columns = store.sample_columns()
    metrics = tuple(m for m in METRICS if m in columns)
    firing = _firing(store)
    seen = list(store.series_names())
    names = list(dict.fromkeys([*configured, *seen]))
    rows = tuple(_series_row(store, venue, symbol, metrics, tuple(
        rule + (" (shadow)" if mode == "shadow" else "")
        for rule, _, mode in firing.pop(f"{venue}:{symbol}", ()))) for venue, symbol in names)
    limits = stale_after_ms or {}
    venues = tuple(_health(venue, [r for r in rows if r.venue == venue], now_ms,
                           limits.get(venue, DEFAULT_STALE_AFTER_MS))
                   for venue in dict.fromkeys(r.venue for r in rows))
    other = tuple((rule, key, since, mode) for key, items in firing.items()
                  for rule, since, mode in items)
    return View(store.path, now_ms, metrics, rows, venues, _outbox(store), other)


def _series_row(store: Store, venue: str, symbol: str, metrics: tuple[str, ...],
                firing: tuple[str, ...]) -> SeriesRow:
    last = store.latest_sample(venue, symbol)
    if last is None:
        return SeriesRow(venue, symbol, firing=firing)
    good = store.latest_good(venue, symbol, metrics)
    return SeriesRow(
        venue, symbol, last.ts_ms, last.quality, redact(last.error) if last.error else None,
        good.ts_ms if good else None, dict(good.values) if good else {}, firing)


def _firing(store: Store) -> dict[str, list[tuple[str, int | None, str]]]:
    """Firing alerts by key: (rule, since, mode) each."""
    out: dict[str, list[tuple[str, int | None, str]]] = {}
    for f in store.firing_states():
        out.setdefault(f.key, []).append((f.rule, f.since_ms, f.mode))
    return out


def _health(venue: str, rows: Sequence[SeriesRow], now_ms: int, stale_after_ms: int
            ) -> VenueHealth:
    stamps = [r.last_ts for r in rows if r.last_ts is not None]
    newest = max(stamps) if stamps else None
    up = any(r.last_ts is not None and now_ms - r.last_ts < stale_after_ms
             and "error" not in r.quality.split(",") for r in rows)
    errors = sorted((r.last_ts or 0, r.error) for r in rows if r.error)
    return VenueHealth(venue, up, newest, None if up or not errors else errors[-1][1])


def _outbox(store: Store) -> tuple[Backlog, ...]:
    return tuple(Backlog(b.channel, b.pending, b.oldest_pending_ms, b.failed)
                 for b in store.outbox_backlog())


# -- one screen (pure) -------------------------------------------------------------------------

#: Table columns: header, width, right-aligned.
_COLUMNS = (("VENUE", 0, False), ("SYMBOL", 0, False), ("MID", 0, True),
            ("SPREAD bps", 0, True), ("WIS", 6, True), ("Z", 6, True), ("OFI", 7, True),
            ("COVER bps", 0, True),
            ("QUALITY", 7, False), ("AGE", 5, True), ("FIRING", 0, False))


def frame(view: View, width: int | None = None, height: int | None = None,
          interval_s: float | None = None) -> list[str]:
    """The lines of one screen, none longer than ``width`` (a terminal's; whole lines without
    it); with a ``height``, series that do not fit are counted in a last line. ``interval_s``
    is shown when live."""
    clock = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(view.now_ms / 1000))
    head = f"wis-monitor top  {view.database}  {clock}"
    if interval_s is not None:
        head += f"  every {interval_s:g}s, q quits"
    firing = sum(len(s.firing) for s in view.series) + len(view.other_firing)
    lines = [head, _venues_line(view), _outbox_line(view), f"firing: {firing or 'none'}"]
    lines += [f"  {rule} {key} for {_age(view.now_ms, since)}"
              + (" (shadow: not sent)" if mode == "shadow" else "")
              for rule, key, since, mode in view.other_firing]
    lines.append("")
    table = [[name for name, _, _ in _COLUMNS]] + [_cells(view, s) for s in view.series]
    widths = [max(w, *(len(row[i]) for row in table)) for i, (_, w, _) in enumerate(_COLUMNS)]
    rendered = [_row(row, widths) for row in table]
    if height is not None and len(lines) + len(rendered) > height:
        room = max(1, height - len(lines) - 1)
        hidden = len(rendered) - room
        rendered = [*rendered[:room], f"... {hidden} more series: enlarge the window"]
    return [line[:width] for line in lines + rendered] if width else lines + rendered


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = [c.rjust(w) if right else c.ljust(w)
             for c, w, (_, _, right) in zip(cells, widths, _COLUMNS, strict=True)]
    return "  ".join(parts).rstrip()


def _cells(view: View, s: SeriesRow) -> list[str]:
    v = s.values
    return [s.venue, s.symbol, _num(v.get("mid"), ",.2f"), _num(v.get("spread_bps"), ".2f"),
            _num(v.get("wis"), "+.3f"), _num(v.get("wis_z"), "+.2f"), _num(v.get("ofi"), "+.3g"),
            _num(v.get("coverage_bps"), ".0f"), _quality(s), _age(view.now_ms, s.last_ts),
            ", ".join(s.firing)]


def _quality(s: SeriesRow) -> str:
    if s.last_ts is None:
        return "no data"
    return s.quality or "good"


def _venues_line(view: View) -> str:
    parts = []
    for h in view.venues:
        if h.up:
            parts.append(f"{h.venue} up")
        else:
            since = f" (last sample {_age(view.now_ms, h.last_ts)} ago)" if h.last_ts else ""
            parts.append(f"{h.venue} DOWN{since}" + (f": {h.error}" if h.error else ""))
    return "venues: " + (", ".join(parts) or "none")


def _outbox_line(view: View) -> str:
    parts = []
    for b in view.outbox:
        if not (b.pending or b.failed):
            continue
        text = f"{b.channel} {b.pending} pending"
        if b.oldest_ts is not None:
            text += f" (oldest {_age(view.now_ms, b.oldest_ts)})"
        parts.append(text + (f", {b.failed} failed" if b.failed else ""))
    return "outbox: " + (", ".join(parts) or "empty")


def _num(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, int | float) and not isinstance(x, bool) else "-"


def _age(now_ms: int, ts: int | None) -> str:
    if ts is None:
        return "-"
    s = max(0.0, (now_ms - ts) / 1000)
    if s < 60:
        return f"{s:.1f}s"
    whole = int(s)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m" if whole < 86_400 else \
        f"{s / 86_400:.1f}d"


# -- the terminal ------------------------------------------------------------------------------


def live(read: Callable[[], View], interval_s: float, out: TextIO = sys.stdout,
         keys: TextIO = sys.stdin) -> None:
    """Redraw every ``interval_s`` on the terminal until ``q`` or Ctrl-C (or SIGTERM/SIGHUP),
    then give the terminal back as it was."""
    with _raw_keys(keys) as key_fd, _screen(out):
        while True:
            size = shutil.get_terminal_size()
            lines = frame(read(), size.columns, size.lines, interval_s)
            out.write(HOME + (CLEAR_LINE + "\n").join(lines) + CLEAR_LINE + CLEAR_BELOW)
            out.flush()
            if _quit_pressed(key_fd, interval_s):
                return


def stream(read: Callable[[], View], interval_s: float, out: TextIO = sys.stdout) -> None:
    """Not a terminal: a frame every ``interval_s``, separated by a blank line (``top -b``)."""
    while True:
        out.write("\n".join(frame(read())) + "\n\n")
        out.flush()
        time.sleep(interval_s)


@contextlib.contextmanager
def _raw_keys(keys: TextIO) -> Iterator[int | None]:
    """Keys one at a time without echo (Ctrl-C still interrupts); None when not a terminal."""
    if not keys.isatty():
        yield None
        return
    import termios
    import tty

    fd = keys.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _screen(out: TextIO) -> Iterator[None]:
    """The alternate screen, left on the way out whatever ends the view."""
    def stop(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    out.write(ENTER)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        out.write(LEAVE)
        out.flush()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quit_pressed(fd: int | None, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for a key; True for q (or the end of the input)."""
    if fd is None:
        time.sleep(timeout_s)
        return False
    deadline = SYSTEM.monotonic() + timeout_s
    while (left := deadline - SYSTEM.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 64)
            if not data or b"q" in data.lower():
                return True
    return False
