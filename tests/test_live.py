"""The real daemon sampling real ccxt against the local fake venue (SPEC §10, §12)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import reference as ref
import yaml
from daemon_harness import DaemonProcess, SteppedDaemon, rows, wait_until
from fakevenue import FakeVenue, FakeVenueThread
from testclock import NOW

from wis_monitor.clock import FakeClock

pytestmark = pytest.mark.slow

LIVE = {  # ccxt exchange id -> the symbol sampled there
    "binance": "BTC/USDT", "binanceusdm": "BTC/USDT:USDT", "binancecoinm": "BTC/USD:BTC",
    "okx": "BTC/USDT", "bybit": "BTC/USDT", "kraken": "BTC/USDT", "deribit": "BTC/USD:BTC",
    "coinbase": "BTC/USD",
}
CONTRACT = {"binancecoinm": (100.0, True), "deribit": (1.0, True)}  # deribit: amounts in USD


def config(tmp_path: Path, fv: FakeVenue, venues: dict[str, str], *, interval: str = "500ms",
           control: bool = False, extra: dict[str, Any] | None = None) -> Path:
    db = tmp_path / "wis.db"
    doc: dict[str, Any] = {
        "storage": {"path": str(db)},
        "sampling": {"interval": interval, "timeout": "1500ms"},
        "metrics": {"zscore": {"window": "1m", "min_samples": 3, "min_history": "0s"}},
        "venues": [
            {"id": ex, "exchange": ex, "symbols": [sym], "depth": 100,
             "ccxt": {**fv.ccxt_config(ex), "enableRateLimit": False}}
            for ex, sym in venues.items()
        ],
    }
    if control:
        doc["venues"].append({"id": "control", "exchange": "sim", "symbols": ["BTC/USDT"]})
    doc.update(extra or {})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def run_until(cfg: Path, clock: FakeClock, interval_s: float, check: Callable[[], Any]) -> None:
    """The daemon in this process, cycled on the fake clock until ``check()`` holds."""
    async def main() -> None:
        async with SteppedDaemon(cfg, clock, interval_s) as d:
            assert await d.until(check)

    asyncio.run(main())


def random_book(rng: random.Random, price: float, n: int = 120) -> tuple[list[list[float]],
                                                                      list[list[float]]]:
    tick = price * 1e-5
    bids = [[round(price - tick * (1 + i * 3), 6), round(rng.uniform(0.1, 5.0), 5)]
            for i in range(n)]
    asks = [[round(price + tick * (1 + i * 3), 6), round(rng.uniform(0.1, 5.0), 5)]
            for i in range(n)]
    return bids, asks


def test_every_venue_is_sampled_with_exact_values(tmp_path: Path) -> None:
    """Every sample of every venue equals the formulas on the book served for it, z-scores
    included (contract size and inverse notional from each venue's own market data)."""
    rng = random.Random(7)
    clock = FakeClock(NOW)
    with FakeVenueThread(clock=clock) as fv:
        for ex, sym in LIVE.items():
            price = 60_000.0 * rng.uniform(0.9, 1.1)
            fv.queue_books(ex, sym, [random_book(rng, price * rng.uniform(0.999, 1.001))
                                     for _ in range(40)])
        cfg = config(tmp_path, fv, LIVE)
        db = tmp_path / "wis.db"
        run_until(cfg, clock, 0.5, lambda: all(len(rows(
            db, "SELECT 1 FROM samples WHERE venue = ? AND wis_z IS NOT NULL", (ex,))) >= 4
            for ex in LIVE))
        served = dict(fv.served)
    for ex, sym in LIVE.items():
        got = rows(db, "SELECT * FROM samples WHERE venue = ? ORDER BY ts", (ex,))
        assert all(r["quality"] in ("", "thin") and r["symbol"] == sym for r in got), ex
        books = served[(ex, sym)]
        assert len(got) == len(books), (ex, len(got), len(books))
        cs, inverse = CONTRACT.get(ex, (1.0, False))
        series = []
        for r, (bids, asks) in zip(got, books, strict=True):
            want = ref.companions(bids, asks, 50.0, cs, inverse)
            want["wis"] = ref.wis(bids, asks, "exponential", cs, inverse)
            for key, value in want.items():
                assert ref.close(r[key], value), (ex, key, r[key], value)
            series.append((r["ts"], want["wis"]))
        for r, z in zip(got, ref.zscores(series, 60_000, 3), strict=True):
            assert ref.close(r["wis_z"], z, rel=1e-9, abs_=1e-9), (ex, r["wis_z"], z)


def test_recording_through_the_wire(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "books" / "binance-BTCUSDT-20240808.jsonl.gz"
    clock = FakeClock(NOW)
    with FakeVenueThread({"binance": ["BTC/USDT"]}, clock=clock) as fv:
        fv.serve_recording("binance", "BTC/USDT", path)
        cfg = config(tmp_path, fv, {"binance": "BTC/USDT"}, interval="100ms")
        cfg_doc = yaml.safe_load(cfg.read_text())
        cfg_doc["venues"][0]["depth"] = 1000
        cfg.write_text(yaml.safe_dump(cfg_doc))
        db = tmp_path / "wis.db"
        run_until(cfg, clock, 0.1, lambda: len(rows(db, "SELECT ts FROM samples")) >= 40)
        served = fv.served[("binance", "BTC/USDT")]
    got = rows(db, "SELECT * FROM samples ORDER BY ts")
    assert len(got) <= len(served)
    series = []
    for r, (bids, asks) in zip(got, served, strict=False):
        w = ref.wis(bids, asks)
        series.append((r["ts"], w))
        assert ref.close(r["wis"], w), (r["wis"], w)
        assert ref.close(r["imbalance"], ref.companions(bids, asks)["imbalance"])
    zs = ref.zscores(series, 60_000, 3)
    for r, z in zip(got, zs, strict=False):
        assert ref.close(r["wis_z"], z, rel=1e-9, abs_=1e-9), (r["wis_z"], z)
    assert sum(z is not None for z in zs) > 20


FAULTS_A = {"binance": "http500", "binanceusdm": "http502", "binancecoinm": "hang",
            "okx": "malformed", "bybit": "html", "kraken": "error_body", "deribit": "crossed",
            "coinbase": "reset"}
FAULTS_B = {"binance": "http503", "binanceusdm": "http504", "okx": "empty",
            "bybit": "one_sided", "kraken": "http429"}
EXPECT = {
    "http500": ("error", "ExchangeNotAvailable"), "http502": ("error", "ExchangeNotAvailable"),
    "http503": ("error", "ExchangeNotAvailable"), "http504": ("error", "RequestTimeout"),
    "hang": ("error", "RequestTimeout"), "reset": ("error", ""),
    "malformed": ("empty", "malformed JSON"), "html": ("empty", "HTML page"),
    "error_body": ("error", ""),
    "crossed": ("crossed", None), "empty": ("empty", None), "one_sided": ("one_sided", None),
    "http429": ("error", " 429 "),  # DDoSProtection or RateLimitExceeded, by venue
}


@pytest.mark.parametrize("faults", [FAULTS_A, FAULTS_B], ids=["faults-a", "faults-b"])
def test_faults_are_flagged_and_isolated(tmp_path: Path, faults: dict[str, str]) -> None:
    with FakeVenueThread() as fv:
        venues = {ex: LIVE[ex] for ex in faults}
        for ex, fault in faults.items():
            fv.set_fault(ex, fault, retry_after=3 if fault == "http429" else None)
        cfg = config(tmp_path, fv, venues, control=True)
        db = tmp_path / "wis.db"
        d = DaemonProcess(cfg)
        try:
            started = time.time()
            assert wait_until(lambda: all(rows(db, "SELECT 1 FROM samples WHERE venue = ?", (ex,))
                                          for ex in faults), 40), d.log()
            time.sleep(max(0.0, 6.0 - (time.time() - started)))
            # Startup takes longer on a busy machine: judge the control venue on a run of its
            # own samples, not on a fixed time since the process started.
            assert wait_until(lambda: len(rows(db, "SELECT 1 FROM samples WHERE venue = "
                                               "'control'")) >= 8, 30), d.log()
            limited = [ex for ex, f in faults.items() if f == "http429"]
            assert wait_until(lambda: all(
                len([r for r in fv.requests() if r.exchange_id == ex and r.book]) >= 2
                for ex in limited), 30), d.log()
            assert d.proc.poll() is None, "the daemon exited on a venue fault"
        finally:
            assert d.stop() == 0, d.log()
        requests = fv.requests()
    for ex, fault in faults.items():
        quality, error = EXPECT[fault]
        got = rows(db, "SELECT quality, error, wis FROM samples WHERE venue = ?", (ex,))
        assert got, ex
        for r in got:
            assert quality in r["quality"].split(","), (ex, fault, r)
            assert r["wis"] is None
            if error is not None:
                assert r["error"] and error in r["error"], (ex, fault, r)
    # A failing symbol is logged when it starts failing, not on every cycle.
    for ex, fault in faults.items():
        if EXPECT[fault][1] is not None:
            said = d.log().count(f"venue {ex} {LIVE[ex]}: ")
            assert 1 <= said <= 2, (ex, said)
    # The control venue kept its interval while the others failed.
    ts = [r["ts"] for r in rows(db, "SELECT ts FROM samples WHERE venue='control' ORDER BY ts")]
    gaps = [b - a for a, b in pairwise(ts)]
    assert len(ts) >= 8 and max(gaps) <= 500 + 1500, gaps
    if "http429" in faults.values():
        ex = next(e for e, f in faults.items() if f == "http429")
        times = [r.ts_ms for r in requests if r.exchange_id == ex and r.book]
        assert len(times) >= 2
        assert all(b - a >= 3000 for a, b in pairwise(times)), times


def test_retry_after_is_honoured_on_every_venue(tmp_path: Path) -> None:
    """A 429 with Retry-After holds back that venue only, whatever ccxt makes of it."""
    limited = [ex for ex in LIVE if ex != "coinbase"]
    clock = FakeClock(NOW)
    with FakeVenueThread(clock=clock) as fv:
        for ex in limited:
            fv.set_fault(ex, "http429", retry_after=3)
        cfg = config(tmp_path, fv, LIVE)
        db = tmp_path / "wis.db"

        async def main() -> None:
            async with SteppedDaemon(cfg, clock, interval_s=0.5) as d:
                assert await d.until(lambda: all(
                    rows(db, "SELECT 1 FROM samples WHERE venue = ?", (ex,)) for ex in LIVE))
                await d.cycle(14)  # 7 s

        asyncio.run(main())
        requests = fv.requests()
    for ex in limited:
        times = [r.ts_ms for r in requests if r.exchange_id == ex and r.book]
        assert len(times) >= 2, ex
        assert all(b - a >= 3000 for a, b in pairwise(times)), (ex, times)
    # The venue that was not limited (a ccxt venue too) kept its 500 ms interval.
    ts = [r["ts"] for r in rows(db, "SELECT ts FROM samples WHERE venue='coinbase' ORDER BY ts")]
    assert len(ts) >= 10 and max(b - a for a, b in pairwise(ts)) <= 500 + 1500, ts


def test_a_venue_hanging_at_start_holds_up_nobody(tmp_path: Path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(20)  # accepts, never answers: load_markets hangs until its timeout
    clock = FakeClock(NOW)
    with FakeVenueThread({"binance": ["BTC/USDT"], "okx": ["BTC/USDT"]}, clock=clock) as fv:
        cfg = config(tmp_path, fv, {"binance": "BTC/USDT", "okx": "BTC/USDT"})
        doc = yaml.safe_load(cfg.read_text())
        doc["sampling"]["timeout"] = "8s"
        doc["venues"][1]["ccxt"]["urls"]["api"]["rest"] = \
            f"http://127.0.0.1:{silent.getsockname()[1]}/okx"
        cfg.write_text(yaml.safe_dump(doc))
        db = tmp_path / "wis.db"

        async def main() -> float:
            """Seconds (real ones) from the start to binance's first sample in the database."""
            started = time.monotonic()
            d = await SteppedDaemon(cfg, clock).__aenter__()
            cycle = asyncio.create_task(d.daemon.sample_all())
            while not rows(db, "SELECT 1 FROM samples WHERE venue='binance'"):
                assert time.monotonic() - started < 30 and not cycle.done()
                await asyncio.sleep(0.05)
            took = time.monotonic() - started
            cycle.cancel()  # okx's fetch still waits for its markets
            await asyncio.gather(cycle, return_exceptions=True)
            await d.crash()
            return took

        try:
            took = asyncio.run(main())
        finally:
            silent.close()
    # binance's first sample did not wait for okx's 8 s load_markets timeout.
    assert took < 6.0, took


def test_load_markets_failure_is_not_fatal(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(NOW)
    with FakeVenueThread({"binance": ["BTC/USDT"], "okx": ["BTC/USDT"]}, clock=clock) as fv:
        cfg = config(tmp_path, fv, {"binance": "BTC/USDT", "okx": "BTC/USDT"})
        doc = yaml.safe_load(cfg.read_text())
        doc["venues"][1]["ccxt"]["urls"]["api"]["rest"] = "http://127.0.0.1:9/okx"  # closed
        cfg.write_text(yaml.safe_dump(doc))
        db = tmp_path / "wis.db"
        run_until(cfg, clock, 0.5, lambda: rows(db, "SELECT 1 FROM samples WHERE venue='okx'")
                  and len(rows(db, "SELECT 1 FROM samples WHERE venue='binance' AND quality"
                               " IN ('', 'thin')")) >= 3)
    okx = rows(db, "SELECT quality, error FROM samples WHERE venue='okx'")
    assert okx and all(r["quality"] == "error" and "markets not loaded" in r["error"]
                       for r in okx)
    assert "cannot load markets" in caplog.text


def test_replay_reports_what_the_live_daemon_fired(tmp_path: Path, shared_data: Path) -> None:
    """The same books through the wire and through `replay` give the same alert events."""
    import json
    import subprocess
    import sys

    path = shared_data / "books" / "binance-BTCUSDT-20240808.jsonl.gz"
    rules = ("rules:\n  - {name: bid-heavy, when: wis >= 0.0, clear: wis < -0.05}\n"
             "  - {name: ask-heavy, when: wis <= -0.25, clear: wis > -0.2}\n")
    (tmp_path / "rules.yaml").write_text(rules)
    clock = FakeClock(NOW)
    with FakeVenueThread({"binance": ["BTC/USDT"]}, clock=clock) as fv:
        fv.serve_recording("binance", "BTC/USDT", path)
        cfg = config(tmp_path, fv, {"binance": "BTC/USDT"}, interval="100ms",
                     extra={"rules": {"include": ["rules.yaml"]}})
        doc = yaml.safe_load(cfg.read_text())
        doc["venues"][0]["depth"] = 1000
        cfg.write_text(yaml.safe_dump(doc))
        db = tmp_path / "wis.db"
        run_until(cfg, clock, 0.1, lambda: len(rows(db, "SELECT ts FROM samples")) >= 120)
        served = list(fv.served[("binance", "BTC/USDT")])
    samples = [r["ts"] for r in rows(db, "SELECT ts FROM samples ORDER BY ts")]
    live = [(r["rule"], r["event"], samples.index(r["ts"])) for r in rows(
        db, "SELECT rule, event, ts FROM alerts ORDER BY id")]
    # The books the daemon sampled, as a recording on a 1 s grid.
    rec = tmp_path / "served.jsonl"
    rec.write_text("".join(json.dumps({"ts": 1_700_000_000_000 + 1000 * i, "venue": "binance",
                                       "symbol": "BTC/USDT", "bids": b, "asks": a}) + "\n"
                           for i, (b, a) in enumerate(served[:len(samples)])))
    out = tmp_path / "replay.db"
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "replay", "-c", str(cfg),
                        "--books", str(rec), "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    replayed = [(x["rule"], x["event"], (x["ts"] - 1_700_000_000_000) // 1000)
                for x in rows(out, "SELECT rule, event, ts FROM alerts ORDER BY id")]
    assert live, "the recording should trip the rules at least once"
    assert replayed == live
    firings = sum(1 for _, e, _ in live if e == "firing")
    assert f"{firings} alert(s) would have fired" in r.stdout


def test_depth_grows_until_the_band_is_covered(tmp_path: Path) -> None:
    """Without a configured depth, the request grows while the venue's book is cut short."""
    import asyncio

    from wis_monitor.settings import Venue
    from wis_monitor.sources.ccxt import CcxtVenue

    tick = 60_000.0 * 1e-5  # 0.1 bps a level: 500 levels to reach 50 bps
    bids = [[60_000.0 - tick * (i + 1), 1.0] for i in range(2000)]
    asks = [[60_000.0 + tick * (i + 1), 1.0] for i in range(2000)]
    with FakeVenueThread({"binance": ["BTC/USDT"]}) as fv:
        fv.set_book("binance", "BTC/USDT", bids, asks)
        venue = Venue(id="b", exchange="binance", symbols=["BTC/USDT"],
                      ccxt={**fv.ccxt_config("binance"), "enableRateLimit": False})

        async def run() -> list[int]:
            src = CcxtVenue(venue, timeout_ms=2000)
            await src.start()
            sizes = []
            for _ in range(5):
                o = await src.fetch("BTC/USDT", 0)
                assert o.book is not None
                sizes.append(int(o.book.bid_px.size))
            await src.close()
            return sizes

        sizes = asyncio.run(run())
    assert sizes == [100, 200, 400, 800, 800]
