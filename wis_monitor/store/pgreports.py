"""The PostgreSQL store's reads for the operator tools: :mod:`.reports` with PostgreSQL's
placeholders, JSON operator and catalogue, and the same results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wis_monitor.store.reports import Reports


def marks(sql: str) -> str:
    """SQLite's ``?`` placeholders (of the shared queries and fragments) as psycopg's."""
    return sql.replace("?", "%s")


class PgReports(Reports):
    """Reads that summarise the database (mixed into the PostgreSQL store)."""

    MODE = "(a.details::jsonb ->> 'mode')"  # details: TEXT holding a JSON object

    def _report(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._rows(marks(sql), params)

    def sample_columns(self) -> set[str]:
        """The columns the samples table has."""
        return {r["column_name"] for r in self._rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'samples'"
            " AND table_schema = current_schema()")}
