"""An independent, plain-Python implementation of SPEC §3-4, straight from the formulas.

Deliberately naive (no numpy, no shortcuts) so that the tests compare the product's optimised
code against something obviously right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Level = Sequence[float]


def mid(bids: Sequence[Level], asks: Sequence[Level]) -> float:
    return (bids[0][0] + asks[0][0]) / 2


def notional(p: float, q: float, contract_size: float = 1.0, inverse: bool = False) -> float:
    return q * contract_size if inverse else p * q * contract_size


def distance_bps(p: float, m: float) -> float:
    return abs(p - m) / m * 10_000


def effective_band(bids: Sequence[Level], asks: Sequence[Level], band_bps: float) -> float:
    """min(band, bid reach, ask reach), never below the touch: reach = farthest level's distance
    (the shorter reach widened by a relative 1e-9: distances equal up to rounding)."""
    m = mid(bids, asks)
    touch = max(distance_bps(bids[0][0], m), distance_bps(asks[0][0], m))
    reach = min(distance_bps(bids[-1][0], m), distance_bps(asks[-1][0], m)) * (1 + 1e-9)
    return min(band_bps, max(touch, reach))


def weight(kernel: str, d: float, k: int, *, half_life_bps: float = 10.0, band_bps: float = 50.0,
           half_life_levels: float = 5.0, cut_bps: float | None = None) -> float:
    if d > (band_bps if cut_bps is None else cut_bps):
        return 0.0
    if kernel == "exponential":
        return 2 ** (-d / half_life_bps)
    if kernel == "linear":
        return 1 - d / band_bps
    if kernel == "flat":
        return 1.0
    if kernel == "levels":
        return 2 ** (-k / half_life_levels)
    raise ValueError(kernel)


def side_sum(levels: Sequence[Level], m: float, kernel: str, contract_size: float = 1.0,
             inverse: bool = False, **params: float) -> float:
    total = 0.0
    for k, (p, q, *_) in enumerate(levels):
        total += weight(kernel, distance_bps(p, m), k, **params) * notional(
            p, q, contract_size, inverse)
    return total


def wis(bids: Sequence[Level], asks: Sequence[Level], kernel: str = "exponential",
        contract_size: float = 1.0, inverse: bool = False, symmetric: bool = True,
        **params: float) -> float | None:
    m = mid(bids, asks)
    if symmetric:
        params["cut_bps"] = effective_band(bids, asks, params.get("band_bps", 50.0))
    b = side_sum(bids, m, kernel, contract_size, inverse, **params)
    a = side_sum(asks, m, kernel, contract_size, inverse, **params)
    if b + a == 0:
        return None
    return (b - a) / (b + a)


def depth(levels: Sequence[Level], m: float, band_bps: float = 50.0, contract_size: float = 1.0,
          inverse: bool = False) -> float:
    return sum(notional(p, q, contract_size, inverse) for p, q, *_ in levels
               if distance_bps(p, m) <= band_bps)


def companions(bids: Sequence[Level], asks: Sequence[Level], band_bps: float = 50.0,
               contract_size: float = 1.0, inverse: bool = False, symmetric: bool = True
               ) -> dict[str, float | None]:
    m = mid(bids, asks)
    coverage = effective_band(bids, asks, band_bps)
    cut = coverage if symmetric else band_bps
    bb, qb = bids[0][0], bids[0][1]
    ba, qa = asks[0][0], asks[0][1]
    return {
        "mid": m,
        "spread_bps": (ba - bb) / m * 1e4,
        "imbalance": (qb - qa) / (qb + qa),
        "microprice": (bb * qa + ba * qb) / (qb + qa),
        "bid_depth": depth(bids, m, cut, contract_size, inverse),
        "ask_depth": depth(asks, m, cut, contract_size, inverse),
        "coverage_bps": coverage,
    }


def zscores(series: Sequence[tuple[int, float]], window_ms: int, min_samples: int
            ) -> list[float | None]:
    """For each (ts, x): z against the values with ts' in [ts - window, ts), ddof = 1."""
    out: list[float | None] = []
    for ts, x in series:
        w = [v for t, v in series if ts - window_ms <= t < ts]
        if len(w) < min_samples or len(w) < 2:
            out.append(None)
            continue
        mean = math.fsum(w) / len(w)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in w) / (len(w) - 1))
        out.append(None if std < 1e-12 else (x - mean) / std)
    return out


def close(a: float | None, b: float | None, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)
