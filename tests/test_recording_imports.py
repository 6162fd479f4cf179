"""Importing the data desks already have: Tardis.dev CSV datasets and hftbacktest recordings
read as the same books as the equivalent JSON recordings, bad rows reported and skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wis_monitor.errors import Problem
from wis_monitor.sources import Observation
from wis_monitor.sources.recordings import ImportOptions, detect, read_books
from wis_monitor.sources.replay import read_recording

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOTS = str(FIXTURES / "tardis_book_snapshot_5.csv.gz")
INCREMENTAL = str(FIXTURES / "tardis_incremental_book_L2.csv.gz")
RAW = str(FIXTURES / "hftbacktest_btcusdt.gz")
NPZ = str(FIXTURES / "hftbacktest_btcusdt.npz")
REBUILT = FIXTURES / "rebuilt_books.jsonl"


def same(a: list[Observation], b: list[Observation]) -> None:
    assert [(x.venue, x.symbol, x.ts_ms, x.flags) for x in a] == \
        [(y.venue, y.symbol, y.ts_ms, y.flags) for y in b]
    for x, y in zip(a, b, strict=True):
        assert x.book is not None and y.book is not None
        assert x.book.levels() == y.book.levels()  # exact equality of every level
        assert (x.book.contract_size, x.book.inverse) == (y.book.contract_size, y.book.inverse)


def imported(path: str, **options: object) -> tuple[list[Observation], list[str]]:
    problems: list[Problem] = []
    books = list(read_books(path, ImportOptions(**options), problems))  # type: ignore[arg-type]
    return books, [str(p) for p in problems]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120)


def test_formats_are_told_by_suffix_and_first_line() -> None:
    assert [detect(p) for p in (SNAPSHOTS, INCREMENTAL, RAW, NPZ, str(REBUILT))] == \
        ["tardis", "tardis", "hftbacktest", "hftbacktest-npz", "json"]


def test_tardis_book_snapshots_are_the_books_of_the_json_recording() -> None:
    books, problems = imported(SNAPSHOTS, symbol="BTC/USDT")
    same(books, list(read_recording(FIXTURES / "tardis_book_snapshot_5.jsonl")))
    assert books[2].flags == {"crossed"} and books[3].flags == {"invalid"}
    assert problems == [
        f"{SNAPSHOTS}:6: asks[0] must be a price and an amount, not '61802.0', 'abc'",
        f"{SNAPSHOTS}:7: asks[0] must be finite numbers",
        f"{SNAPSHOTS}:8: local_timestamp 1723161256500 ms is before the previous "
        "(1723161257000) of binance BTC/USDT",
        f"{SNAPSHOTS}:10: 3 fields, expected at least 4",
    ]


def test_tardis_exchange_ids_become_ccxt_ids_and_the_symbol_stays_without_option() -> None:
    books, _ = imported(SNAPSHOTS)
    assert {(b.venue, b.symbol) for b in books} == {("binance", "BTCUSDT")}
    books, _ = imported(SNAPSHOTS, venue="binanceus", symbol="BTC/USD")
    assert {(b.venue, b.symbol) for b in books} == {("binanceus", "BTC/USD")}


def test_tardis_snapshots_sampled_on_a_grid() -> None:
    books, _ = imported(SNAPSHOTS, symbol="BTC/USDT", every_ms=1000)
    # Each grid point holds the last snapshot at or before it; the last point is not reached.
    assert [b.ts_ms for b in books] == [1723161256000, 1723161257000]
    want = list(read_recording(FIXTURES / "tardis_book_snapshot_5.jsonl"))[1:3]
    assert [b.book.levels() for b in books if b.book] == [w.book.levels() for w in want if w.book]


@pytest.mark.parametrize("path", [INCREMENTAL, RAW, NPZ], ids=["tardis-L2", "raw", "npz"])
def test_rebuilt_books_are_the_books_of_the_json_recording(path: str) -> None:
    books, problems = imported(path, venue="binance", symbol="BTC/USDT", every_ms=1000)
    same(books, list(read_recording(REBUILT)))
    assert len(problems) == 1
    line = {INCREMENTAL: 10, RAW: 6, NPZ: 5}[path]
    assert problems[0].startswith(f"{path}:{line}: ")


def test_raw_binance_streams_name_their_market() -> None:
    books, _ = imported(RAW)
    assert {(b.venue, b.symbol) for b in books} == {("binance", "BTCUSDT")}


def test_replay_and_calibrate_take_every_format(tmp_path: Path) -> None:
    for path in (SNAPSHOTS, INCREMENTAL, RAW):
        r = cli("replay", "--books", path, "--symbol", "BTC/USDT")
        assert r.returncode == 0, r.stderr
        assert "books of 1 series" in r.stdout
        assert "1 bad line skipped" in r.stderr or "bad lines skipped" in r.stderr
    r = cli("replay", "--books", NPZ)
    assert r.returncode == 2
    assert f"{NPZ}: an .npz holds neither venue nor symbol: give --venue and --symbol" in r.stderr
    r = cli("replay", "--books", NPZ, "--venue", "binance", "--symbol", "BTC/USDT",
            "--every", "500ms")
    assert r.returncode == 0, r.stderr
    r = cli("calibrate", "--books", INCREMENTAL, "--symbol", "BTC/USDT", "--horizon", "1s",
            "--replicates", "50")
    assert r.returncode == 0, r.stderr
    assert "3 books, 1 series" in r.stdout


def test_a_csv_that_is_no_tardis_dataset_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
    r = cli("replay", "--books", str(path))
    assert r.returncode == 2
    assert f"{path}:1: not a Tardis book_snapshot_* or incremental_book_L2 header" in r.stderr
    assert "Traceback" not in r.stderr


def test_shared_raw_recording_rebuilds_the_shared_books(shared_data: Path) -> None:
    """The shared books were made from these raw recordings: one book per second of the file,
    nearly always with the same touch (the shared books' maker differs in details)."""
    raw = shared_data / "hftbacktest" / "spot" / "ethusdt_20240808.gz"
    ours = {o.ts_ms: o for o in read_books(str(raw), ImportOptions(symbol="ETH/USDT"), [])}
    theirs = list(read_recording(
        shared_data / "books-full" / "binance-ETHUSDT-20240808-1000ms.jsonl.gz"))
    matched = [(ours[t.ts_ms], t) for t in theirs if t.ts_ms in ours]
    assert len(matched) == len([t for t in theirs if t.ts_ms <= max(ours)]) > 300
    touch = [(o.book.best_bid, o.book.best_ask) == (t.book.best_bid, t.book.best_ask)
             for o, t in matched if o.book and t.book]
    assert sum(touch) >= 0.85 * len(matched)


def test_convert_books_keeps_imported_books_as_json_or_parquet(tmp_path: Path) -> None:
    out = tmp_path / "rebuilt.jsonl.gz"
    r = cli("convert-books", INCREMENTAL, "--venue", "binance", "--symbol", "BTC/USDT",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 3 books" in r.stdout
    assert f"{INCREMENTAL}:10: " in r.stderr and "1 bad line skipped" in r.stderr
    same(list(read_recording(out)), list(read_recording(REBUILT)))
    pytest.importorskip("pyarrow", reason="the analysis extra (pyarrow) is not installed")
    pq_out = tmp_path / "snapshots.parquet"
    r = cli("convert-books", SNAPSHOTS, "--symbol", "BTC/USDT", "-o", str(pq_out))
    assert r.returncode == 0, r.stderr
    books, _ = imported(str(pq_out))
    same(books, list(read_recording(FIXTURES / "tardis_book_snapshot_5.jsonl")))


def test_a_replay_venue_serves_the_books_of_any_format() -> None:
    """``exchange: replay`` with ``books:`` a Tardis file: the venue serves its books in turn."""
    import asyncio

    from wis_monitor.sources.recordings import RecordingVenue

    venue = RecordingVenue("binance", ["BTCUSDT"], SNAPSHOTS)

    async def fetch_all() -> list[Observation]:
        await venue.start()
        return [await venue.fetch("BTCUSDT", 1_000 * i) for i in range(5)]

    served = asyncio.run(fetch_all())
    want = list(read_recording(FIXTURES / "tardis_book_snapshot_5.jsonl"))
    assert [o.book.levels() for o in served if o.book] == \
        [w.book.levels() for w in [*want, want[0]] if w.book]
