"""Price impact of an order of a given size, against the independent walk of tests/reference.py
and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.book import Book
from wis_monitor.impact import impact_bps


def book(bids: list[list[float]], asks: list[list[float]], contract_size: float = 1.0,
         inverse: bool = False) -> Book:
    b, a = np.array(bids, dtype=float), np.array(asks, dtype=float)
    return Book(b[:, 0].copy(), b[:, 1].copy(), a[:, 0].copy(), a[:, 1].copy(),
                contract_size, inverse)


def test_a_buy_walks_the_asks_and_pays_its_average_price_against_the_mid() -> None:
    b = book([[99.0, 10.0]], [[101.0, 1.0], [102.0, 2.0]])  # mid 100
    # 101 of notional: exactly the touch, average 101: 100 bps over the mid
    assert impact_bps(b, 101.0, buy=True) == pytest.approx(100.0)
    # 101 + 102 of notional: one unit at 101 and one at 102, average 101.5
    assert impact_bps(b, 203.0, buy=True) == pytest.approx(150.0)
    assert impact_bps(b, 101.0 + 2 * 102.0 + 1e-6, buy=True) is None  # short
    assert impact_bps(b, 99.0, buy=False) == pytest.approx(100.0)


def test_inverse_contracts_count_their_usd_value() -> None:
    # 100 USD contracts: 5 at 50,010 and 5 at 50,020 (mid 50,000)
    b = book([[49_990.0, 10.0]], [[50_010.0, 5.0], [50_020.0, 5.0]], 100.0, inverse=True)
    usd = 1_000.0
    got = impact_bps(b, usd, buy=True)
    avg = usd / (500.0 / 50_010.0 + 500.0 / 50_020.0)
    assert got == pytest.approx((avg - 50_000.0) / 50_000.0 * 1e4)


levels = st.lists(st.tuples(st.floats(0.01, 10.0), st.floats(0.001, 1e3)), min_size=1,
                  max_size=30)


@given(levels, levels, st.floats(1.0, 1e5), st.booleans(), st.sampled_from([1.0, 0.001, 100.0]),
       st.booleans())
@settings(max_examples=300, deadline=None)
def test_impact_equals_the_reference_walk(bid_steps: list[tuple[float, float]],
                                          ask_steps: list[tuple[float, float]], size: float,
                                          buy: bool, contract_size: float, inverse: bool) -> None:
    mid = 1000.0
    bids = [[mid - 0.5 - sum(s for s, _ in bid_steps[:i + 1]), q]
            for i, (_, q) in enumerate(bid_steps)]
    asks = [[mid + 0.5 + sum(s for s, _ in ask_steps[:i + 1]), q]
            for i, (_, q) in enumerate(ask_steps)]
    got = impact_bps(book(bids, asks, contract_size, inverse), size, buy=buy)
    want = ref.impact_bps(bids, asks, size, buy, contract_size, inverse)
    assert (got is None) == (want is None) or abs(
        size - sum(ref.notional(p, q, contract_size, inverse) for p, q in
                   (asks if buy else bids))) < size * 1e-9
    if got is not None and want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)  # a millionth of a bp
        assert got > 0  # a market order always pays over the mid: the touch is beyond it
