"""The impact of an order across the venues of a group: where each size is cheapest, and what
splitting it over every member's book would cost (docs/metrics.md, "Across venues").

The members' latest good books are merged into one book per side: every level of every book,
with its notional in the quote currency (USD for inverse contracts, as for one book), asks by
ascending price and bids by descending price. Only books quoted in currencies that count as
equal (``metrics.impact.equal_quotes``, default USD = USDT = USDC) are merged: those of the
group's first member with a book, the others left out. The split order walks the merged side
as one order walks one book (:func:`wis_monitor.impact.vwap`), against the merged book's mid,
``(highest bid + lowest ask) / 2``. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wis_monitor.book import Book, FloatArray
from wis_monitor.impact import BPS, level_notionals, vwap

SIDES = ("buy", "sell")


def quote_of(symbol: str) -> str:
    """The quote currency of a ccxt unified symbol: ``BTC/USDT`` -> USDT, ``BTC/USD:BTC`` ->
    USD (an inverse contract's notional is in USD)."""
    return symbol.partition("/")[2].partition(":")[0]


def same_quote(a: str, b: str, equal: Sequence[Sequence[str]]) -> bool:
    return a == b or any(a in group and b in group for group in equal)


def merged_side(books: Sequence[Book], buy: bool) -> tuple[FloatArray, FloatArray]:
    """The prices and notionals of one side of all ``books`` as one side, best first (equal
    prices keep the books' order)."""
    px = [b.ask_px if buy else b.bid_px for b in books]
    notional = [level_notionals(b, p, b.ask_qty if buy else b.bid_qty)
                for b, p in zip(books, px, strict=True)]
    all_px = np.concatenate(px) if px else np.empty(0)
    order = np.argsort(all_px if buy else -all_px, kind="stable")
    return all_px[order], (np.concatenate(notional) if notional else np.empty(0))[order]


def split_impact_bps(books: Sequence[Book], size: float, *, buy: bool) -> float | None:
    """The impact of an order of ``size`` split over ``books``, in bps of the merged mid; None
    when they cannot fill it together or have no mid."""
    bids = [b.best_bid for b in books if b.best_bid is not None]
    asks = [b.best_ask for b in books if b.best_ask is not None]
    if not bids or not asks:
        return None
    mid = (max(bids) + min(asks)) / 2
    px, notional = merged_side(books, buy)
    price = vwap(px, notional, size)
    if price is None:
        return None
    return (price - mid) / mid * BPS if buy else (mid - price) / mid * BPS


@dataclass(frozen=True)
class Across:
    """A group's impact metrics (``split_<side>_impact_<label>``) and what its alerts say."""

    values: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def detail(self) -> dict[str, Any]:
        """What an alert's details hold of it: ``{"across": ...}``, or nothing."""
        return {"across": self.details} if self.details else {}


def across_venues(books: Mapping[str, Book], values: Mapping[str, Mapping[str, float | None]],
                  sizes: Mapping[str, float], equal: Sequence[Sequence[str]]) -> Across:
    """The cheapest member and the split impact of each size and side. ``books``: the members'
    latest good books by ``venue:symbol``, in group order; ``values``: their latest values
    (their own ``<side>_impact_<label>``)."""
    quote = next((quote_of(m.partition(":")[2]) for m in books), None)
    merged = [m for m in books if quote is not None
              and same_quote(quote_of(m.partition(":")[2]), quote, equal)]
    out = Across()
    for label, size in sizes.items():
        for side in SIDES:
            metric = f"{side}_impact_{label}"
            split = split_impact_bps([books[m] for m in merged], size, buy=side == "buy")
            out.values[f"split_{metric}"] = split
            own = {m: v.get(metric) for m, v in values.items()}
            priced = {m: x for m, x in own.items() if x is not None}
            cheapest = min(priced, key=priced.__getitem__) if priced else None
            out.details[metric] = {
                "size": size, "cheapest": cheapest,
                "cheapest_bps": priced[cheapest] if cheapest is not None else None,
                "split_bps": split, "split_over": merged}
    return out


def amount_text(x: float) -> str:
    """``1M``, ``100k``, ``2.5B``, ``750``: a size as people write it."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.4g}{suffix}"
    return f"{x:.4g}"
