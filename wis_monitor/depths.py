"""Order-book depths each known venue accepts, for ``check`` and for choosing a request depth."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: Levels requested first when a venue's config sets no depth; doubled while the book the venue
#: returns is truncated short of the band (up to what the venue allows).
DEFAULT_DEPTH = 100
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


#: Milliseconds ccxt waits between two requests of weight 1 (its ``rateLimit``), for checking
#: a request budget offline; a test keeps these equal to ccxt's.
RATE_LIMIT_MS: dict[str, float] = {
    "binance": 50, "binanceusdm": 50, "binancecoinm": 50, "okx": 110, "bybit": 20,
    "kraken": 1000, "deribit": 50, "coinbase": 34, "bitfinex": 250, "kucoin": 7.5, "htx": 100,
}
#: Request weight of an order book by depth: (largest depth, weight), ascending.
_WEIGHTS: dict[str, tuple[tuple[int, int], ...]] = {
    "binance": ((100, 5), (500, 25), (1000, 50), (5000, 250)),
    "binanceusdm": ((50, 2), (100, 5), (500, 10), (1000, 20)),
    "binancecoinm": ((50, 2), (100, 5), (500, 10), (1000, 20)),
}


def request_weight(exchange: str, depth: int) -> int:
    """The weight (in units of the rate limit) of one order-book request of ``depth`` levels:
    binance's grow with depth; 1 elsewhere."""
    for top, weight in _WEIGHTS.get(exchange, ()):
        if depth <= top:
            return weight
    steps = _WEIGHTS.get(exchange)
    return steps[-1][1] if steps else 1
