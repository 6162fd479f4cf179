"""Persistence: the only package that speaks SQL.

- :mod:`.protocol` — :class:`Store`, the interface every backend implements;
- :mod:`.rows` — the typed rows that cross it (samples, books, alert events, deliveries,
  silences) and what a good sample is;
- :mod:`.batch` — what one cycle writes in one transaction;
- :mod:`.settling` — how outbox rows are claimed and settled, on every backend;
- :mod:`.sqlite` (+ :mod:`.reports`, :mod:`.sql`) — the SQLite backend;
- :mod:`.schema` — its tables as a list of migrations;
- :mod:`.postgres` (+ :mod:`.pgreports`, :mod:`.pgschema`, :mod:`.pgconnect`) — the
  PostgreSQL backend shared by several instances (psycopg, an optional extra);
- :mod:`.open` — :func:`open_store`, the backend a location names (a URL or a file);
- :mod:`.buffer` — write-behind while the database refuses writes.
"""

from wis_monitor.store.batch import Batch
from wis_monitor.store.buffer import BufferedWriter, Written
from wis_monitor.store.open import open_store
from wis_monitor.store.protocol import Store
from wis_monitor.store.rows import (
    FOLDED,
    GOOD_QUALITIES,
    GROUPED,
    AlertEvent,
    AlertRow,
    BookRow,
    ChannelBacklog,
    Delivery,
    Firing,
    FiringState,
    InstanceRow,
    LeaseRow,
    RuleFirings,
    SampleRow,
    Silence,
    StateData,
    is_good,
)
from wis_monitor.store.schema import SCHEMA_VERSION
from wis_monitor.store.sqlite import SqliteStore, decode_levels, encode_levels

__all__ = [
    "FOLDED", "GOOD_QUALITIES", "GROUPED", "SCHEMA_VERSION", "AlertEvent", "AlertRow", "Batch",
    "BookRow", "BufferedWriter", "ChannelBacklog", "Delivery", "Firing", "FiringState",
    "InstanceRow", "LeaseRow", "RuleFirings", "SampleRow", "Silence", "SqliteStore",
    "StateData", "Store", "Written", "decode_levels", "encode_levels", "is_good", "open_store",
]
