"""Rebuilding books from other venues' recordings: the import options, level updates, and
sampling the books on a time grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wis_monitor.book import Book, make_book


@dataclass(frozen=True)
class ImportOptions:
    """How to read recordings that are not in the book-recording format."""

    format: str | None = None  # None: by suffix and header
    venue: str | None = None  # the venue of every book (default: the file's, mapped)
    symbol: str | None = None  # the symbol of every book (default: the file's)
    every_ms: int | None = None  # sample rebuilt books on this grid (incremental formats)


class LevelBook:
    """One series' book as price -> amount per side; an amount of 0 removes the level."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def side(self, bid: bool) -> dict[float, float]:
        return self.bids if bid else self.asks

    def set(self, bid: bool, price: float, amount: float) -> None:
        levels = self.side(bid)
        if amount == 0.0:
            levels.pop(price, None)
        else:
            levels[price] = amount

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def book(self, ts_ms: int, contract_size: float = 1.0, inverse: bool = False
             ) -> tuple[Book, frozenset[str]]:
        """The book now, best level first, with its structural flags."""
        return make_book(_levels(self.bids, descending=True),
                         _levels(self.asks, descending=False),
                         contract_size=contract_size, inverse=inverse, venue_ts_ms=ts_ms)


def _levels(side: dict[float, float], descending: bool) -> np.ndarray:
    if not side:
        return np.empty((0, 2))
    arr = np.array(list(side.items()), dtype=np.float64)
    order = np.argsort(-arr[:, 0] if descending else arr[:, 0], kind="stable")
    return np.ascontiguousarray(arr[order])


class Grid:
    """When to sample a stream of updates: at each multiple of ``every_ms`` that an update's
    time has passed, the book as it was with every update up to that time applied."""

    def __init__(self, every_ms: int) -> None:
        self.every = every_ms
        self.due: int | None = None
        self.changed = False

    def before(self, ts_ms: int) -> int | None:
        """Call before applying an update at ``ts_ms``: the grid time to sample now, if any."""
        sample = None
        if self.due is not None and ts_ms > self.due and self.changed:
            sample = self.due
            self.changed = False
        if self.due is None or ts_ms > self.due:
            self.due = -(-ts_ms // self.every) * self.every
        self.changed = True
        return sample
