"""Parquet book recordings: the same books as JSON, bad rows reported, a clear missing extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.book import Book, batch_flags, checked_book, make_book, sides_clean
from wis_monitor.errors import Problem
from wis_monitor.sources import Observation, recorded
from wis_monitor.sources.replay import read_recording
from wis_monitor.store import Batch, BookRow, SqliteStore

pa = pytest.importorskip("pyarrow", reason="the analysis extra (pyarrow) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

from wis_monitor.sources.recordings_parquet import (  # noqa: E402
    book_schema,
    read_parquet,
    write_parquet,
)

T0 = 1_723_161_255_000
BOOKS = [
    {"ts": T0, "venue": "binance", "symbol": "BTC/USDT", "bids": [[100.0, 1.0], [99.5, 2.0]],
     "asks": [[100.5, 1.5], [101.0, 0.25]], "latency_ms": 12.5},
    {"ts": T0 + 1000, "venue": "binance", "symbol": "BTC/USDT", "bids": [[100.0, 1.0]],
     "asks": []},  # one-sided
    {"ts": T0 + 2000, "venue": "binance", "symbol": "BTC/USDT", "bids": [[101.0, 1.0]],
     "asks": [[100.5, 1.0]]},  # crossed
    {"ts": T0 + 500, "venue": "binancecoinm", "symbol": "BTC/USD:BTC",
     "bids": [[61000.0, 30.0], [61000.5, 2.0]], "asks": [[61001.0, 3.0]],  # unsorted: invalid
     "contract_size": 100, "inverse": True},
    {"ts": T0 + 3000, "venue": "binance", "symbol": "BTC/USDT", "bids": [], "asks": []},
    {"ts": T0 + 4000, "venue": "binance", "symbol": "BTC/USDT", "bids": [[100.0, -1.0]],
     "asks": [[100.5, 1.0]]},  # negative amount: invalid
]


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def same(a: list[Observation], b: list[Observation]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.venue, x.symbol, x.ts_ms, x.flags, x.latency_ms) == \
            (y.venue, y.symbol, y.ts_ms, y.flags, y.latency_ms)
        assert x.book is not None and y.book is not None
        assert x.book.levels() == y.book.levels()  # exact equality of every level
        assert (x.book.contract_size, x.book.inverse, x.book.venue_ts_ms) == \
            (y.book.contract_size, y.book.inverse, y.book.venue_ts_ms)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_parquet_recording_holds_the_same_books_as_json(tmp_path: Path) -> None:
    js = write_jsonl(tmp_path / "b.jsonl", BOOKS)
    out = tmp_path / "b.parquet"
    assert write_parquet(read_recording(js), out) == len(BOOKS)
    problems: list[Problem] = []
    same(list(read_parquet(out, problems)), list(read_recording(js)))
    assert problems == []


def test_levels_are_compressed_only_where_it_pays(tmp_path: Path) -> None:
    """Prices on a tick grid and round amounts compress; full-precision random amounts are
    left uncompressed (they read faster so). Either way the books read back exactly."""
    rng = np.random.default_rng(5)
    books = []
    for i in range(50):
        bids = [(100.0 - 0.5 * k, float(rng.random() * 3)) for k in range(200)]
        asks = [(100.5 + 0.5 * k, float(rng.integers(1, 9))) for k in range(200)]
        book, flags = make_book(bids, asks, venue_ts_ms=T0 + i * 1000)
        books.append(Observation("v", "BTC/USDT", T0 + i * 1000, book, flags))
    out = tmp_path / "b.parquet"
    assert write_parquet(books, out) == 50
    meta = pq.ParquetFile(out).metadata
    codecs = {meta.row_group(0).column(i).path_in_schema.split(".")[0]:
              meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
    assert codecs["bid_px"] == codecs["ask_px"] == codecs["ask_qty"] == "LZ4"
    assert codecs["bid_qty"] == "UNCOMPRESSED"
    same(list(read_parquet(out)), books)
    assert write_parquet([], tmp_path / "none.parquet") == 0
    assert list(read_parquet(tmp_path / "none.parquet")) == []


def test_replay_and_calibrate_read_parquet_by_suffix(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    records = []
    for i in range(120):
        mid = 100.0 + float(rng.normal()) * 0.05
        records.append({"ts": T0 + i * 1000, "venue": "binance", "symbol": "BTC/USDT",
                        "bids": [[round(mid - 0.01 * (k + 1), 2), 1.0 + k] for k in range(5)],
                        "asks": [[round(mid + 0.01 * (k + 1), 2), 2.0 + k] for k in range(5)]})
    js = write_jsonl(tmp_path / "b.jsonl", records)
    pq_path = tmp_path / "b.parquet"
    write_parquet(read_recording(js), pq_path)
    for cmd in (["replay"], ["calibrate", "--horizon", "1s", "--replicates", "50"]):
        a = cli(*cmd, "--books", str(js))
        b = cli(*cmd, "--books", str(pq_path))
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        strip = [line for line in a.stdout.splitlines() if "books/s" not in line]
        assert strip == [line for line in b.stdout.splitlines() if "books/s" not in line]
        assert "120 books" in b.stdout


def test_export_books_writes_parquet_by_suffix(tmp_path: Path) -> None:
    db = tmp_path / "wis.db"
    store = SqliteStore(str(db))
    rows = []
    for i, r in enumerate(BOOKS[:3]):
        rows.append(BookRow(T0 + i, "simex", "BTC/USDT", np.array(r["bids"]).reshape(-1, 2),
                            np.array(r["asks"]).reshape(-1, 2)))
    store.write(Batch(books=rows))
    store.close()
    out = tmp_path / "books.parquet"
    r = cli("export-books", "--db", str(db), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 3 books" in r.stdout
    assert pq.ParquetFile(out).metadata.num_rows == 3
    books = list(read_parquet(out))
    assert [b.book.levels() for b in books if b.book] == [
        ([list(x) for x in r["bids"]], [list(x) for x in r["asks"]]) for r in BOOKS[:3]]


def test_bad_parquet_rows_are_reported_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    lvl = pa.list_(pa.float64())
    table = pa.table({
        "ts": pa.array([T0, T0 + 1, T0 + 1, T0 + 2, None, T0 + 3], pa.int64()),
        "venue": ["v", "v", "v", "", "v", "v"],
        "symbol": ["S"] * 6,
        "bid_px": pa.array([[1.0], [float("nan")], [1.0], [1.0], [1.0], [1.0]], lvl),
        "bid_qty": pa.array([[1.0], [1.0], [1.0], [1.0], [1.0], [1.0, 2.0]], lvl),
        "ask_px": pa.array([[2.0]] * 6, lvl),
        "ask_qty": pa.array([[1.0]] * 6, lvl),
    })
    pq.write_table(table, path)
    r = cli("replay", "--books", str(path))
    assert r.returncode == 0, r.stderr
    assert "replayed 2 books" in r.stdout
    assert f"{path}:2: levels must be finite numbers" in r.stderr
    assert f'{path}:4: "venue" must be a non-empty string' in r.stderr
    assert f"{path}:5: " in r.stderr
    assert f"{path}:6: levels must be lists of prices and amounts of the same length" in r.stderr
    assert "4 bad lines skipped" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_file_that_is_not_a_book_recording_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    r = cli("replay", "--books", str(path))
    assert r.returncode == 2
    assert f'{path}: not a book recording: no column "ts"' in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_pyarrow_says_how_to_install_it(tmp_path: Path) -> None:
    fake = tmp_path / "nopyarrow" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    js = write_jsonl(tmp_path / "b.jsonl", BOOKS[:1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    for args in (["replay", "--books", str(tmp_path / "b.parquet")],
                 ["calibrate", "--books", str(tmp_path / "b.parquet")]):
        (tmp_path / "b.parquet").write_bytes(b"PAR1")
        r = cli(*args, env=env)
        assert r.returncode == 2, r.stderr
        assert "pip install 'wis-monitor[analysis]'" in r.stderr
        assert "Traceback" not in r.stderr
    r = cli("convert-books", str(js), "-o", str(tmp_path / "out.parquet"), env=env)
    assert r.returncode == 2 and "pip install 'wis-monitor[analysis]'" in r.stderr
    assert "Traceback" not in r.stderr
    assert cli("replay", "--books", str(js), env=env).returncode == 0  # JSON needs no extra


levels = st.lists(st.tuples(st.sampled_from([-1.0, 0.0, 1.0, 2.0, 3.0]),
                            st.sampled_from([-1.0, 0.0, 0.5, 1.0])), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=6))
def test_batch_flags_are_make_books_flags(books: list[tuple[list[tuple[float, float]],
                                                             list[tuple[float, float]]]]) -> None:
    def flat(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [b[side] for b in books]
        offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
        cells = np.array([x for r in rows for x in r], dtype=np.float64).reshape(-1, 2)
        return offsets, np.ascontiguousarray(cells[:, 0]), np.ascontiguousarray(cells[:, 1])

    got = batch_flags(*flat(0), *flat(1))
    want = [make_book([list(x) for x in b], [list(x) for x in a])[1] for b, a in books]
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(
    st.sampled_from([-1.0, 0.0, 1.0, 2.0, 3.0, float("nan"), float("inf"), -float("inf")]),
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, float("nan"), float("inf")])), max_size=4),
    min_size=1, max_size=6), st.booleans())
def test_a_clean_side_is_one_whose_every_book_is_valid(rows: list[list[tuple[float, float]]],
                                                       descending: bool) -> None:
    """The batch-wide check that lets a reader skip the per-row search agrees with make_book:
    True exactly when every row is finite, positive and strictly sorted."""
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
    cells = np.array([x for r in rows for x in r], dtype=np.float64).reshape(-1, 2)
    px, qty = np.ascontiguousarray(cells[:, 0]), np.ascontiguousarray(cells[:, 1])
    side = (lambda r: make_book(r, [])) if descending else (lambda r: make_book([], r))
    assert sides_clean(offsets, px, qty, descending) == \
        all("invalid" not in side([list(x) for x in r])[1] for r in rows)


def test_checked_constructors_build_what_the_dataclasses_build() -> None:
    px, qty, asks = np.array([2.0, 1.0]), np.array([1.0, 1.0]), np.array([3.0, 4.0])
    fast = checked_book(px, qty, asks, qty, 100.0, True, T0)
    slow = Book(px, qty, asks, qty, contract_size=100.0, inverse=True, venue_ts_ms=T0)
    assert [getattr(fast, f) for f in Book.__slots__] == [getattr(slow, f) for f in Book.__slots__]
    assert recorded("v", "s", T0, fast, frozenset({"crossed"}), 1.5) == \
        Observation("v", "s", T0, fast, frozenset({"crossed"}), 1.5)


# A book with one thing wrong, as a JSON line and as a Parquet row hold it alike.
DEFECTS = ("unsorted", "duplicate", "zero_amount", "negative_price", "nan_price", "inf_amount",
           "inf_best_bid", "minus_inf_last_bid", "crossed", "one_sided", "empty", "ts_back",
           "empty_venue", "negative_latency", "contract_size_zero", "contract_size_nan",
           "short_pair", "null_bids")


def defective(i: int, defect: str | None, symbol: str, levels: int) -> dict[str, Any]:
    bids = [[100.0 - 0.5 * k, 1.0 + k] for k in range(levels)]
    asks = [[100.5 + 0.5 * k, 2.0 + k] for k in range(levels)]
    rec: dict[str, Any] = {"ts": T0 + i * 1000, "venue": "v", "symbol": symbol, "bids": bids,
                           "asks": asks, "latency_ms": 3.0}
    nan, inf = float("nan"), float("inf")
    match defect:
        case "unsorted":
            bids[0][0], bids[1][0] = bids[1][0], bids[0][0]
        case "duplicate":
            asks[1][0] = asks[0][0]
        case "zero_amount":
            asks[-1][1] = 0.0
        case "negative_price":
            bids[-1][0] = -1.0
        case "nan_price":
            bids[1][0] = nan
        case "inf_amount":
            asks[0][1] = inf
        case "inf_best_bid":
            bids[0][0] = inf
        case "minus_inf_last_bid":
            bids[-1][0] = -inf
        case "crossed":
            bids[0][0] = 101.0
        case "one_sided":
            rec["asks"] = []
        case "empty":
            rec["bids"], rec["asks"] = [], []
        case "ts_back":
            rec["ts"] = T0 + (i - 3) * 1000
        case "empty_venue":
            rec["venue"] = ""
        case "negative_latency":
            rec["latency_ms"] = -1.0
        case "contract_size_zero":
            rec["contract_size"] = 0.0
        case "contract_size_nan":
            rec["contract_size"] = nan
        case "short_pair":
            bids[1] = bids[1][:1]
        case "null_bids":
            rec["bids"] = None
    return rec


def parquet_of(records: list[dict[str, Any]], path: Path, required: bool) -> Path:
    """The records as Parquet: the columns write_parquet declares (``required``: non-null) or
    all nullable, byte-stream-split and without statistics, as earlier versions wrote them."""
    def side(key: str, field: int) -> list[list[float] | None]:
        return [None if r[key] is None else [lvl[field] for lvl in r[key] if len(lvl) > field]
                for r in records]

    columns = {"ts": [r["ts"] for r in records], "venue": [r["venue"] for r in records],
               "symbol": [r["symbol"] for r in records],
               "bid_px": side("bids", 0), "bid_qty": side("bids", 1),
               "ask_px": side("asks", 0), "ask_qty": side("asks", 1),
               "contract_size": [r.get("contract_size") for r in records],
               "inverse": [None] * len(records),
               "latency_ms": [r["latency_ms"] for r in records]}
    if required:
        pq.write_table(pa.table(columns, schema=book_schema(pa)), path, row_group_size=1024)
    else:
        levels = pa.list_(pa.float64())
        schema = pa.schema([("ts", pa.int64()), ("venue", pa.string()), ("symbol", pa.string()),
                            *((c, levels) for c in ("bid_px", "bid_qty", "ask_px", "ask_qty")),
                            ("contract_size", pa.float64()), ("inverse", pa.bool_()),
                            ("latency_ms", pa.float64())])
        pq.write_table(pa.table(columns, schema=schema), path, compression="lz4",
                       use_byte_stream_split=["bid_px.list.element", "ask_qty.list.element"],
                       row_group_size=1024)
    return path


def agree(tmp_path: Path, records: list[dict[str, Any]], required: bool
          ) -> list[Observation]:
    """Read the records from JSON Lines and from Parquet: the same books, flags and bad rows."""
    js = write_jsonl(tmp_path / "b.jsonl", records)
    pq_path = parquet_of(records, tmp_path / "b.parquet", required)
    js_problems: list[Problem] = []
    pq_problems: list[Problem] = []
    books = list(read_parquet(pq_path, pq_problems))
    same(books, list(read_recording(js, js_problems)))
    assert [p.line for p in pq_problems] == [p.line for p in js_problems]
    return books


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.none(), st.sampled_from(DEFECTS)), min_size=1,
                max_size=30),
       st.integers(2, 5), st.booleans(), st.booleans())
def test_parquet_and_json_readers_agree_on_every_defect(
        tmp_path_factory: pytest.TempPathFactory, defects: list[str | None], levels: int,
        two_series: bool, required: bool) -> None:
    tmp_path = tmp_path_factory.mktemp("agree")
    if required:  # no null levels in a file that declares them required
        defects = [None if d == "null_bids" else d for d in defects]
    records = [defective(i, d, "ETH/USDT" if two_series and i % 2 else "BTC/USDT", levels)
               for i, d in enumerate(defects)]
    agree(tmp_path, records, required)


def test_a_defect_in_the_middle_of_a_full_batch_is_found(tmp_path: Path) -> None:
    """Batches of hundreds of books: one bad row or invalid book anywhere in a batch is found, the
    other books of its batch read as usual. One defect a batch: none hides another."""
    at = {700: "unsorted", 800: "one_sided", 1100: "inf_best_bid", 2100: "minus_inf_last_bid",
          3100: "zero_amount", 3150: "crossed"}
    records = [defective(i, at.get(i), "BTC/USDT", 5) for i in range(3200)]
    books = agree(tmp_path, records, required=True)
    assert len(books) == 3200 - 2  # inf, -inf: bad rows
    flagged = {o.ts_ms: o.flags for o in books if o.flags}
    assert flagged == {T0 + 700_000: {"invalid"}, T0 + 800_000: {"one_sided"},
                       T0 + 3_100_000: {"invalid"}, T0 + 3_150_000: {"crossed"}}
