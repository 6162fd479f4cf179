"""Pure functions from a Book to the numbers of SPEC §3: WIS and its companions.

Nothing here keeps state or reads a clock: the per-series companions (``mid_change_bps``,
``age_s``) and the z-scores live in :mod:`wis_monitor.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from wis_monitor.book import Book, FloatArray

KernelName = Literal["exponential", "linear", "flat", "levels"]
KERNELS: tuple[KernelName, ...] = ("exponential", "linear", "flat", "levels")
BPS = 10_000.0
#: The shorter reach is widened by this factor: levels at the same distance up to rounding count.
REACH_TOLERANCE = 1.0 + 1e-9
#: Price margin used to pre-cut a side before the exact distance test (relative).
_CUT_MARGIN = 1e-6


@dataclass(frozen=True, slots=True)
class Kernel:
    """How a level's weight decays with its distance from the mid (SPEC §3)."""

    kernel: KernelName = "exponential"
    half_life_bps: float = 10.0
    band_bps: float = 50.0
    half_life_levels: float = 5.0
    #: Cut both sides at the effective band (:func:`effective_band`), not at ``band_bps``.
    symmetric: bool = True

    def weights(self, dist_bps: FloatArray) -> FloatArray:
        """Weights of levels at these distances (already within the band), touch first."""
        if self.kernel == "exponential":
            return np.exp2(dist_bps * (-1.0 / self.half_life_bps))
        if self.kernel == "linear":
            return 1.0 - dist_bps / self.band_bps
        if self.kernel == "flat":
            return np.ones_like(dist_bps)
        k = np.arange(dist_bps.size, dtype=np.float64)
        return np.exp2(-k / self.half_life_levels)


@dataclass(frozen=True, slots=True)
class Side:
    """The levels of one side that lie within the widest band, with distances and notionals."""

    dist_bps: FloatArray
    notional: FloatArray
    reach_bps: float  # the distance of the farthest level the venue returned on this side


def within_band(
    px: FloatArray, qty: FloatArray, mid: float, band_bps: float, book: Book, bids: bool
) -> Side:
    # Cut with a price bound a hair wider than the band (cheap, sorted), then apply the exact
    # distance test of the spec on the few levels left.
    reach = band_bps / BPS * (1.0 + _CUT_MARGIN) + _CUT_MARGIN
    if bids:  # descending: count the prices >= the bound on the reversed (ascending) view
        n = px.size - int(px[::-1].searchsorted(mid * (1.0 - reach), side="left"))
        dist = (mid - px[:n]) / mid * BPS  # = |p - mid| / mid * 1e4 below the mid
    else:
        n = int(px.searchsorted(mid * (1.0 + reach), side="right"))
        dist = (px[:n] - mid) / mid * BPS
    # Levels are sorted, so distance grows with the index: the kept ones are a prefix.
    m = int(dist.searchsorted(band_bps, side="right"))
    dist = dist[:m]
    q = qty[:m]
    far = float(px[-1])
    side_reach = (mid - far) / mid * BPS if bids else (far - mid) / mid * BPS
    cs = book.contract_size
    if book.inverse:
        notional = q * cs if cs != 1.0 else q
    else:
        notional = px[:m] * q
        if cs != 1.0:
            notional *= cs
    return Side(dist, notional, side_reach)


def effective_band(bids: Side, asks: Side, band_bps: float) -> float:
    """``min(band, bid reach, ask reach)``, never below the touch (both touches always count).

    A side's reach is the distance from the mid of the farthest level the venue returned; a
    side that returned only its touch reaches half the spread, which leaves the two touches.
    Distances equal within a relative 1e-9 count as equal (levels mirrored around the mid
    differ by rounding only), so the shorter reach is widened by that much.
    """
    touch = max(_first(bids), _first(asks))
    reach = min(bids.reach_bps, asks.reach_bps) * REACH_TOLERANCE
    return min(band_bps, max(touch, reach))


def _first(side: Side) -> float:
    return float(side.dist_bps[0]) if side.dist_bps.size else side.reach_bps


def weighted_sum(side: Side, kernel: Kernel, cut_bps: float | None = None) -> float:
    """The kernel-weighted notional of the levels within ``cut_bps`` (default: the band)."""
    cut = kernel.band_bps if cut_bps is None else cut_bps
    whole = cut >= _side_band(side)
    if whole and kernel.kernel == "flat":
        return float(side.notional.sum())
    if whole:
        d, n = side.dist_bps, side.notional
    else:
        m = int(side.dist_bps.searchsorted(cut, side="right"))
        d, n = side.dist_bps[:m], side.notional[:m]
    if d.size == 0:
        return 0.0
    return float(np.dot(kernel.weights(d), n))


def _side_band(side: Side) -> float:
    return float(side.dist_bps[-1]) if side.dist_bps.size else 0.0


def wis(bid_sum: float, ask_sum: float) -> float | None:
    total = bid_sum + ask_sum
    if total == 0.0:
        return None
    return (bid_sum - ask_sum) / total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The instantaneous numbers of one good book."""

    mid: float
    spread_bps: float
    imbalance: float | None
    microprice: float | None
    bid_depth: float
    ask_depth: float
    coverage_bps: float
    wis: dict[str, float | None]
    thin: bool
    top_bids: list[tuple[float, float]]  # (price, weighted notional) of the main kernel
    top_asks: list[tuple[float, float]]

    @property
    def depth(self) -> float:
        return self.bid_depth + self.ask_depth


def snapshot(
    book: Book,
    kernels: dict[str, Kernel],
    depth_band_bps: float,
    *,
    main: str = "wis",
    top: int = 0,
    symmetric: bool = True,
) -> Snapshot:
    """Compute WIS for every named kernel and the companions, for a book with both sides.

    ``depth_band_bps`` bounds ``bid_depth``/``ask_depth`` (cut at the effective band when
    ``symmetric``), ``coverage_bps`` and the ``thin`` test. ``top`` > 0 also lists the levels
    that contribute most to the ``main`` kernel's sums.

    Prices and amounts near the largest doubles overflow to inf or NaN without a warning: the
    caller checks the numbers (the engine flags such a sample ``invalid``).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _snapshot(book, kernels, depth_band_bps, main, top, symmetric)


def _snapshot(book: Book, kernels: dict[str, Kernel], depth_band_bps: float, main: str,
              top: int, symmetric: bool) -> Snapshot:
    bb = float(book.bid_px[0])
    ba = float(book.ask_px[0])
    mid = (bb + ba) / 2.0
    widest = max([depth_band_bps, *(k.band_bps for k in kernels.values())])
    bids = within_band(book.bid_px, book.bid_qty, mid, widest, book, True)
    asks = within_band(book.ask_px, book.ask_qty, mid, widest, book, False)
    cover = effective_band(bids, asks, widest)
    values: dict[str, float | None] = {}
    for name, kernel in kernels.items():
        cut = min(kernel.band_bps, cover) if kernel.symmetric else kernel.band_bps
        values[name] = wis(weighted_sum(bids, kernel, cut), weighted_sum(asks, kernel, cut))
    coverage = min(depth_band_bps, cover)
    flat = _flat(depth_band_bps)
    depth_cut = coverage if symmetric else depth_band_bps
    bid_depth = weighted_sum(bids, flat, depth_cut)
    ask_depth = weighted_sum(asks, flat, depth_cut)
    qb = float(book.bid_qty[0])
    qa = float(book.ask_qty[0])
    qsum = qb + qa
    top_bids: list[tuple[float, float]] = []
    top_asks: list[tuple[float, float]] = []
    if top and main in kernels:
        k = kernels[main]
        cut = min(k.band_bps, cover) if k.symmetric else k.band_bps
        top_bids = _top(book.bid_px, bids, k, cut, top)
        top_asks = _top(book.ask_px, asks, k, cut, top)
    return Snapshot(
        mid=mid,
        spread_bps=(ba - bb) / mid * BPS,
        imbalance=(qb - qa) / qsum if qsum > 0 else None,
        microprice=(bb * qa + ba * qb) / qsum if qsum > 0 else None,
        bid_depth=bid_depth,
        ask_depth=ask_depth,
        coverage_bps=coverage,
        wis=values,
        thin=coverage < depth_band_bps,
        top_bids=top_bids,
        top_asks=top_asks,
    )


@lru_cache(maxsize=16)
def _flat(band_bps: float) -> Kernel:
    return Kernel("flat", band_bps=band_bps)


def _top(px: FloatArray, side: Side, kernel: Kernel, cut_bps: float, n: int
         ) -> list[tuple[float, float]]:
    m = int(side.dist_bps.searchsorted(cut_bps, side="right"))
    if m == 0:
        return []
    contrib = kernel.weights(side.dist_bps[:m]) * side.notional[:m]
    order = np.argsort(-contrib, kind="stable")[:n]
    return [(float(px[i]), float(contrib[i])) for i in order]


def change_bps(prev: float | None, now: float) -> float | None:
    """Relative change in basis points, None without a previous value."""
    if prev is None or prev == 0.0 or not math.isfinite(prev):
        return None
    return (now - prev) / prev * BPS


@dataclass(frozen=True, slots=True)
class TopLevels:
    """The best levels of a book for the order-flow imbalance: prices and notionals."""

    bid_px: list[float]
    bid_notional: list[float]
    ask_px: list[float]
    ask_notional: list[float]


def top_levels(book: Book, levels: int) -> TopLevels:
    """The best ``levels`` of each side, notional as for WIS (contract size, inverse)."""
    bp, ap = book.bid_px[:levels], book.ask_px[:levels]
    return TopLevels(bp.tolist(), _notionals(book, bp, book.bid_qty[:levels]),
                     ap.tolist(), _notionals(book, ap, book.ask_qty[:levels]))


def ofi_event(prev: TopLevels, cur: TopLevels) -> float:
    """The multi-level order-flow imbalance from ``prev`` to ``cur``, normalised (docs/metrics.md).

    Per level ``i`` present on that side in both books, with ``q`` a level's notional:
    ``e_bid = q_b,t·1[p_b,t ≥ p_b,t-1] − q_b,t-1·1[p_b,t ≤ p_b,t-1]`` and
    ``e_ask = q_a,t-1·1[p_a,t ≥ p_a,t-1] − q_a,t·1[p_a,t ≤ p_a,t-1]``; their sum over the levels
    is divided by the mean per-side notional of ``cur`` over the same levels.
    """
    e_bid, d_bid = _flow(prev.bid_px, prev.bid_notional, cur.bid_px, cur.bid_notional, True)
    e_ask, d_ask = _flow(prev.ask_px, prev.ask_notional, cur.ask_px, cur.ask_notional, False)
    depth = (d_bid + d_ask) / 2.0
    return (e_bid - e_ask) / depth if depth > 0.0 else 0.0


def _flow(p0: list[float], q0: list[float], p1: list[float], q1: list[float], bids: bool
          ) -> tuple[float, float]:
    """A side's ``Σ q_t·1[better or same] − q_t-1·1[worse or same]`` and ``Σ q_t`` over the
    levels both books have, where better is a higher bid or a lower ask (so for asks this is
    the negative of ``e_ask``)."""
    e = 0.0
    depth = 0.0
    for a0, b0, a1, b1 in zip(p0, q0, p1, q1, strict=False):  # the levels both books have
        depth += b1
        if a1 == a0:
            e += b1 - b0
        elif (a1 > a0) is bids:
            e += b1
        else:
            e -= b0
    return e, depth


def _notionals(book: Book, px: FloatArray, qty: FloatArray) -> list[float]:
    cs = book.contract_size
    if book.inverse:
        notional = qty * cs if cs != 1.0 else qty
    else:
        notional = px * qty
        if cs != 1.0:
            notional *= cs
    out: list[float] = notional.tolist()
    return out
