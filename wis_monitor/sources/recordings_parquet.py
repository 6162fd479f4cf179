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

from wis_monitor.book import all_finite, batch_flags, checked_book, rows_with, sides_clean
from wis_monitor.errors import Problem, WisMonitorError
from wis_monitor.sources import Observation, recorded
from wis_monitor.sources.replay import MAX_TS_MS

INSTALL_HINT = "pip install 'wis-monitor[analysis]'"
#: Books per row group when writing (1000-level books: ~32 MB).
ROWS_PER_GROUP = 1024
#: Books per batch when reading: half a row group decodes faster on real books (docs/benchmarks.md).
BATCH_ROWS = 512
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


def book_schema(pa: Any) -> Any:
    # Required (non-null) columns and list elements: no null slots to decode (about 20% faster
    # to read). Files with nullable columns, as older versions wrote them, read the same.
    levels = pa.list_(pa.field("element", pa.float64(), nullable=False))
    return pa.schema([
        pa.field("ts", pa.int64(), nullable=False), pa.field("venue", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        *(pa.field(c, levels, nullable=False) for c in LEVEL_COLUMNS),
        ("contract_size", pa.float64()), ("inverse", pa.bool_()), ("latency_ms", pa.float64()),
    ], metadata={"wis_monitor": "books/1"})


def write_parquet(observations: Iterable[Observation], path: str | Path) -> int:
    """Write the books of ``observations`` (those without one are left out); returns how many."""
    pa, pq = pyarrow()
    schema = book_schema(pa)
    n = 0
    writer = None
    try:
        chunk: list[Observation] = []
        for obs in observations:
            if obs.book is None:
                continue
            chunk.append(obs)
            if len(chunk) == ROWS_PER_GROUP:
                writer = _write(pa, pq, schema, writer, path, chunk)
                n += len(chunk)
                chunk = []
        if chunk or writer is None:
            writer = _write(pa, pq, schema, writer, path, chunk)
            n += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    return n


def _write(pa: Any, pq: ModuleType, schema: Any, writer: Any, path: str | Path,
           chunk: list[Observation]) -> Any:
    """Write a row group; the first one opens the file, choosing each column's compression."""
    table = _table(pa, schema, chunk)
    if writer is None:
        # Plain-encoded levels and no dictionaries read fastest and, for a venue's prices on
        # a tick grid, are smallest too; LZ4 where it saves at least a quarter of a column (a
        # venue's levels: nearly 90%), none where it does not (full-precision amounts: 6%,
        # and they read 10% faster uncompressed) (docs/benchmarks.md).
        writer = pq.ParquetWriter(str(path), schema, compression=_compression(pa, table),
                                  use_dictionary=["venue", "symbol"])
    writer.write_table(table)
    return writer


def _compression(pa: Any, table: Any) -> dict[str, str]:
    codecs = {name: "lz4" for name in table.column_names}
    for name in LEVEL_COLUMNS:
        values = table.column(name).combine_chunks().values.buffers()[1]
        if values is not None and values.size:
            saved = 1.0 - len(pa.compress(values, codec="lz4", asbytes=True)) / values.size
            codecs[f"{name}.list.element"] = "lz4" if saved >= 0.25 else "none"
        del codecs[name]
    return codecs


def _table(pa: Any, schema: Any, chunk: list[Observation]) -> Any:
    books = [o.book for o in chunk if o.book is not None]
    list_type = schema.field("bid_px").type

    def levels(arrays: list[npt.NDArray[np.float64]]) -> Any:
        offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        values = np.concatenate(arrays) if arrays else np.empty(0)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float64()),
                                        type=list_type)

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


def parquet_symbols(path: str | Path) -> set[str]:
    """Every symbol of a Parquet recording, from its ``symbol`` column alone."""
    _, pq = pyarrow()
    column = pq.read_table(str(path), columns=["symbol"]).column("symbol")
    return {s for s in column.unique().to_pylist() if isinstance(s, str)}


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
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns,
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


NULL_LEVELS = "levels must be lists of prices and amounts of the same length"
NONFINITE_LEVELS = "levels must be finite numbers"


def _batch(path: str, first_row: int, batch: Any, last: dict[tuple[str, str], int],
           problems: list[Problem]) -> Iterator[Observation]:
    n = batch.num_rows
    cols = {c: _levels(batch.column(c)) for c in LEVEL_COLUMNS}
    (bo, bp, b_null), (bqo, bq, bq_null) = cols["bid_px"], cols["bid_qty"]
    (ao, ap, a_null), (aqo, aq, aq_null) = cols["ask_px"], cols["ask_qty"]
    nulls = b_null | bq_null | a_null | aq_null
    aligned = np.array_equal(bo, bqo) and np.array_equal(ao, aqo)
    if not aligned:  # prices and amounts not cut alike: rare
        bq, aq = _aligned(bo, bqo, bq), _aligned(ao, aqo, aq)
        nulls |= (np.diff(bo) != np.diff(bqo)) | (np.diff(ao) != np.diff(aqo))
    # The usual batch: every level finite, positive and sorted, found in a few passes.
    clean = aligned and sides_clean(bo, bp, bq, True) and sides_clean(ao, ap, aq, False)
    nonfinite = np.zeros(n, dtype=np.bool_)
    for off, px, qty in () if clean else ((bo, bp, bq), (ao, ap, aq)):
        if not (all_finite(px) and all_finite(qty)):
            nonfinite |= rows_with(~(np.isfinite(px) & np.isfinite(qty)), off[:-1], off[1:])
    level_problems: list[str | None] = [None] * n
    for i in np.flatnonzero(nulls | nonfinite).tolist():
        level_problems[i] = NULL_LEVELS if nulls[i] else NONFINITE_LEVELS
    venues = batch.column("venue").to_pylist()
    symbols = batch.column("symbol").to_pylist()
    plain = _plain_rows(batch, venues, symbols)
    bids, asks = bo.tolist(), ao.tolist()  # Python ints slice faster than numpy scalars
    rows = zip(range(first_row + 1, first_row + n + 1), batch.column("ts").to_pylist(), venues,
               symbols, _optional(batch, "contract_size"), _optional(batch, "inverse"),
               _optional(batch, "latency_ms"), batch_flags(bo, bp, bq, ao, ap, aq, clean=clean),
               level_problems, bids[:-1], bids[1:], asks[:-1], asks[1:], strict=True)
    for row, ts, venue, symbol, cs, inverse, latency, flags, level_problem, b0, b1, a0, a1 in rows:
        if not plain or level_problem:
            reason = _row_problem(ts, venue, symbol, cs, latency) or level_problem
            if reason is not None:
                problems.append(Problem(path, row, reason))
                continue
        key = (venue, symbol)
        before = last.get(key)
        if before is not None and ts <= before:
            problems.append(Problem(
                path, row, f"ts {ts} is not after the previous ({before}) of {venue} {symbol}"))
            continue
        last[key] = ts
        if cs is None:
            cs = 1.0
        elif cs <= 0:
            cs = 1.0
            flags = flags | {"invalid"}
        book = checked_book(bp[b0:b1], bq[b0:b1], ap[a0:a1], aq[a0:a1], cs, inverse is True, ts)
        yield recorded(venue, symbol, ts, book, flags, latency)


def _plain_rows(batch: Any, venues: list[Any], symbols: list[Any]) -> bool:
    """True when no row of ``batch`` has a :func:`_row_problem` (the usual batch), found column
    by column. When False, each row is checked."""
    ts = batch.column("ts")
    if ts.null_count or not (all(venues) and all(symbols)):
        return False
    t = ts.to_numpy(zero_copy_only=False)
    if t.dtype.kind not in "iu" or (t.size and not (t.min() >= 0 and t.max() <= MAX_TS_MS)):
        return False
    return (_numbers_from(batch, "contract_size", -math.inf)
            and _numbers_from(batch, "latency_ms", 0.0))


def _numbers_from(batch: Any, name: str, lowest: float) -> bool:
    """True when every value of the optional column ``name`` is null or a finite number, at least
    ``lowest``."""
    if name not in batch.schema.names:
        return True
    values = batch.column(name).drop_null().to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "fiu":
        return bool(values.size == 0)
    return bool(np.isfinite(values).all() and (values >= lowest).all())


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
