"""PostgreSQL logging (issue: a shared store): samples written through PostgresStore.write
against the faster of raw psycopg ``executemany`` and ``COPY`` of the same rows into the same
table, on a throwaway local server (tests/pgserver.py) started for the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pgserver
import psycopg

from wis_monitor.store import Batch, SampleRow
from wis_monitor.store.postgres import PostgresStore


def bench_postgres_writes(rows: list[SampleRow], best_of: Callable[..., float],
                          batch: int = 1000) -> dict[str, float]:
    server, started_s = pgserver.start()
    try:
        return {"server_start_s": started_s,
                **_measure(server, rows, best_of, batch)}
    finally:
        server.stop()


def _measure(server: pgserver.Server, rows: list[SampleRow], best_of: Callable[..., float],
             batch: int) -> dict[str, float]:
    batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]

    def fresh() -> tuple[str, PostgresStore]:
        url = server.new_database()
        return url, PostgresStore(url)  # the schema and indexes, as the store creates them

    def ours() -> float:
        _, store = fresh()
        t0 = time.perf_counter()
        for chunk in batches:
            store.write(Batch(samples=chunk))
        dt = time.perf_counter() - t0
        store.close()
        return dt

    def raw(how: str) -> Callable[[], float]:
        def run() -> float:
            url, store = fresh()
            cols, values = store.columns, store.value_columns
            store.close()
            names = ", ".join(cols)
            insert = f"INSERT INTO samples ({names}) VALUES ({', '.join(['%s'] * len(cols))})"
            # the same samples, laid out as the columns' tuples before the clock starts
            tuples: list[list[tuple[Any, ...]]] = [
                [(r.ts_ms, r.venue, r.symbol, r.quality, r.error, *map(r.values.get, values))
                 for r in chunk] for chunk in batches]
            with psycopg.connect(url, autocommit=True) as conn:
                t0 = time.perf_counter()
                for params in tuples:
                    with conn.transaction(), conn.cursor() as cur:
                        if how == "copy":
                            with cur.copy(f"COPY samples ({names}) FROM STDIN") as copy:
                                for p in params:
                                    copy.write_row(p)
                        else:
                            cur.executemany(insert, params)
                return time.perf_counter() - t0
        return run

    t_many = best_of(raw("executemany"), 3)
    t_copy = best_of(raw("copy"), 3)
    t_ours = best_of(ours, 3)
    n = len(rows)
    return {"rows": n, "postgres_rows_per_s": n / t_ours,
            "raw_executemany_rows_per_s": n / t_many, "raw_copy_rows_per_s": n / t_copy,
            "postgres_vs_raw": t_ours / min(t_many, t_copy)}
