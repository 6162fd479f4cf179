"""The impact metrics of the samples: configured sizes, exact values against the independent
walk of tests/reference.py on the shared recordings (inverse contracts included), the ``short``
flag, z-scores and smoothing, rules and the store's columns."""

from __future__ import annotations

import gzip
import json
import random
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import reference as ref
from daemon_harness import rows
from fakevenue import FakeVenueThread
from test_live import config as live_config
from test_live import random_book, run_until
from testclock import NOW

from wis_monitor.book import make_book
from wis_monitor.clock import FakeClock
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.errors import ConfigError
from wis_monitor.sources import Observation
from wis_monitor.sources.replay import read_recording
from wis_monitor.store.open import open_store

SIZES = {"s": 100_000.0, "m": 1_000_000.0, "l": 10_000_000.0}
BIDS = [[100.0, 5_000.0], [99.0, 5_000.0]]  # 995,000 of notional; mid 100.5
ASKS = [[101.0, 5_000.0], [102.0, 5_000.0]]  # 1,015,000


def write(tmp_path: Path, metrics: str, rules: str = "rules: []\n", venues: str = "") -> Path:
    (tmp_path / "r.yaml").write_text(rules)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sampling: {interval: 1s}\n"
        f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
        f"metrics:\n  zscore: {{window: 1m, min_samples: 3, min_history: 0s}}\n{metrics}"
        + (venues or "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n")
        + "rules: {include: [r.yaml]}\n")
    return cfg


def obs(ts: int, bids: list[list[float]] = BIDS, asks: list[list[float]] = ASKS) -> Observation:
    book, flags = make_book(bids, asks)
    return Observation("a", "X/Y", ts, book, flags, 1.0)


def problems(cfg: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(str(cfg))
    return [str(p) for p in exc.value.problems]


def test_sizes_are_numbers_or_suffixed_and_each_gives_a_buy_and_a_sell_metric(
        tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path, "  impact: {sizes: {s: 100k, m: 1M, b2: 2.5B, "
                                          "n: 250000}}\n")))
    assert dict(cfg.settings.metrics.impact.sizes) == {"s": 1e5, "m": 1e6, "b2": 2.5e9,
                                                       "n": 2.5e5}
    names = ("buy_impact_s", "sell_impact_s", "buy_impact_m", "sell_impact_m")
    assert set(names) | {f"{n}_z" for n in names} <= cfg.metrics
    assert cfg.column_metrics[:4] == names  # a column each, and one for its z-score
    assert cfg.scored_metrics[2:6] == names


def test_bad_sizes_are_all_reported_where_they_are_written(tmp_path: Path) -> None:
    cfg = write(tmp_path, "  impact:\n    sizes:\n      s: 0\n      M: 1M\n      x: lots\n"
                          "      m_z: 1k\n      big: .inf\n")
    got = problems(cfg)
    assert [p.split(": ", 1)[0] for p in got] == [f"{cfg}:{n}" for n in range(7, 12)], got
    assert "above 0" in got[0] and "lower-case" in got[1] and "not an amount" in got[2]
    assert "not ending in _z" in got[3] and "finite" in got[4]


def test_an_override_changes_amounts_and_adds_no_size(tmp_path: Path) -> None:
    cfg = write(tmp_path, "  impact: {sizes: {m: 1M}}\n",
                venues="venues:\n  - id: a\n    exchange: sim\n    symbols: [X/Y]\n"
                       "    metrics: {impact: {sizes: {xl: 1B}}}\n"
                       "  - id: b\n    exchange: sim\n    symbols: [X/Y]\n"
                       "    metrics: {impact: {sizes: {m: -5}}}\n")
    got = problems(cfg)
    assert [p.split(": ", 1)[0] for p in got] == [f"{cfg}:10", f"{cfg}:14"], got
    assert '"xl" is not under metrics.impact.sizes' in got[0]
    assert "sizes.m: an amount must be a finite number above 0, not -5" in got[1]


def test_a_venue_may_change_the_amount_of_a_size(tmp_path: Path) -> None:
    cfg = load_config(str(write(
        tmp_path, "  impact: {sizes: {m: 1M}}\n",
        venues="venues:\n  - {id: a, exchange: sim, symbols: [X/Y], "
               "metrics: {impact: {sizes: {m: 500k}}}}\n"
               "  - {id: b, exchange: sim, symbols: [X/Y]}\n")))
    assert cfg.metrics_for("a", "X/Y").impact.sizes == {"m": 5e5}
    assert cfg.metrics_for("b", "X/Y").impact.sizes == {"m": 1e6}
    e = Engine(cfg)
    _, (a,) = e.process([obs(1000)])
    assert a.values["buy_impact_m"] == pytest.approx(ref.impact_bps(BIDS, ASKS, 5e5, True))


def test_an_unfillable_size_is_null_and_flags_the_sample_short_which_still_counts(
        tmp_path: Path) -> None:
    e = Engine(load_config(str(write(
        tmp_path, "  impact: {sizes: {s: 100k, m: 1M}}\n",
        rules="rules:\n  - {name: crunch, when: 'missing(sell_impact_m)', for: 0s}\n"
              "  - {name: costly, when: 'buy_impact_m > 60', for: 0s}\n"))))
    batch, (s,) = e.process([obs(1000)])
    assert s.flags == {"short"} and s.good  # a warning, like thin
    assert s.values["sell_impact_m"] is None  # 1M > 995,000 of bids
    assert s.values["buy_impact_m"] == pytest.approx(ref.impact_bps(BIDS, ASKS, 1e6, True))
    assert s.values["sell_impact_s"] == pytest.approx(0.5 / 100.5 * 1e4)  # all at the touch
    assert s.values["wis"] is not None
    assert {a.rule for a in batch.alerts} == {"crunch", "costly"}
    assert batch.samples[0].quality == "short"
    _, (full,) = e.process([obs(2000, [[100.0, 20_000.0], [99.0, 1.0]])])
    assert full.flags == frozenset()
    assert full.values["sell_impact_m"] == pytest.approx(0.5 / 100.5 * 1e4)


def test_impact_has_a_z_score_and_can_be_smoothed(tmp_path: Path) -> None:
    e = Engine(load_config(str(write(
        tmp_path, "  impact: {sizes: {m: 1M}}\n"
                  "  smooth: {cost: {of: buy_impact_m, half_life: 10s}}\n"))))
    series, got = [], []
    for i in range(8):
        asks = [[101.0 + 0.1 * (i % 3), 5_000.0], [102.0 + 0.2 * (i % 2), 5_000.0]]
        _, (s,) = e.process([obs(1000 * (i + 1), asks=asks)])
        series.append((1000 * (i + 1), ref.impact_bps(BIDS, asks, 1e6, True)))
        got.append(s.values)
    for values, z in zip(got, ref.zscores(series, 60_000, 3), strict=True):
        assert ref.close(values["buy_impact_m_z"], z, rel=1e-9, abs_=1e-9)
    assert got[0]["cost"] == pytest.approx(series[0][1])
    assert got[-1]["cost_z"] is not None


def test_a_smoothed_metric_may_not_take_a_size_label_s_name(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "  impact: {sizes: {m: 1M}}\n"
                                   "  smooth: {buy_impact_m: {of: wis, half_life: 10s}}\n"))
    assert len(got) == 1 and "clashes with a metric" in got[0]


def recorded(path: Path, limit: int) -> list[dict[str, Any]]:
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == limit:
                break
    return out


def test_impact_is_exact_on_the_shared_recordings(tmp_path: Path, shared_data: Path) -> None:
    """Every recording of books-full (spot, USDT-M, and COIN-M inverse contracts of 100 and
    10 USD): each sample's impacts equal the reference walk on the same JSON levels."""
    e = Engine(load_config(str(write(tmp_path, "  impact: {sizes: {s: 100k, m: 1M, l: 10M}}\n",
                                     venues="venues: []\n"))))
    short = filled = 0
    for path in sorted((shared_data / "books-full").glob("*.jsonl.gz")):
        raw = recorded(path, 60)
        _, samples = e.process(islice(read_recording(path), 60))
        assert len(samples) == len(raw)
        for s, book in zip(samples, raw, strict=True):
            cs, inverse = float(book.get("contract_size", 1.0)), bool(book.get("inverse"))
            assert s.ts_ms == book["ts"] and s.good, (path.name, s.flags)
            for label, size in SIZES.items():
                for side in ("buy", "sell"):
                    want = ref.impact_bps(book["bids"], book["asks"], size, side == "buy", cs,
                                          inverse)
                    got = s.values[f"{side}_impact_{label}"]
                    assert (got is None) == (want is None), (path.name, label, side)
                    if want is not None:
                        assert ref.close(got, want, rel=1e-9, abs_=1e-9), (path.name, got, want)
                    short, filled = short + (want is None), filled + (want is not None)
            assert ("short" in s.flags) == any(s.values[m] is None for m in (
                "buy_impact_l", "sell_impact_l"))
    assert short > 50 and filled > 1500  # both cases are exercised


def test_each_backend_gets_the_impact_columns_also_on_reload(tmp_path: Path,
                                                             store_location: str) -> None:
    first = load_config(str(write(tmp_path, "  impact: {sizes: {m: 1M}}\n")))
    store = open_store(store_location, variants=first.column_metrics)
    try:
        e = Engine(first, store)
        batch, _ = e.process([obs(1000)])
        store.write(batch)
        assert {"buy_impact_m", "sell_impact_m_z"} <= store.sample_columns()
        second = load_config(str(write(tmp_path, "  impact: {sizes: {m: 1M, xl: 5M}}\n")))
        store.use_variants(second.column_metrics)
        e2 = Engine(second, store)
        e2.adopt(e)
        batch2, _ = e2.process([obs(2000)])
        store.write(batch2)
        assert {"buy_impact_xl", "sell_impact_xl_z"} <= store.sample_columns()
        rows = list(store.history(0, ["buy_impact_m", "sell_impact_m", "buy_impact_xl"]))
        assert [r["sell_impact_m"] for r in rows] == [None, None]
        assert rows[1]["buy_impact_m"] == pytest.approx(ref.impact_bps(BIDS, ASKS, 1e6, True))
        assert rows[0]["buy_impact_xl"] is None and rows[1]["buy_impact_xl"] is None  # short
    finally:
        store.close()


def test_a_changed_size_restarts_its_z_score_window_on_reload(tmp_path: Path) -> None:
    old = Engine(load_config(str(write(tmp_path, "  impact: {sizes: {s: 100k, m: 1M}}\n"))))
    old.process([obs(1000)])
    new = Engine(load_config(str(write(tmp_path, "  impact: {sizes: {s: 100k, m: 2M}}\n"))))
    fresh = new.adopt(old)
    assert "buy_impact_m" in fresh and "buy_impact_s" not in fresh



@pytest.mark.slow
def test_impact_is_exact_on_books_served_through_ccxt(tmp_path: Path) -> None:
    """The daemon sampling the fake venue with real ccxt: spot, and the inverse contracts of
    binancecoinm (contracts of 100 USD) and deribit (whose amounts are USD already, though its
    market says a contract is 10 USD)."""
    venues = {"binance": ("BTC/USDT", 1.0, False), "binancecoinm": ("BTC/USD:BTC", 100.0, True),
              "deribit": ("BTC/USD:BTC", 1.0, True)}
    sizes = {"xs": 1_000.0, "s": 10_000.0, "m": 1_000_000.0}
    rng = random.Random(11)
    clock = FakeClock(NOW)
    with FakeVenueThread(clock=clock) as fv:
        for ex, (sym, _, _) in venues.items():
            fv.queue_books(ex, sym, [random_book(rng, 60_000.0 * rng.uniform(0.99, 1.01))
                                     for _ in range(6)])
        cfg = live_config(tmp_path, fv, {ex: sym for ex, (sym, _, _) in venues.items()},
                          extra={"metrics": {"impact": {"sizes": {"xs": "1k", "s": "10k",
                                                                  "m": "1M"}}}})
        db = tmp_path / "wis.db"
        run_until(cfg, clock, 0.5, lambda: all(len(rows(
            db, "SELECT 1 FROM samples WHERE venue = ?", (ex,))) >= 4 for ex in venues))
        served = dict(fv.served)
    short = 0
    for ex, (sym, cs, inverse) in venues.items():
        got = rows(db, "SELECT * FROM samples WHERE venue = ? ORDER BY ts", (ex,))
        for r, (bids, asks) in zip(got, served[(ex, sym)], strict=True):
            for label, size in sizes.items():
                for side in ("buy", "sell"):
                    want = ref.impact_bps(bids, asks, size, side == "buy", cs, inverse)
                    value = r[f"{side}_impact_{label}"]
                    assert (value is None) == (want is None), (ex, label, side, value)
                    assert want is None or ref.close(value, want, rel=1e-9, abs_=1e-9)
                    short += want is None
            assert ("short" in r["quality"].split(",")) == any(
                r[f"{side}_impact_{label}"] is None for side in ("buy", "sell") for label in sizes)
    assert short  # the 1M order cannot be filled on the inverse books served


def test_a_group_rule_takes_the_cheapest_venue_s_impact(tmp_path: Path) -> None:
    """``min(sell_impact_m)`` over a group: selling there costs at least this much anywhere."""
    e = Engine(load_config(str(write(
        tmp_path, "  impact: {sizes: {m: 1M}}\n",
        rules="rules:\n  - {name: dear, scope: group, group: g, for: 0s,\n"
              "     when: 'min(sell_impact_m) > 40 or count(missing(sell_impact_m)) >= 2',\n"
              "     value: min(sell_impact_m)}\n",
        venues="venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n"
               "  - {id: b, exchange: sim, symbols: [X/Y]}\n"
               "groups: {g: ['a:X/Y', 'b:X/Y']}\n"))))
    deep = [[100.0, 20_000.0], [99.0, 1.0]]  # 1M at 100: 49.75 bps from a mid of 100.5
    a, _ = make_book(deep, ASKS)
    b, _ = make_book([[100.4, 20_000.0], [99.0, 1.0]], ASKS)  # 29.8 bps from 100.7
    batch, _ = e.process([Observation("a", "X/Y", 1000, a, frozenset(), 1.0),
                          Observation("b", "X/Y", 1000, b, frozenset(), 1.0)])
    assert batch.alerts == []
    batch, _ = e.process([Observation("b", "X/Y", 2000, a, frozenset(), 1.0)])
    (fired,) = batch.alerts
    assert fired.rule == "dear" and fired.value == pytest.approx(0.5 / 100.5 * 1e4)
