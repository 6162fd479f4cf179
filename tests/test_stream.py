"""Streamed venues end to end: the daemon in this process, in real time, samples a fake venue
that speaks binance's and okx's real stream formats to real ccxt.pro. Every book a sample is
computed from equals the book rebuilt independently from the venue's messages; each scripted
fault is flagged, counted and recovered from; repeated trouble falls back to polling and back."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakestream import FakeStreamVenue, FakeStreamVenueThread
from webhook import Receiver

from wis_monitor.book import BLOCKING_FLAGS
from wis_monitor.daemon import Daemon
from wis_monitor.sources import Observation
from wis_monitor.sources.stream import Heartbeat, StreamVenue
from wis_monitor.tools.status import collect, render

SYMBOLS = {"okx": ["BTC/USDT", "ETH/BTC"], "binance": ["BTC/USDT", "ETH/BTC"]}


@pytest.fixture(scope="module")
def fv() -> Iterator[FakeStreamVenue]:
    with FakeStreamVenueThread({"okx": SYMBOLS["okx"], "binance": SYMBOLS["binance"]},
                               tick_s=0.03) as venue:
        yield venue


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def config(tmp_path: Path, fv: FakeStreamVenue, exchanges: list[str], *,
           stream: dict[str, Any] | None = None, hook: Receiver | None = None,
           symbols: dict[str, list[str]] | None = None) -> Path:
    venues = [{"id": ex, "exchange": ex, "mode": "stream", "symbols": (symbols or SYMBOLS)[ex],
               "ccxt": fv.ccxt_config(ex),
               "stream": {"stale_after": "1s", "verify_every": "1s", **(stream or {})}}
              for ex in exchanges]
    doc: dict[str, Any] = {"storage": {"path": str(tmp_path / "wis.db"), "record_books": False},
                           "sampling": {"interval": "100ms", "stale_after": "30s"},
                           "venues": venues}
    if hook is not None:
        doc["channels"] = {"ops": {"url": f"json://127.0.0.1:{hook.port}/hook",
                                   "timeout": "2s"}}
        doc["feed_stale"] = {"enabled": False}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(doc))
    return path


class Run:
    """The daemon sampling every 100 ms of real time; every observation of a streamed book
    kept with the update id (binance ``u``, okx ``seqId``) it was converted at."""

    def __init__(self, path: Path, fv: FakeStreamVenue) -> None:
        self.daemon = Daemon(str(path))
        self.fv = fv
        self.seen: list[tuple[str, Observation, int | None]] = []

    async def __aenter__(self) -> Run:
        assert await self.daemon.open() == 0
        assert self.daemon.rt is not None
        for source in self.daemon.rt.sources.values():
            assert isinstance(source, StreamVenue)
            source.fetch = self._recorded(source)  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.daemon.close()

    def source(self, venue: str) -> StreamVenue:
        assert self.daemon.rt is not None
        source = self.daemon.rt.sources[venue]
        assert isinstance(source, StreamVenue)
        return source

    def _recorded(self, source: StreamVenue) -> Callable[[str, int], Any]:
        fetch = source.fetch

        async def recorded(symbol: str, now_ms: int) -> Observation:
            obs = await fetch(symbol, now_ms)
            ob = source.books[symbol].book
            self.seen.append((source.exchange_id, obs, ob["nonce"] if ob is not None else None))
            return obs
        return recorded

    async def until(self, check: Callable[[], Any], seconds: float = 15.0) -> Any:
        """Sample every 100 ms until ``check()`` holds; its last result."""
        for _ in range(int(seconds / 0.1)):
            result = check()
            if result:
                return result
            await self.cycle()
            await asyncio.sleep(0.1)
        return check()

    async def cycle(self) -> list[Observation]:
        """One sampling cycle of every venue, then housekeeping; the cycle's observations."""
        before = len(self.seen)
        await self.daemon.sample_all()
        await self.daemon.housekeeping()
        return [o for _, o, _ in self.seen[before:]]

    async def cycles(self, seconds: float) -> None:
        await self.until(lambda: False, seconds)

    def trusted(self, venue: str | None = None) -> list[tuple[str, Observation, int | None]]:
        """The observations metrics are computed from (streamed or, falling back, polled)."""
        return [(ex, o, n) for ex, o, n in self.seen if o.book is not None
                and not o.flags & BLOCKING_FLAGS and venue in (None, o.venue)]

    def check_books(self) -> int:
        """Every book a sample was computed from equals the independent rebuild; how many."""
        checked = 0
        for ex, obs, nonce in self.trusted():
            if obs.book_age_ms is None:
                continue  # polled while falling back
            assert nonce is not None and obs.book is not None, (obs.symbol, obs.flags)
            bids, asks = self.fv.reference(ex, obs.symbol, nonce)
            assert obs.book.levels() == (bids, asks), f"{ex} {obs.symbol} at {nonce}"
            checked += 1
        return checked

    def wis_rows(self, db: Path) -> list[tuple[str, str, int]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT venue, symbol, ts FROM samples WHERE wis IS NOT NULL"
                                ).fetchall()
        finally:
            conn.close()

    def check_no_wrong_wis(self, db: Path) -> None:
        """No WIS was logged but from a book that equals the rebuild."""
        good = {(o.venue, o.symbol, o.ts_ms) for _, o, _ in self.trusted()}
        assert set(self.wis_rows(db)) <= good


def modes(run: Run) -> set[str]:
    """The modes ``wis-monitor status`` shows, read from the database."""
    assert run.daemon.rt is not None and run.daemon.store is not None
    report = collect(run.daemon.rt.config, run.daemon.store, 0)
    assert "okx" in render(report)
    return {s.mode for s in report.series if s.good is not None}


def resyncs(run: Run, venue: str, reason: str | None = None) -> int:
    return sum(n for (_, r), n in run.source(venue).stats.resyncs.items()
               if reason in (None, r))


@in_loop
async def test_streamed_books_equal_the_rebuild_at_every_sample(
        tmp_path: Path, fv: FakeStreamVenue) -> None:
    path = config(tmp_path, fv, ["okx", "binance"], stream={"symbols_per_connection": 1})
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 40)
        assert (fv.connections("okx"), fv.connections("binance")) == (2, 2)
        await run.cycles(1.5)  # past a REST cross-check of each symbol
        assert run.check_books() >= 40
        for venue in ("okx", "binance"):
            assert resyncs(run, venue) == 0, run.source(venue).stats.resyncs
            assert run.source(venue).mode == "stream"
            drift = run.source(venue).stats.drift
            assert set(drift) == set(SYMBOLS[venue]) and max(drift.values()) < 1.0
        ok, detail = run.daemon._health_detail()
        assert ok and detail["venues"]["okx"]["mode"] == "stream"
        metrics = run.daemon._metrics().decode()
        assert 'wis_venue_streaming{venue="okx"} 1.0' in metrics
        assert "wis_stream_drift_bps" in metrics
    run.check_no_wrong_wis(tmp_path / "wis.db")
    conn = sqlite3.connect(tmp_path / "wis.db")
    ages = [a for (a,) in conn.execute("SELECT book_age_ms FROM samples WHERE wis IS NOT NULL")]
    drifts = [d for (d,) in conn.execute("SELECT drift_bps FROM samples WHERE drift_bps IS "
                                         "NOT NULL")]
    conn.close()
    assert ages and all(a is not None and 0 <= a < 1000 for a in ages)
    assert drifts and max(drifts) < 1.0


@in_loop
async def test_every_symbol_of_a_busy_connection_gets_its_book(tmp_path: Path) -> None:
    """Sixteen symbols on one connection, every one updated in the same burst: a watch returns
    only the first book of a burst, yet each symbol's book is taken up at its first update."""
    many = {"binance": [f"S{i}/USDT" for i in range(40)], "okx": SYMBOLS["okx"]}
    with FakeStreamVenueThread(many, tick_s=0.1) as venue:
        path = config(tmp_path, venue, ["binance", "okx"], symbols=many,
                      stream={"symbols_per_connection": 40, "stale_after": "5s",
                              "verify_every": "1m"})
        async with Run(path, venue) as run:
            def missing() -> list[tuple[str, str]]:
                seen = {(o.venue, o.symbol) for _, o, _ in run.trusted()}
                return [(v, s) for v in many for s in many[v] if (v, s) not in seen]
            await run.until(lambda: not missing(), 8.0)
            assert not missing()
            assert (venue.connections("binance"), venue.connections("okx")) == (1, 1)
            assert run.check_books() >= 42
            assert resyncs(run, "binance") == resyncs(run, "okx") == 0
        run.check_no_wrong_wis(tmp_path / "wis.db")


@pytest.mark.parametrize(("venue", "fault", "reason"), [
    ("okx", "gap", "InvalidNonce"),
    ("okx", "bad_checksum", "checksum"),
    ("okx", "bad_levels", "checksum"),
    ("binance", "gap", None),
    ("okx", "drop", None),
    ("binance", "drop", None),
])
@in_loop
async def test_a_broken_stream_is_flagged_and_resynced_without_a_wrong_sample(
        tmp_path: Path, fv: FakeStreamVenue, venue: str, fault: str, reason: str | None) -> None:
    path = config(tmp_path, fv, [venue])
    symbol = SYMBOLS[venue][0]
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 10)
        fv.set_stream_fault(venue, symbol, fault)
        assert await run.until(lambda: resyncs(run, venue, reason) >= 1), \
            run.source(venue).stats.resyncs
        after = len(run.seen)
        assert await run.until(lambda: any(o.symbol == symbol for _, o, _ in run.trusted()
                                           [-4:]) and len(run.seen) > after + 4)
        assert run.source(venue).mode == "stream"
        assert run.check_books() >= 10
    run.check_no_wrong_wis(tmp_path / "wis.db")


@pytest.mark.parametrize(("venue", "fault", "reason"), [
    ("binance", "silent", "silent"),
    ("okx", "silent", "silent"),
    ("okx", "delay", None),  # a late stream goes silent first, then lags
])
@in_loop
async def test_a_silent_or_late_stream_is_flagged_stale_and_resubscribed(
        tmp_path: Path, fv: FakeStreamVenue, venue: str, fault: str, reason: str | None
) -> None:
    path = config(tmp_path, fv, [venue])
    symbol = SYMBOLS[venue][0]
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 10)
        fv.set_stream_fault(venue, symbol, fault, 2.0)
        assert await run.until(lambda: resyncs(run, venue, reason) >= 1), \
            run.source(venue).stats.resyncs
        assert any("stale" in o.flags for _, o, _ in run.seen if o.symbol == symbol)
        fv.set_stream_fault(venue, symbol, None)
        count = len(run.trusted())
        assert await run.until(lambda: sum(o.symbol == symbol for _, o, _
                                           in run.trusted()[count:]) >= 3)
        assert run.check_books() >= 10
    run.check_no_wrong_wis(tmp_path / "wis.db")


@in_loop
async def test_a_burst_of_429s_on_the_resync_snapshot_is_waited_out(
        tmp_path: Path, fv: FakeStreamVenue) -> None:
    path = config(tmp_path, fv, ["binance"])
    symbol = SYMBOLS["binance"][0]
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 10)
        fv.set_fault("binance", "http429", count=4, retry_after=1.0)
        fv.set_stream_fault("binance", symbol, "gap")
        assert await run.until(lambda: resyncs(run, "binance") >= 1)
        count = len(run.trusted())
        assert await run.until(lambda: sum(o.symbol == symbol for _, o, _
                                           in run.trusted()[count:]) >= 3, 20.0)
        assert run.check_books() >= 10
    fv.set_fault("binance", None)
    run.check_no_wrong_wis(tmp_path / "wis.db")


@in_loop
async def test_repeated_resyncs_fall_back_to_polling_and_streaming_resumes(
        tmp_path: Path, fv: FakeStreamVenue, receiver: Receiver) -> None:
    path = config(tmp_path, fv, ["okx"], hook=receiver,
                  stream={"fallback_after": 3, "fallback_window": "1m", "quiet": "1500ms"})
    symbol = SYMBOLS["okx"][0]
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 10)
        fv.set_stream_fault("okx", symbol, "bad_checksum", 1000)
        source = run.source("okx")
        assert await run.until(lambda: source.mode == "poll (fallback)")
        fv.set_stream_fault("okx", symbol, None)
        _, detail = run.daemon._health_detail()
        assert detail["venues"]["okx"]["mode"] == "poll (fallback)"
        assert "poll (fallback): okx" in run.daemon._status()
        polled = len(run.seen)
        await run.cycles(0.5)
        assert all(o.book_age_ms is None for _, o, _ in run.seen[polled:])  # REST books
        assert any(o.book is not None for _, o, _ in run.seen[polled:])
        assert modes(run) == {"poll (fallback)"}
        assert await run.until(lambda: source.mode == "stream", 10.0)
        streamed = len(run.trusted())
        assert await run.until(lambda: len(run.trusted()) > streamed + 5)
        assert modes(run) == {"stream"}
        assert 'wis_stream_fallbacks_total{venue="okx"} 1.0' in run.daemon._metrics().decode()
        for _ in range(50):
            if len(receiver.posts) >= 2:
                break
            await asyncio.sleep(0.1)
    titles = [p["title"] for p in receiver.posts]
    assert any("falls back to polling" in t for t in titles), titles
    assert any("streams again" in t for t in titles), titles
    run.check_no_wrong_wis(tmp_path / "wis.db")


@in_loop
async def test_a_corrupted_book_without_a_checksum_is_caught_by_the_rest_cross_check(
        tmp_path: Path, fv: FakeStreamVenue, monkeypatch: pytest.MonkeyPatch) -> None:
    """okx without its checksum (okx sends 0 since it deprecated the field): a phantom level
    stays in the book until the REST cross-check sees the drift and resyncs it."""
    monkeypatch.setattr(StreamVenue, "_verify_okx_checksums", lambda self, exchange: None)
    path = config(tmp_path, fv, ["okx"], stream={"verify_every": "1s"})
    symbol = SYMBOLS["okx"][0]
    async with Run(path, fv) as run:
        await run.until(lambda: len(run.trusted()) >= 10)
        clean, start = run.check_books(), len(run.seen)
        fv.set_stream_fault("okx", symbol, "bad_levels")
        source = run.source("okx")
        assert await run.until(lambda: resyncs(run, "okx", "drift") >= 1, 5.0), \
            source.stats.resyncs
        count = len(run.seen)
        assert await run.until(lambda: sum(o.symbol == symbol for _, o, _
                                           in run.trusted()[count:]) >= 3)
        run.seen = run.seen[:start] + run.seen[count:]  # the books in between were wrong
        assert run.check_books() >= clean
    conn = sqlite3.connect(tmp_path / "wis.db")
    assert conn.execute("SELECT max(drift_bps) FROM samples").fetchone()[0] > 5.0
    conn.close()


#: The most a healthy book may be behind at a sample: under ``stale_after`` (1 s); its events
#: come every 30 ms, but a loaded machine may leave the client's reading loop waiting.
FRESH_MS = 1000
#: The most one cycle may take from its start to the next one's (100 ms apart when nothing
#: holds them up; a loop blocked for ``stale_after`` would take longer).
CADENCE_S = 0.8


def make_trouble(fv: FakeStreamVenue, venue: str, symbol: str, trouble: str) -> None:
    if trouble == "429":  # a sequence gap, and the resync snapshot answered by 429s
        fv.set_fault(venue, "http429", count=4, retry_after=1.0, symbol=symbol)
        fv.set_stream_fault(venue, symbol, "gap")
    else:
        fv.set_stream_fault(venue, symbol, trouble)


@pytest.mark.parametrize(("venue", "trouble"), [
    ("okx", "silent"), ("binance", "drop"), ("binance", "429")])
@in_loop
async def test_one_connections_trouble_never_delays_another(
        tmp_path: Path, venue: str, trouble: str) -> None:
    """Every symbol on its own connection, on okx and binance: while one connection is in
    trouble (a socket silent for longer than ``stale_after``, a 1006 drop, a burst of 429s on
    its resync snapshot) until it has recovered, the other connection of its venue and those of
    the other venue are sampled at every cycle with a fresh book that equals the rebuild, and
    the cycles keep their pace."""
    sick = SYMBOLS[venue][0]
    everything = {(v, s) for v in SYMBOLS for s in SYMBOLS[v]}
    healthy = everything - {(venue, sick)}
    with FakeStreamVenueThread(SYMBOLS, tick_s=0.03) as fv:
        path = config(tmp_path, fv, ["okx", "binance"], stream={"symbols_per_connection": 1})
        async with Run(path, fv) as run:
            assert await run.until(lambda: {(o.venue, o.symbol) for _, o, _ in run.trusted()}
                                   >= everything)
            make_trouble(fv, venue, sick, trouble)
            loop = asyncio.get_running_loop()
            starts: list[float] = []
            cleared: int | None = None  # where the sick connection's recovery is counted from
            for _ in range(200):
                starts.append(loop.time())
                sampled = {(o.venue, o.symbol): o for o in await run.cycle()}
                for key in healthy:
                    o = sampled.get(key)
                    assert o is not None, f"{key} not sampled in this cycle"
                    assert o.book is not None and not o.flags & BLOCKING_FLAGS, \
                        (key, o.flags, o.error)
                    assert o.book_age_ms is not None and o.book_age_ms < FRESH_MS, \
                        (key, o.book_age_ms)
                # the trouble lasts until the connection was resynced, and 2 s (2 x stale_after)
                if cleared is None and resyncs(run, venue) >= 1 and len(starts) >= 20:
                    fv.set_stream_fault(venue, sick, None)
                    cleared = len(run.trusted())
                elif cleared is not None and sum((o.venue, o.symbol) == (venue, sick)
                                                 for _, o, _ in run.trusted()[cleared:]) >= 3:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{venue} {sick} did not recover: {run.source(venue).stats}")
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert max(gaps) < CADENCE_S, f"a cycle was held up: {max(gaps):.2f}s"
            assert run.check_books() >= len(healthy) * len(starts)
            assert run.source("okx").mode == run.source("binance").mode == "stream"
        run.check_no_wrong_wis(tmp_path / "wis.db")


STALL_S = 1.5  # longer than stale_after (1 s)


@pytest.mark.parametrize("where", ["callback", "cycle"])
@in_loop
async def test_a_slow_consumer_uses_no_late_book_and_catches_up_without_resyncing(
        tmp_path: Path, where: str) -> None:
    """The daemon itself falls behind: a long synchronous step (a slow disk write in its cycle,
    a CPU-heavy callback) blocks its event loop for longer than ``stale_after`` while the venue
    keeps sending. The messages wait in the sockets, and the books are behind the venue until
    they are read: a book that lags the clock by ``stale_after`` is flagged stale, not used;
    every book used equals the rebuild at its update id; and the streams catch up by
    themselves: no connection is resubscribed for the daemon's own slowness."""
    everything = {(v, s) for v in SYMBOLS for s in SYMBOLS[v]}
    with FakeStreamVenueThread(SYMBOLS, tick_s=0.03) as fv:
        path = config(tmp_path, fv, ["okx", "binance"], stream={"symbols_per_connection": 1})
        async with Run(path, fv) as run:
            assert await run.until(lambda: {(o.venue, o.symbol) for _, o, _ in run.trusted()}
                                   >= everything)
            stall = len(run.trusted())
            if where == "cycle":  # a step of the cycle itself, before it samples
                time.sleep(STALL_S)
            else:  # a callback that runs before the cycle's fetches
                asyncio.get_running_loop().call_soon(time.sleep, STALL_S)
            right_after = await run.cycle()
            assert await run.until(lambda: all(
                sum((o.venue, o.symbol) == key for _, o, _ in run.trusted()[stall:]) >= 3
                for key in everything))
            assert {(o.venue, o.symbol) for o in right_after} == everything
            assert all("stale" in o.flags for o in right_after), [o.flags for o in right_after]
            for _, o, _ in run.seen:
                if o.book is not None and o.book.venue_ts_ms is not None \
                        and o.ts_ms - o.book.venue_ts_ms >= 1000:
                    assert "stale" in o.flags, (o.venue, o.symbol, o.ts_ms, o.book.venue_ts_ms)
            assert run.check_books() >= len(everything) * 3
            stats = {v: run.source(v).stats.resyncs for v in SYMBOLS}
            watchdog = [resyncs(run, v, why) for v in SYMBOLS for why in ("silent", "lagging")]
            assert not any(watchdog), stats  # a resubscription would not cure the slowness
            assert sum(resyncs(run, v) for v in SYMBOLS) <= 1, stats
            assert run.source("okx").mode == run.source("binance").mode == "stream"
        run.check_no_wrong_wis(tmp_path / "wis.db")


def test_a_late_heartbeat_marks_the_loop_held_up_and_for_as_long_again() -> None:
    heartbeat = Heartbeat()
    assert heartbeat.free_ms(1_000) == 1_000  # no beat yet
    heartbeat.beat(1_000)
    heartbeat.beat(1_100)
    assert heartbeat.free_ms(1_150) == 1_150
    assert heartbeat.free_ms(3_000) == 1_200  # held up since the beat was due
    for now in range(3_000, 5_000, 100):
        heartbeat.beat(now)
    assert heartbeat.free_ms(4_750) == 1_200  # reading what waited for 1.8 s
    assert heartbeat.free_ms(4_850) == 4_850
    heartbeat.beat(5_005)  # a few ms late: a hold-up of as few
    assert heartbeat.free_ms(5_008) == 5_000
    assert heartbeat.free_ms(5_010) == 5_010
