"""Opening the store a configuration names, in one place: a ``postgresql://`` URL
(``storage.url``) is the PostgreSQL store shared by several instances, anything else a SQLite
file (``storage.path``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wis_monitor.errors import StoreError

if TYPE_CHECKING:
    from wis_monitor.store.protocol import Store

URL_SCHEMES = ("postgresql://", "postgres://")
NO_DRIVER = ("storage.url needs the PostgreSQL driver, which is not installed: "
             "pip install 'wis-monitor[postgres]'")


def is_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return location.startswith(URL_SCHEMES)


def open_store(location: str, *, variants: Sequence[str] = (), readonly: bool = False,
               busy_timeout_s: float = 5.0) -> Store:
    """The store at ``location``: a PostgreSQL URL or a SQLite file path. ``busy_timeout_s``
    bounds how long SQLite waits for a lock, or a PostgreSQL connection attempt."""
    if is_url(location):
        try:
            from wis_monitor.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(NO_DRIVER) from None
        return PostgresStore(location, variants=variants, readonly=readonly,
                             connect_timeout_s=max(busy_timeout_s, 2.0))
    from wis_monitor.store.sqlite import SqliteStore

    return SqliteStore(location, variants=variants, readonly=readonly,
                       busy_timeout_s=busy_timeout_s)


def probe(location: str) -> str:
    """Connect to the PostgreSQL database at ``location`` and describe it, changing nothing
    (``check --online``); StoreError when it cannot be used."""
    try:
        from wis_monitor.store.pgconnect import probe as probe_postgres
    except ImportError:
        raise StoreError(NO_DRIVER) from None
    return probe_postgres(location)
