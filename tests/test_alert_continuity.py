"""Alert state across restarts and reloads of the daemon (in this process, on a fake clock): an
outage that outlives a restart, rules removed while firing, a silence that ends."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from daemon_harness import SteppedDaemon, rows
from fakevenue import FakeVenue
from testclock import NOW

from wis_monitor.clock import FakeClock


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
    clock = FakeClock(NOW)

    async def main() -> None:
        async with SteppedDaemon(cfg, clock) as d:
            assert await d.until(lambda: len(rows(db, feed)) >= 2)
        restart_ms = clock.now_ms()
        async with SteppedDaemon(cfg, clock) as d2:
            # well past stale_after (1 s) of failed fetches after the restart
            assert await d2.until(lambda: len(rows(
                db, "SELECT DISTINCT venue FROM samples WHERE ts > ?", (restart_ms + 3000,))) == 2)

    asyncio.run(main())
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


def test_a_rule_renamed_while_firing_resolves_on_reload(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = sim_config(tmp_path)
    printed: list[str] = []

    async def main() -> None:
        async with SteppedDaemon(cfg) as d:
            assert await d.until(lambda: len(firing(db, "always")) == 2)
            (tmp_path / "rules.yaml").write_text(RULE.format(name="always-renamed"))
            assert await d.reload()
            assert await d.until(lambda: len(firing(db, "always-renamed")) == 2)
            assert await d.until(lambda: len(rows(db, RESOLVED)) == 2)
            # The message says why (console:// prints it to the daemon's output).
            assert await d.until(lambda: printed.append(capsys.readouterr().out) or "".join(
                printed).count("Why: rule removed from the configuration") == 2)

    asyncio.run(main())
    assert_resolved_saying_why(db)


def test_a_rule_removed_while_stopped_resolves_at_the_next_start(tmp_path: Path) -> None:
    cfg, db = sim_config(tmp_path)
    clock = FakeClock(NOW)

    async def main() -> None:
        async with SteppedDaemon(cfg, clock) as d:
            assert await d.until(lambda: len(firing(db, "always")) == 2)
        (tmp_path / "rules.yaml").write_text("rules: []\n")
        async with SteppedDaemon(cfg, clock) as d2:
            assert await d2.until(lambda: len(rows(db, RESOLVED)) == 2)

    asyncio.run(main())
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
    clock = FakeClock(NOW)
    store = SqliteStore(str(db))  # as `silence add --rule always --for 1h` does
    store.add_silence("always", {}, NOW, NOW + 3_600_000, "maintenance", "test")
    store.close()
    events = ("SELECT a.key, a.event, d.channel, d.status FROM alerts a JOIN deliveries d"
              " ON d.alert_id = a.id ORDER BY a.id, d.channel")

    async def main() -> None:
        async with SteppedDaemon(cfg, clock) as d:
            assert await d.until(lambda: len(rows(db, events)) == 2)
            assert {r["status"] for r in rows(db, events)} == {"silenced"}
            store = SqliteStore(str(db))
            assert store.expire_silence(1, clock.now_ms())
            store.close()
            assert await d.until(lambda: len(rows(db, events)) == 4)
            # Resolve them, with a channel the firing never went to added to the rule.
            (tmp_path / "rules.yaml").write_text(
                "rules:\n  - {name: always, when: mid < 0, channels: [console, desk]}\n")
            assert await d.reload()
            assert await d.until(lambda: len(rows(db, events)) == 6)
            assert await d.until(lambda: not rows(
                db, "SELECT 1 FROM deliveries WHERE status = 'pending'"))

    asyncio.run(main())
    got = [(r["key"].split(":")[1], r["event"], r["channel"], r["status"])
           for r in rows(db, events)]
    assert sorted(got) == sorted(
        [(sym, "firing", "console", "silenced") for sym in ("BTC/USDT", "ETH/USDT")]
        + [(sym, "firing", "console", "sent") for sym in ("BTC/USDT", "ETH/USDT")]
        + [(sym, "resolved", "console", "sent") for sym in ("BTC/USDT", "ETH/USDT")])
