"""Per series, time only moves forward: a sample not newer than its series' last one is dropped
(and counted) before it reaches a window, in the engine that the daemon, replay and the tests
share."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from daemon_harness import DaemonProcess, rows, wait_until
from prometheus_client.parser import text_string_to_metric_families

from wis_monitor.book import make_book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.sources import Observation
from wis_monitor.store import SqliteStore

ASKS = [[100.1, 1.0], [100.2, 1.0]]


def engine(tmp_path: Path) -> Engine:
    (tmp_path / "c.yaml").write_text(
        "sampling: {interval: 1s, stale_after: 5s}\n"
        "metrics:\n  zscore: {window: 1m, min_samples: 2}\n"
        "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n"
        "  - {id: b, exchange: sim, symbols: [X/Y]}\n")
    return Engine(load_config(str(tmp_path / "c.yaml")))


def obs(ts: int, bid_qty: float, venue: str = "a") -> Observation:
    book, flags = make_book([[100.0, bid_qty], [99.9, 1.0]], ASKS)
    return Observation(venue, "X/Y", ts, book, flags, 1.0)


def test_a_sample_not_after_its_series_last_is_dropped_before_any_window(tmp_path: Path) -> None:
    e = engine(tmp_path)
    dropped: list[tuple[str, int, int]] = []
    e.on_out_of_order = lambda o, last: dropped.append((o.venue, o.ts_ms, last))
    for i in range(6):
        e.process([obs(i * 1000, 1.0 + i % 3)])
    window = e.series[("a", "X/Y")].stats.scorers["wis"]
    before = window.baseline()
    # An older sample (a wall-clock step back) and one at the same time as the last.
    batch, samples = e.process([obs(2000, 50.0), obs(5000, 50.0), obs(3000, 2.0, venue="b")])
    assert dropped == [("a", 2000, 5000), ("a", 5000, 5000)]
    assert [(s.venue, s.ts_ms) for s in samples] == [("b", 3000)]  # its own clock
    assert len(batch.samples) == 1
    assert window.baseline() == before
    _, (later,) = e.process([obs(6000, 1.0)])
    assert later.values["age_s"] == 1.0  # since 5000: never negative


def test_the_last_time_of_a_series_survives_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "wis.db"))
    first = engine(tmp_path)
    first.store = store
    for i in range(10):
        batch, _ = first.process([obs(i * 1000, 1.0 + i % 3)])
        store.write(batch)
    again = engine(tmp_path)
    again.store = store
    again.restore(9_500)
    dropped: list[int] = []
    again.on_out_of_order = lambda o, last: dropped.append(last)
    _, samples = again.process([obs(8_000, 40.0), obs(10_000, 2.0)])
    assert dropped == [9_000]
    assert [s.ts_ms for s in samples] == [10_000]
    assert samples[0].values["age_s"] == 1.0
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_daemon_drops_counts_and_warns_once_when_its_clock_is_behind(tmp_path: Path) -> None:
    """The database holds samples an hour ahead of the clock (the clock was stepped back):
    the daemon drops every sample until its clock passes them, counts each in /metrics and
    warns once per series."""
    db, port = tmp_path / "wis.db", free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {{path: {db}}}\nsampling: {{interval: 200ms}}\n"
                   "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT]}\n"
                   f"http: {{listen: '127.0.0.1:{port}'}}\n")
    d = DaemonProcess(cfg, args=("--once",))
    assert d.wait() == 0, d.log()
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE samples SET ts = ts + 3600000")
    ahead = {r["ts"] for r in rows(db, "SELECT ts FROM samples")}
    d = DaemonProcess(cfg)
    try:
        def dropped() -> float:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=5).read()
            except OSError:
                return 0.0  # not listening yet
            return sum(s.value for f in text_string_to_metric_families(body.decode())
                       if f.name == "wis_samples_dropped" for s in f.samples
                       if s.name.endswith("_total") and s.labels["reason"] == "out_of_order")
        assert wait_until(lambda: dropped() >= 6), d.log()
    finally:
        assert d.stop() == 0
    log = d.log()
    warnings = [x for x in log.splitlines() if "not after" in x]
    assert len(warnings) == 2, log  # once per series
    assert {r["ts"] for r in rows(db, "SELECT ts FROM samples")} == ahead  # nothing logged
