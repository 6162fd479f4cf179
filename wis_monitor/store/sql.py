"""SQL fragments the stores share (written with ``?`` placeholders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wis_monitor.store.rows import GOOD_QUALITIES, AlertEvent, SampleRow, labels_of

#: The condition of a good sample, from the flags that only warn.
GOOD = f"quality IN ({', '.join(repr(q) for q in GOOD_QUALITIES)})"


def quote(name: str) -> str:
    """A column name as an SQL identifier (SQLite and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def columns(names: Sequence[str]) -> str:
    """Column names as quoted identifiers, comma-separated."""
    return ", ".join(quote(n) for n in names)


def series_where(venue: str | None, symbol: str | None, *, prefix: str = " WHERE "
                 ) -> tuple[str, list[Any]]:
    """``WHERE venue = ? AND symbol = ?`` for the ones given (nothing when neither is)."""
    where, params = [], []
    for col, value in (("venue", venue), ("symbol", symbol)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    return (prefix + " AND ".join(where) if where else ""), params


def sample_of(r: dict[str, Any]) -> SampleRow:
    """A ``samples`` row as read: the columns besides series, time, quality and error are
    its values (whichever the query took)."""
    ts, venue, symbol = int(r.pop("ts")), r.pop("venue"), r.pop("symbol")
    quality, error = r.pop("quality", "") or "", r.pop("error", None)
    return SampleRow(ts, venue, symbol, r, quality, error)


def alert_of(r: dict[str, Any]) -> AlertEvent:
    """An ``alerts`` row (``SELECT a.*``) as an event."""
    return AlertEvent(int(r["ts"]), r["rule"], r["key"], r["venue"], r["symbol"], r["event"],
                      r["severity"], r["value"], r["summary"], labels_of(r["labels"]),
                      labels_of(r["details"]), id=r["id"])
