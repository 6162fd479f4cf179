"""Order-book depths each known venue accepts, for ``check`` and for choosing a request depth."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: Exchanges that accept only these depth values.
ALLOWED_DEPTHS: dict[str, tuple[int, ...]] = {
    "binanceusdm": (5, 10, 20, 50, 100, 500, 1000),
    "binancecoinm": (5, 10, 20, 50, 100, 500, 1000),
    "bitfinex": (1, 25, 100),
    "kucoin": (20, 100),
    "htx": (5, 10, 20, 150),
    "huobi": (5, 10, 20, 150),
    "deribit": (1, 5, 10, 20, 50, 100, 1000, 10000),
}
#: Exchanges that accept any depth up to this many levels.
MAX_DEPTH: dict[str, int] = {
    "binance": 5000,
    "okx": 5000,
    "bybit": 500,  # linear and inverse contracts; spot: SPOT_MAX_DEPTH
    "kraken": 500,
    "coinbase": 1000,
    "coinbaseexchange": 1000,
}
#: Lower limits for spot markets (unified symbols without ":settle").
SPOT_MAX_DEPTH: dict[str, int] = {"bybit": 200}
#: Venues that need no depth: the simulator and recordings.
UNLIMITED = ("sim", "replay")


def _max_depth(exchange: str, symbols: Sequence[str]) -> int | None:
    spot = exchange in SPOT_MAX_DEPTH and any(":" not in s for s in symbols)
    return SPOT_MAX_DEPTH[exchange] if spot else MAX_DEPTH.get(exchange)


def depth_problem(exchange: str, depth: int, symbols: Sequence[str] = ()) -> str | None:
    """Why ``depth`` is not allowed on ``exchange`` for these symbols; None when it is or the
    venue is unknown."""
    top = _max_depth(exchange, symbols)
    if exchange in ALLOWED_DEPTHS:
        allowed = ALLOWED_DEPTHS[exchange]
        if depth not in allowed:
            return f"depth {depth} is not supported by {exchange}; allowed: " + ", ".join(
                str(d) for d in allowed
            )
    elif top is not None and depth > top:
        market = " spot markets" if top != MAX_DEPTH.get(exchange) else ""
        return f"depth {depth} is not supported by {exchange}{market}; allowed: 1 to {top}"
    return None


def request_depth(exchange: str, wanted: int, symbols: Sequence[str] = ()) -> int:
    """The smallest allowed depth at or above ``wanted`` (or the largest there is)."""
    if exchange in ALLOWED_DEPTHS:
        allowed = ALLOWED_DEPTHS[exchange]
        i = bisect_left(allowed, wanted)
        return allowed[min(i, len(allowed) - 1)]
    top = _max_depth(exchange, symbols)
    return min(wanted, top) if top is not None else wanted
