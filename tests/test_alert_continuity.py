"""Alert state across restarts and reloads of the real daemon: an outage that outlives a restart,
rules removed while firing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from daemon_harness import DaemonProcess, rows, wait_until
from fakevenue import FakeVenue

pytestmark = pytest.mark.slow


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_config(tmp_path: Path) -> Path:
    """Two ccxt venues whose every request is refused (nothing listens on their port)."""
    dead = FakeVenue(port=closed_port())
    doc = {
        "storage": {"path": str(tmp_path / "wis.db")},
        "sampling": {"interval": "200ms", "timeout": "500ms", "stale_after": "1s"},
        "venues": [{"id": ex, "exchange": ex, "symbols": ["BTC/USDT"],
                    "ccxt": {**dead.ccxt_config(ex), "enableRateLimit": False}}
                   for ex in ("binance", "okx")],
        "channels": {"console": {"url": "console://"}},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def test_a_restart_during_an_outage_neither_resolves_nor_fires_again(tmp_path: Path) -> None:
    cfg = unreachable_config(tmp_path)
    db = tmp_path / "wis.db"
    feed = "SELECT key, event FROM alerts WHERE rule = 'feed-stale' ORDER BY id"
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: len(rows(db, feed)) >= 2, 40), d.log()
    finally:
        assert d.stop() == 0, d.log()
    restart_ms = int(time.time() * 1000)
    d2 = DaemonProcess(cfg)
    try:  # well past stale_after (1 s) of failed fetches after the restart
        assert wait_until(lambda: len(rows(
            db, "SELECT DISTINCT venue FROM samples WHERE ts > ?", (restart_ms + 3000,))) == 2,
            40), d2.log()
    finally:
        assert d2.stop() == 0, d2.log()
    events = sorted((r["key"], r["event"]) for r in rows(db, feed))
    assert events == [("binance:BTC/USDT", "firing"), ("okx:BTC/USDT", "firing")]
    assert len(rows(db, "SELECT * FROM deliveries")) == 2
    assert {r["state"] for r in rows(db, "SELECT state FROM alert_state")} == {"firing"}
