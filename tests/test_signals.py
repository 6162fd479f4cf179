"""WIS and companions equal the formulas of SPEC §3 (tests/reference.py), and their properties."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wis_monitor.book import make_book
from wis_monitor.signals import KERNELS, Kernel, snapshot

Levels = list[list[float]]


@st.composite
def books(draw: st.DrawFn, max_levels: int = 40) -> tuple[Levels, Levels]:
    mid = draw(st.floats(1.0, 100_000.0))
    tick = mid * draw(st.floats(1e-6, 2e-3))
    nb = draw(st.integers(1, max_levels))
    na = draw(st.integers(1, max_levels))
    gaps_b = draw(st.lists(st.integers(1, 20), min_size=nb, max_size=nb))
    gaps_a = draw(st.lists(st.integers(1, 20), min_size=na, max_size=na))
    qty = st.floats(1e-4, 1e4)
    bids, p = [], mid - tick / 2
    for g in gaps_b:
        bids.append([p, draw(qty)])
        p -= g * tick
    asks, p = [], mid + tick / 2
    for g in gaps_a:
        asks.append([p, draw(qty)])
        p += g * tick
    assume(bids[-1][0] > 0)
    return bids, asks


kernels = st.builds(
    Kernel,
    st.sampled_from(KERNELS),
    st.floats(0.2, 100.0),
    st.floats(1.0, 200.0),
    st.floats(0.5, 50.0),
    st.booleans(),
)
contracts = st.tuples(st.sampled_from([1.0, 10.0, 100.0, 0.01]), st.booleans())


def wis_of(bids: Levels, asks: Levels, k: Kernel, cs: float = 1.0, inverse: bool = False
           ) -> float | None:
    book, flags = make_book(bids, asks, contract_size=cs, inverse=inverse)
    assert not flags - {"thin"}
    return snapshot(book, {"w": k}, k.band_bps).wis["w"]


def reference_wis(bids: Levels, asks: Levels, k: Kernel, cs: float = 1.0,
                  inverse: bool = False) -> float | None:
    return ref.wis(bids, asks, k.kernel, cs, inverse, k.symmetric, half_life_bps=k.half_life_bps,
                   band_bps=k.band_bps, half_life_levels=k.half_life_levels)


@settings(max_examples=300, deadline=None)
@given(books(), kernels, contracts)
def test_wis_equals_the_formula(book: tuple[Levels, Levels], k: Kernel,
                                contract: tuple[float, bool]) -> None:
    bids, asks = book
    cs, inverse = contract
    got = wis_of(bids, asks, k, cs, inverse)
    want = reference_wis(bids, asks, k, cs, inverse)
    assert ref.close(got, want), (got, want)


@settings(max_examples=200, deadline=None)
@given(books(), contracts, st.floats(1.0, 200.0), st.booleans())
def test_companions_equal_the_formulas(book: tuple[Levels, Levels],
                                       contract: tuple[float, bool], band: float,
                                       symmetric: bool) -> None:
    bids, asks = book
    cs, inverse = contract
    b, _ = make_book(bids, asks, contract_size=cs, inverse=inverse)
    snap = snapshot(b, {"wis": Kernel(band_bps=band)}, band, symmetric=symmetric)
    want = ref.companions(bids, asks, band, cs, inverse, symmetric)
    for key, value in want.items():
        assert ref.close(getattr(snap, key), value), (key, getattr(snap, key), value)
    assert ref.close(snap.depth, want["bid_depth"] + want["ask_depth"])
    assert snap.thin == (snap.coverage_bps < band)


@settings(max_examples=200, deadline=None)
@given(books(), kernels)
def test_wis_is_bounded(book: tuple[Levels, Levels], k: Kernel) -> None:
    w = wis_of(*book, k)
    assert w is None or -1.0 <= w <= 1.0


@settings(max_examples=200, deadline=None)
@given(books(), kernels)
def test_swapping_sides_negates_wis(book: tuple[Levels, Levels], k: Kernel) -> None:
    bids, asks = book
    m = ref.mid(bids, asks)
    # Mirror prices around the mid: asks become bids at the same distances and vice versa.
    mirrored_bids = [[2 * m - p, q] for p, q in asks]
    mirrored_asks = [[2 * m - p, q] for p, q in bids]
    assume(mirrored_bids[-1][0] > 0)
    a = wis_of(bids, asks, k, 1.0, True)  # inverse: notional q*cs, independent of price
    b = wis_of(mirrored_bids, mirrored_asks, k, 1.0, True)
    if a is None or b is None:
        assert a is None and b is None
    else:
        assert b == pytest.approx(-a, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(books(), kernels, st.floats(1e-3, 1e3))
def test_scaling_amounts_leaves_wis_unchanged(book: tuple[Levels, Levels], k: Kernel,
                                              factor: float) -> None:
    bids, asks = book
    a = wis_of(bids, asks, k)
    b = wis_of([[p, q * factor] for p, q in bids], [[p, q * factor] for p, q in asks], k)
    if a is None or b is None:
        assert a is None and b is None
    else:
        assert b == pytest.approx(a, abs=1e-9)


def test_band_edge_levels_follow_the_formula() -> None:
    m = 10_000.0
    # Levels at exactly 50 bps, just inside and just outside.
    bids = [[m - 0.5, 1.0], [m * (1 - 0.005), 2.0], [m * (1 - 0.005) - 1e-9, 3.0]]
    asks = [[m + 0.5, 1.0], [m * (1 + 0.005), 2.0], [m * (1 + 0.005) + 1e-9, 3.0],
            [m * 1.0051, 5.0]]
    for kernel in KERNELS:
        k = Kernel(kernel, 10.0, 50.0, 5.0)
        assert ref.close(wis_of(bids, asks, k), reference_wis(bids, asks, k)), kernel


def test_named_variants_each_computed() -> None:
    bids = [[99.9, 5.0], [99.5, 1.0], [99.0, 8.0]]
    asks = [[100.1, 1.0], [100.5, 6.0], [101.0, 1.0]]
    book, _ = make_book(bids, asks)
    kernels = {"wis": Kernel(), "wis_fast": Kernel(half_life_bps=1.0),
               "wis_flat": Kernel("flat", band_bps=200.0)}
    snap = snapshot(book, kernels, 50.0)
    for name, k in kernels.items():
        assert ref.close(snap.wis[name], reference_wis(bids, asks, k)), name
    assert snap.wis["wis_fast"] != snap.wis["wis_flat"]


def test_no_depth_in_band_gives_null_wis() -> None:
    book, _ = make_book([[90.0, 1.0]], [[110.0, 1.0]])  # both 1000 bps away
    snap = snapshot(book, {"wis": Kernel()}, 50.0)
    assert snap.wis["wis"] is None and not snap.thin  # levels exist beyond the band
    assert snap.bid_depth == 0.0


def test_lopsided_truncation_cuts_both_sides_at_the_shorter_reach() -> None:
    # Bids reach 9 bps, asks 99 bps: within 50 bps the asks would outweigh the bids 5 to 1.
    bids = [[100.0 - 0.01 * i, 1.0] for i in range(1, 10)]
    asks = [[100.0 + 0.01 * i, 1.0] for i in range(1, 100)]
    book, _ = make_book(bids, asks)
    flat = Kernel("flat", band_bps=50.0)
    snap = snapshot(book, {"wis": flat}, 50.0)
    assert snap.coverage_bps == pytest.approx(ref.effective_band(bids, asks, 50.0))
    assert 8.9 < snap.coverage_bps < 9.1 and snap.thin
    assert snap.wis["wis"] == pytest.approx(0.0, abs=0.01)  # the same 9 levels each side
    assert ref.close(snap.ask_depth, ref.depth(asks, ref.mid(bids, asks), snap.coverage_bps))
    lopsided = snapshot(book, {"wis": Kernel("flat", band_bps=50.0, symmetric=False)}, 50.0,
                        symmetric=False)
    assert lopsided.wis["wis"] is not None and lopsided.wis["wis"] < -0.6
    assert lopsided.coverage_bps == snap.coverage_bps and lopsided.thin


def test_a_side_with_only_its_touch_compares_the_touches() -> None:
    bids = [[99.9, 3.0]]
    asks = [[100.1, 1.0], [100.2, 50.0], [100.3, 50.0]]
    book, _ = make_book(bids, asks)
    for kernel in KERNELS:
        snap = snapshot(book, {"wis": Kernel(kernel)}, 50.0)
        assert snap.coverage_bps == pytest.approx(10.0) and snap.thin
        want = (99.9 * 3.0 - 100.1) / (99.9 * 3.0 + 100.1)
        assert snap.wis["wis"] == pytest.approx(want), kernel


def test_thin_flag() -> None:
    bids = [[100.0 - 0.01 * i, 1.0] for i in range(1, 10)]  # reaches 9 bps only
    asks = [[100.0 + 0.1 * i, 1.0] for i in range(1, 100)]
    book, _ = make_book(bids, asks)
    assert snapshot(book, {"wis": Kernel()}, 50.0).thin
    bids = [[100.0 - 0.1 * i, 1.0] for i in range(1, 100)]
    book, _ = make_book(bids, asks)
    assert not snapshot(book, {"wis": Kernel()}, 50.0).thin
    assert np.isfinite(snapshot(book, {"wis": Kernel()}, 50.0).wis["wis"] or 0.0)
