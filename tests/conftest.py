"""Shared fixtures: where ../shared/data is (its absence skips or fails), a webhook receiver,
a PostgreSQL server and a store of each backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from webhook import Receiver

from wis_monitor.store import Store

SHARED = Path(os.environ.get("WIS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests skip without it, and fail when WIS_REQUIRE_SHARED=1 (CI)."""
    data = SHARED / "data"
    if not (data / "books").is_dir():
        if os.environ.get("WIS_REQUIRE_SHARED") == "1":
            pytest.fail(f"{data} not found and WIS_REQUIRE_SHARED=1")
        pytest.skip(f"{data} not found")
    return data


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook endpoint (``json://127.0.0.1:PORT/...``) that accepts every post."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.Server]:
    """A throwaway PostgreSQL server (one per test process); tests skip without the server
    binaries or psycopg, and fail instead when WIS_REQUIRE_SHARED=1 (CI)."""
    try:
        import psycopg  # noqa: F401
        server, _ = pgserver.start()
    except (ImportError, LookupError) as exc:
        reason = f"no PostgreSQL for the tests: {exc}"
        if os.environ.get("WIS_REQUIRE_SHARED") == "1":
            pytest.fail(f"{reason} (WIS_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: pgserver.Server) -> str:
    """The URL (with its password) of a fresh, empty database."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store of each backend is: a new SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store_opener(store_location: str) -> Iterator[Callable[..., Store]]:
    """Opens the store at ``store_location`` (as often as asked: several instances), and
    closes every one at the end."""
    from wis_monitor.store.open import open_store as opener

    stores: list[Store] = []

    def open_(**kwargs: Any) -> Store:
        stores.append(opener(store_location, **kwargs))
        return stores[-1]

    yield open_
    for s in stores:
        s.close()


@pytest.fixture
def any_store(store_opener: Callable[..., Store]) -> Store:
    """A store of each backend."""
    return store_opener()
