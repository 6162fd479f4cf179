"""The stores' reads for the operator tools (status, top, report, metrics), in the SQL that
SQLite and PostgreSQL share; a backend gives its own :meth:`Reports._mode` (the ``mode`` of an
alert's JSON details) and placeholders (:meth:`Reports._report`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from wis_monitor.store.rows import (
    AlertEvent,
    ChannelBacklog,
    FiringState,
    RuleFirings,
    SampleRow,
)
from wis_monitor.store.sql import GOOD, alert_of, columns, sample_of


class Reports:
    """Reads that summarise the database (mixed into a store)."""

    #: The ``mode`` of the details of the alert ``a`` (TEXT holding a JSON object).
    MODE = "json_extract(a.details, '$.mode')"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _report(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query written with ``?`` placeholders."""
        return self._rows(sql, params)

    def sample_columns(self) -> set[str]:
        """The columns the samples table has (older databases lack later metrics)."""
        return {r["name"] for r in self._rows("PRAGMA table_info(samples)")}

    def series_names(self) -> Iterator[tuple[str, str]]:
        """Every (venue, symbol) with samples, in order, by skipping along the series index
        (one short lookup per series, however many samples there are)."""
        row = self._report("SELECT venue, symbol FROM samples ORDER BY venue, symbol LIMIT 1")
        while row:
            venue, symbol = row[0]["venue"], row[0]["symbol"]
            yield venue, symbol
            row = self._report("SELECT venue, symbol FROM samples WHERE venue = ? AND symbol > ?"
                               " ORDER BY venue, symbol LIMIT 1", [venue, symbol]) or \
                self._report("SELECT venue, symbol FROM samples WHERE venue > ?"
                             " ORDER BY venue, symbol LIMIT 1", [venue])

    def latest_sample(self, venue: str, symbol: str) -> SampleRow | None:
        """The series' newest sample, of any quality (time, quality and error only)."""
        rows = self._report("SELECT ts, venue, symbol, quality, error FROM samples"
                            " WHERE venue = ? AND symbol = ? ORDER BY ts DESC LIMIT 1",
                            [venue, symbol])
        return sample_of(rows[0]) if rows else None

    def latest_good(self, venue: str, symbol: str, metrics: Sequence[str]) -> SampleRow | None:
        """The series' newest good sample with these values."""
        cols = columns(("ts", "venue", "symbol", "quality", *metrics))
        rows = self._report(f"SELECT {cols} FROM samples WHERE venue = ? AND symbol = ?"
                            f" AND {GOOD} ORDER BY ts DESC LIMIT 1", [venue, symbol])
        return sample_of(rows[0]) if rows else None

    def good_samples(self, since_ms: int, until_ms: int, venue: str | None = None,
                     symbol: str | None = None, metrics: Sequence[str] = ("mid", "wis", "wis_z")
                     ) -> list[SampleRow]:
        """Good samples in ``[since_ms, until_ms]`` (of a venue, a symbol), oldest first."""
        where, params = span(since_ms, until_ms, venue, symbol, nullable=False)
        cols = columns(("ts", "venue", "symbol", *metrics))
        return [sample_of(r) for r in self._report(
            f"SELECT {cols} FROM samples WHERE {where} AND {GOOD} ORDER BY ts", params)]

    def alert_events(self, since_ms: int, until_ms: int, venue: str | None = None,
                     symbol: str | None = None) -> list[AlertEvent]:
        """Alert events in ``[since_ms, until_ms]`` of a venue, a symbol (and every group
        rule's), oldest first."""
        where, params = span(since_ms, until_ms, venue, symbol, nullable=True)
        return [alert_of(r) for r in self._report(
            f"SELECT * FROM alerts WHERE {where} ORDER BY ts, id", params)]

    def sample_span(self, since_ms: int | None = None, until_ms: int | None = None
                    ) -> tuple[int, int] | None:
        """The first and last sample time (within ``[since_ms, until_ms)``), None if none."""
        where, params = "", []
        if since_ms is not None and until_ms is not None:
            where, params = " WHERE ts >= ? AND ts < ?", [since_ms, until_ms]
        r = self._report(f"SELECT min(ts) AS first, max(ts) AS last FROM samples{where}",
                         params)
        return None if not r or r[0]["first"] is None else (int(r[0]["first"]), int(r[0]["last"]))

    def firing_states(self) -> list[FiringState]:
        """Alerts firing now, by rule and key, with the mode of their latest firing event."""
        mode_of_state = (f"(SELECT {self.MODE} FROM alerts a WHERE a.rule = s.rule"
                         " AND a.key = s.key AND a.event = 'firing' ORDER BY a.id DESC LIMIT 1)")
        return [FiringState(r["rule"], r["key"], r["since"], r["mode"] or "live")
                for r in self._report(f"SELECT rule, key, since, {mode_of_state} AS mode"
                                      " FROM alert_state s WHERE state = 'firing'"
                                      " ORDER BY rule, key")]

    def firing_counts(self, day_since_ms: int, week_since_ms: int) -> list[RuleFirings]:
        """Firing events per rule and mode since each of two times."""
        return [RuleFirings(r["rule"], r["mode"], int(r["day"]), int(r["week"]))
                for r in self._report(
                    f"SELECT rule, coalesce({self.MODE}, 'live') AS mode,"
                    " count(*) FILTER (WHERE ts >= ?) AS day, count(*) AS week FROM alerts a"
                    " WHERE event = 'firing' AND ts >= ? GROUP BY 1, 2 ORDER BY 1, 2",
                    [day_since_ms, week_since_ms])]

    def outbox_backlog(self) -> list[ChannelBacklog]:
        """Per channel with deliveries: pending ones, the oldest pending, failed ones."""
        return [ChannelBacklog(r["channel"], int(r["pending"]), r["oldest"], int(r["failed"]))
                for r in self._report(
            "SELECT channel, count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'failed') AS failed,"
            " min(created_ts) FILTER (WHERE status = 'pending') AS oldest FROM deliveries"
            " GROUP BY channel ORDER BY channel")]

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """Deliveries by (channel, status)."""
        return {(r["channel"], r["status"]): int(r["n"]) for r in self._report(
            "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status")}


def span(since_ms: int, until_ms: int, venue: str | None, symbol: str | None, *,
         nullable: bool) -> tuple[str, list[Any]]:
    """``ts`` within the span and the venue and symbol given (or null, for ``nullable``)."""
    where = ["ts >= ?", "ts <= ?"]
    params: list[Any] = [since_ms, until_ms]
    for col, value in (("venue", venue), ("symbol", symbol)):
        if value is not None:
            where.append(f"({col} = ? OR {col} IS NULL)" if nullable else f"{col} = ?")
            params.append(value)
    return " AND ".join(where), params
