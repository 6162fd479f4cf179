"""The store: its schema upgrades every database an earlier release wrote, keeping the data;
it lays out the rows it is given in its own columns; a good sample is defined once; batches
the database refuses are held and written later (SQL only in the store: tests/test_layout.py)."""

from __future__ import annotations

import sqlite3
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from wis_monitor.errors import Fenced, StoreError
from wis_monitor.store import (
    GOOD_QUALITIES,
    AlertEvent,
    Batch,
    BookRow,
    BufferedWriter,
    ChannelBacklog,
    Firing,
    FiringState,
    RuleFirings,
    SampleRow,
    SqliteStore,
    Store,
    is_good,
    open_store,
)
from wis_monitor.store.rows import InstanceRow, LeaseRow
from wis_monitor.store.schema import migrations

T0 = 1_700_000_000_000

#: The schema as version 1 was first released (user_version 1, no order-flow columns).
V1_FIRST = """
CREATE TABLE samples (
    ts INTEGER NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
    mid REAL, spread_bps REAL, wis REAL, wis_z REAL, imbalance REAL, microprice REAL,
    bid_depth REAL, ask_depth REAL, mid_change_bps REAL, age_s REAL,
    quality TEXT NOT NULL DEFAULT '', latency_ms REAL, error TEXT
);
CREATE INDEX samples_series ON samples (venue, symbol, ts);
CREATE INDEX samples_ts ON samples (ts);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, rule TEXT NOT NULL, key TEXT NOT NULL,
    venue TEXT, symbol TEXT, event TEXT NOT NULL, severity TEXT NOT NULL, value REAL,
    summary TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}', details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alerts_ts ON alerts (ts);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
    channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, created_ts INTEGER NOT NULL, sent_ts INTEGER, next_attempt_ts INTEGER
);
CREATE INDEX deliveries_status ON deliveries (status, next_attempt_ts);
CREATE TABLE alert_state (
    rule TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, since INTEGER,
    last_notified INTEGER, data TEXT NOT NULL, PRIMARY KEY (rule, key)
);
CREATE TABLE silences (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL DEFAULT '*', matchers TEXT NOT NULL DEFAULT '{}',
    created_ts INTEGER NOT NULL, expires_ts INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE books (
    ts INTEGER NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
    bids BLOB NOT NULL, asks BLOB NOT NULL, contract_size REAL NOT NULL DEFAULT 1,
    inverse INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX books_series ON books (venue, symbol, ts);
PRAGMA user_version=1;
"""
#: Version 1 as written once the order-flow metrics came (columns added on open).
V1_ORDERFLOW = V1_FIRST + """
ALTER TABLE samples ADD COLUMN [coverage_bps] REAL;
ALTER TABLE samples ADD COLUMN [ofi] REAL;
ALTER TABLE samples ADD COLUMN [ofi_z] REAL;
"""
#: ... with the columns of a WIS variant.
V1_VARIANT = V1_ORDERFLOW + """
ALTER TABLE samples ADD COLUMN [wis_fast] REAL;
ALTER TABLE samples ADD COLUMN [wis_fast_z] REAL;
"""
_LEVELS = np.array([[100.0, 1.5], [99.5, 2.0]])


def _old_rows(conn: sqlite3.Connection) -> None:
    """What a running monitor of that release had written."""
    conn.execute("INSERT INTO samples (ts, venue, symbol, mid, wis, wis_z, quality, error)"
                 " VALUES (?, 'v', 'X/Y', 100.0, 0.25, 1.5, 'thin', NULL)", (T0,))
    conn.execute("INSERT INTO samples (ts, venue, symbol, quality, error)"
                 " VALUES (?, 'v', 'X/Y', 'error', 'timeout')", (T0 + 1000,))
    conn.execute("INSERT INTO alerts (id, ts, rule, key, venue, symbol, event, severity, value,"
                 " summary, labels, details) VALUES (1, ?, 'r', 'v:X/Y', 'v', 'X/Y', 'firing',"
                 " 'critical', 2.5, 'r fired', '{\"desk\": \"a\"}', '{\"mode\": \"live\"}')",
                 (T0,))
    conn.execute("INSERT INTO deliveries (alert_id, channel, status, created_ts, next_attempt_ts)"
                 " VALUES (1, 'hook', 'pending', ?, ?)", (T0, T0))
    conn.execute("INSERT INTO alert_state VALUES ('r', 'v:X/Y', 'firing', ?, NULL, ?)",
                 (T0, f'{{"state": 2, "active_at_ms": {T0}}}'))
    conn.execute("INSERT INTO silences (rule, matchers, created_ts, expires_ts, reason)"
                 " VALUES ('r', '{\"venue\": \"v\"}', ?, ?, 'maintenance')", (T0, T0 + 3_600_000))
    blob = zlib.compress(_LEVELS.astype("<f8").tobytes(), 1)
    conn.execute("INSERT INTO books (ts, venue, symbol, bids, asks) VALUES (?, 'v', 'X/Y', ?, ?)",
                 (T0, blob, blob))


def _old_database(path: Path, ddl: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    _old_rows(conn)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("ddl", [V1_FIRST, V1_ORDERFLOW, V1_VARIANT],
                         ids=["v1-first", "v1-orderflow", "v1-variant"])
def test_every_earlier_schema_upgrades_and_keeps_its_data(tmp_path: Path, ddl: str) -> None:
    db = tmp_path / "old.db"
    _old_database(db, ddl)
    store = SqliteStore(str(db), variants=["wis_fast"])
    assert {"coverage_bps", "ofi", "ofi_z", "wis_fast", "wis_fast_z", "unwind_bps",
            "book_age_ms", "drift_bps"} <= store.sample_columns()
    assert [m.name for m in migrations.applied(store.db)] == [
        "0001_tables", "0002_orderflow_columns", "0003_instances_leases_claims",
        "0004_unwind_column", "0005_stream_columns"]
    last = store.latest_sample("v", "X/Y")
    assert last is not None and (last.ts_ms, last.quality, last.error) == (
        T0 + 1000, "error", "timeout")
    good = store.latest_good("v", "X/Y", ("mid", "wis", "wis_z"))
    assert good is not None and (good.ts_ms, dict(good.values)) == (
        T0, {"mid": 100.0, "wis": 0.25, "wis_z": 1.5})
    assert store.alert_states() == {("r", "v:X/Y"): {"state": 2, "active_at_ms": T0}}
    (pending,) = store.due()
    assert (pending.channel, pending.alert.rule, pending.alert.labels, pending.alert.mode) == (
        "hook", "r", {"desk": "a"}, "live")
    (silence,) = store.active_silences(T0 + 1)
    assert (silence.rule, silence.matchers, silence.reason) == ("r", {"venue": "v"}, "maintenance")
    (book,) = store.books()
    assert np.array_equal(book.bids, _LEVELS) and book.contract_size == 1.0
    # The upgraded file takes what this release writes.
    store.write(Batch(samples=[SampleRow(T0 + 2000, "v", "X/Y", {"ofi": 3.0, "wis_fast": 0.5})]))
    assert store.query("SELECT ofi, wis_fast FROM samples WHERE ts = ?", [T0 + 2000]) == [
        {"ofi": 3.0, "wis_fast": 0.5}]
    store.close()
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (1,)


def test_a_new_or_upgraded_database_opens_again_without_running_a_migration_twice(
        tmp_path: Path) -> None:
    for name in ("new.db", "old.db"):
        db = tmp_path / name
        if name == "old.db":
            _old_database(db, V1_FIRST)
        SqliteStore(str(db)).close()
        store = SqliteStore(str(db))
        assert len(migrations.applied(store.db)) == 5
        assert not migrations.pending(store.db)
        store.close()


def test_a_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    SqliteStore(str(db)).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
                 " VALUES ('wis-monitor', '0099_from_the_future', '')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"0099_from_the_future.*newer release"):
        SqliteStore(str(db))
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0099_from_the_future'")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 2 is newer"):
        SqliteStore(str(db))


def test_the_store_lays_out_sample_rows_in_its_own_columns(
        store_opener: Callable[..., Store]) -> None:
    """A caller names values; their order and any value the store has no column for do not
    matter."""
    store = store_opener(variants=["wis_fast"])
    store.write(Batch(samples=[SampleRow(T0, "v", "X/Y", {
        "wis_fast_z": -1.0, "ofi": 2.0, "mid": 10.0, "not_a_column": 7.0, "unwind_bps": 4.5,
        "book_age_ms": 12.0, "drift_bps": 0.5},
        "thin", None)], books=[BookRow(T0, "v", "X/Y", _LEVELS, _LEVELS[::-1], 0.01, True)]))
    assert store.query("SELECT ts, mid, ofi, wis, wis_fast_z, unwind_bps, book_age_ms, drift_bps,"
                       " quality FROM samples"
                       ) == [{"ts": T0, "mid": 10.0, "ofi": 2.0, "wis": None, "wis_fast_z": -1.0,
                              "unwind_bps": 4.5, "book_age_ms": 12.0, "drift_bps": 0.5,
                              "quality": "thin"}]
    (book,) = store.books("v", "X/Y")
    assert np.array_equal(book.asks, _LEVELS[::-1]) and (book.contract_size, book.inverse) == (
        0.01, True)
    assert store.count_books("v") == 1 and store.count_books("w") == 0
    assert store.book_series() == [("v", "X/Y")]


def test_a_good_sample_is_one_whose_flags_only_warn() -> None:
    assert GOOD_QUALITIES == ("", "short", "thin", "short,thin")
    assert is_good("") and is_good("thin") and is_good(None)
    assert not is_good("crossed") and not is_good("stale,thin")


def _alert(ts: int) -> AlertEvent:
    return AlertEvent(ts, "r", "v:X/Y", "v", "X/Y", "firing", "critical", 1.0, "s",
                      channels=["hook"])


def test_batches_the_database_refuses_are_held_and_written_in_order_later(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store = SqliteStore(str(db), busy_timeout_s=0.05)
    writer = BufferedWriter(store, retry_s=5.0, max_samples=3)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    sample = [SampleRow(T0 + i, "v", "X/Y", {"mid": 1.0}) for i in range(2)]

    out = writer.write(Batch(samples=sample[:1], alerts=[_alert(T0)]), now_s=100.0)
    assert out.failed is not None and out.first_failure and not out.batches
    assert writer.error is not None and "busy" in writer.error and writer.held == 1
    # Before the retry time nothing is attempted (each attempt may wait for the lock).
    out = writer.write(Batch(samples=sample[1:]), now_s=101.0)
    assert out.failed is None and not out.batches and writer.held == 2
    out = writer.write(Batch(alerts=[_alert(T0 + 5)]), now_s=105.0)
    assert out.failed is not None and not out.first_failure and writer.held == 3
    # Over max_samples: the oldest samples go, alert events stay.
    writer.write(Batch(samples=[SampleRow(T0 + 9, "v", "X/Y", {})] * 3), now_s=106.0)
    assert writer.dropped_samples == 2 and writer.held == 4

    lock.execute("ROLLBACK")
    lock.close()
    out = writer.write(Batch(), now_s=110.0)
    assert out.recovered and out.failed is None and writer.error is None and writer.held == 0
    assert [len(b.alerts) for b in out.batches] == [1, 0, 1, 0]
    assert [r["ts"] for r in store.query("SELECT ts FROM alerts ORDER BY id")] == [T0, T0 + 5]
    assert [r["ts"] for r in store.query("SELECT ts FROM samples ORDER BY rowid")] == [T0 + 9] * 3
    store.close()


def test_a_delivery_gives_templates_the_fields_they_always_had(any_store: Store) -> None:
    """docs/channels.md: rule, key, venue, symbol, event, severity, value, ts, labels, details
    (``values`` is taken from the details by the renderer)."""
    store = any_store
    event = AlertEvent(T0, "r", "v:X/Y", "v", "X/Y", "firing", "critical", 2.5, "s",
                       {"desk": "a"}, {"values": {"wis_z": 3.1}}, channels=["hook"])
    (alert_id,) = store.write(Batch(alerts=[event]))
    (delivery,) = store.due()
    assert delivery.as_template_dict() == {
        "delivery_id": delivery.id, "channel": "hook", "attempts": 0, "created_ts": T0,
        "next_attempt_ts": T0, "id": alert_id, "ts": T0, "rule": "r", "key": "v:X/Y",
        "venue": "v", "symbol": "X/Y", "event": "firing", "severity": "critical", "value": 2.5,
        "summary": "s", "labels": {"desk": "a"}, "details": {"values": {"wis_z": 3.1}}}


# -- both backends: what several instances sharing a store rely on -------------------------

TTL = 15_000


def test_a_lease_is_renewed_by_its_holder_and_taken_over_only_as_it_was_seen(
        any_store: Store) -> None:
    store = any_store
    first = store.acquire("venue:a", "i1", T0, TTL)
    assert first == LeaseRow("venue:a", "i1", 1, T0, T0, T0 + TTL)
    # The holder renews it: same token, later expiry; another instance does not get it.
    renewed = store.acquire("venue:a", "i1", T0 + 1000, TTL)
    assert renewed == LeaseRow("venue:a", "i1", 1, T0, T0 + 1000, T0 + 1000 + TTL)
    assert store.acquire("venue:a", "i2", T0 + 2000, TTL) is None
    # A takeover names the lease as it saw it stop being renewed: an outdated view fails.
    assert store.acquire("venue:a", "i2", T0 + 20_000, TTL, expect=first) is None
    taken = store.acquire("venue:a", "i2", T0 + 20_000, TTL, expect=renewed)
    assert taken == LeaseRow("venue:a", "i2", 2, T0 + 20_000, T0 + 20_000, T0 + 35_000)
    # Released, it goes to the next taker at once, with a higher token still.
    store.release(["venue:a"], "i1")  # not the holder: nothing changes
    assert store.leases() == [taken]
    store.release(["venue:a"], "i2")
    (released,) = store.leases()
    assert released.owner is None and released.token == 2
    again = store.acquire("venue:a", "i1", T0 + 21_000, TTL)
    assert again is not None and (again.owner, again.token) == ("i1", 3)
    store.acquire("group:g", "i1", T0, TTL)
    assert [lease.name for lease in store.leases()] == ["group:g", "venue:a"]


def test_a_batch_written_under_an_outdated_token_is_refused_whole(any_store: Store) -> None:
    store = any_store
    held = store.acquire("venue:a", "i1", T0, TTL)
    assert held is not None
    accepted = Batch(samples=[SampleRow(T0, "a", "X/Y", {"mid": 1.0})], alerts=[_alert(T0)],
                     fence={"venue:a": held.token})
    assert len(store.write(accepted)) == 1
    store.acquire("venue:a", "i2", T0 + 20_000, TTL, expect=held)
    late = Batch(samples=[SampleRow(T0 + 1000, "a", "X/Y", {"mid": 2.0})],
                 alerts=[_alert(T0 + 1000)], states={("r", "a:X/Y"): {"state": 2}},
                 fence={"venue:a": held.token, "venue:b": 7})
    with pytest.raises(Fenced) as refused:
        store.write(late)
    assert refused.value.leases == ["venue:a", "venue:b"]
    assert store.sample_span() == (T0, T0) and len(store.due()) == 1
    assert store.alert_states() == {}


def test_a_delivery_is_claimed_by_one_instance_until_its_claim_expires(
        store_opener: Callable[..., Store]) -> None:
    one, other = store_opener(), store_opener()  # two instances on one store
    one.write(Batch(alerts=[_alert(T0), _alert(T0 + 1)]))
    ids = [d.id for d in one.due()]
    assert one.claim(ids, "i1", T0, 30_000) == {ids[0]: None, ids[1]: None}
    assert other.claim(ids, "i2", T0 + 29_999, 30_000) == {}
    assert one.claim(ids[:1], "i1", T0 + 1000, 30_000) == {ids[0]: None}  # its own: renewed
    # i1 died mid-send: once its claim lapses i2 takes the rows, told who had them.
    assert other.claim(ids, "i2", T0 + 31_000, 30_000) == {ids[0]: "i1", ids[1]: "i1"}
    # A failed attempt clears the claim: any instance retries it; settled rows are not claimed.
    other.record_failure(ids[0], 1, "HTTP 500", T0 + 40_000)
    other.mark_sent(ids[1:], T0 + 32_000)
    assert one.claim(ids, "i1", T0 + 33_000, 30_000) == {ids[0]: None}
    assert one.claim([], "i1", T0, 1) == {}


def test_history_reads_the_good_samples_of_the_venues_asked_for(any_store: Store) -> None:
    store = any_store
    store.write(Batch(samples=[
        SampleRow(T0 + 2, "b", "X/Y", {"mid": 2.0, "wis_z": 0.2}),
        SampleRow(T0 + 1, "a", "X/Y", {"mid": 1.0, "wis_z": 0.1}, "thin"),
        SampleRow(T0 + 3, "a", "X/Y", {}, "error", "timeout"),
        SampleRow(T0 + 4, "c", "X/Y", {"mid": 4.0})]))
    rows = list(store.history(T0, ["wis_z"]))
    assert [(r["ts"], r["venue"], r["mid"], r["wis_z"]) for r in rows] == [
        (T0 + 1, "a", 1.0, 0.1), (T0 + 2, "b", 2.0, 0.2), (T0 + 4, "c", 4.0, None)]
    assert [r["venue"] for r in store.history(T0, [], venues=["a", "c"])] == ["a", "c"]
    assert list(store.history(T0, [], venues=[])) == []
    assert [r["ts"] for r in store.history(T0 + 2, ["wis_z"])] == [T0 + 2, T0 + 4]


def test_instances_heartbeat_into_the_store(any_store: Store) -> None:
    store = any_store
    store.heartbeat(InstanceRow("i2", "h2", 20, T0, T0 + 5, "0.1"))
    store.heartbeat(InstanceRow("i1", "h1", 10, T0, T0))
    store.heartbeat(InstanceRow("i1", "h1", 11, T0 + 1, T0 + 9))
    assert store.instances() == [InstanceRow("i1", "h1", 11, T0 + 1, T0 + 9, ""),
                                 InstanceRow("i2", "h2", 20, T0, T0 + 5, "0.1")]


def test_the_outbox_and_the_reports_read_the_same_on_every_backend(any_store: Store) -> None:
    """Sending, folding, giving up, silences, alert state, the reports of status and top,
    retention."""
    store = any_store
    day = 86_400_000
    resolved = AlertEvent(T0 + 5, "r", "v:X/Y", "v", "X/Y", "resolved", "critical", 0.0, "ok",
                          channels=["hook", "mail"])
    shadow = AlertEvent(T0 + 6, "s", "v:X/Y", "v", "X/Y", "firing", "info", 1.0, "s",
                        details={"mode": "shadow"}, channels=[])
    store.write(Batch(alerts=[_alert(T0), _alert(T0 + 1), _alert(T0 + 2)],
                      states={("r", "v:X/Y"): {"state": 2, "active_at_ms": T0}},
                      samples=[SampleRow(T0, "v", "X/Y", {"mid": 1.0, "wis": 0.5})]))
    ids = [d.id for d in store.due()]
    assert store.last_firing("r", "v:X/Y") == Firing("critical", {}, ["hook"], "live")
    store.mark_sent(ids[:2], T0 + 10)
    store.give_up(ids[2:], T0 + 11, "channel gone")
    assert store.messages_sent("hook", T0) == 1
    assert [d.id for d in store.sent_since("hook", T0)] == ids[:2]
    assert store.last_firing("r", "v:X/Y") == Firing("critical", {}, [], "live")
    (resolved_id, _) = store.write(Batch(alerts=[resolved, shadow]))
    assert store.due() == []  # its firing reached no channel: the resolved goes nowhere
    store.write(Batch(alerts=[_alert(T0 + 20), _alert(T0 + 21)]))
    folded = [d.id for d in store.due()]
    store.fold(folded, T0 + 30)
    assert store.messages_sent("hook", T0 + 12) == 1
    assert store.delivery_counts() == {("hook", "sent"): 4, ("hook", "failed"): 1}
    assert store.outbox_backlog() == [ChannelBacklog("hook", 0, None, 1)]
    assert store.firing_counts(T0 + 2, T0) == [RuleFirings("r", "live", 3, 5),
                                               RuleFirings("s", "shadow", 1, 1)]
    assert store.firing_states() == [FiringState("r", "v:X/Y", T0, "live")]
    assert store.alert_states() == {("r", "v:X/Y"): {"state": 2, "active_at_ms": T0}}
    assert [e.event for e in store.alert_events(T0, T0 + 5, "v")] == ["firing"] * 3 + [
        "resolved"]
    assert store.alert_events(T0 + 5, T0 + 5)[0].id == resolved_id
    sid = store.add_silence("r", {"venue": "v"}, T0, T0 + day, "maint", "ops")
    assert [s.id for s in store.active_silences(T0 + 1)] == [sid]
    assert store.expire_silence(sid, T0 + 2) and not store.expire_silence(sid, T0 + 3)
    assert store.active_silences(T0 + 3) == [] and len(store.silences(None)) == 1
    good = store.latest_good("v", "X/Y", ["wis"])
    assert good is not None and dict(good.values) == {"wis": 0.5}
    assert store.good_samples(T0, T0, "v", metrics=["mid"])[0].values == {"mid": 1.0}
    assert store.last_good() == {("v", "X/Y"): T0}
    assert store.first_samples([("v", "X/Y"), ("w", "X/Y")]) == {("v", "X/Y"): T0}
    # Retention: old samples, settled deliveries and their alerts, lapsed silences.
    assert store.prune(T0 + day + 1, limit=100) == 1 + 5 + 7 + 1
    assert store.sample_span() is None and store.due() == [] and store.silences(None) == []
    store.maintain()


def test_a_url_without_the_postgresql_driver_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    for name in [m for m in sys.modules if m.startswith("wis_monitor.store.p")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(StoreError, match=r"pip install 'wis-monitor\[postgres\]'"):
        open_store("postgresql://wis@db.example/wis")
