"""The PostgreSQL store against a real server: its migrations under concurrent starts, a
fenced write and a takeover in concurrent transactions, the reconnection after a server
restart, and messages that never show the password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver import PASSWORD, Server

from wis_monitor.errors import Fenced, StoreError
from wis_monitor.store import Batch, SampleRow
from wis_monitor.store.open import open_store
from wis_monitor.store.pgconnect import masked_url
from wis_monitor.store.pgschema import NAMES
from wis_monitor.store.postgres import PostgresStore

T0 = 1_700_000_000_000
TTL = 15_000


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_until_blocked(url: str, thread: threading.Thread) -> None:
    """Poll until a statement of this database waits on a lock (the other transaction's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(500):
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                             " current_database() AND wait_event_type = 'Lock'").fetchone()
            if n and n[0]:
                return
            assert thread.is_alive()
            time.sleep(0.01)
    raise AssertionError("the second transaction never waited for the first")


def test_a_fenced_write_waits_for_a_takeover_in_progress_and_is_then_refused(
        pg_url: str) -> None:
    store = PostgresStore(pg_url)
    held = store.acquire("venue:a", "i1", T0, TTL)
    assert held is not None
    takeover = psycopg.connect(pg_url)  # another instance, mid-takeover
    takeover.execute("UPDATE leases SET owner = 'i2', token = token + 1 WHERE name = 'venue:a'")
    batch = Batch(samples=[SampleRow(T0, "a", "X/Y", {"mid": 1.0})],
                  fence={"venue:a": held.token})
    thread, out = _in_thread(lambda: store.write(batch))
    _wait_until_blocked(pg_url, thread)
    takeover.commit()
    thread.join(10)
    assert isinstance(out.get("error"), Fenced), out
    assert store.sample_span() is None
    takeover.close()
    store.close()


def test_a_takeover_waits_for_a_fenced_write_in_progress_which_commits(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    held = store.acquire("venue:a", "i1", T0, TTL)
    assert held is not None
    writer = psycopg.connect(pg_url)  # the holder, mid-write: its fence checked, not committed
    assert writer.execute("SELECT token FROM leases WHERE name = 'venue:a' FOR SHARE"
                          ).fetchone() == (held.token,)
    writer.execute("INSERT INTO samples (ts, venue, symbol, mid) VALUES (%s, 'a', 'X/Y', 1.0)",
                   [T0])
    successor = PostgresStore(pg_url)
    thread, out = _in_thread(lambda: successor.acquire("venue:a", "i2", T0 + 20_000, TTL,
                                                       expect=held))
    _wait_until_blocked(pg_url, thread)
    writer.commit()
    thread.join(10)
    assert out["value"].owner == "i2" and out["value"].token == held.token + 1
    assert store.sample_span() == (T0, T0)  # written before the lease changed hands
    with pytest.raises(Fenced):
        store.write(Batch(samples=[SampleRow(T0 + 1, "a", "X/Y", {})],
                          fence={"venue:a": held.token}))
    writer.close()
    successor.close()
    store.close()


def test_after_a_server_restart_one_call_fails_and_the_next_reconnects(
        pg_server: Server, pg_url: str) -> None:
    """The call that finds the connection cut raises StoreError (the daemon holds its batch
    and retries); the next call connects again by itself."""
    store = PostgresStore(pg_url)
    store.write(Batch(samples=[SampleRow(T0, "a", "X/Y", {"mid": 1.0})]))
    pg_server.restart()
    with pytest.raises(StoreError, match="connection to PostgreSQL was lost") as lost:
        store.write(Batch(samples=[SampleRow(T0 + 1, "a", "X/Y", {"mid": 2.0})]))
    assert PASSWORD not in str(lost.value) and "***" in str(lost.value)
    store.write(Batch(samples=[SampleRow(T0 + 1, "a", "X/Y", {"mid": 2.0})]))
    assert store.sample_span() == (T0, T0 + 1)
    store.close()


def test_errors_name_the_database_without_its_password(pg_url: str) -> None:
    wrong = pg_url.replace(PASSWORD, "not-the-password")
    with pytest.raises(StoreError) as refused:
        open_store(wrong)
    message = str(refused.value)
    assert "cannot connect" in message and "password authentication failed" in message
    assert "not-the-password" not in message and message.startswith("postgresql://wis:***@")
    assert masked_url("postgresql://u:p%40ss@h/db?password=x&sslmode=require") == (
        "postgresql://u:***@h/db?password=***&sslmode=require")
    with pytest.raises(StoreError, match="no wis-monitor tables"):
        open_store(pg_url, readonly=True)


def test_instances_starting_together_migrate_the_database_once(pg_url: str) -> None:
    threads = [_in_thread(lambda: PostgresStore(pg_url, variants=["wis_fast"]))
               for _ in range(4)]
    for t, _ in threads:
        t.join(30)
    stores = [out["value"] for _, out in threads]
    assert all(isinstance(s, PostgresStore) for s in stores), threads
    assert [r["name"] for r in stores[0].query("SELECT name FROM wis_migrations ORDER BY 1")
            ] == NAMES
    assert {"wis_fast", "wis_fast_z", "ofi"} <= stores[0].sample_columns()
    for s in stores:
        s.close()
    reader = open_store(pg_url, readonly=True)
    assert reader.shared and reader.path.startswith("postgresql://wis:***@")
    with pytest.raises(StoreError, match="read-only"):
        reader.write(Batch(samples=[SampleRow(T0, "a", "X/Y", {})]))
    reader.close()


def test_a_database_of_a_newer_release_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO wis_migrations (name) VALUES ('0099_from_the_future')")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"0099_from_the_future.*newer release"):
            PostgresStore(pg_url, readonly=readonly)


def test_large_reads_stream_while_the_connection_serves_other_calls(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.write(Batch(samples=[SampleRow(T0 + i, "a", "X/Y", {"mid": float(i)})
                               for i in range(12_000)]))
    seen = 0
    for row in store.history(T0, []):
        if row["ts"] == T0 + 6000:
            store.write(Batch(samples=[SampleRow(T0 - 1, "b", "X/Y", {})]))
        seen += 1
    assert seen == 12_000 and store.sample_span() == (T0 - 1, T0 + 11_999)
    store.close()


def _cli(tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY",
                                                            "WIS_MONITOR_CONFIG")}
    r = subprocess.run([sys.executable, "-m", "wis_monitor", *argv], capture_output=True,
                       text=True, timeout=60, cwd=tmp,
                       env={**env, "CREDENTIALS_DIRECTORY": str(tmp / "creds")})
    assert "Traceback" not in r.stderr + r.stdout and PASSWORD not in r.stderr + r.stdout
    return r


def test_check_online_connects_to_the_store_and_the_tools_read_it(
        tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "pg").write_text(PASSWORD)
    url = pg_url.replace(PASSWORD, "${credential:pg}")
    (tmp_path / "c.yaml").write_text(
        "venues:\n  - {id: simx, exchange: sim, symbols: [BTC/USDT]}\n"
        f"storage:\n  url: {url}\n")
    r = _cli(tmp_path, "check", "--online", "-c", "c.yaml")
    assert r.returncode == 0, r.stderr
    assert re.search(r"storage.url: postgresql://wis:\*\*\*@127.0.0.1:\d+/\w+: PostgreSQL \d+",
                     r.stderr) and "no tables yet" in r.stderr
    r = _cli(tmp_path, "status", "-c", "c.yaml")  # before the daemon has run
    assert r.returncode == 1 and "no wis-monitor tables" in r.stderr
    store = PostgresStore(pg_url)
    store.write(Batch(samples=[SampleRow(T0, "simx", "BTC/USDT", {"mid": 1.0})]))
    store.close()
    r = _cli(tmp_path, "check", "--online", "-c", "c.yaml")
    n = len(NAMES)
    assert r.returncode == 0 and f"schema with {n} of {n} migration(s)" in r.stderr
    r = _cli(tmp_path, "status", "-c", "c.yaml")
    assert r.returncode == 0 and "simx" in r.stdout and "BTC/USDT" in r.stdout, r.stderr
    (tmp_path / "creds" / "pg").write_text("wrong-password")
    r = _cli(tmp_path, "check", "--online", "-c", "c.yaml")
    assert r.returncode == 2
    assert re.search(r"c.yaml:4: storage.url: .*cannot connect.*password authentication",
                     r.stderr), r.stderr
    assert "wrong-password" not in r.stderr
    (tmp_path / "creds" / "pg").unlink()
    r = _cli(tmp_path, "check", "--online", "-c", "c.yaml")
    assert r.returncode == 2
    assert "c.yaml:4: storage.url: not connected: ${credential:pg} could not be read" in r.stderr
