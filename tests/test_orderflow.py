"""Order-flow imbalance and smoothed metrics equal their formulas (tests/reference.py), through
the pure core and through the pipeline: chains broken by gaps and bad books, inverse contracts,
restarts."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from test_signals import Levels, books, contracts

from wis_monitor.book import make_book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.signals import ofi_event, top_levels
from wis_monitor.sources import Observation
from wis_monitor.store import SqliteStore

CONFIG = """\
sampling: {interval: 1s}
metrics:
  zscore: {window: 1m, min_samples: 2}
  ofi: {levels: 3, window: 5s}
  smooth:
    wis_s: {of: wis, half_life: 3s}
    imb_s: {of: imbalance, half_life: 2s}
venues:
  - {id: v, exchange: sim, symbols: [X/Y]}
"""
Book = tuple[Levels, Levels]


@settings(max_examples=300, deadline=None)
@given(books(12), books(12), st.integers(1, 10), contracts)
def test_ofi_event_equals_the_formula(a: Book, b: Book, levels: int,
                                      contract: tuple[float, bool]) -> None:
    cs, inverse = contract
    prev, _ = make_book(*a, contract_size=cs, inverse=inverse)
    cur, _ = make_book(*b, contract_size=cs, inverse=inverse)
    got = ofi_event(top_levels(prev, levels), top_levels(cur, levels))
    assert ref.close(got, ref.ofi_event(a, b, levels, cs, inverse), abs_=1e-9)


def test_ofi_of_an_unchanged_book_is_zero_and_added_bids_are_positive() -> None:
    bids, asks = [[99.0, 1.0], [98.0, 2.0]], [[101.0, 1.0], [102.0, 2.0]]
    book = top_levels(make_book(bids, asks)[0], 5)
    assert ofi_event(book, book) == 0.0
    more = top_levels(make_book([[99.0, 3.0], [98.0, 2.0]], asks)[0], 5)
    assert ofi_event(book, more) > 0  # bids added at the touch: buying pressure
    lifted = top_levels(make_book(bids, [[102.0, 2.0]])[0], 5)  # the best ask taken out
    assert ofi_event(book, lifted) > 0


def walk(n: int, seed: int = 7) -> list[Book]:
    """A random walk of books on a 0.5 tick: the touch moves, amounts change."""
    rnd = random.Random(seed)
    out: list[Book] = []
    mid = 1000.25
    for _ in range(n):
        mid += rnd.choice((-0.5, 0.0, 0.0, 0.5))
        bids = [[mid - 0.25 - 0.5 * i, rnd.uniform(0.1, 5.0)] for i in range(6)]
        asks = [[mid + 0.25 + 0.5 * i, rnd.uniform(0.1, 5.0)] for i in range(6)]
        out.append((bids, asks))
    return out


def steps(n: int) -> list[tuple[int, Book | None]]:
    """One book a second, a 3.5 s gap after the 12th, a crossed book at the 20th."""
    out: list[tuple[int, Book | None]] = []
    ts = 0
    for i, book in enumerate(walk(n)):
        ts += 3500 if i == 12 else 1000
        out.append((ts, None if i == 20 else book))
    return out


def run(engine: Engine, sequence: list[tuple[int, Book | None]], cs: float = 1.0,
        inverse: bool = False) -> list[dict[str, float | None]]:
    values = []
    for ts, book in sequence:
        bids, asks = book if book is not None else ([[1001.0, 1.0]], [[1000.0, 1.0]])  # crossed
        b, flags = make_book(bids, asks, contract_size=cs, inverse=inverse)
        _, (sample,) = engine.process([Observation("v", "X/Y", ts, b, flags, 1.0)])
        assert sample.good == (book is not None)
        values.append(sample.values)
    return values


def engine_for(tmp_path: Path, text: str = CONFIG) -> Engine:
    (tmp_path / "c.yaml").write_text(text)
    return Engine(load_config(str(tmp_path / "c.yaml")))


def test_pipeline_ofi_equals_the_formula_across_gaps_and_bad_books(tmp_path: Path) -> None:
    sequence = steps(40)
    for cs, inverse in ((1.0, False), (10.0, True)):
        got = [v.get("ofi") for v in run(engine_for(tmp_path), sequence, cs, inverse)]
        want = ref.ofi_series(sequence, 3, 5000, 1000, cs, inverse)
        assert all(ref.close(g, w) for g, w in zip(got, want, strict=True)), (got, want)
        # The chain restarts after the gap and after the crossed book: null for a window.
        assert got[12:17] == [None] * 5 and got[20:26] == [None] * 6
        assert got[5] is not None and got[17] is not None and got[26] is not None


def test_pipeline_smoothed_metrics_equal_the_formula_with_their_own_zscores(
        tmp_path: Path) -> None:
    sequence = steps(40)
    values = run(engine_for(tmp_path), sequence)
    wis = [(ts, v.get("wis")) for (ts, book), v in zip(sequence, values, strict=True)
           if book is not None]
    for (_, book), v in zip(sequence, values, strict=True):
        if book is not None:
            assert ref.close(v["wis"], ref.wis(*book))
    good = [v for (_, book), v in zip(sequence, values, strict=True) if book is not None]
    want = ref.ema_series(wis, 3000, 1000)
    assert all(ref.close(v["wis_s"], w) for v, w in zip(good, want, strict=True))
    imb = ref.ema_series([(t, v["imbalance"]) for (t, _), v in zip(wis, good, strict=True)],
                         2000, 1000)
    assert all(ref.close(v["imb_s"], w) for v, w in zip(good, imb, strict=True))
    assert good[0]["wis_s"] == good[0]["wis"]  # no pull toward 0 at the start
    assert all(v.get("wis_s") is None for (_, b), v in zip(sequence, values, strict=True)
               if b is None)
    assert good[-1]["wis_s_z"] is not None and good[-1]["ofi_z"] is not None


def test_a_null_input_leaves_the_average_as_it_was(tmp_path: Path) -> None:
    e = engine_for(tmp_path)
    far = ([[900.0, 1.0]], [[1100.0, 1.0]])  # 1000 bps away: no depth in band, null wis
    values = run(e, [(0, walk(1)[0]), (1000, far), (5000, walk(2)[1])])
    assert values[1]["wis"] is None and values[1]["wis_s"] == values[0]["wis_s"]
    want = ref.ema_series([(0, values[0]["wis"]), (1000, None), (5000, values[2]["wis"])],
                          3000, 1000)
    assert ref.close(values[2]["wis_s"], want[2])


def test_rules_and_columns_know_the_new_metrics(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - {name: flow, when: ofi_z >= 3 or wis_s_z >= 3 and coverage_bps >= 10}\n")
    e = engine_for(tmp_path, CONFIG + "rules: {include: [r.yaml]}\n")
    store = SqliteStore(str(tmp_path / "wis.db"), variants=e.config.column_metrics)
    batch, _ = e.process([Observation("v", "X/Y", 1000, make_book(*walk(1)[0])[0], frozenset(),
                                      1.0)])
    store.write(batch)
    row = store.query("SELECT coverage_bps, ofi, ofi_z, wis_s, wis_s_z, imb_s FROM samples")[0]
    assert row["coverage_bps"] is not None and row["wis_s"] is not None


def test_restart_rebuilds_averages_and_starts_a_new_order_flow_chain(tmp_path: Path) -> None:
    sequence = [(ts, b) for ts, b in steps(40) if b is not None]
    whole = run(engine_for(tmp_path), sequence)
    first = engine_for(tmp_path)
    store = SqliteStore(str(tmp_path / "wis.db"), variants=first.config.column_metrics)
    first.store = store
    for ts, book in sequence[:30]:
        b, flags = make_book(*book)
        store.write(first.process([Observation("v", "X/Y", ts, b, flags, 1.0)])[0])
    again = engine_for(tmp_path)
    again.store = store
    again.restore(sequence[30][0])
    after = run(again, sequence[30:])
    for v, w in zip(after, whole[30:], strict=True):
        assert ref.close(v["wis_s"], w["wis_s"]) and ref.close(v["imb_s"], w["imb_s"])
        assert ref.close(v["wis_z"], w["wis_z"])
    assert [v["ofi"] for v in after[:5]] == [None] * 5 and after[5]["ofi"] is not None


def test_a_database_from_before_gets_the_new_columns_on_open(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the samples table as version 1 created it
        conn.executescript(
            "CREATE TABLE samples (ts INTEGER NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,"
            " mid REAL, spread_bps REAL, wis REAL, wis_z REAL, imbalance REAL, microprice REAL,"
            " bid_depth REAL, ask_depth REAL, mid_change_bps REAL, age_s REAL,"
            " quality TEXT NOT NULL DEFAULT '', latency_ms REAL, error TEXT);"
            "INSERT INTO samples (ts, venue, symbol, wis, quality) VALUES (1, 'v', 'X/Y', 0.5, '');"
            "PRAGMA user_version=1;")
    e = engine_for(tmp_path)
    store = SqliteStore(str(db), variants=e.config.column_metrics)
    batch, _ = e.process([Observation("v", "X/Y", 1000, make_book(*walk(1)[0])[0], frozenset(),
                                      1.0)])
    store.write(batch)
    rows = store.query("SELECT ts, wis, coverage_bps, ofi, wis_s FROM samples ORDER BY ts")
    assert rows[0] == {"ts": 1, "wis": 0.5, "coverage_bps": None, "ofi": None, "wis_s": None}
    assert rows[1]["coverage_bps"] is not None and rows[1]["wis_s"] == rows[1]["wis"]
