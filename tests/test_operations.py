"""What an SRE uses: status, silences, /metrics and /healthz, the watchdog, retention."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, NotifySocket, SteppedDaemon, rows, wait_until
from prometheus_client.parser import text_string_to_metric_families

from wis_monitor.daemon import Daemon
from wis_monitor.store import SqliteStore

CONFIG = """\
storage: {{path: {db}}}
sampling: {{interval: 200ms}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {{seed: 3}}}}
channels:
  console: {{url: "console://"}}
http: {{listen: "127.0.0.1:{port}"}}
rules:
  include: [rules.yaml]
"""
RULES = """\
rules:
  - name: always
    when: mid > 0
    channels: [console]
    labels: {{desk: {desk}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(tmp_path: Path, desk: str = "spot") -> tuple[Path, Path, int]:
    db, port = tmp_path / "wis.db", free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db, port=port))
    (tmp_path / "rules.yaml").write_text(RULES.format(desk=desk))
    return cfg, db, port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=60)


def test_metrics_healthz_and_status_while_running(tmp_path: Path) -> None:
    cfg, db, port = setup(tmp_path)

    def get(path: str) -> tuple[int, bytes]:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
        return answer.status, answer.read()

    async def main() -> None:
        async with SteppedDaemon(cfg) as d:
            await d.daemon.start_http()
            assert await d.until(lambda: len(rows(db, "SELECT * FROM samples")) >= 6)
            assert await d.until(lambda: rows(db, "SELECT * FROM deliveries WHERE status='sent'"))
            _, body = await asyncio.to_thread(get, "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            for name in ("wis_samples", "wis_fetch_errors", "wis_fetch_latency_seconds",
                         "wis_score", "wis_zscore", "wis_alerts_firing", "wis_deliveries",
                         "wis_outbox_backlog", "wis_venue_up", "wis_store_writable"):
                assert name in families, sorted(families)
            firing = {s.labels["rule"]: s.value for s in families["wis_alerts_firing"].samples}
            assert firing == {"always": 2.0}
            status, body = await asyncio.to_thread(get, "/healthz")
            assert status == 200 and b'"ok": true' in body
            # `status` reads the database of a running daemon
            status_cmd = await asyncio.to_thread(cli, "status", "-c", str(cfg))
            assert status_cmd.returncode == 0, status_cmd.stderr
            assert "simex" in status_cmd.stdout and "BTC/USDT" in status_cmd.stdout
            assert "always simex:BTC/USDT" in status_cmd.stdout

    asyncio.run(main())


def test_silence_records_silenced_deliveries(tmp_path: Path) -> None:
    cfg, db, _ = setup(tmp_path, desk="spot")
    from wis_monitor.store import SqliteStore

    SqliteStore(str(db)).close()  # the database a first start creates (tools never create one)
    added = cli("silence", "add", "-c", str(cfg), "--rule", "alw*", "--match", "symbol=ETH/*",
                "--match", "desk=spot", "--for", "1h", "--reason", "maintenance")
    assert added.returncode == 0, added.stderr
    listed = cli("silence", "list", "-c", str(cfg))
    assert "maintenance" in listed.stdout and "alw*" in listed.stdout
    d = DaemonProcess(cfg, args=("--once",))
    assert d.wait() == 0, d.log()
    got = {r["key"]: r["status"] for r in rows(
        db, "SELECT a.key, d.status FROM deliveries d JOIN alerts a ON a.id = d.alert_id")}
    assert got == {"simex:ETH/USDT": "silenced", "simex:BTC/USDT": "sent"}
    assert cli("silence", "expire", "-c", str(cfg), "1").returncode == 0
    assert "no active silences" in cli("silence", "list", "-c", str(cfg)).stdout
    assert cli("silence", "expire", "-c", str(cfg), "1").returncode == 2


def test_bad_silence_input_is_a_clear_error(tmp_path: Path) -> None:
    cfg, _, _ = setup(tmp_path)
    r = cli("silence", "add", "-c", str(cfg), "--for", "forever", "--reason", "x")
    assert r.returncode == 2 and "bad duration" in r.stderr and "Traceback" not in r.stderr
    r = cli("silence", "add", "-c", str(cfg), "--for", "1h", "--match", "venue", "--reason", "x")
    assert r.returncode == 2 and "KEY=GLOB" in r.stderr


def test_wedged_loop_stops_watchdog(tmp_path: Path, monkeypatch: object) -> None:
    """Block the real daemon's event loop; the WATCHDOG pings must stop, and resume after."""
    cfg, _, _ = setup(tmp_path)
    sock = NotifySocket(tmp_path / "n.sock")
    import os

    os.environ["NOTIFY_SOCKET"] = str(sock.path)
    os.environ["WATCHDOG_USEC"] = "400000"
    loop = asyncio.new_event_loop()
    daemon_box: list[Daemon] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> int:
            d = Daemon(str(cfg), duration_s=8.0)
            daemon_box.append(d)
            return await d.run()

        loop.run_until_complete(main())

    try:
        t = threading.Thread(target=run, daemon=True)
        t.start()
        assert sock.wait_for("READY=1"), "daemon did not start"
        assert sock.wait_for("WATCHDOG=1", after=len(sock.drain()))
        loop.call_soon_threadsafe(time.sleep, 2.0)  # wedge the loop
        time.sleep(0.3)
        mark = time.monotonic()
        sock.drain()
        time.sleep(1.2)
        sock.drain()
        pings = [ts for ts, m in sock.messages if m == "WATCHDOG=1" and ts > mark + 0.1]
        assert pings == [], "watchdog pinged while the loop was wedged"
        assert sock.wait_for("WATCHDOG=1", after=len(sock.drain()), timeout=5)
        t.join(15)
        assert not t.is_alive()
    finally:
        loop.close()
        del os.environ["NOTIFY_SOCKET"]
        del os.environ["WATCHDOG_USEC"]
        sock.close()


def test_retention_prunes_old_rows(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "r.db"))
    now = int(time.time() * 1000)
    store.executemany(
        "INSERT INTO samples (ts, venue, symbol, quality) VALUES (?, 'v', 's', '')",
        [(now - 40 * 86_400_000,), (now - 1000,)])
    assert store.prune(now - 30 * 86_400_000) == 1
    assert [r["ts"] for r in store.query("SELECT ts FROM samples")] == [now - 1000]
    store.maintain()
    store.close()
    assert oct((tmp_path / "r.db").stat().st_mode & 0o777) == "0o600"


def test_sigterm_exits_zero_and_flushes(tmp_path: Path) -> None:
    cfg, db, _ = setup(tmp_path)
    d = DaemonProcess(cfg)
    assert wait_until(lambda: len(rows(db, "SELECT * FROM samples")) >= 4), d.log()
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    log = d.log()
    assert "received SIGTERM: stopping" in log and "stopped" in log and "Traceback" not in log
    assert rows(db, "SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")[0]["n"] == 0


def test_busy_database_is_reported_and_survived(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer holds the database: the daemon says so (log, STATUS=, console ops
    alert), keeps what it could not write, and writes it once the lock is gone. The watchdog
    pings go on: a restart would not help."""
    import sqlite3

    cfg, db, _ = setup(tmp_path)
    caplog.set_level(logging.INFO, "wis_monitor")
    sock = NotifySocket(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))

    async def main() -> None:
        async with SteppedDaemon(cfg, interval_s=1.0) as d:
            await d.cycle()
            blocker = sqlite3.connect(db, isolation_level=None, timeout=30)
            blocker.execute("BEGIN EXCLUSIVE")
            blocked_ms = d.clock.now_ms()
            assert await d.until(lambda: "cannot write samples" in caplog.text, 5)
            assert any("STORE ERROR" in m for m in sock.drain() if m.startswith("STATUS="))
            await d.cycle(3)
            assert d.daemon._healthy()  # what lets WATCHDOG=1 go on
            released_ms = d.clock.now_ms()
            blocker.execute("ROLLBACK")
            blocker.close()
            assert await d.until(lambda: "database writable again" in caplog.text, 10)
            # The samples taken while the database was locked were written afterwards.
            held = rows(db, "SELECT ts FROM samples WHERE ts > ? AND ts < ?",
                        (blocked_ms + 1500, released_ms - 200))
            assert len(held) >= 3, (blocked_ms, released_ms)
            before = len(rows(db, "SELECT ts FROM samples"))
            assert await d.until(lambda: len(rows(db, "SELECT ts FROM samples")) > before + 3)

    asyncio.run(main())
    sock.close()
    out = capsys.readouterr().out
    assert "[CRITICAL] wis-monitor database error" in out
    assert "database is busy" in caplog.text


def test_json_log_format(tmp_path: Path) -> None:
    import json

    cfg, _, _ = setup(tmp_path)
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "--log-format", "json", "run", "-c",
                        str(cfg), "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "message"} <= set(x) for x in lines)
    assert any("config" in x["message"] for x in lines)


def test_journal_priority_prefix(tmp_path: Path) -> None:
    import os

    cfg, _, _ = setup(tmp_path)
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "JOURNAL_STREAM": "8:1234"})
    assert r.returncode == 0
    assert r.stderr.splitlines()[0].startswith("<6>config ")
