"""Impact across a group's venues: the cheapest member of each size and side, the impact of an
order split over the members' merged books (quotes counted equal as configured), as group
metrics of group rules and in their alerts' messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.across import across_venues, amount_text, quote_of, split_impact_bps
from wis_monitor.book import Book, make_book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.message import render
from wis_monitor.sources import Observation

Levels = list[list[float]]


def book(bids: Levels, asks: Levels, cs: float = 1.0, inverse: bool = False) -> Book:
    b, a = np.array(bids, dtype=float), np.array(asks, dtype=float)
    return Book(b[:, 0].copy(), b[:, 1].copy(), a[:, 0].copy(), a[:, 1].copy(), cs, inverse)


def test_a_split_order_takes_the_best_levels_of_every_book_by_hand() -> None:
    a = book([[99.0, 10.0]], [[101.0, 1.0], [103.0, 10.0]])
    b = book([[99.5, 10.0]], [[102.0, 1.0], [104.0, 10.0]])
    # merged asks: 101 x1, 102 x1, 103 x10, 104 x10; merged mid (99.5 + 101) / 2 = 100.25
    size = 101.0 + 102.0 + 103.0  # one unit at each of the three best asks
    want = (size / 3 - 100.25) / 100.25 * 1e4
    assert split_impact_bps([a, b], size, buy=True) == pytest.approx(want)
    assert split_impact_bps([a, b], 1e6, buy=True) is None  # short together
    assert split_impact_bps([], 1.0, buy=True) is None


levels = st.lists(st.tuples(st.floats(0.01, 10.0), st.floats(0.001, 1e3)), min_size=1,
                  max_size=12)


@given(st.lists(st.tuples(levels, levels, st.sampled_from([(1.0, False), (100.0, True)]),
                          st.floats(990.0, 1010.0)), min_size=1, max_size=4),
       st.floats(1.0, 1e5), st.booleans())
@settings(max_examples=200, deadline=None)
def test_split_impact_equals_the_reference_walk(
        specs: list[tuple[list[tuple[float, float]], list[tuple[float, float]],
                          tuple[float, bool], float]], size: float, buy: bool) -> None:
    raw = []
    for bid_steps, ask_steps, (cs, inverse), mid in specs:
        bids = [[mid - 0.5 - sum(s for s, _ in bid_steps[:i + 1]), q]
                for i, (_, q) in enumerate(bid_steps)]
        asks = [[mid + 0.5 + sum(s for s, _ in ask_steps[:i + 1]), q]
                for i, (_, q) in enumerate(ask_steps)]
        raw.append((bids, asks, cs, inverse))
    got = split_impact_bps([book(*r) for r in raw], size, buy=buy)
    want = ref.split_impact_bps(raw, size, buy)
    total = sum(ref.notional(p, q, cs, inv) for b, a, cs, inv in raw for p, q in (a if buy else b))
    if abs(total - size) > size * 1e-9:  # not on the edge of filling exactly
        assert (got is None) == (want is None)
    if got is not None and want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_quotes_and_amounts() -> None:
    assert [quote_of(s) for s in ("BTC/USDT", "BTC/USD:BTC", "ETH/EUR", "BTC/USDC:USDC")] == [
        "USDT", "USD", "EUR", "USDC"]
    assert [amount_text(x) for x in (1e6, 1e5, 2.5e9, 750.0, 1500.0)] == [
        "1M", "100k", "2.5B", "750", "1.5k"]


def test_only_books_in_equal_quotes_are_merged_and_the_cheapest_member_is_named() -> None:
    usdt = book([[99.0, 100.0]], [[101.0, 100.0]])
    usd_inverse = book([[99.5, 100.0]], [[100.5, 100.0]], 100.0, True)  # 10,000 USD a side
    eur = book([[90.0, 1e6]], [[90.5, 1e6]])
    books = {"okx:BTC/USDT": usdt, "deribit:BTC/USD:BTC": usd_inverse, "kraken:BTC/EUR": eur}
    values = {"okx:BTC/USDT": {"sell_impact_m": 2.0, "buy_impact_m": None},
              "deribit:BTC/USD:BTC": {"sell_impact_m": 1.5, "buy_impact_m": 3.0},
              "kraken:BTC/EUR": {"sell_impact_m": 0.5, "buy_impact_m": 0.1}}
    got = across_venues(books, values, {"m": 15_000.0}, [["USD", "USDT"]])
    sell = got.details["sell_impact_m"]
    assert sell["split_over"] == ["okx:BTC/USDT", "deribit:BTC/USD:BTC"]  # not the EUR book
    assert (sell["cheapest"], sell["cheapest_bps"]) == ("kraken:BTC/EUR", 0.5)  # bps compare
    assert got.details["buy_impact_m"]["cheapest"] == "kraken:BTC/EUR"
    want = ref.split_impact_bps([([[99.0, 100.0]], [[101.0, 100.0]], 1.0, False),
                                 ([[99.5, 100.0]], [[100.5, 100.0]], 100.0, True)], 15_000.0,
                                False)
    assert got.values["split_sell_impact_m"] == pytest.approx(want)
    alone = across_venues(books, values, {"m": 15_000.0}, [])  # nothing counts as equal
    assert alone.details["sell_impact_m"]["split_over"] == ["okx:BTC/USDT"]
    assert alone.values["split_sell_impact_m"] is None  # 9,900 of bids cannot fill 15,000


def engine(tmp_path: Path, rule: str) -> Engine:
    (tmp_path / "r.yaml").write_text(f"rules:\n  - {rule}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
        "metrics: {impact: {sizes: {m: 1M}}}\n"
        "venues:\n  - {id: okx, exchange: sim, symbols: [BTC/USDT]}\n"
        "  - {id: binance, exchange: sim, symbols: [BTC/USDT]}\n"
        "  - {id: deribit, exchange: sim, symbols: [BTC/USD:BTC]}\n"
        "groups: {btc: ['okx:BTC/USDT', 'binance:BTC/USDT', 'deribit:BTC/USD:BTC']}\n"
        "rules: {include: [r.yaml]}\n")
    return Engine(load_config(str(cfg)))


SERVED = {  # bids only matter: a sell of 1M
    "okx": ([[100.0, 4_000.0], [99.0, 10_000.0]], [[100.2, 20_000.0]], 1.0, False),
    "binance": ([[100.1, 3_000.0], [99.5, 10_000.0]], [[100.3, 20_000.0]], 1.0, False),
    "deribit": ([[100.05, 2_000.0], [98.0, 10_000.0]], [[100.25, 20_000.0]], 100.0, True),
}


def observations(ts: int) -> list[Observation]:
    out = []
    for venue, (bids, asks, cs, inverse) in SERVED.items():
        b, flags = make_book(bids, asks, contract_size=cs, inverse=inverse)
        symbol = "BTC/USD:BTC" if venue == "deribit" else "BTC/USDT"
        out.append(Observation(venue, symbol, ts, b, flags, 1.0))
    return out


def test_a_group_rule_on_the_split_impact_says_where_each_size_is_cheapest(
        tmp_path: Path) -> None:
    e = engine(tmp_path, "{name: hedge-cost, scope: group, group: btc, for: 0s, "
                         "when: 'split_sell_impact_m > 5 and min(sell_impact_m) > 5', "
                         "value: split_sell_impact_m}")
    batch, samples = e.process(observations(1000))
    own = {s.venue: s.values["sell_impact_m"] for s in samples}
    for venue, (bids, asks, cs, inverse) in SERVED.items():
        assert own[venue] == pytest.approx(ref.impact_bps(bids, asks, 1e6, False, cs, inverse))
    split = ref.split_impact_bps(list(SERVED.values()), 1e6, False)
    assert split is not None and 5 < split < min(own.values())  # splitting is cheaper
    (fired,) = batch.alerts
    assert fired.rule == "hedge-cost" and fired.value == pytest.approx(split)
    across = fired.details["values"]["across"]["sell_impact_m"]
    best = min(own, key=own.__getitem__)
    assert across["cheapest"].startswith(best + ":")
    text = render({**fired.__dict__, "ts": fired.ts_ms, "details": fired.details}).text
    assert (f"Sell 1M: cheapest {across['cheapest'].replace(':', ' ', 1)}, "
            f"{own[best]:.1f} bps; split across 3 venues: {split:.1f} bps") in text


def test_a_split_metric_belongs_to_group_rules_outside_aggregates(tmp_path: Path) -> None:
    for rule in ("{name: x, when: 'split_sell_impact_m > 5'}",
                 "{name: x, scope: group, group: btc, when: 'max(split_sell_impact_m) > 5'}"):
        with pytest.raises(Exception, match="is a metric of a group, not of its members"):
            engine(tmp_path, rule)
