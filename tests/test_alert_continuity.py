"""Alert state across restarts and reloads of the real daemon: an outage that outlives a restart,
rules removed while firing."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
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


SIM = """\
storage: {{path: {db}}}
sampling: {{interval: 200ms}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {{seed: 3}}}}
channels:
  console: {{url: "console://", group_by: []}}
feed_stale: {{enabled: false}}
rules:
  include: [rules.yaml]
"""
RULE = "rules:\n  - {{name: {name}, when: mid > 0, channels: [console]}}\n"
RESOLVED = ("SELECT a.key, a.details, d.status FROM alerts a JOIN deliveries d"
            " ON d.alert_id = a.id WHERE a.rule = 'always' AND a.event = 'resolved' ORDER BY a.key")


def sim_config(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "wis.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(SIM.format(db=db))
    (tmp_path / "rules.yaml").write_text(RULE.format(name="always"))
    return cfg, db


def firing(db: Path, rule: str) -> list[dict[str, object]]:
    return rows(db, "SELECT key FROM alert_state WHERE rule = ? AND state = 'firing'", (rule,))


def assert_resolved_saying_why(db: Path) -> None:
    got = rows(db, RESOLVED)
    assert [r["key"] for r in got] == ["simex:BTC/USDT", "simex:ETH/USDT"], got
    for r in got:
        assert '"reason": "rule removed from the configuration"' in str(r["details"])
        assert r["status"] in ("pending", "sent")
    assert not firing(db, "always")


def test_a_rule_renamed_while_firing_resolves_on_reload(tmp_path: Path) -> None:
    cfg, db = sim_config(tmp_path)
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: len(firing(db, "always")) == 2, 30), d.log()
        (tmp_path / "rules.yaml").write_text(RULE.format(name="always-renamed"))
        d.signal(signal.SIGHUP)
        assert wait_until(lambda: len(firing(db, "always-renamed")) == 2, 30), d.log()
        assert wait_until(lambda: len(rows(db, RESOLVED)) == 2, 10), d.log()
        # The message says why (console:// prints it to the daemon's output).
        assert wait_until(
            lambda: d.log().count("Why: rule removed from the configuration") == 2, 10), d.log()
    finally:
        assert d.stop() == 0, d.log()
    assert_resolved_saying_why(db)


def test_a_rule_removed_while_stopped_resolves_at_the_next_start(tmp_path: Path) -> None:
    cfg, db = sim_config(tmp_path)
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: len(firing(db, "always")) == 2, 30), d.log()
    finally:
        assert d.stop() == 0, d.log()
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    d2 = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: len(rows(db, RESOLVED)) == 2, 30), d2.log()
    finally:
        assert d2.stop() == 0, d2.log()
    assert_resolved_saying_why(db)
    status = subprocess.run([sys.executable, "-m", "wis_monitor", "status", "-c", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert "firing: none" in status.stdout, status.stdout + status.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=60)


def test_a_silence_ending_while_firing_announces_the_alert(tmp_path: Path) -> None:
    """`firing` goes out when the silence ends; `resolved` only where the firing went."""
    from wis_monitor.store import SqliteStore

    cfg, db = sim_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(
        '  console: {url: "console://", group_by: []}\n',
        '  console: {url: "console://", group_by: []}\n'
        '  desk: {url: "console://", group_by: []}\n'))
    SqliteStore(str(db)).close()
    added = cli("silence", "add", "-c", str(cfg), "--rule", "always", "--for", "1h",
                "--reason", "maintenance")
    assert added.returncode == 0, added.stderr
    events = ("SELECT a.key, a.event, d.channel, d.status FROM alerts a JOIN deliveries d"
              " ON d.alert_id = a.id ORDER BY a.id, d.channel")
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: len(rows(db, events)) == 2, 30), d.log()
        assert {r["status"] for r in rows(db, events)} == {"silenced"}
        assert cli("silence", "expire", "-c", str(cfg), "1").returncode == 0
        assert wait_until(lambda: len(rows(db, events)) == 4, 15), d.log()
        # Resolve them, with a channel the firing never went to added to the rule.
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - {name: always, when: mid < 0, channels: [console, desk]}\n")
        d.signal(signal.SIGHUP)
        assert wait_until(lambda: len(rows(db, events)) == 6, 15), d.log()
        assert wait_until(lambda: not rows(
            db, "SELECT 1 FROM deliveries WHERE status = 'pending'"), 15), d.log()
    finally:
        assert d.stop() == 0, d.log()
    got = [(r["key"].split(":")[1], r["event"], r["channel"], r["status"])
           for r in rows(db, events)]
    assert sorted(got) == sorted(
        [(sym, "firing", "console", "silenced") for sym in ("BTC/USDT", "ETH/USDT")]
        + [(sym, "firing", "console", "sent") for sym in ("BTC/USDT", "ETH/USDT")]
        + [(sym, "resolved", "console", "sent") for sym in ("BTC/USDT", "ETH/USDT")])
