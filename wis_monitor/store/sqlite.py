"""The SQLite store (SPEC §8) through sqlite-utils: writes, the outbox and retention.

Times are integer milliseconds since the epoch (UTC). The file is created with mode 0600 and
runs in WAL mode, so a reader (``status``, ``report``) never blocks the daemon and a kill -9
leaves a consistent database. Everything one cycle produces — samples, alert events, their
outbox rows and alert state — is written in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np
import sqlite_utils

from wis_monitor.errors import Fenced, StoreError
from wis_monitor.redact import redact, redact_values
from wis_monitor.store.batch import Batch
from wis_monitor.store.reports import Reports
from wis_monitor.store.rows import (
    FOLDED,
    GROUPED,
    AlertEvent,
    BookRow,
    Delivery,
    Firing,
    InstanceRow,
    LeaseRow,
    SampleRow,
    Severity,
    Silence,
    StateData,
    labels_of,
)
from wis_monitor.store.schema import SAMPLE_VALUE_COLUMNS, add_sample_columns, migrate
from wis_monitor.store.settling import Settling, claim_of
from wis_monitor.store.sql import GOOD, alert_of, columns, series_where

#: Every pending delivery with its alert (and the sent ones of a channel, for grouping).
_DELIVERY = ("SELECT d.id AS delivery_id, d.channel, d.status, d.attempts, d.created_ts,"
             " d.next_attempt_ts, d.sent_ts, d.last_error, a.* FROM deliveries d"
             " JOIN alerts a ON a.id = d.alert_id")


#: A lease's columns in the order of LeaseRow's fields.
_LEASE = "name, owner, token, acquired_ts, renewed_ts, expires_ts"


def encode_levels(levels: np.ndarray) -> bytes:
    """Compact encoding of ``(n, 2)`` price/amount levels: zlib of little-endian float64."""
    return zlib.compress(np.ascontiguousarray(levels, dtype="<f8").tobytes(), 1)


def decode_levels(blob: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), dtype="<f8").reshape(-1, 2)


def _explain(exc: sqlite3.Error | OSError, path: str) -> StoreError:
    text = str(exc)
    if isinstance(exc, PermissionError):
        hint = ("permission denied (the database file or its directory belongs to another "
                "user: check owner and mode)")
    elif isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        hint = exc.strerror or text
    elif "locked" in text or "busy" in text:
        hint = "the database is busy (another writer holds the lock)"
    elif "disk is full" in text or "database or disk is full" in text:
        hint = "the disk is full"
    elif "disk I/O error" in text:
        hint = "disk I/O error (the disk may be full, over quota or failing)"
    elif "readonly" in text or "read-only" in text:
        hint = "the database is read-only (check the file's permissions and owner)"
    elif "not a database" in text:
        hint = "this file is not a SQLite database"
    elif "no such table" in text:
        hint = f"not a wis-monitor database ({text})"
    elif "unable to open" in text:
        hint = "the database cannot be opened (check the directory exists and is writable)"
    else:
        hint = text
    return StoreError(f"{path}: {hint}")


def _delivery_of(r: dict[str, Any]) -> Delivery:
    return Delivery(int(r["delivery_id"]), r["channel"], r["status"], int(r["attempts"]),
                    int(r["created_ts"]), r["next_attempt_ts"], r["sent_ts"], r["last_error"],
                    alert_of(r))


def _silence_of(r: dict[str, Any]) -> Silence:
    return Silence(int(r["id"]), r["rule"], labels_of(r["matchers"]), int(r["created_ts"]),
                   int(r["expires_ts"]), r["reason"], r["created_by"])


class SqliteStore(Settling, Reports):
    """The SQLite database of one monitor."""

    shared = False  # one host: no leases are taken (the methods work, for tests and tools)

    def __init__(self, path: str, *, variants: Sequence[str] = (), readonly: bool = False,
                 busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.variants = tuple(variants)
        try:
            if not readonly and path != ":memory:":
                self._create_private(path)
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s)
                self.db = sqlite_utils.Database(conn)
            else:
                conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
                self.db = sqlite_utils.Database(conn)
                self._setup()
        except (sqlite3.Error, OSError) as exc:
            raise _explain(exc, path) from exc
        self._set_columns()

    # -- opening ----------------------------------------------------------------------------

    def _set_columns(self) -> None:
        self.value_columns = SAMPLE_VALUE_COLUMNS + tuple(
            c for v in self.variants for c in (v, f"{v}_z"))
        self.columns = ("ts", "venue", "symbol", "quality", "error", *self.value_columns)
        self._every_value = itemgetter(*self.value_columns)
        self._insert_sample = (f"INSERT INTO samples ({', '.join(self.columns)})"
                               f" VALUES ({', '.join('?' for _ in self.columns)})")

    def use_variants(self, variants: Sequence[str]) -> None:
        """Write these WIS variants from now on (reload): new ones get their columns; the
        columns of dropped ones stay, null in new rows."""
        self.variants = tuple(variants)
        with self._errors():
            self._add_variant_columns()
        self._set_columns()

    @staticmethod
    def _create_private(path: str) -> None:
        p = Path(path)
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            f = Path(path + suffix)
            if suffix == "" and not f.exists():
                fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            if f.exists():
                os.chmod(f, 0o600)

    def _setup(self) -> None:
        conn = self.db.conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        migrate(self.db, self.path)
        with self.db.atomic():
            self._add_variant_columns()

    def _add_variant_columns(self) -> None:
        add_sample_columns(self.db, [c for v in self.variants for c in (v, f"{v}_z")])

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors as a StoreError that says what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._errors():
            return list(self.db.query(sql, params))

    # Any SQL, for the store's own methods, tests and inspection (callers use the typed ones).

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; returns the rows changed."""
        with self._errors(), self.db.atomic():
            return self.db.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        with self._errors(), self.db.atomic():
            self.db.conn.executemany(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._errors():
            return list(self.db.query(sql, params))

    # -- writes -----------------------------------------------------------------------------

    def sample_params(self, rows: Iterable[SampleRow]) -> list[tuple[Any, ...]]:
        """Samples as parameters of the insert, in this store's column order (a value the
        row lacks is null)."""
        cols, every = self.value_columns, self._every_value
        out = []
        for r in rows:
            try:  # the engine's samples have every column: one C call
                values = every(r.values)
            except KeyError:
                values = tuple(map(r.values.get, cols))
            out.append((r.ts_ms, r.venue, r.symbol, r.quality, r.error, *values))
        return out

    def write(self, batch: Batch) -> list[int]:
        """Write a cycle's batch atomically; returns the ids of the alert rows."""
        ids: list[int] = []
        with self._errors(), self.db.atomic():
            conn = self.db.conn
            if batch.fence:
                self._check_fence(batch.fence)
            if batch.samples:
                conn.executemany(self._insert_sample, self.sample_params(batch.samples))
            if batch.books:
                conn.executemany(
                    "INSERT INTO books (ts, venue, symbol, bids, asks, contract_size, inverse)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(b.ts_ms, b.venue, b.symbol, encode_levels(b.bids), encode_levels(b.asks),
                      b.contract_size, int(b.inverse)) for b in batch.books])
            for a in batch.alerts:
                ids.append(self._write_alert(a, batch.queued_ms))
            if batch.states:
                conn.executemany(
                    "INSERT OR REPLACE INTO alert_state (rule, key, state, since,"
                    " last_notified, data) VALUES (?, ?, ?, ?, ?, ?)",
                    [(rule, key, _state_name(d), d.get("active_at_ms"), d.get("last_sent_ms"),
                      json.dumps(d, sort_keys=True)) for (rule, key), d in batch.states.items()])
        return ids

    def _check_fence(self, fence: dict[str, int]) -> None:
        """Refuse the batch (Fenced) when a lease it was written under changed hands."""
        marks = ", ".join("?" for _ in fence)
        current = dict(self.db.conn.execute(
            f"SELECT name, token FROM leases WHERE name IN ({marks})", list(fence)).fetchall())
        stale = sorted(n for n, token in fence.items() if current.get(n) != token)
        if stale:
            raise Fenced(stale)

    def _write_alert(self, a: AlertEvent, queued_ms: int | None) -> int:
        conn = self.db.conn
        queued = queued_ms if queued_ms is not None else a.ts_ms
        cur = conn.execute(
            "INSERT INTO alerts (ts, rule, key, venue, symbol, event, severity, value, summary,"
            " labels, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (a.ts_ms, a.rule, a.key, a.venue, a.symbol, a.event, a.severity, a.value,
             redact(a.summary), json.dumps(a.labels, sort_keys=True),
             json.dumps(redact_values(a.details), sort_keys=True, default=str)))
        alert_id = int(cur.lastrowid or 0)
        status = "silenced" if a.silenced_by is not None else "pending"
        last_error = f"silence {a.silenced_by}" if a.silenced_by is not None else None
        conn.executemany(
            "INSERT INTO deliveries (alert_id, channel, status, attempts, last_error, created_ts,"
            " next_attempt_ts) VALUES (?, ?, ?, 0, ?, ?, ?)",
            [(alert_id, ch, status, last_error, queued, queued) for ch in self._channels(a)])
        return alert_id

    def _channels(self, alert: AlertEvent) -> Sequence[str]:
        """A `resolved` goes only where its firing was delivered (or is on its way)."""
        if alert.event != "resolved":
            return alert.channels
        fired = self._last_firing(alert.rule, alert.key)
        if fired is None:  # no record of the firing left (retention): tell every channel
            return alert.channels
        return [ch for ch in alert.channels if ch in fired.delivered]

    def add_silence(self, rule: str, matchers: dict[str, str], created_ms: int, expires_ms: int,
                    reason: str, created_by: str) -> int:
        with self._errors(), self.db.atomic():
            cur = self.db.conn.execute(
                "INSERT INTO silences (rule, matchers, created_ts, expires_ts, reason,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?)",
                (rule, json.dumps(matchers, sort_keys=True), created_ms, expires_ms, reason,
                 created_by))
        return int(cur.lastrowid or 0)

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        return self.execute("UPDATE silences SET expires_ts = ? WHERE id = ? AND expires_ts > ?",
                            (now_ms, silence_id, now_ms)) > 0

    # -- reads for the engine ---------------------------------------------------------------

    def alert_states(self) -> dict[tuple[str, str], StateData]:
        return {(r["rule"], r["key"]): json.loads(r["data"])
                for r in self._rows("SELECT rule, key, data FROM alert_state")}

    def history(self, since_ms: int, metrics: Sequence[str],
                venues: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
        """Good samples since ``since_ms`` (of these venues), oldest first, to rebuild z-score
        windows: each a dict of ``ts``, ``venue``, ``symbol``, ``mid`` and the ``metrics``."""
        cols = columns(("ts", "venue", "symbol", "mid", *metrics))
        only, params = "", [cast(Any, since_ms)]
        if venues is not None:
            only = f" AND venue IN ({', '.join('?' for _ in venues)})"
            params.extend(venues)
        yield from self._iterate(f"SELECT {cols} FROM samples WHERE ts >= ? AND {GOOD}{only}"
                                 " ORDER BY ts", params)

    def _iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows one at a time (large reads), with SQLite errors as StoreError."""
        with self._errors():
            yield from self.db.query(sql, params)

    def last_good(self) -> dict[tuple[str, str], int]:
        rows = self._rows(f"SELECT venue, symbol, max(ts) AS ts FROM samples WHERE {GOOD}"
                          " GROUP BY venue, symbol")
        return {(r["venue"], r["symbol"]): int(r["ts"]) for r in rows}

    def first_samples(self, series: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The time of the first sample (of any quality) of each of these series that has one."""
        out: dict[tuple[str, str], int] = {}
        for venue, symbol in series:
            rows = self._rows("SELECT min(ts) AS ts FROM samples WHERE venue = ? AND symbol = ?",
                              [venue, symbol])
            if rows and rows[0]["ts"] is not None:
                out[(venue, symbol)] = int(rows[0]["ts"])
        return out

    def last_firing(self, rule: str, key: str) -> Firing | None:
        """The latest `firing` event of (rule, key); None when there is none."""
        with self._errors():
            return self._last_firing(rule, key)

    def _last_firing(self, rule: str, key: str) -> Firing | None:
        conn = self.db.conn
        row = conn.execute(
            "SELECT id, severity, labels, json_extract(details, '$.mode') FROM alerts"
            " WHERE rule = ? AND key = ? AND event = 'firing' ORDER BY id DESC LIMIT 1",
            (rule, key)).fetchone()
        if row is None:
            return None
        delivered = [c for (c,) in conn.execute(
            "SELECT channel FROM deliveries WHERE alert_id = ? AND status IN ('pending', 'sent')"
            " ORDER BY id", (row[0],))]
        return Firing(cast(Severity, row[1]), labels_of(row[2]), delivered, row[3] or "live")

    def active_silences(self, now_ms: int) -> list[Silence]:
        return self.silences(now_ms)

    def silences(self, now_ms: int | None) -> list[Silence]:
        """The silences in force at ``now_ms`` (every one kept when None), by id."""
        where, params = ("", []) if now_ms is None else (" WHERE expires_ts > ?", [now_ms])
        return [_silence_of(r) for r in self._rows(f"SELECT * FROM silences{where} ORDER BY id",
                                                   params)]

    # -- the outbox -------------------------------------------------------------------------

    def due(self) -> list[Delivery]:
        """Every pending delivery with its alert, oldest first (the dispatcher decides which
        are due: backoff, group wait and interval)."""
        return [_delivery_of(r) for r in self._rows(
            f"{_DELIVERY} WHERE d.status = 'pending' ORDER BY d.id")]

    def sent_since(self, channel: str, since_ms: int) -> list[Delivery]:
        """The channel's deliveries sent after ``since_ms`` (when a group last had a message)."""
        return [_delivery_of(r) for r in self._rows(
            f"{_DELIVERY} WHERE d.channel = ? AND d.status = 'sent' AND d.sent_ts > ?",
            [channel, since_ms])]

    def messages_sent(self, channel: str, since_ms: int) -> int:
        """Messages the channel got after ``since_ms``: rows sent on their own or first of a
        grouped or summary message (flood control)."""
        rows = self._rows(
            "SELECT count(*) AS n FROM deliveries WHERE channel = ? AND status = 'sent'"
            " AND sent_ts > ? AND coalesce(last_error, '') NOT IN (?, ?)",
            [channel, since_ms, FOLDED, GROUPED])
        return int(rows[0]["n"]) if rows else 0

    def claim(self, ids: Sequence[int], owner: str, now_ms: int, ttl_ms: int
              ) -> dict[int, str | None]:
        """Claim the deliveries of ``ids`` still pending and not claimed by another instance
        until after ``now_ms``: this one sends them, until ``now_ms + ttl_ms``. Returns the ids
        taken, each with the instance whose claim expired unsettled (it may have sent it before
        dying), else None."""
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        taken: dict[int, str | None] = {}
        with self._errors(), self.db.atomic():
            conn = self.db.conn
            for i, by, until in conn.execute(
                    f"SELECT id, claimed_by, claim_expires_ts FROM deliveries WHERE id IN ({marks})"
                    " AND status = 'pending' ORDER BY id", list(ids)).fetchall():
                ok, previous = claim_of(by, until, owner, now_ms)
                if ok:
                    taken[int(i)] = previous
            conn.executemany(
                "UPDATE deliveries SET claimed_by = ?, claim_expires_ts = ? WHERE id = ?",
                [(owner, now_ms + ttl_ms, i) for i in taken])
        return taken

    def record_failure(self, delivery_id: int, attempts: int, error: str, retry_ms: int) -> None:
        """A failed attempt: counted, its error kept, retried not before ``retry_ms``."""
        self.execute("UPDATE deliveries SET attempts = ?, last_error = ?, next_attempt_ts = ?,"
                     " claimed_by = NULL, claim_expires_ts = NULL"
                     " WHERE id = ? AND status = 'pending'",
                     [attempts, error[:500], retry_ms, delivery_id])

    def _settle(self, ids: Sequence[int], status: str, now_ms: int, note: str | None) -> None:
        if ids:
            self.executemany(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
                " sent_ts = ? WHERE id = ?",
                [(status, note, now_ms if status == "sent" else None, i) for i in ids])

    # -- instances and leases ---------------------------------------------------------------

    def heartbeat(self, instance: InstanceRow) -> None:
        self.execute("INSERT OR REPLACE INTO instances (id, host, pid, started_ts, heartbeat_ts,"
                     " version) VALUES (?, ?, ?, ?, ?, ?)",
                     [instance.id, instance.host, instance.pid, instance.started_ms,
                      instance.heartbeat_ms, instance.version])

    def instances(self) -> list[InstanceRow]:
        return [InstanceRow(r["id"], r["host"], int(r["pid"]), int(r["started_ts"]),
                            int(r["heartbeat_ts"]), r["version"])
                for r in self._rows("SELECT * FROM instances ORDER BY id")]

    def leases(self) -> list[LeaseRow]:
        return [LeaseRow(*r.values()) for r in self._rows(
            f"SELECT {_LEASE} FROM leases ORDER BY name")]

    def acquire(self, name: str, owner: str, now_ms: int, ttl_ms: int,
                expect: LeaseRow | None = None) -> LeaseRow | None:
        """Renew the lease ``name`` if ``owner`` holds it; take it if it is free (never held,
        released) or still exactly as ``expect`` (its holder seen to stop renewing), raising
        its fencing token. Returns the lease as held now, None if another holds it."""
        with self._errors(), self.db.atomic():
            conn = self.db.conn
            row = conn.execute(f"SELECT {_LEASE} FROM leases WHERE name = ?", [name]).fetchone()
            times = (now_ms, now_ms + ttl_ms)
            if row is None:
                conn.execute(f"INSERT INTO leases ({_LEASE}) VALUES (?, ?, 1, ?, ?, ?)",
                             [name, owner, now_ms, *times])
            else:
                held = LeaseRow(*row)
                if held.owner == owner:
                    conn.execute("UPDATE leases SET renewed_ts = ?, expires_ts = ? WHERE name = ?",
                                 [*times, name])
                elif held.owner is None or held == expect:
                    conn.execute("UPDATE leases SET owner = ?, token = token + 1, acquired_ts = ?,"
                                 " renewed_ts = ?, expires_ts = ? WHERE name = ?",
                                 [owner, now_ms, *times, name])
                else:
                    return None
            got = conn.execute(f"SELECT {_LEASE} FROM leases WHERE name = ?", [name]).fetchone()
        return LeaseRow(*got)

    def release(self, names: Sequence[str], owner: str) -> None:
        """Give up these leases (a successor takes them at once, with a new token)."""
        if names:
            self.executemany("UPDATE leases SET owner = NULL WHERE name = ? AND owner = ?",
                             [(n, owner) for n in names])

    # -- retention --------------------------------------------------------------------------

    def prune(self, before_ms: int, limit: int | None = None) -> int:
        """Delete samples, books and settled alerts older than ``before_ms``; returns rows.

        ``limit`` bounds the samples and books deleted in one call (one short transaction
        each), so a long backlog is worked off in slices that never stall the caller.
        """
        cap = "" if limit is None else f" LIMIT {int(limit)}"
        n = 0
        for table in ("samples", "books"):
            n += self.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                              f" WHERE ts < ?{cap})", [before_ms])
        n += self.execute(
            "DELETE FROM deliveries WHERE created_ts < ? AND status != 'pending'", [before_ms])
        n += self.execute(
            "DELETE FROM alerts WHERE ts < ? AND id NOT IN (SELECT alert_id FROM deliveries)",
            [before_ms])
        n += self.execute("DELETE FROM silences WHERE expires_ts < ?", [before_ms])
        return n

    def maintain(self) -> None:
        """``PRAGMA optimize`` and a WAL checkpoint, so the WAL file does not grow unbounded."""
        with self._errors():
            self.db.conn.execute("PRAGMA optimize")
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- recorded books ---------------------------------------------------------------------

    def count_books(self, venue: str | None = None, symbol: str | None = None) -> int:
        where, params = series_where(venue, symbol)
        return int(self._rows(f"SELECT count(*) AS n FROM books{where}", params)[0]["n"])

    def books(self, venue: str | None = None, symbol: str | None = None) -> Iterator[BookRow]:
        """The recorded books (of a venue, a symbol), oldest first."""
        where, params = series_where(venue, symbol)
        for r in self._iterate("SELECT ts, venue, symbol, bids, asks, contract_size, inverse"
                               f" FROM books{where} ORDER BY ts", params):
            yield BookRow(r["ts"], r["venue"], r["symbol"], decode_levels(r["bids"]),
                          decode_levels(r["asks"]), r["contract_size"], bool(r["inverse"]))

    def book_series(self) -> list[tuple[str, str]]:
        """Every (venue, symbol) with recorded books."""
        return [(r["venue"], r["symbol"]) for r in self._rows(
            "SELECT DISTINCT venue, symbol FROM books ORDER BY venue, symbol")]


def _state_name(d: StateData) -> str:
    return {0: "inactive", 1: "pending", 2: "firing"}.get(int(d.get("state", 0)), "inactive")

