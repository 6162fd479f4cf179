"""The daemon: sd_notify and signals on the real process; reload and restart continuity in
this process on a fake clock."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, NotifySocket, SteppedDaemon, rows
from testclock import NOW

from wis_monitor.clock import FakeClock

CONFIG = """\
storage: {{path: {db}}}
sampling: {{interval: 200ms, timeout: 1s}}
metrics:
  zscore: {{window: 1m, min_samples: 5}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {{seed: 3}}}}
  - {{id: simperp, exchange: sim, symbols: [BTC/USDT:USDT], sim: {{seed: 5}}}}
channels:
  console: {{url: "console://"}}
rules:
  include: [rules.yaml]
"""

RULES = """\
rules:
  - name: always
    when: mid > 0
    for: {for_}
    channels: [console]
"""


def setup(tmp_path: Path, for_: str = "0s") -> tuple[Path, Path]:
    db = tmp_path / "wis.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db))
    (tmp_path / "rules.yaml").write_text(RULES.format(for_=for_))
    return cfg, db


def count(db: Path, where: str = "1") -> int:
    r = rows(db, f"SELECT count(*) AS n FROM samples WHERE {where}")
    return int(r[0]["n"]) if r else 0


@pytest.mark.slow
def test_run_once_samples_every_series(tmp_path: Path) -> None:
    cfg, db = setup(tmp_path)
    d = DaemonProcess(cfg, args=("--once",))
    assert d.wait(60) == 0, d.log()
    got = rows(db, "SELECT venue, symbol, quality, wis FROM samples ORDER BY venue, symbol")
    assert [(r["venue"], r["symbol"]) for r in got] == [
        ("simex", "BTC/USDT"), ("simex", "ETH/USDT"), ("simperp", "BTC/USDT:USDT")]
    assert all(r["quality"] in ("", "thin") and r["wis"] is not None for r in got)
    assert len(rows(db, "SELECT * FROM alerts WHERE event = 'firing'")) == 3


@pytest.mark.slow
def test_notify_protocol_reload_and_stop(tmp_path: Path) -> None:
    cfg, _ = setup(tmp_path)
    sock = NotifySocket(tmp_path / "notify.sock")
    d = DaemonProcess(cfg, notify=sock, env={"WATCHDOG_USEC": "1000000"})
    try:
        assert sock.wait_for("READY=1"), d.log()
        n = len(sock.drain())
        assert sock.wait_for("WATCHDOG=1", after=n), d.log()
        assert any(m.startswith("STATUS=") and "venues up" in m for m in sock.drain())
        n = len(sock.drain())
        d.signal(signal.SIGHUP)
        assert sock.wait_for("RELOADING=1", after=n), d.log()
        assert sock.wait_for("READY=1", after=n + 1), d.log()
    finally:
        n = len(sock.drain())
        code = d.stop()
    assert code == 0, d.log()
    assert any(m == "STOPPING=1" for m in sock.drain()[n:])
    sock.close()
    assert "Traceback" not in d.log()


def test_bad_reload_keeps_old_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg, db = setup(tmp_path)

    async def main() -> None:
        async with SteppedDaemon(cfg) as d:
            assert await d.until(lambda: count(db) >= 6)
            cfg.write_text(cfg.read_text().replace("interval: 200ms", "interval: fast"))
            assert not await d.reload()
            before = count(db)
            await d.cycle(2)
            assert count(db) >= before + 6, "sampling stopped after bad reload"

    asyncio.run(main())
    assert "reload rejected" in caplog.text
    assert f"{cfg}:2: " in caplog.text and "bad duration" in caplog.text, caplog.text


def test_valid_reload_adds_rule_and_keeps_windows(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cfg, db = setup(tmp_path)

    async def main() -> int:
        async with SteppedDaemon(cfg) as d:
            assert await d.until(lambda: count(db, "wis_z IS NOT NULL") >= 3)
            # Same reload: a new rule, an edited firing rule (runbook), a new WIS variant.
            (tmp_path / "rules.yaml").write_text(RULES.format(for_="0s") + """\
    runbook: https://wiki.example/always
  - name: also
    when: spread_bps >= 0
    channels: [console]
""")
            cfg.write_text(cfg.read_text().replace(
                "metrics:\n", "metrics:\n  wis_variants: {wis_flat: {kernel: flat}}\n"))
            t0 = d.clock.now_ms()
            assert await d.reload()
            assert await d.until(lambda: rows(db, "SELECT * FROM alerts WHERE rule = 'also'"))
            assert await d.until(lambda: count(db, "wis_flat IS NOT NULL") >= 3)
            return t0

    t0 = asyncio.run(main())
    assert "cannot write" not in caplog.text
    # Windows carried over: every series' first sample after the reload has a z-score.
    after = rows(db, "SELECT venue, symbol, min(ts) AS ts FROM samples WHERE ts >= ?"
                 " GROUP BY venue, symbol", (t0,))
    assert len(after) == 3
    for r in after:
        first = rows(db, "SELECT wis_z FROM samples WHERE venue=? AND symbol=? AND ts=?",
                     (r["venue"], r["symbol"], r["ts"]))
        assert first[0]["wis_z"] is not None, r
    # The rule that was firing (only its runbook changed) did not fire again.
    assert len(rows(db, "SELECT * FROM alerts WHERE rule='always' AND event='firing'")) == 3


def test_kill9_restart_keeps_zscores_and_alerts(tmp_path: Path) -> None:
    cfg, db = setup(tmp_path)
    clock = FakeClock(NOW)

    async def main() -> int:
        d = await SteppedDaemon(cfg, clock).__aenter__()
        assert await d.until(lambda: count(db, "wis_z IS NOT NULL") >= 6)
        await d.crash()
        restart_ms = clock.now_ms()
        async with SteppedDaemon(cfg, clock) as d2:
            assert await d2.until(lambda: count(db, f"ts >= {restart_ms}") >= 6)
        return restart_ms

    restart_ms = asyncio.run(main())
    first = rows(db, "SELECT venue, symbol, wis_z FROM samples WHERE ts >= ? GROUP BY venue, symbol"
                 " HAVING ts = min(ts)", (restart_ms,))
    assert len(first) == 3 and all(r["wis_z"] is not None for r in first), first
    firing = rows(db, "SELECT key, count(*) AS n FROM alerts WHERE event='firing' GROUP BY key")
    assert firing and all(r["n"] == 1 for r in firing), firing


def test_kill9_keeps_pending_timer(tmp_path: Path) -> None:
    cfg, db = setup(tmp_path, for_="6s")
    clock = FakeClock(NOW)

    async def main() -> dict[str, int]:
        d = await SteppedDaemon(cfg, clock).__aenter__()
        assert await d.until(lambda: rows(db, "SELECT * FROM alert_state WHERE state='pending'"))
        await d.cycle(17)  # 3.4 s
        await d.crash()
        pending = {r["key"]: r["since"] for r in rows(db, "SELECT key, since FROM alert_state")}
        clock.advance(1.0)  # restarted well within the 6 s: the timer must not start over
        async with SteppedDaemon(cfg, clock) as d2:
            assert await d2.until(
                lambda: len(rows(db, "SELECT * FROM alerts WHERE event='firing'")) == 3)
        return pending

    pending = asyncio.run(main())
    for r in rows(db, "SELECT key, ts FROM alerts WHERE event='firing'"):
        # Fired 6 s after the pending timer started before the kill, never 6 s after the
        # restart, which would be >= 10.4 s.
        assert 6000 <= r["ts"] - pending[r["key"]] < 6500, (r, pending)
