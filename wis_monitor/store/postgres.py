"""The PostgreSQL store: one database shared by several monitor instances (psycopg 3).

The same tables, rows and migrations as the SQLite store (:mod:`.pgschema`), the same
semantics method by method; what differs is how instances coordinate: a batch's fencing
tokens are checked inside its transaction with the lease rows locked ``FOR SHARE`` (so a
takeover, an UPDATE of the row, waits for the batch or the batch sees the new token), a
lease is taken with its row locked ``FOR UPDATE``, and deliveries are claimed with
``FOR UPDATE SKIP LOCKED``.

One connection, in autocommit mode with explicit transactions. Every failure is a
:class:`StoreError` naming the database by its URL without the password. When the connection
is lost (the server restarted, the network failed) the call that notices fails and the next
call connects again, so the daemon's write-behind buffer simply retries.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any, cast

import psycopg
from psycopg.rows import TupleRow, dict_row

from wis_monitor.errors import Fenced, StoreError
from wis_monitor.redact import redact, redact_values
from wis_monitor.redact import register as register_secret
from wis_monitor.store import pgschema
from wis_monitor.store.batch import Batch
from wis_monitor.store.pgconnect import error_text, masked_url, password_of
from wis_monitor.store.pgreports import PgReports
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
from wis_monitor.store.schema import SAMPLE_VALUE_COLUMNS
from wis_monitor.store.settling import Settling, claim_of
from wis_monitor.store.sql import GOOD, alert_of, columns, series_where
from wis_monitor.store.sqlite import decode_levels, encode_levels

Connection = psycopg.Connection[TupleRow]

_DELIVERY = ("SELECT d.id AS delivery_id, d.channel, d.status, d.attempts, d.created_ts,"
             " d.next_attempt_ts, d.sent_ts, d.last_error, a.* FROM deliveries d"
             " JOIN alerts a ON a.id = d.alert_id")
_LEASE = "name, owner, token, acquired_ts, renewed_ts, expires_ts"


def _delivery_of(r: dict[str, Any]) -> Delivery:
    return Delivery(int(r["delivery_id"]), r["channel"], r["status"], int(r["attempts"]),
                    int(r["created_ts"]), r["next_attempt_ts"], r["sent_ts"], r["last_error"],
                    alert_of(r))


def _silence_of(r: dict[str, Any]) -> Silence:
    return Silence(int(r["id"]), r["rule"], labels_of(r["matchers"]), int(r["created_ts"]),
                   int(r["expires_ts"]), r["reason"], r["created_by"])


def _state_name(d: StateData) -> str:
    return {0: "inactive", 1: "pending", 2: "firing"}.get(int(d.get("state", 0)), "inactive")


class PostgresStore(Settling, PgReports):
    """A PostgreSQL database, shared by the instances configured with its URL."""

    shared = True

    def __init__(self, url: str, *, variants: Sequence[str] = (), readonly: bool = False,
                 connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self.path = masked_url(url)
        self._password = password_of(url)
        if self._password:
            register_secret(self._password)
        self.readonly = readonly
        self.connect_timeout_s = connect_timeout_s
        self.variants = tuple(variants)
        self._conn: Connection | None = None
        self._cursors = itertools.count()
        try:
            self._open()
        except StoreError:
            self.close()
            raise
        self._set_columns()

    def _open(self) -> None:
        """Check the schema (read-only) or bring it up to date."""
        with self._errors():
            conn = self._connection()
            if self.readonly:
                done = pgschema.applied(conn)
                if not done:
                    raise StoreError(f"{self.path}: no wis-monitor tables in this database "
                                     "(is storage.url right? has the daemon run yet?)")
                pgschema.refuse_newer(done, self.path)
            else:
                pgschema.migrate(conn, self.path, self._variant_columns())

    # -- the connection ---------------------------------------------------------------------

    def _connection(self) -> Connection:
        """The open connection, or a new one when there is none (first call, or lost)."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, application_name="wis-monitor",
                                   connect_timeout=max(2, round(self.connect_timeout_s)))
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
            self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg errors as a StoreError without the password; a lost connection is
        dropped, so the next call connects again."""
        try:
            yield
        except psycopg.Error as exc:
            raise self._explain(exc) from exc

    def _explain(self, exc: psycopg.Error) -> StoreError:
        text = error_text(exc, self._password)
        conn = self._conn
        if conn is None:
            return StoreError(f"{self.path}: cannot connect to PostgreSQL: {text}")
        if conn.broken or conn.closed:
            self.close()
            return StoreError(f"{self.path}: the connection to PostgreSQL was lost ({text}); "
                              "the next call connects again")
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return StoreError(f"{self.path}: not a wis-monitor database ({text})")
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return StoreError(f"{self.path}: opened read-only ({text})")
        return StoreError(f"{self.path}: {text}")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._errors(), self._connection().cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()

    def _iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows a slice at a time through a server-side cursor (large reads); the connection
        serves other calls between slices."""
        with self._errors():
            name = f"wis_read_{next(self._cursors)}"
            with self._connection().cursor(name, row_factory=dict_row, withhold=True) as cur:
                cur.itersize = 5000
                cur.execute(sql, params)
                yield from cur

    # Any SQL (psycopg's %s placeholders), for tests and inspection.

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; returns the rows changed."""
        with self._errors():
            return self._connection().execute(sql, params).rowcount

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        with self._errors():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._errors(), self._connection().cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()

    # -- columns ----------------------------------------------------------------------------

    def _variant_columns(self) -> list[str]:
        return [c for v in self.variants for c in (v, f"{v}_z")]

    def _set_columns(self) -> None:
        self.value_columns = SAMPLE_VALUE_COLUMNS + tuple(self._variant_columns())
        self.columns = ("ts", "venue", "symbol", "quality", "error", *self.value_columns)
        self._every_value = itemgetter(*self.value_columns)
        self._copy_samples = f"COPY samples ({columns(self.columns)}) FROM STDIN"

    def use_variants(self, variants: Sequence[str]) -> None:
        """Write these WIS variants from now on: new ones get their columns; the columns of
        dropped ones stay, null in new rows."""
        self.variants = tuple(variants)
        with self._errors():
            pgschema.add_variant_columns(self._connection(), self._variant_columns())
        self._set_columns()

    def sample_params(self, rows: Iterable[SampleRow]) -> list[tuple[Any, ...]]:
        """Samples as rows of this store's columns (a value the row lacks is null)."""
        cols, every = self.value_columns, self._every_value
        out = []
        for r in rows:
            try:
                values = every(r.values)
            except KeyError:
                values = tuple(map(r.values.get, cols))
            out.append((r.ts_ms, r.venue, r.symbol, r.quality, r.error, *values))
        return out

    # -- writes -----------------------------------------------------------------------------

    def write(self, batch: Batch) -> list[int]:
        """Write a cycle's batch in one transaction; returns the ids of the alert rows.
        Refused (Fenced) when one of its fencing tokens is no longer current."""
        ids: list[int] = []
        with self._errors():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                if batch.fence:
                    self._check_fence(cur, batch.fence)
                if batch.samples:
                    with cur.copy(self._copy_samples) as copy:
                        for row in self.sample_params(batch.samples):
                            copy.write_row(row)
                if batch.books:
                    cur.executemany(
                        "INSERT INTO books (ts, venue, symbol, bids, asks, contract_size, inverse)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(b.ts_ms, b.venue, b.symbol, encode_levels(b.bids),
                          encode_levels(b.asks), b.contract_size, int(b.inverse))
                         for b in batch.books])
                for a in batch.alerts:
                    ids.append(self._write_alert(cur, a, batch.queued_ms))
                if batch.states:
                    cur.executemany(
                        "INSERT INTO alert_state (rule, key, state, since, last_notified, data)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (rule, key) DO UPDATE SET"
                        " state = excluded.state, since = excluded.since,"
                        " last_notified = excluded.last_notified, data = excluded.data",
                        [(rule, key, _state_name(d), d.get("active_at_ms"),
                          d.get("last_sent_ms"), json.dumps(d, sort_keys=True))
                         for (rule, key), d in batch.states.items()])
        return ids

    @staticmethod
    def _check_fence(cur: psycopg.Cursor[TupleRow], fence: dict[str, int]) -> None:
        """Refuse the batch (Fenced) when a lease it was written under changed hands; the
        rows stay locked until the batch commits, so a takeover waits for it."""
        current: dict[str, int] = dict(cur.execute(
            "SELECT name, token FROM leases WHERE name = ANY(%s) ORDER BY name FOR SHARE",
            [sorted(fence)]).fetchall())
        stale = sorted(n for n, token in fence.items() if current.get(n) != token)
        if stale:
            raise Fenced(stale)

    def _write_alert(self, cur: psycopg.Cursor[TupleRow], a: AlertEvent,
                     queued_ms: int | None) -> int:
        queued = queued_ms if queued_ms is not None else a.ts_ms
        row = cur.execute(
            "INSERT INTO alerts (ts, rule, key, venue, symbol, event, severity, value, summary,"
            " labels, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (a.ts_ms, a.rule, a.key, a.venue, a.symbol, a.event, a.severity, a.value,
             redact(a.summary), json.dumps(a.labels, sort_keys=True),
             json.dumps(redact_values(a.details), sort_keys=True, default=str))).fetchone()
        alert_id = int(row[0]) if row else 0
        status = "silenced" if a.silenced_by is not None else "pending"
        last_error = f"silence {a.silenced_by}" if a.silenced_by is not None else None
        channels = self._channels(cur, a)
        if channels:
            cur.executemany(
                "INSERT INTO deliveries (alert_id, channel, status, attempts, last_error,"
                " created_ts, next_attempt_ts) VALUES (%s, %s, %s, 0, %s, %s, %s)",
                [(alert_id, ch, status, last_error, queued, queued) for ch in channels])
        return alert_id

    def _channels(self, cur: psycopg.Cursor[TupleRow], alert: AlertEvent) -> Sequence[str]:
        """A `resolved` goes only where its firing was delivered (or is on its way)."""
        if alert.event != "resolved":
            return alert.channels
        fired = self._last_firing(cur, alert.rule, alert.key)
        if fired is None:
            return alert.channels
        return [ch for ch in alert.channels if ch in fired.delivered]

    def add_silence(self, rule: str, matchers: dict[str, str], created_ms: int, expires_ms: int,
                    reason: str, created_by: str) -> int:
        with self._errors():
            row = self._connection().execute(
                "INSERT INTO silences (rule, matchers, created_ts, expires_ts, reason,"
                " created_by) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (rule, json.dumps(matchers, sort_keys=True), created_ms, expires_ms, reason,
                 created_by)).fetchone()
        return int(row[0]) if row else 0

    def expire_silence(self, silence_id: int, now_ms: int) -> bool:
        return self.execute("UPDATE silences SET expires_ts = %s WHERE id = %s"
                            " AND expires_ts > %s", (now_ms, silence_id, now_ms)) > 0

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
            only = " AND venue = ANY(%s)"
            params.append(list(venues))
        yield from self._iterate(f"SELECT {cols} FROM samples WHERE ts >= %s AND {GOOD}{only}"
                                 " ORDER BY ts", params)

    def last_good(self) -> dict[tuple[str, str], int]:
        rows = self._rows(f"SELECT venue, symbol, max(ts) AS ts FROM samples WHERE {GOOD}"
                          " GROUP BY venue, symbol")
        return {(r["venue"], r["symbol"]): int(r["ts"]) for r in rows}

    def first_samples(self, series: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The time of the first sample (of any quality) of each of these series that has one."""
        out: dict[tuple[str, str], int] = {}
        for venue, symbol in series:
            rows = self._rows("SELECT min(ts) AS ts FROM samples WHERE venue = %s"
                              " AND symbol = %s", [venue, symbol])
            if rows and rows[0]["ts"] is not None:
                out[(venue, symbol)] = int(rows[0]["ts"])
        return out

    def last_firing(self, rule: str, key: str) -> Firing | None:
        """The latest `firing` event of (rule, key); None when there is none."""
        with self._errors(), self._connection().cursor() as cur:
            return self._last_firing(cur, rule, key)

    @staticmethod
    def _last_firing(cur: psycopg.Cursor[TupleRow], rule: str, key: str) -> Firing | None:
        row = cur.execute(
            "SELECT id, severity, labels, details::jsonb ->> 'mode' FROM alerts"
            " WHERE rule = %s AND key = %s AND event = 'firing' ORDER BY id DESC LIMIT 1",
            (rule, key)).fetchone()
        if row is None:
            return None
        delivered = [c for (c,) in cur.execute(
            "SELECT channel FROM deliveries WHERE alert_id = %s AND status IN ('pending', 'sent')"
            " ORDER BY id", (row[0],)).fetchall()]
        return Firing(cast(Severity, row[1]), labels_of(row[2]), delivered, row[3] or "live")

    def active_silences(self, now_ms: int) -> list[Silence]:
        return self.silences(now_ms)

    def silences(self, now_ms: int | None) -> list[Silence]:
        """The silences in force at ``now_ms`` (every one kept when None), by id."""
        where, params = ("", []) if now_ms is None else (" WHERE expires_ts > %s", [now_ms])
        return [_silence_of(r) for r in self._rows(f"SELECT * FROM silences{where} ORDER BY id",
                                                   params)]

    # -- the outbox -------------------------------------------------------------------------

    def due(self) -> list[Delivery]:
        """Every pending delivery with its alert, oldest first."""
        return [_delivery_of(r) for r in self._rows(
            f"{_DELIVERY} WHERE d.status = 'pending' ORDER BY d.id")]

    def sent_since(self, channel: str, since_ms: int) -> list[Delivery]:
        """The channel's deliveries sent after ``since_ms``."""
        return [_delivery_of(r) for r in self._rows(
            f"{_DELIVERY} WHERE d.channel = %s AND d.status = 'sent' AND d.sent_ts > %s"
            " ORDER BY d.id", [channel, since_ms])]

    def messages_sent(self, channel: str, since_ms: int) -> int:
        """Messages the channel got after ``since_ms`` (flood control)."""
        rows = self._rows(
            "SELECT count(*) AS n FROM deliveries WHERE channel = %s AND status = 'sent'"
            " AND sent_ts > %s AND coalesce(last_error, '') NOT IN (%s, %s)",
            [channel, since_ms, FOLDED, GROUPED])
        return int(rows[0]["n"]) if rows else 0

    def claim(self, ids: Sequence[int], owner: str, now_ms: int, ttl_ms: int
              ) -> dict[int, str | None]:
        """Claim the deliveries of ``ids`` still pending and not claimed by another instance
        until after ``now_ms`` (rows another instance is claiming this moment are skipped):
        this one sends them, until ``now_ms + ttl_ms``. Returns the ids taken, each with the
        instance whose claim expired unsettled (it may have sent it before dying), else None."""
        if not ids:
            return {}
        taken: dict[int, str | None] = {}
        with self._errors():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for i, by, until in cur.execute(
                        "SELECT id, claimed_by, claim_expires_ts FROM deliveries"
                        " WHERE id = ANY(%s) AND status = 'pending' ORDER BY id"
                        " FOR UPDATE SKIP LOCKED", [list(ids)]).fetchall():
                    ok, previous = claim_of(by, until, owner, now_ms)
                    if ok:
                        taken[int(i)] = previous
                if taken:
                    cur.execute("UPDATE deliveries SET claimed_by = %s, claim_expires_ts = %s"
                                " WHERE id = ANY(%s)", [owner, now_ms + ttl_ms, list(taken)])
        return taken

    def record_failure(self, delivery_id: int, attempts: int, error: str, retry_ms: int) -> None:
        """A failed attempt: counted, its error kept, retried not before ``retry_ms``; the
        claim is cleared (any instance may retry it). A row another instance settled since
        (it took the claim over) stays as it is."""
        self.execute("UPDATE deliveries SET attempts = %s, last_error = %s,"
                     " next_attempt_ts = %s, claimed_by = NULL, claim_expires_ts = NULL"
                     " WHERE id = %s AND status = 'pending'",
                     [attempts, error[:500], retry_ms, delivery_id])

    def _settle(self, ids: Sequence[int], status: str, now_ms: int, note: str | None) -> None:
        if ids:
            self.execute("UPDATE deliveries SET status = %s, attempts = attempts + 1,"
                         " last_error = %s, sent_ts = %s WHERE id = ANY(%s)",
                         [status, note, now_ms if status == "sent" else None, list(ids)])

    # -- instances and leases ---------------------------------------------------------------

    def heartbeat(self, instance: InstanceRow) -> None:
        self.execute("INSERT INTO instances (id, host, pid, started_ts, heartbeat_ts, version)"
                     " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                     " host = excluded.host, pid = excluded.pid,"
                     " started_ts = excluded.started_ts, heartbeat_ts = excluded.heartbeat_ts,"
                     " version = excluded.version",
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
        released) or still exactly as ``expect``, raising its fencing token. Returns the lease
        as held now, None if another holds it. The row is locked while deciding, so of two
        instances taking it at once one wins and the other sees the new holder."""
        times = (now_ms, now_ms + ttl_ms)
        with self._errors():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                row = cur.execute(f"SELECT {_LEASE} FROM leases WHERE name = %s FOR UPDATE",
                                  [name]).fetchone()
                if row is None:
                    row = cur.execute(
                        f"INSERT INTO leases ({_LEASE}) VALUES (%s, %s, 1, %s, %s, %s)"
                        f" ON CONFLICT (name) DO NOTHING RETURNING {_LEASE}",
                        [name, owner, now_ms, *times]).fetchone()
                    if row is not None:
                        return LeaseRow(*row)
                    # another instance created it a moment ago: decide against its row
                    row = cur.execute(f"SELECT {_LEASE} FROM leases WHERE name = %s"
                                      " FOR UPDATE", [name]).fetchone()
                    assert row is not None
                held = LeaseRow(*row)
                if held.owner == owner:
                    sql, params = "renewed_ts = %s, expires_ts = %s", list[Any]([*times])
                elif held.owner is None or held == expect:
                    sql = ("owner = %s, token = token + 1, acquired_ts = %s, renewed_ts = %s,"
                           " expires_ts = %s")
                    params = [owner, now_ms, *times]
                else:
                    return None
                got = cur.execute(f"UPDATE leases SET {sql} WHERE name = %s RETURNING {_LEASE}",
                                  [*params, name]).fetchone()
        return LeaseRow(*got) if got else None

    def release(self, names: Sequence[str], owner: str) -> None:
        """Give up these leases (a successor takes them at once, with a new token)."""
        if names:
            self.execute("UPDATE leases SET owner = NULL WHERE name = ANY(%s) AND owner = %s",
                         [list(names), owner])

    # -- retention --------------------------------------------------------------------------

    def prune(self, before_ms: int, limit: int | None = None) -> int:
        """Delete samples, books and settled alerts older than ``before_ms``; returns rows.

        ``limit`` bounds the samples and books deleted in one call (roughly: the rows up to
        the time of the ``limit``-th oldest), so a long backlog is worked off in slices.
        """
        n = 0
        for table in ("samples", "books"):
            if limit is None:
                n += self.execute(f"DELETE FROM {table} WHERE ts < %s", [before_ms])
            else:
                n += self.execute(
                    f"DELETE FROM {table} WHERE ts < %(b)s AND ts <= coalesce((SELECT ts FROM"
                    f" {table} WHERE ts < %(b)s ORDER BY ts OFFSET %(n)s LIMIT 1), %(b)s)",
                    cast(Any, {"b": before_ms, "n": max(int(limit) - 1, 0)}))
        n += self.execute("DELETE FROM deliveries WHERE created_ts < %s AND status != 'pending'",
                          [before_ms])
        n += self.execute("DELETE FROM alerts a WHERE ts < %s AND NOT EXISTS"
                          " (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id)", [before_ms])
        n += self.execute("DELETE FROM silences WHERE expires_ts < %s", [before_ms])
        return n

    def maintain(self) -> None:
        """Nothing: the server's autovacuum keeps the tables and statistics in shape."""

    # -- recorded books ---------------------------------------------------------------------

    def count_books(self, venue: str | None = None, symbol: str | None = None) -> int:
        where, params = series_where(venue, symbol)
        return int(self._rows(f"SELECT count(*) AS n FROM books{where.replace('?', '%s')}",
                              params)[0]["n"])

    def books(self, venue: str | None = None, symbol: str | None = None) -> Iterator[BookRow]:
        """The recorded books (of a venue, a symbol), oldest first."""
        where, params = series_where(venue, symbol)
        for r in self._iterate("SELECT ts, venue, symbol, bids, asks, contract_size, inverse"
                               f" FROM books{where.replace('?', '%s')} ORDER BY ts", params):
            yield BookRow(r["ts"], r["venue"], r["symbol"], decode_levels(r["bids"]),
                          decode_levels(r["asks"]), r["contract_size"], bool(r["inverse"]))

    def book_series(self) -> list[tuple[str, str]]:
        """Every (venue, symbol) with recorded books."""
        return [(r["venue"], r["symbol"]) for r in self._rows(
            "SELECT DISTINCT venue, symbol FROM books ORDER BY venue, symbol")]

    def server_version(self) -> str:
        """The server's version (``check --online``)."""
        return str(self._rows("SHOW server_version")[0]["server_version"])


