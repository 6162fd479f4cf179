"""The daemon takes a new positions file when it changes (polled by its housekeeping) and at
SIGHUP; a bad one is refused, said once, and the last good positions stay."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from daemon_harness import DaemonProcess, SteppedDaemon, rows, wait_until
from testclock import NOW

CONFIG = """\
storage: {{path: {db}, record_books: true}}
sampling: {{interval: 200ms}}
positions: {positions}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {{seed: 3}}}}
feed_stale: {{enabled: false}}
"""
LATEST = ("SELECT s.ts, s.symbol, s.unwind_bps, b.bids, b.asks FROM samples s JOIN books b"
          " ON b.ts = s.ts AND b.venue = s.venue AND b.symbol = s.symbol"
          " WHERE s.symbol = ? ORDER BY s.ts DESC LIMIT 1")


def write(path: Path, text: str, mtime_s: int) -> None:
    """The file's new version, with a modification time of the test's choosing."""
    path.write_text(text)
    os.utime(path, (mtime_s, mtime_s))


def levels(blob: bytes) -> list[list[float]]:
    return np.frombuffer(zlib.decompress(blob), dtype="<f8").reshape(-1, 2).tolist()


def latest_cost(db: Path, symbol: str, size: float) -> tuple[float | None, float | None]:
    """The newest sample's unwind_bps and the reference walk's on its recorded book."""
    (row,) = rows(db, LATEST, (symbol,))
    bids, asks = levels(row["bids"]), levels(row["asks"])
    notional = abs(size) * ref.mid(bids, asks)
    return row["unwind_bps"], ref.impact_bps(bids, asks, notional, size < 0)


def test_a_changed_positions_file_is_taken_and_a_bad_one_keeps_the_last_good(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, positions = tmp_path / "wis.db", tmp_path / "positions.yaml"
    write(positions, "- {venue: simex, symbol: BTC/USDT, size: 2}\n", NOW // 1000)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db, positions="positions.yaml"))
    caplog.set_level(logging.INFO, logger="wis_monitor")

    async def main() -> None:
        async with SteppedDaemon(cfg) as d:
            await d.cycle(2)
            got, want = latest_cost(db, "BTC/USDT", 2.0)
            assert want is not None and got == pytest.approx(want, rel=1e-9)
            assert latest_cost(db, "ETH/USDT", 1.0)[0] is None  # no position there

            write(positions, "- {venue: simex, symbol: BTC/USDT, size: -5}\n"
                  "- {venue: simex, symbol: ETH/USDT, size: 30}\n", NOW // 1000 + 60)
            await d.cycle(2)
            assert "positions.yaml reloaded: 2 position(s)" in caplog.text
            for symbol, size in (("BTC/USDT", -5.0), ("ETH/USDT", 30.0)):
                got, want = latest_cost(db, symbol, size)
                assert want is not None and got == pytest.approx(want, rel=1e-9)

            write(positions, "- {venue: simex, symbol: BTC/USDT, size: 1}\n"
                  "- {venue: simex, symbol: BTC/USDT, size: 3}\n", NOW // 1000 + 120)
            await d.cycle(3)
            assert caplog.text.count(f"positions rejected: {positions}:2: \"simex:BTC/USDT\" "
                                     "has a position already (line 1)") == 1  # said once
            assert "the last good positions are kept" in caplog.text
            got, want = latest_cost(db, "BTC/USDT", -5.0)
            assert want is not None and got == pytest.approx(want, rel=1e-9)

            positions.unlink()  # gone: refused too
            await d.cycle(2)
            assert f"positions rejected: {positions}: cannot read file" in caplog.text
            assert d.daemon.rt is not None
            assert dict(d.daemon.rt.engine.positions.sizes) == {
                ("simex", "BTC/USDT"): -5.0, ("simex", "ETH/USDT"): 30.0}

            write(positions, "- {venue: simex, symbol: ETH/USDT, size: -7}\n",
                  NOW // 1000 + 180)
            await d.cycle(2)
            assert latest_cost(db, "BTC/USDT", 1.0)[0] is None
            got, want = latest_cost(db, "ETH/USDT", -7.0)
            assert want is not None and got == pytest.approx(want, rel=1e-9)

    asyncio.run(main())


def test_sighup_rereads_the_positions_and_refuses_a_bad_file(tmp_path: Path) -> None:
    """The real process, with real signals."""
    db, positions = tmp_path / "wis.db", tmp_path / "positions.csv"
    write(positions, "venue,symbol,size\nsimex,BTC/USDT,2\n", NOW // 1000)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db, positions="positions.csv"))
    proc = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: rows(db, "SELECT 1 FROM samples WHERE unwind_bps IS NOT NULL"
                                       " AND symbol = 'ETH/USDT'") == []
                          and rows(db, "SELECT 1 FROM samples WHERE unwind_bps IS NOT NULL")
                          ), proc.log()
        write(positions, "venue,symbol,size\nsimex,XRP/USDT,2\n", NOW // 1000 + 60)
        proc.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload rejected: 1 problem(s)" in proc.log()), proc.log()
        assert f'{positions}:2: "simex:XRP/USDT" is not a series the configuration samples' \
            in proc.log()
        write(positions, "venue,symbol,size\nsimex,ETH/USDT,-30\n", NOW // 1000 + 120)
        proc.signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded " in proc.log()), proc.log()
        assert wait_until(lambda: rows(db, "SELECT 1 FROM samples WHERE unwind_bps IS NOT NULL"
                                       " AND symbol = 'ETH/USDT'")), proc.log()
        got, want = latest_cost(db, "ETH/USDT", -30.0)
        assert want is not None and got == pytest.approx(want, rel=1e-9)
    finally:
        assert proc.stop() == 0
    assert "Traceback" not in proc.log()
