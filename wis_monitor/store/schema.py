"""The SQLite schema as a declarative list of migrations (``sqlite_utils.migrations``).

Each migration is idempotent, because databases written before migrations were recorded hold
none of them in ``_sqlite_migrations`` and run them all: a step finds its table, index or
column there already and does nothing. ``PRAGMA user_version`` stays at 1, the version every
release so far has written and accepts, so an older wis-monitor still opens an upgraded file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

import sqlite_utils
from sqlite_utils.migrations import Migrations

from wis_monitor.errors import StoreError

SCHEMA_VERSION = 1
Step = Callable[[sqlite_utils.Database], None]
MIGRATION_SET = "wis-monitor"

#: The samples table's columns besides its series and time (and the variants' own).
SAMPLE_VALUE_COLUMNS: tuple[str, ...] = (
    "mid", "spread_bps", "wis", "wis_z", "imbalance", "microprice", "bid_depth", "ask_depth",
    "mid_change_bps", "age_s", "latency_ms", "coverage_bps", "ofi", "ofi_z", "unwind_bps",
    "book_age_ms", "drift_bps",
)

_TABLES = """
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

migrations = Migrations(MIGRATION_SET)
#: The names of the migrations, in order (a database with others is from a newer release).
NAMES: list[str] = []


def _migration(name: str) -> Callable[[Step], Step]:
    NAMES.append(name)
    return migrations(name=name)


@_migration("0001_tables")
def _tables(db: sqlite_utils.Database) -> None:
    """Version 1 as first released: samples, alerts, deliveries, alert state, silences, books."""
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)


@_migration("0002_orderflow_columns")
def _orderflow_columns(db: sqlite_utils.Database) -> None:
    """The band's coverage and order-flow imbalance (and its z-score) of each sample."""
    add_sample_columns(db, ("coverage_bps", "ofi", "ofi_z"))


@_migration("0003_instances_leases_claims")
def _instances_leases_claims(db: sqlite_utils.Database) -> None:
    """Instances sharing the store, their leases, and who claimed a delivery until when."""
    db.execute("CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, host TEXT NOT NULL,"
               " pid INTEGER NOT NULL, started_ts INTEGER NOT NULL,"
               " heartbeat_ts INTEGER NOT NULL, version TEXT NOT NULL DEFAULT '')")
    db.execute("CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT,"
               " token INTEGER NOT NULL, acquired_ts INTEGER NOT NULL,"
               " renewed_ts INTEGER NOT NULL, expires_ts INTEGER NOT NULL)")
    existing = {c.name for c in db["deliveries"].columns}
    for col, kind in (("claimed_by", "TEXT"), ("claim_expires_ts", "INTEGER")):
        if col not in existing:
            db.execute(f"ALTER TABLE deliveries ADD COLUMN {col} {kind}")


@_migration("0004_unwind_column")
def _unwind_column(db: sqlite_utils.Database) -> None:
    """The cost of unwinding the desk's position on the series (``unwind_bps``)."""
    add_sample_columns(db, ("unwind_bps",))


@_migration("0005_stream_columns")
def _stream_columns(db: sqlite_utils.Database) -> None:
    """A streamed book's age at the sample and its drift from a REST snapshot."""
    add_sample_columns(db, ("book_age_ms", "drift_bps"))


def add_sample_columns(db: sqlite_utils.Database, columns: Sequence[str]) -> None:
    """Add these REAL columns to ``samples`` where missing (WIS variants, later metrics)."""
    existing = {c.name for c in db["samples"].columns}
    for col in columns:
        if col not in existing:
            db.execute(f"ALTER TABLE samples ADD COLUMN [{col}] REAL")


def migrate(db: sqlite_utils.Database, path: str) -> None:
    """Bring the database to the newest schema; refuse one written by a newer wis-monitor."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    unknown = [m.name for m in migrations.applied(db) if m.name not in NAMES]
    if version > SCHEMA_VERSION or unknown:
        raise StoreError(
            f"{path}: schema version {version} is newer than this wis-monitor supports"
            if version > SCHEMA_VERSION else
            f"{path}: the schema has migrations this wis-monitor does not know "
            f"({', '.join(unknown)}): it was written by a newer release")
    try:
        migrations.apply(db)
    except sqlite3.DatabaseError:  # another process ran the same upgrade a moment before
        migrations.apply(db)
    if version != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
