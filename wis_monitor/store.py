"""SQLite persistence through sqlite-utils (SPEC §8): schema, migrations, writes and queries.

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from wis_monitor.errors import StoreError
from wis_monitor.redact import redact, redact_values

SCHEMA_VERSION = 1

SAMPLE_COLUMNS: tuple[str, ...] = (
    "ts", "venue", "symbol", "mid", "spread_bps", "wis", "wis_z", "imbalance", "microprice",
    "bid_depth", "ask_depth", "mid_change_bps", "age_s", "quality", "latency_ms", "error",
    "coverage_bps", "ofi", "ofi_z",
)
#: Columns added after version 1, on open, to a database that lacks them.
_ADDED_COLUMNS = ("coverage_bps", "ofi", "ofi_z")
_REAL = "REAL"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    ts INTEGER NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
    mid REAL, spread_bps REAL, wis REAL, wis_z REAL, imbalance REAL, microprice REAL,
    bid_depth REAL, ask_depth REAL, mid_change_bps REAL, age_s REAL,
    quality TEXT NOT NULL DEFAULT '', latency_ms REAL, error TEXT
);
CREATE INDEX IF NOT EXISTS samples_series ON samples (venue, symbol, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, rule TEXT NOT NULL, key TEXT NOT NULL,
    venue TEXT, symbol TEXT, event TEXT NOT NULL, severity TEXT NOT NULL, value REAL,
    summary TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}', details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
    channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, created_ts INTEGER NOT NULL, sent_ts INTEGER, next_attempt_ts INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, next_attempt_ts);
CREATE TABLE IF NOT EXISTS alert_state (
    rule TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, since INTEGER,
    last_notified INTEGER, data TEXT NOT NULL, PRIMARY KEY (rule, key)
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL DEFAULT '*', matchers TEXT NOT NULL DEFAULT '{}',
    created_ts INTEGER NOT NULL, expires_ts INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS books (
    ts INTEGER NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
    bids BLOB NOT NULL, asks BLOB NOT NULL, contract_size REAL NOT NULL DEFAULT 1,
    inverse INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS books_series ON books (venue, symbol, ts);
"""

#: Migrations from version N-1 to N (index N-1); version 1 is the schema above.
_MIGRATIONS: tuple[str, ...] = ()


@dataclass
class AlertRow:
    """An alert event and the channels it goes to, ready to be written."""

    ts_ms: int
    rule: str
    key: str
    venue: str | None
    symbol: str | None
    event: str
    severity: str
    value: float | None
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    channels: Sequence[str] = ()
    silenced_by: int | None = None


@dataclass
class Batch:
    """Everything one cycle writes, in one transaction."""

    samples: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    states: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    books: list[tuple[Any, ...]] = field(default_factory=list)
    #: When the deliveries of its alerts were queued (default: each alert's own time); a
    #: replay with --notify queues at the wall clock, not at the recording's.
    queued_ms: int | None = None

    def __bool__(self) -> bool:
        return bool(self.samples or self.alerts or self.states or self.books)


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


class Store:
    """The SQLite database of one monitor."""

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

    def _set_columns(self) -> None:
        self.columns = SAMPLE_COLUMNS + tuple(
            c for v in self.variants for c in (v, f"{v}_z")
        )
        placeholders = ", ".join("?" for _ in self.columns)
        self._insert_sample = (
            f"INSERT INTO samples ({', '.join(self.columns)}) VALUES ({placeholders})"
        )

    def use_variants(self, variants: Sequence[str]) -> None:
        """Write these WIS variants from now on (reload): new ones get their columns; the
        columns of dropped ones stay, null in new rows."""
        self.variants = tuple(variants)
        try:
            self._add_variant_columns()
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc
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
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION + len(_MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this wis-monitor supports"
            )
        # Each step is idempotent, so an interrupted upgrade simply runs again.
        if version == 0:
            conn.executescript(_SCHEMA)
        for n in range(max(version, SCHEMA_VERSION), SCHEMA_VERSION + len(_MIGRATIONS)):
            conn.executescript(_MIGRATIONS[n - SCHEMA_VERSION])
        with self.db.atomic():
            self._add_variant_columns()
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + len(_MIGRATIONS)}")

    def _add_variant_columns(self) -> None:
        existing = {c.name for c in self.db["samples"].columns}
        for col in (*_ADDED_COLUMNS, *(c for v in self.variants for c in (v, f"{v}_z"))):
            if col not in existing:
                self.db.conn.execute(f"ALTER TABLE samples ADD COLUMN [{col}] {_REAL}")

    def close(self) -> None:
        self.db.close()

    # -- writes -----------------------------------------------------------------------------

    def write(self, batch: Batch) -> list[int]:
        """Write a cycle's batch atomically; returns the ids of the alert rows."""
        ids: list[int] = []
        try:
            with self.db.atomic():
                conn = self.db.conn
                if batch.samples:
                    conn.executemany(self._insert_sample, batch.samples)
                if batch.books:
                    conn.executemany(
                        "INSERT INTO books (ts, venue, symbol, bids, asks, contract_size, inverse)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        batch.books,
                    )
                for a in batch.alerts:
                    queued = batch.queued_ms if batch.queued_ms is not None else a.ts_ms
                    cur = conn.execute(
                        "INSERT INTO alerts (ts, rule, key, venue, symbol, event, severity, value,"
                        " summary, labels, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (a.ts_ms, a.rule, a.key, a.venue, a.symbol, a.event, a.severity, a.value,
                         redact(a.summary), json.dumps(a.labels, sort_keys=True),
                         json.dumps(redact_values(a.details), sort_keys=True, default=str)),
                    )
                    alert_id = int(cur.lastrowid or 0)
                    ids.append(alert_id)
                    status = "silenced" if a.silenced_by is not None else "pending"
                    last_error = f"silence {a.silenced_by}" if a.silenced_by is not None else None
                    conn.executemany(
                        "INSERT INTO deliveries (alert_id, channel, status, attempts, last_error,"
                        " created_ts, next_attempt_ts) VALUES (?, ?, ?, 0, ?, ?, ?)",
                        [(alert_id, ch, status, last_error, queued, queued)
                         for ch in self._channels(a)],
                    )
                if batch.states:
                    conn.executemany(
                        "INSERT OR REPLACE INTO alert_state (rule, key, state, since,"
                        " last_notified, data) VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (rule, key, _state_name(d), d.get("active_at_ms"),
                             d.get("last_sent_ms"), json.dumps(d, sort_keys=True))
                            for (rule, key), d in batch.states.items()
                        ],
                    )
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc
        return ids

    def _channels(self, alert: AlertRow) -> Sequence[str]:
        """A `resolved` goes only where its firing was delivered (or is on its way)."""
        if alert.event != "resolved":
            return alert.channels
        fired = self._last_firing(alert.rule, alert.key)
        if fired is None:  # no record of the firing left (retention): tell every channel
            return alert.channels
        return [ch for ch in alert.channels if ch in fired["delivered"]]

    # -- reads ------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        try:
            return list(self.db.query(sql, params))
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows one at a time (large reads), with SQLite errors as StoreError."""
        try:
            yield from self.db.query(sql, params)
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def alert_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (r["rule"], r["key"]): json.loads(r["data"])
            for r in self.query("SELECT rule, key, data FROM alert_state")
        }

    def history(self, since_ms: int, metrics: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Good samples since ``since_ms`` (oldest first), to rebuild z-score windows."""
        cols = ", ".join(f"[{m}]" for m in ("ts", "venue", "symbol", "mid", *metrics))
        yield from self.iterate(
            f"SELECT {cols} FROM samples WHERE ts >= ? AND (quality = '' OR quality = 'thin')"
            " ORDER BY ts",
            [since_ms],
        )

    def last_good(self) -> dict[tuple[str, str], int]:
        rows = self.query(
            "SELECT venue, symbol, max(ts) AS ts FROM samples"
            " WHERE quality = '' OR quality = 'thin' GROUP BY venue, symbol"
        )
        return {(r["venue"], r["symbol"]): int(r["ts"]) for r in rows}

    def first_samples(self, series: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The time of the first sample (of any quality) of each of these series that has one."""
        out: dict[tuple[str, str], int] = {}
        for venue, symbol in series:
            rows = self.query("SELECT min(ts) AS ts FROM samples WHERE venue = ? AND symbol = ?",
                              [venue, symbol])
            if rows and rows[0]["ts"] is not None:
                out[(venue, symbol)] = int(rows[0]["ts"])
        return out

    def last_firing(self, rule: str, key: str) -> dict[str, Any] | None:
        """The latest `firing` event of (rule, key), with ``delivered``: the channels it went
        to or is going to (not silenced, not given up on), and ``mode`` (``live`` or
        ``shadow``); None when there is none."""
        try:
            return self._last_firing(rule, key)
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def _last_firing(self, rule: str, key: str) -> dict[str, Any] | None:
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
        return {"severity": row[1], "labels": json.loads(row[2]), "delivered": delivered,
                "mode": row[3] or "live"}

    def active_silences(self, now_ms: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM silences WHERE expires_ts > ? ORDER BY id", [now_ms]
        )
        for r in rows:
            r["matchers"] = json.loads(r["matchers"])
        return rows

    def add_silence(self, rule: str, matchers: dict[str, str], created_ms: int, expires_ms: int,
                    reason: str, created_by: str) -> int:
        try:
            with self.db.atomic():
                cur = self.db.conn.execute(
                    "INSERT INTO silences (rule, matchers, created_ts, expires_ts, reason,"
                    " created_by) VALUES (?, ?, ?, ?, ?, ?)",
                    (rule, json.dumps(matchers, sort_keys=True), created_ms, expires_ms, reason,
                     created_by),
                )
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc
        return int(cur.lastrowid or 0)

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        try:
            with self.db.atomic():
                cur = self.db.conn.execute(
                    "UPDATE silences SET expires_ts = ? WHERE id = ? AND expires_ts > ?",
                    (now_ms, silence_id, now_ms),
                )
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc
        return cur.rowcount > 0

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
        try:
            self.db.conn.execute("PRAGMA optimize")
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; returns the rows changed."""
        try:
            with self.db.atomic():
                return self.db.conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self.db.atomic():
                self.db.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _explain(exc, self.path) from exc


def _state_name(d: dict[str, Any]) -> str:
    return {0: "inactive", 1: "pending", 2: "firing"}.get(int(d.get("state", 0)), "inactive")
