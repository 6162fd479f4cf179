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


def ofi_event(prev: tuple[Sequence[Level], Sequence[Level]],
              cur: tuple[Sequence[Level], Sequence[Level]], levels: int,
              contract_size: float = 1.0, inverse: bool = False) -> float:
    """Multi-level OFI from one book to the next, over the notional of each level, divided by
    the mean per-side notional of the next book over the levels compared."""
    e = 0.0
    depth_sum = 0.0
    for side in (0, 1):  # bids, asks
        before, after = prev[side], cur[side]
        for i in range(min(levels, len(before), len(after))):
            p0 = before[i][0]
            p1 = after[i][0]
            q0 = notional(p0, before[i][1], contract_size, inverse)
            q1 = notional(p1, after[i][1], contract_size, inverse)
            depth_sum += q1
            if side == 0:
                e += (q1 if p1 >= p0 else 0.0) - (q0 if p1 <= p0 else 0.0)
            else:
                e += (q0 if p1 >= p0 else 0.0) - (q1 if p1 <= p0 else 0.0)
    return e / (depth_sum / 2)


def ofi_series(steps: Sequence[tuple[int, tuple[Sequence[Level], Sequence[Level]] | None]],
               levels: int, window_ms: int, interval_ms: int, contract_size: float = 1.0,
               inverse: bool = False) -> list[float | None]:
    """For each (ts, book or None for a bad sample): the OFI events of (ts - window, ts] summed,
    None when the chain of consecutive good books (gaps <= 2 intervals) is younger than a
    window."""
    out: list[float | None] = []
    events: list[tuple[int, float]] = []
    start = 0
    prev: tuple[int, tuple[Sequence[Level], Sequence[Level]]] | None = None
    for ts, book in steps:
        if book is None:
            prev = None
            out.append(None)
            continue
        if prev is None or ts - prev[0] > 2 * interval_ms:
            start, events = ts, []
            out.append(None)
        else:
            events.append((ts, ofi_event(prev[1], book, levels, contract_size, inverse)))
            inside = [e for t, e in events if ts - window_ms < t <= ts]
            out.append(math.fsum(inside) if ts - start >= window_ms else None)
        prev = (ts, book)
    return out


def ema_series(series: Sequence[tuple[int, float | None]], half_life_ms: float,
               interval_ms: float) -> list[float | None]:
    """For each (ts, x): the weighted mean of the non-null values so far, value i weighing
    (1 - 2^(-dt_i/h)) * 2^(-(t_last - t_i)/h), dt_i the time since the previous value (one
    interval for the first), t_last the time of the latest value."""
    seen: list[tuple[int, float, float]] = []
    out: list[float | None] = []
    for ts, x in series:
        if x is not None:
            dt = ts - seen[-1][0] if seen else interval_ms
            seen.append((ts, dt, x))
        if not seen:
            out.append(None)
            continue
        last = seen[-1][0]
        w = [(1 - 2 ** (-dt / half_life_ms)) * 2 ** (-(last - t) / half_life_ms)
             for t, dt, _ in seen]
        total = math.fsum(wi * v for wi, (_, _, v) in zip(w, seen, strict=True))
        out.append(total / math.fsum(w))
    return out


def impact_bps(bids: Sequence[Level], asks: Sequence[Level], size: float, buy: bool,
               contract_size: float = 1.0, inverse: bool = False) -> float | None:
    """Walk the asks (a buy) or bids (a sell) level by level, taking what each holds until
    ``size`` of quote notional is bought or sold; the impact of the average price against the
    mid, in bps (positive: a cost). None when the levels cannot fill ``size``."""
    m = mid(bids, asks)
    left, paid_base = size, 0.0
    for p, q, *_ in asks if buy else bids:
        take = min(left, notional(p, q, contract_size, inverse))
        paid_base += take / p  # the base amount this much notional buys at p
        left -= take
        if left <= size * 1e-12:
            break
    else:
        if left > size * 1e-12:
            return None
    avg = size / paid_base
    return (avg - m) / m * 10_000 if buy else (m - avg) / m * 10_000


def split_impact_bps(books: Sequence[tuple[Sequence[Level], Sequence[Level], float, bool]],
                     size: float, buy: bool) -> float | None:
    """An order of ``size`` split over several books (bids, asks, contract size, inverse): all
    their levels of that side in one list, best price first, walked as one book against the
    mid of the best bid and best ask of them all."""
    levels = sorted(((p, notional(p, q, cs, inv)) for bids, asks, cs, inv in books
                     for p, q, *_ in (asks if buy else bids)), key=lambda lv: lv[0],
                    reverse=not buy)
    m = (max(b[0][0] for b, _, _, _ in books) + min(a[0][0] for _, a, _, _ in books)) / 2
    left, base = size, 0.0
    for p, n in levels:
        take = min(left, n)
        base += take / p
        left -= take
        if left <= size * 1e-12:
            avg = size / base
            return (avg - m) / m * 10_000 if buy else (m - avg) / m * 10_000
    return None
