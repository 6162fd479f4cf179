"""ccxt's unified market symbols, checked offline, with a hint for exchange-native spellings.

Unified forms: ``BASE/QUOTE`` (spot), ``BASE/QUOTE:SETTLE`` (perpetual swap),
``BASE/QUOTE:SETTLE-YYMMDD`` (future) and ``BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P`` (option).
"""

from __future__ import annotations

import re

_CODE = r"[A-Za-z0-9][A-Za-z0-9_.]*"
UNIFIED = re.compile(
    rf"^(?P<base>{_CODE})/(?P<quote>{_CODE})"
    rf"(?::(?P<settle>{_CODE})(?:-(?P<expiry>\d{{6}})(?:-(?P<strike>\d+(?:\.\d+)?)-(?P<kind>[CP]))?)?)?$"
)
#: Quote currencies tried, longest first, to split a run-together spelling like ``BTCUSDT``.
_QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "USD", "EUR", "GBP", "JPY", "TRY",
           "BRL", "BTC", "ETH", "BNB")


def market_type(symbol: str) -> str | None:
    """``spot``, ``swap``, ``future`` or ``option`` for a unified symbol; None if not unified."""
    m = UNIFIED.match(symbol)
    if m is None:
        return None
    if m["kind"]:
        return "option"
    if m["expiry"]:
        return "future"
    return "swap" if m["settle"] else "spot"


def symbol_problem(symbol: str) -> str | None:
    """Why ``symbol`` is not a ccxt unified symbol (with a likely meant one); None if it is."""
    if UNIFIED.match(symbol):
        return None
    hint = suggest(symbol)
    if hint:
        return f'"{symbol}" is not a ccxt unified symbol (did you mean "{hint}"?)'
    return (f'"{symbol}" is not a ccxt unified symbol: BASE/QUOTE (spot), BASE/QUOTE:SETTLE '
            "(swap), BASE/QUOTE:SETTLE-YYMMDD (future) or BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P "
            "(option)")


def suggest(symbol: str) -> str | None:
    """The unified symbol an exchange-native spelling most likely means, if one is clear."""
    text = symbol.strip().upper()
    parts = text.split("-")
    if len(parts) == 2 and parts[1] == "PERPETUAL":  # deribit: inverse, settled in the base
        return f"{parts[0]}/USD:{parts[0]}"
    if len(parts) == 3 and parts[2] == "SWAP":  # okx
        settle = parts[0] if parts[1] == "USD" else parts[1]
        return f"{parts[0]}/{parts[1]}:{settle}"
    if len(parts) == 2 and all(parts):  # okx, coinbase spot
        return f"{parts[0]}/{parts[1]}"
    perp = text.removesuffix("_PERP")  # binance COIN-M
    for quote in _QUOTES:
        if perp.endswith(quote) and len(perp) > len(quote) and perp.isalnum():
            base = perp[: -len(quote)]
            if perp != text:
                return f"{base}/{quote}:{base}"
            return f"{base}/{quote}"
    return None
