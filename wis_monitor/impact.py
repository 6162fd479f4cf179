"""Price impact of an order of a given size: walk one side of the book until it is filled.

The book's levels hold amounts in venue units; a level's notional in the quote currency is
``price * amount * contract_size`` (linear, spot) or ``amount * contract_size`` (inverse
contracts: their USD value), as for WIS (SPEC §3, docs/metrics.md). An order of notional
``size`` takes the levels from the touch outwards, the last one in part. Its volume-weighted
price is the notional paid over the base amount got,

    vwap = size / sum(filled_i / price_i)

and its impact, in basis points of the mid, is what it pays (a buy) or gives up (a sell)
against the mid:

    buy_impact  = (vwap - mid) / mid * 1e4        (asks)
    sell_impact = (mid - vwap) / mid * 1e4        (bids)

None when the levels returned cannot fill ``size`` (the book is ``short``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

from wis_monitor.book import Book, FloatArray

BPS = 1e4


def level_notionals(book: Book, px: FloatArray, qty: FloatArray) -> FloatArray:
    """Each level's notional in the quote currency (USD for inverse contracts)."""
    cs = book.contract_size
    notional = qty * cs if book.inverse else px * qty * cs
    return np.asarray(notional, dtype=np.float64)


def vwap(px: FloatArray, notional: FloatArray, size: float) -> float | None:
    """The volume-weighted price of filling ``size`` (quote notional) from these levels,
    touch first; None when they hold less than ``size``."""
    if size <= 0:
        raise ValueError("the size of an order must be positive")
    cum = np.cumsum(notional)
    k = int(cum.searchsorted(size, side="left"))  # the level that completes the order
    if k >= cum.size:
        return None
    filled = notional[: k + 1].copy()
    filled[k] = size - (cum[k - 1] if k else 0.0)  # what is left for the last level
    base = float(np.sum(filled / px[: k + 1]))
    return size / base if base > 0 else None


def impact_bps(book: Book, size: float, *, buy: bool) -> float | None:
    """The impact of a market order of ``size`` (quote notional) on ``book``, in bps of the
    mid: a buy walks the asks, a sell the bids. None when the book has no mid or cannot fill
    the order."""
    mid = book.mid
    if mid is None:
        return None
    px, qty = (book.ask_px, book.ask_qty) if buy else (book.bid_px, book.bid_qty)
    price = vwap(px, level_notionals(book, px, qty), size)
    if price is None:
        return None
    return (price - mid) / mid * BPS if buy else (mid - price) / mid * BPS


def position_notional(book: Book, size: float) -> float | None:
    """What a position of ``size`` (signed, in the book's amount unit: base currency, or
    contracts of ``contract_size``) is worth in the quote currency: valued at the mid
    (linear, spot), or its USD value (inverse contracts). None when the book has no mid."""
    mid = book.mid
    if mid is None:
        return None
    amount = abs(size) * book.contract_size
    return amount if book.inverse else amount * mid


def unwind_bps(book: Book, size: float) -> float | None:
    """The impact of closing a position of ``size`` now: a long (``size > 0``) sells its
    notional into the bids, a short buys it from the asks. None for no position, a book with
    no mid, or one that cannot fill it."""
    notional = position_notional(book, size) if size else None
    if not notional:
        return None
    return impact_bps(book, notional, buy=size < 0)


_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9}


def parse_amount(x: object) -> float:
    """A notional written as a number or with a suffix: ``250000``, ``100k``, ``1M``,
    ``2.5B``; ValueError unless it is finite and above 0."""
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        raise ValueError(f"an amount is a number or a text like 100k, 1M, 2B, not {x!r}")
    text = str(x).strip().replace("_", "")
    scale = _SUFFIX.get(text[-1:], 1.0) if isinstance(x, str) else 1.0
    try:
        value = float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise ValueError(f'"{x}" is not an amount: a number, optionally followed by k, M or '
                         "B (thousand, million, billion)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"an amount must be a finite number above 0, not {x!r}")
    return value


def size_label(label: str) -> str:
    """A size's label, checked: it makes metric names."""
    if not re.fullmatch(r"[a-z0-9_]+", label) or label.endswith("_z"):
        raise ValueError(f'size label "{label}" must be lower-case letters, digits and _, not '
                         f"ending in _z: it names the metrics buy_impact_{label} and "
                         f"sell_impact_{label}")
    return label


def impact_metrics(labels: Iterable[str]) -> tuple[str, ...]:
    """The metric names of these sizes: ``buy_impact_<label>``, ``sell_impact_<label>``."""
    return tuple(f"{side}_impact_{label}" for label in labels for side in ("buy", "sell"))


def impacts(book: Book, sizes: Mapping[str, float]) -> dict[str, float | None]:
    """Every impact metric of ``book`` at these sizes (label -> quote notional)."""
    out: dict[str, float | None] = {}
    for label, size in sizes.items():
        out[f"buy_impact_{label}"] = impact_bps(book, size, buy=True)
        out[f"sell_impact_{label}"] = impact_bps(book, size, buy=False)
    return out
