"""Book recordings in Parquet: one row per book, levels as list<double> columns.

Columns: ``ts`` (int64, ms), ``venue``, ``symbol`` (strings), ``bid_px``, ``bid_qty``,
``ask_px``, ``ask_qty`` (list<double>, best level first), ``contract_size`` (double, null = 1),
``inverse`` (bool, null = false), ``latency_ms`` (double, null = unknown). Reading goes batch by
batch (bounded memory) and builds each book from views into the batch's arrays: no Python
object per level. Needs pyarrow (``pip install 'wis-monitor[analysis]'``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from wis_monitor.book import Book, all_finite, batch_flags, rows_with
from wis_monitor.errors import Problem, WisMonitorError
from wis_monitor.sources import Observation
from wis_monitor.sources.replay import MAX_TS_MS

INSTALL_HINT = "pip install 'wis-monitor[analysis]'"
#: Books per row group when writing, and per batch when reading (1000-level books: ~32 MB).
ROWS_PER_GROUP = 1024
LEVEL_COLUMNS = ("bid_px", "bid_qty", "ask_px", "ask_qty")
REQUIRED = ("ts", "venue", "symbol", *LEVEL_COLUMNS)


class MissingExtra(WisMonitorError):
    """An optional dependency is not installed."""


def pyarrow() -> tuple[ModuleType, ModuleType]:
    """``pyarrow`` and ``pyarrow.parquet``, or MissingExtra saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra(f"Parquet recordings need pyarrow: {INSTALL_HINT}") from None
    return pa, pq


def _schema(pa: Any) -> Any:
    levels = pa.list_(pa.float64())
    return pa.schema([
        ("ts", pa.int64()), ("venue", pa.string()), ("symbol", pa.string()),
        ("bid_px", levels), ("bid_qty", levels), ("ask_px", levels), ("ask_qty", levels),
        ("contract_size", pa.float64()), ("inverse", pa.bool_()), ("latency_ms", pa.float64()),
    ], metadata={"wis_monitor": "books/1"})


def write_parquet(observations: Iterable[Observation], path: str | Path) -> int:
    """Write the books of ``observations`` (those without one are left out); returns how many."""
    pa, pq = pyarrow()
    schema = _schema(pa)
    n = 0
    # LZ4 and byte-stream-split levels without dictionaries read fastest (docs/benchmarks.md).
    with pq.ParquetWriter(str(path), schema, compression="lz4", use_dictionary=["venue", "symbol"],
                          use_byte_stream_split=[f"{c}.list.element" for c in LEVEL_COLUMNS],
                          ) as writer:
        chunk: list[Observation] = []
        for obs in observations:
            if obs.book is None:
                continue
            chunk.append(obs)
            if len(chunk) == ROWS_PER_GROUP:
                writer.write_table(_table(pa, schema, chunk))
                n += len(chunk)
                chunk = []
        if chunk:
            writer.write_table(_table(pa, schema, chunk))
            n += len(chunk)
    return n


def _table(pa: Any, schema: Any, chunk: list[Observation]) -> Any:
    books = [o.book for o in chunk if o.book is not None]

    def levels(arrays: list[npt.NDArray[np.float64]]) -> Any:
        offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        values = np.concatenate(arrays) if arrays else np.empty(0)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float64()))

    return pa.table({
        "ts": pa.array([o.ts_ms for o in chunk], pa.int64()),
        "venue": pa.array([o.venue for o in chunk], pa.string()),
        "symbol": pa.array([o.symbol for o in chunk], pa.string()),
        "bid_px": levels([b.bid_px for b in books]),
        "bid_qty": levels([b.bid_qty for b in books]),
        "ask_px": levels([b.ask_px for b in books]),
        "ask_qty": levels([b.ask_qty for b in books]),
        "contract_size": pa.array([b.contract_size if b.contract_size != 1.0 else None
                                   for b in books], pa.float64()),
        "inverse": pa.array([True if b.inverse else None for b in books], pa.bool_()),
        "latency_ms": pa.array([o.latency_ms for o in chunk], pa.float64()),
    }, schema=schema)


def columns_problem(path: str | Path) -> Problem | None:
    """What makes a file no Parquet book recording at all, None when it is one."""
    pa, pq = pyarrow()
    try:
        names = pq.ParquetFile(str(path)).schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        return Problem(str(path), None, f"not a Parquet file: {exc}")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        return Problem(str(path), None, "not a book recording: no column "
                                        + ", ".join(f'"{c}"' for c in missing))
    return None


def read_parquet(path: str | Path, problems: list[Problem] | None = None
                 ) -> Iterator[Observation]:
    """Yield the books of a Parquet recording in file order; bad rows go to ``problems``.

    As in the JSON reader, a row with a missing or non-finite value, or whose ``ts`` is not after
    the previous book of its series, is a bad row (``PATH:ROW``, rows counted from 1); a book
    whose levels no book can have (non-positive, unsorted) comes with its quality flags.
    """
    pa, pq = pyarrow()
    name = str(path)
    sink: list[Problem] = problems if problems is not None else []
    open(name, "rb").close()  # a file that cannot be opened fails as a JSON recording's does
    if problem := columns_problem(name):
        sink.append(problem)
        return
    pf = pq.ParquetFile(name)
    columns = [c for c in (*REQUIRED, "contract_size", "inverse", "latency_ms")
               if c in pf.schema_arrow.names]
    last: dict[tuple[str, str], int] = {}
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=ROWS_PER_GROUP, columns=columns,
                                      use_threads=False):
            yield from _batch(name, row, batch, last, sink)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        sink.append(Problem(name, row + 1, f"cannot read further: {exc}"))


def _levels(col: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                               npt.NDArray[np.bool_]]:
    """Offsets and values of a list<double> column, and which rows are null."""
    offsets = col.offsets.to_numpy().astype(np.int64, copy=False)
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    return offsets, values, nulls


def _aligned(offsets: npt.NDArray[np.int64], their: npt.NDArray[np.int64],
             values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``values`` cut by ``their`` offsets, re-laid on ``offsets`` (NaN where rows differ)."""
    out = np.full(int(offsets[-1]), np.nan)
    for i in range(offsets.size - 1):
        a, b, c, d = offsets[i], offsets[i + 1], their[i], their[i + 1]
        if b - a == d - c:
            out[a:b] = values[c:d]
    return out


def _optional(batch: Any, name: str) -> list[Any]:
    if name in batch.schema.names:
        return list(batch.column(name).to_pylist())
    return [None] * batch.num_rows


def _batch(path: str, first_row: int, batch: Any, last: dict[tuple[str, str], int],
           problems: list[Problem]) -> Iterator[Observation]:
    n = batch.num_rows
    cols = {c: _levels(batch.column(c)) for c in LEVEL_COLUMNS}
    (bo, bp, b_null), (bqo, bq, bq_null) = cols["bid_px"], cols["bid_qty"]
    (ao, ap, a_null), (aqo, aq, aq_null) = cols["ask_px"], cols["ask_qty"]
    nulls = b_null | bq_null | a_null | aq_null
    if (bo != bqo).any() or (ao != aqo).any():  # prices and amounts not cut alike: rare
        bq, aq = _aligned(bo, bqo, bq), _aligned(ao, aqo, aq)
        nulls |= (np.diff(bo) != np.diff(bqo)) | (np.diff(ao) != np.diff(aqo))
    nonfinite = np.zeros(n, dtype=np.bool_)
    for off, px, qty in ((bo, bp, bq), (ao, ap, aq)):
        if not (all_finite(px) and all_finite(qty)):
            nonfinite |= rows_with(~(np.isfinite(px) & np.isfinite(qty)), off[:-1], off[1:])
    flags = batch_flags(bo, bp, bq, ao, ap, aq)
    ts_col = batch.column("ts").to_pylist()
    venues = batch.column("venue").to_pylist()
    symbols = batch.column("symbol").to_pylist()
    sizes = _optional(batch, "contract_size")
    inverses = _optional(batch, "inverse")
    latencies = _optional(batch, "latency_ms")
    unusable = (nulls | nonfinite).tolist()
    bids, asks = bo.tolist(), ao.tolist()  # Python ints slice faster than numpy scalars
    for i in range(n):
        lineno = first_row + i + 1
        ts, venue, symbol = ts_col[i], venues[i], symbols[i]
        reason = _row_problem(ts, venue, symbol, sizes[i], latencies[i])
        if reason is None and unusable[i]:
            reason = ("levels must be lists of prices and amounts of the same length"
                      if nulls[i] else "levels must be finite numbers")
        if reason is None:
            key = (venue, symbol)
            before = last.get(key)
            if before is not None and ts <= before:
                reason = f"ts {ts} is not after the previous ({before}) of {venue} {symbol}"
        if reason is not None:
            problems.append(Problem(path, lineno, reason))
            continue
        last[(venue, symbol)] = ts
        cs = sizes[i]
        row_flags = flags[i]
        if cs is not None and cs <= 0:
            cs = None
            row_flags = row_flags | {"invalid"}
        b0, b1, a0, a1 = bids[i], bids[i + 1], asks[i], asks[i + 1]
        book = Book(bp[b0:b1], bq[b0:b1], ap[a0:a1], aq[a0:a1],
                    contract_size=1.0 if cs is None else cs,
                    inverse=inverses[i] is True, venue_ts_ms=ts)
        yield Observation(venue, symbol, ts, book, row_flags, latencies[i])


def _row_problem(ts: Any, venue: Any, symbol: Any, contract_size: Any, latency: Any
                 ) -> str | None:
    if ts is None or not 0 <= ts <= MAX_TS_MS:
        return '"ts" must be milliseconds since the epoch (a number from 0 to the year 9999)'
    for key, value in (("venue", venue), ("symbol", symbol)):
        if not value:
            return f'"{key}" must be a non-empty string'
    if contract_size is not None and not math.isfinite(contract_size):
        return '"contract_size" must be a finite number'
    if latency is not None and not (math.isfinite(latency) and latency >= 0):
        return '"latency_ms" must be a number of milliseconds, at least 0'
    return None
