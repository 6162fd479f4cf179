"""Order-book depths each known venue accepts, for ``check`` and for choosing a request depth."""

from __future__ import annotations

from bisect import bisect_left

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
    "bybit": 1000,
    "kraken": 500,
    "coinbase": 1000,
    "coinbaseexchange": 1000,
}
#: Venues that need no depth: the simulator and recordings.
UNLIMITED = ("sim", "replay")


def depth_problem(exchange: str, depth: int) -> str | None:
    """Why ``depth`` is not allowed on ``exchange``; None when it is or the venue is unknown."""
    if exchange in ALLOWED_DEPTHS:
        allowed = ALLOWED_DEPTHS[exchange]
        if depth not in allowed:
            return f"depth {depth} is not supported by {exchange}; allowed: " + ", ".join(
                str(d) for d in allowed
            )
    elif exchange in MAX_DEPTH and depth > MAX_DEPTH[exchange]:
        return f"depth {depth} is not supported by {exchange}; allowed: 1 to {MAX_DEPTH[exchange]}"
    return None


def request_depth(exchange: str, wanted: int) -> int:
    """The smallest allowed depth at or above ``wanted`` (or the largest there is)."""
    if exchange in ALLOWED_DEPTHS:
        allowed = ALLOWED_DEPTHS[exchange]
        i = bisect_left(allowed, wanted)
        return allowed[min(i, len(allowed) - 1)]
    return min(wanted, MAX_DEPTH.get(exchange, wanted))
