"""Book validation: every malformed snapshot gets its flag and never a WIS value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wis_monitor.book import all_finite, make_book

GOOD_B = [[100.0, 1.0], [99.0, 2.0]]
GOOD_A = [[101.0, 1.0], [102.0, 2.0]]


@pytest.mark.parametrize(
    ("bids", "asks", "flags"),
    [
        (GOOD_B, GOOD_A, set()),
        ([], [], {"empty"}),
        (None, None, {"empty"}),
        (GOOD_B, [], {"one_sided"}),
        ([], GOOD_A, {"one_sided"}),
        ([[101.5, 1.0]], GOOD_A, {"crossed"}),
        ([[101.0, 1.0]], GOOD_A, {"crossed"}),  # locked: bid == ask
        ([[100.0, math.nan]], GOOD_A, {"invalid"}),
        ([[math.inf, 1.0]], GOOD_A, {"invalid"}),
        ([[100.0, -1.0]], GOOD_A, {"invalid"}),
        ([[0.0, 1.0]], GOOD_A, {"invalid"}),
        ([[100.0, 0.0]], GOOD_A, {"invalid"}),
        ([[99.0, 1.0], [100.0, 1.0]], GOOD_A, {"invalid"}),  # bids ascending
        ([[100.0, 1.0], [100.0, 1.0]], GOOD_A, {"invalid"}),  # duplicated level
        (GOOD_B, [[102.0, 1.0], [101.0, 1.0]], {"invalid"}),  # asks descending
        (GOOD_B, [[None, None]], {"invalid"}),  # what ccxt gives for bitfinex HTML pages
        ([[100.0]], GOOD_A, {"invalid"}),
        ([["abc", 1.0]], GOOD_A, {"invalid"}),
        ([[100.0, 1.0, 1700000000]], [[101.0, 1.0, 1700000000]], set()),  # kraken's 3 fields
    ],
)
def test_flags(bids: object, asks: object, flags: set[str]) -> None:
    _, got = make_book(bids, asks)  # type: ignore[arg-type]
    assert set(got) == flags


def test_contract_fields_and_levels() -> None:
    book, _ = make_book(GOOD_B, GOOD_A, contract_size=None, inverse=True)
    assert book.contract_size == 1.0 and book.inverse
    assert book.mid == 100.5 and book.best_bid == 100.0 and book.best_ask == 101.0
    assert book.levels() == (GOOD_B, GOOD_A)
    same, _ = make_book(GOOD_B, GOOD_A)
    assert book.same_levels(same)
    other, _ = make_book(GOOD_B, [[101.0, 1.5], [102.0, 2.0]])
    assert not book.same_levels(other)


def test_infinities_of_both_signs_are_not_finite_and_raise_no_warning() -> None:
    """Their sum is NaN: the batch check must say "not finite", quietly (warnings are errors
    in the suite)."""
    assert not all_finite(np.array([np.inf, 99.5, 100.0, -np.inf]))
    assert not all_finite(np.array([1.0, np.nan]))
    assert all_finite(np.array([99.5, 100.0]))
