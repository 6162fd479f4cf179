"""Replay: the daemon's pipeline over recorded books, on the recording's own clock."""

from __future__ import annotations

import gzip
import heapq
import json
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from wis_monitor.book import make_book
from wis_monitor.clock import SYSTEM, Clock
from wis_monitor.config import Config
from wis_monitor.engine import Engine
from wis_monitor.errors import Problem, StoreError
from wis_monitor.sources import Observation
from wis_monitor.sources.recordings import ImportOptions, is_json, read_books
from wis_monitor.sources.replay import book_record
from wis_monitor.store import AlertRow, Batch, SqliteStore, Store

BATCH = 2_000
_T = TypeVar("_T")


class Progress(Protocol):
    """Shows progress through ``items``: ``length`` of them, when known."""

    def __call__(self, items: Iterable[_T], label: str, length: int | None = None
                 ) -> Iterator[_T]: ...


@dataclass
class Firing:
    rule: str
    key: str
    first_ms: int
    last_ms: int | None = None
    peak: float | None = None
    mode: str = "live"  # "shadow": a shadow rule's, sent nowhere

    def see(self, value: float | None) -> None:
        if value is not None and (self.peak is None or abs(value) > abs(self.peak)):
            self.peak = value


@dataclass
class ReplayReport:
    books: int = 0
    series: set[tuple[str, str]] = field(default_factory=set)
    quality: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None
    firings: list[Firing] = field(default_factory=list)
    dropped: int = 0  # books not after their series' previous one
    seconds: float = 0.0
    out: str = ":memory:"

    def render(self) -> str:
        rate = self.books / self.seconds if self.seconds else 0.0
        span = ((self.last_ms or 0) - (self.first_ms or 0)) / 1000.0
        lines = [
            f"replayed {self.books} books of {len(self.series)} series over {span:.0f}s "
            f"of recording in {self.seconds:.2f}s ({rate:,.0f} books/s)",
        ]
        if self.dropped:
            lines.append(f"dropped {self.dropped} book{'s' if self.dropped != 1 else ''} not "
                         "after its series' previous one")
        if self.quality:
            lines.append("quality: " + ", ".join(
                f"{k or 'good'} {v}" for k, v in sorted(self.quality.items())))
        if self.out != ":memory:":
            lines.append(f"samples written to {self.out}")
        if not self.firings:
            lines.append("no alert would have fired")
        else:
            lines.append(f"{len(self.firings)} alert(s) would have fired:")
            lines.append(f"  {'rule':<24} {'key':<28} {'first firing (UTC)':<24} "
                         f"{'duration':>9} {'peak':>9}")
            for f in self.firings:
                dur = f"{(f.last_ms - f.first_ms) / 1000:.0f}s" if f.last_ms else "ongoing"
                peak = f"{f.peak:.3g}" if f.peak is not None else "-"
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(f.first_ms / 1000))
                mark = "  shadow" if f.mode == "shadow" else ""
                lines.append(f"  {f.rule:<24} {f.key:<28} {when:<24} {dur:>9} {peak:>9}{mark}")
            lines.append("per rule: " + ", ".join(
                f"{rule}{' (shadow)' if mode == 'shadow' else ''} {n}"
                for (rule, mode), n in sorted(self.per_rule().items())))
        return "\n".join(lines)

    def per_rule(self) -> dict[tuple[str, str], int]:
        """Firings per (rule, mode)."""
        out: dict[tuple[str, str], int] = {}
        for f in self.firings:
            out[(f.rule, f.mode)] = out.get((f.rule, f.mode), 0) + 1
        return out


def observations_from(books: Iterable[str], db: str | None, problems: list[Problem],
                      options: ImportOptions | None = None) -> Iterator[Observation]:
    """Observations from recordings of any format (merged by time) and/or a DB's ``books``."""
    options = options or ImportOptions()
    streams: list[Iterator[Observation]] = [read_books(p, options, problems) for p in books]
    if db:
        streams.append(_from_db(db))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda o: o.ts_ms)


def count_books(books: Iterable[str], db: str | None, venue: str | None = None,
                symbol: str | None = None, options: ImportOptions | None = None) -> int | None:
    """How many books the recordings (their lines) and the DB hold, for a progress bar;
    None when one cannot be read (reading it says why) or is not a JSON recording."""
    if not all(is_json(p, options or ImportOptions()) for p in books):
        return None
    try:
        n = sum(_count_lines(p) for p in books)
        if db:
            store = SqliteStore(db, readonly=True)
            try:
                n += store.count_books(venue, symbol)
            finally:
                store.close()
    except (OSError, EOFError, zlib.error, StoreError):
        return None
    return n


def _count_lines(path: str) -> int:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    n, last = 0, b"\n"
    with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _from_db(path: str, venue: str | None = None, symbol: str | None = None
             ) -> Iterator[Observation]:
    store = SqliteStore(path, readonly=True)
    try:
        for row in store.books(venue, symbol):
            book, flags = make_book(row.bids, row.asks, contract_size=row.contract_size,
                                    inverse=row.inverse, venue_ts_ms=row.ts_ms)
            yield Observation(row.venue, row.symbol, row.ts_ms, book, flags)
    finally:
        store.close()


def export_books(db: str, output: str, *, venue: str | None = None, symbol: str | None = None,
                 progress: Progress | None = None) -> int:
    """Write a DB's recorded books as a recording (gzip when ``output`` ends in .gz, Parquet
    when it ends in .parquet)."""
    items: Iterable[Observation] = _from_db(db, venue, symbol)
    if progress:
        items = progress(items, "exporting", count_books((), db, venue, symbol))
    return write_recording(items, output)


def write_recording(observations: Iterable[Observation], output: str) -> int:
    """Write books as a recording: Parquet when ``output`` ends in .parquet, else JSON Lines
    (gzip when it ends in .gz); returns how many."""
    if output.endswith(".parquet"):
        from wis_monitor.sources.recordings_parquet import write_parquet

        return write_parquet(observations, output)
    n = 0
    opener = gzip.open if output.endswith(".gz") else open
    with opener(output, "wt", encoding="utf-8") as fh:
        for obs in observations:
            if obs.book is not None:
                fh.write(json.dumps(book_record(obs), separators=(",", ":")) + "\n")
                n += 1
    return n


def replay_observations(config: Config, observations: Iterable[Observation], out: str, *,
                        notify: bool = False, clock: Clock = SYSTEM) -> ReplayReport:
    """Run observations through the engine into ``out``; deliver only when ``notify``.

    With ``notify``, deliveries are queued at the wall-clock time their batch is written, not
    at the recording's (a channel's ``max_age`` counts from queueing)."""
    store = SqliteStore(out, variants=config.column_metrics)
    engine = Engine(config, store)
    report = ReplayReport(out=out)
    open_firings: dict[tuple[str, str], Firing] = {}
    rules = {r.name: r for r in config.rules}
    started = clock.monotonic()
    batch = Batch()
    for obs in observations:
        seen = len(batch.alerts)
        _, samples = engine.process((obs,), obs.ts_ms, batch)
        if not samples:  # not after its series' previous book (another recording held it)
            report.dropped += 1
            continue
        for a in batch.alerts[seen:]:
            _track(a, report, open_firings)
            if not notify:
                a.channels = ()  # nothing queued: the output database never sends these
        for s in samples:  # the peak of the rule's value while it fires
            for (rule, key), f in open_firings.items():
                if key == f"{s.venue}:{s.symbol}" and rule in rules:
                    f.see(engine.rule_value(rules[rule], s.values))
            report.quality[_quality(s.flags)] = report.quality.get(_quality(s.flags), 0) + 1
        report.books += 1
        report.series.add((obs.venue, obs.symbol))
        report.first_ms = obs.ts_ms if report.first_ms is None else report.first_ms
        report.last_ms = obs.ts_ms
        if len(batch.samples) >= BATCH:
            _write(store, batch, notify, clock)
            batch = Batch()
    _write(store, batch, notify, clock)
    report.seconds = clock.monotonic() - started
    if notify and config.settings.channels:
        import asyncio

        from wis_monitor.outbox import Dispatcher
        from wis_monitor.tools.chart import alert_chart

        asyncio.run(Dispatcher(config, store, clock=clock, chart=alert_chart).run_once(
            clock.now_ms(), grace_s=30.0, flush=True))
    store.close()
    return report


def _write(store: Store, batch: Batch, notify: bool, clock: Clock) -> None:
    if notify:
        batch.queued_ms = clock.now_ms()
    store.write(batch)


def _quality(flags: frozenset[str]) -> str:
    return ",".join(sorted(flags))


def _track(a: AlertRow, report: ReplayReport, open_firings: dict[tuple[str, str], Firing]
           ) -> None:
    k = (a.rule, a.key)
    if a.event == "firing":
        f = Firing(a.rule, a.key, a.ts_ms, peak=a.value, mode=a.details.get("mode", "live"))
        open_firings[k] = f
        report.firings.append(f)
    elif k in open_firings:
        f = open_firings[k]
        f.see(a.value)
        if a.event == "resolved":
            f.last_ms = a.ts_ms
            del open_firings[k]
