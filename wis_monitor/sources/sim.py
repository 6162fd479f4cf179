"""A stochastic order-book model for the demo, the tests and the benchmarks (``exchange: sim``).

Each symbol follows a regime-switching model:

* ``calm``: the mid is a small random walk, both sides have lognormal sizes that grow with
  the distance from the touch;
* ``bid_build`` / ``ask_build``: liquidity piles up on one side near the touch over tens of
  seconds (the lopsided book a risk manager wants to hear about), the mid drifts that way;
* ``shock``: the thin side's near-touch liquidity is swept and the mid jumps several bps.

Prices sit on a tick grid, sizes on a lot grid. The model is seeded, so a run is repeatable.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from wis_monitor.book import make_book
from wis_monitor.sources import Observation

REGIMES = ("calm", "bid_build", "ask_build", "shock")
#: Mean time in each regime (seconds); the calm one is configurable.
_MEAN_STAY_S = {"calm": 90.0, "bid_build": 40.0, "ask_build": 40.0, "shock": 4.0}
_PRICE_SCALE = {"BTC": 1.0, "ETH": 0.045, "SOL": 0.0025, "XRP": 1e-5}


@dataclass
class _Series:
    rng: np.random.Generator
    mid: float
    tick: float
    regime: str = "calm"
    strength: float = 0.0  # 0..1 build-up of the current imbalance regime
    side: float = 1.0  # +1 bids heavy, -1 asks heavy (kept through a shock)
    last_ms: int | None = None
    base_b: np.ndarray = field(default_factory=lambda: np.empty(0))
    base_a: np.ndarray = field(default_factory=lambda: np.empty(0))


class SimVenue:
    """A simulated venue: ``fetch`` advances each symbol's model to ``now_ms``."""

    def __init__(self, venue: str, symbols: list[str], *, seed: int | None = None,
                 price: float = 60_000.0, tick: float = 0.1, levels: int = 200,
                 calm_s: float = 90.0) -> None:
        self.venue = venue
        self.stay_s = {**_MEAN_STAY_S, "calm": max(calm_s, 1.0)}
        self.symbols = list(symbols)
        self.levels = levels
        self._series: dict[str, _Series] = {}
        for symbol in self.symbols:
            s = zlib.crc32(f"{venue}/{symbol}".encode()) ^ (seed if seed is not None else 0)
            rng = np.random.default_rng(s if seed is not None else None)
            # Different symbols trade at different prices: scale by a stable factor.
            base = symbol.split("/")[0]
            scale = _PRICE_SCALE.get(base, float(10.0 ** -rng.integers(1, 4)))
            p = price * scale * float(rng.uniform(0.98, 1.02))
            self._series[symbol] = _Series(rng, p, tick * scale)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def regime(self, symbol: str) -> str:
        return self._series[symbol].regime

    async def fetch(self, symbol: str, now_ms: int) -> Observation:
        return self.observe(symbol, now_ms)

    def observe(self, symbol: str, now_ms: int) -> Observation:
        s = self._series[symbol]
        dt = 1.0 if s.last_ms is None else max((now_ms - s.last_ms) / 1000.0, 0.0)
        s.last_ms = now_ms
        self._evolve(s, dt)
        bids, asks = self._levels(s)
        book, flags = make_book(bids, asks, venue_ts_ms=now_ms)
        return Observation(self.venue, symbol, now_ms, book, flags, 0.0)

    def _evolve(self, s: _Series, dt: float) -> None:
        rng = s.rng
        if rng.random() < 1.0 - math.exp(-dt / self.stay_s[s.regime]):
            if s.regime == "calm":
                s.regime = str(rng.choice(["bid_build", "ask_build"]))
                s.side = 1.0 if s.regime == "bid_build" else -1.0
            elif s.regime in ("bid_build", "ask_build") and rng.random() < 0.35:
                s.regime = "shock"
            else:
                s.regime = "calm"
        target = 0.0 if s.regime == "calm" else 1.0
        s.strength += (target - s.strength) * (1.0 - math.exp(-dt / 15.0))
        drift = {"bid_build": 0.3, "ask_build": -0.3}.get(s.regime, 0.0) * s.strength
        move_bps = drift * dt + rng.normal(0.0, 0.8 * math.sqrt(max(dt, 1e-3)))
        if s.regime == "shock":
            move_bps += s.side * rng.uniform(5.0, 25.0) * min(dt, 1.0)
        s.mid = max(s.mid * (1.0 + move_bps / 1e4), s.tick * 10)

    def _levels(self, s: _Series) -> tuple[np.ndarray, np.ndarray]:
        rng = s.rng
        n = self.levels
        tick = s.tick
        best_bid = math.floor(s.mid / tick) * tick
        spread_ticks = 1 + int(rng.poisson(0.5 if s.regime != "shock" else 4.0))
        best_ask = best_bid + spread_ticks * tick
        dist = np.arange(n, dtype=np.float64)
        # Levels thin out away from the touch, so a few hundred reach past 50 bps.
        gaps_b = 1 + rng.poisson(0.6 + dist * 0.15 * 200 / n)
        gaps_a = 1 + rng.poisson(0.6 + dist * 0.15 * 200 / n)
        bid_px = best_bid - np.concatenate(([0], np.cumsum(gaps_b[:-1]))) * tick
        ask_px = best_ask + np.concatenate(([0], np.cumsum(gaps_a[:-1]))) * tick
        profile = 0.05 * (1.0 + dist / 25.0)
        qb = profile * rng.lognormal(0.0, 0.9, n)
        qa = profile * rng.lognormal(0.0, 0.9, n)
        near = np.exp(-dist / 30.0)
        boost = 6.0 * s.strength
        if s.regime != "calm":
            heavy, light = (qb, qa) if s.side > 0 else (qa, qb)
            heavy *= 1.0 + boost * near
            if s.regime == "shock":
                light *= 1.0 - 0.9 * near
        lot = 1e-5
        qb = np.maximum(np.round(qb / lot) * lot, lot)
        qa = np.maximum(np.round(qa / lot) * lot, lot)
        decimals = max(0, -math.floor(math.log10(tick)) + 2)
        bids = np.column_stack((np.round(bid_px, decimals), qb))
        asks = np.column_stack((np.round(ask_px, decimals), qa))
        return bids[bids[:, 0] > 0], asks
