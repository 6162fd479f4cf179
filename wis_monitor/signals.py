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
#: Price margin used to pre-cut a side before the exact distance test (relative).
_CUT_MARGIN = 1e-6


@dataclass(frozen=True, slots=True)
class Kernel:
    """How a level's weight decays with its distance from the mid (SPEC §3)."""

    kernel: KernelName = "exponential"
    half_life_bps: float = 10.0
    band_bps: float = 50.0
    half_life_levels: float = 5.0

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
    levels: int  # how many levels the venue returned on this side

    def reaches(self, band_bps: float) -> bool:
        """True when the returned levels reach ``band_bps`` (else the side is thin)."""
        if self.dist_bps.size < self.levels:
            return True
        return bool(self.dist_bps.size) and float(self.dist_bps[-1]) >= band_bps


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
    cs = book.contract_size
    if book.inverse:
        notional = q * cs if cs != 1.0 else q
    else:
        notional = px[:m] * q
        if cs != 1.0:
            notional *= cs
    return Side(dist, notional, int(px.size))


def weighted_sum(side: Side, kernel: Kernel) -> float:
    whole = kernel.band_bps >= _side_band(side)
    if whole and kernel.kernel == "flat":
        return float(side.notional.sum())
    if whole:
        d, n = side.dist_bps, side.notional
    else:
        m = int(side.dist_bps.searchsorted(kernel.band_bps, side="right"))
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
) -> Snapshot:
    """Compute WIS for every named kernel and the companions, for a book with both sides.

    ``depth_band_bps`` bounds ``bid_depth``/``ask_depth`` and the ``thin`` test. ``top`` > 0
    also lists the levels that contribute most to the ``main`` kernel's sums.

    Prices and amounts near the largest doubles overflow to inf or NaN without a warning: the
    caller checks the numbers (the engine flags such a sample ``invalid``).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _snapshot(book, kernels, depth_band_bps, main, top)


def _snapshot(book: Book, kernels: dict[str, Kernel], depth_band_bps: float, main: str,
              top: int) -> Snapshot:
    bb = float(book.bid_px[0])
    ba = float(book.ask_px[0])
    mid = (bb + ba) / 2.0
    widest = max([depth_band_bps, *(k.band_bps for k in kernels.values())])
    bids = within_band(book.bid_px, book.bid_qty, mid, widest, book, True)
    asks = within_band(book.ask_px, book.ask_qty, mid, widest, book, False)
    values: dict[str, float | None] = {}
    for name, kernel in kernels.items():
        values[name] = wis(weighted_sum(bids, kernel), weighted_sum(asks, kernel))
    flat = _flat(depth_band_bps)
    bid_depth = weighted_sum(bids, flat)
    ask_depth = weighted_sum(asks, flat)
    qb = float(book.bid_qty[0])
    qa = float(book.ask_qty[0])
    qsum = qb + qa
    top_bids: list[tuple[float, float]] = []
    top_asks: list[tuple[float, float]] = []
    if top and main in kernels:
        top_bids = _top(book.bid_px, bids, kernels[main], top)
        top_asks = _top(book.ask_px, asks, kernels[main], top)
    return Snapshot(
        mid=mid,
        spread_bps=(ba - bb) / mid * BPS,
        imbalance=(qb - qa) / qsum if qsum > 0 else None,
        microprice=(bb * qa + ba * qb) / qsum if qsum > 0 else None,
        bid_depth=bid_depth,
        ask_depth=ask_depth,
        wis=values,
        thin=not (bids.reaches(depth_band_bps) and asks.reaches(depth_band_bps)),
        top_bids=top_bids,
        top_asks=top_asks,
    )


@lru_cache(maxsize=16)
def _flat(band_bps: float) -> Kernel:
    return Kernel("flat", band_bps=band_bps)


def _top(px: FloatArray, side: Side, kernel: Kernel, n: int) -> list[tuple[float, float]]:
    m = int(side.dist_bps.searchsorted(kernel.band_bps, side="right"))
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
