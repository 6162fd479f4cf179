"""The order-book value object: validated numpy arrays and the quality flags of a snapshot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Flags that make the imbalance metrics of a sample null (``thin`` and ``short`` only warn).
BLOCKING_FLAGS = frozenset({"crossed", "one_sided", "empty", "stale", "invalid", "error"})
ALL_FLAGS = (*sorted(BLOCKING_FLAGS), "short", "thin")

_EMPTY = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Book:
    """One snapshot: bids by descending price, asks by ascending price, amounts in venue units.

    ``contract_size`` and ``inverse`` say how an amount becomes quote-currency notional.
    """

    bid_px: FloatArray
    bid_qty: FloatArray
    ask_px: FloatArray
    ask_qty: FloatArray
    contract_size: float = 1.0
    inverse: bool = False
    venue_ts_ms: int | None = None

    @property
    def best_bid(self) -> float | None:
        return float(self.bid_px[0]) if self.bid_px.size else None

    @property
    def best_ask(self) -> float | None:
        return float(self.ask_px[0]) if self.ask_px.size else None

    @property
    def mid(self) -> float | None:
        if not (self.bid_px.size and self.ask_px.size):
            return None
        return (float(self.bid_px[0]) + float(self.ask_px[0])) / 2.0

    def same_levels(self, other: Book) -> bool:
        """True when both books hold exactly the same levels (a frozen feed)."""
        if self.bid_qty.size != other.bid_qty.size or self.ask_qty.size != other.ask_qty.size:
            return False
        if self.bid_qty.size and self.bid_qty[0] != other.bid_qty[0]:
            return False  # the cheap, usual answer
        return (
            np.array_equal(self.bid_px, other.bid_px)
            and np.array_equal(self.bid_qty, other.bid_qty)
            and np.array_equal(self.ask_px, other.ask_px)
            and np.array_equal(self.ask_qty, other.ask_qty)
        )

    def levels(self) -> tuple[list[list[float]], list[list[float]]]:
        """The levels as ``[[price, amount], ...]`` lists (the recording format)."""
        bids = np.column_stack((self.bid_px, self.bid_qty)).tolist()
        asks = np.column_stack((self.ask_px, self.ask_qty)).tolist()
        return bids, asks


_set_bid_px, _set_bid_qty, _set_ask_px, _set_ask_qty, _set_contract_size, _set_inverse, \
    _set_venue_ts_ms = (getattr(Book, f.name).__set__ for f in fields(Book))


def checked_book(bid_px: FloatArray, bid_qty: FloatArray, ask_px: FloatArray,
                 ask_qty: FloatArray, contract_size: float, inverse: bool,
                 venue_ts_ms: int | None) -> Book:
    """``Book(...)`` for a reader that has checked many books at once: every field given, the
    slots set directly (a frozen dataclass's ``__init__`` costs twice as much)."""
    book: Book = object.__new__(Book)
    _set_bid_px(book, bid_px)
    _set_bid_qty(book, bid_qty)
    _set_ask_px(book, ask_px)
    _set_ask_qty(book, ask_qty)
    _set_contract_size(book, contract_size)
    _set_inverse(book, inverse)
    _set_venue_ts_ms(book, venue_ts_ms)
    return book


def _side(levels: Any) -> tuple[FloatArray, FloatArray, bool]:
    """Split ``[[price, amount, ...], ...]`` into two float arrays; False when malformed."""
    if levels is None:
        return _EMPTY, _EMPTY, True
    if isinstance(levels, np.ndarray) and levels.dtype == np.float64 and levels.ndim == 2:
        arr = levels
    else:
        try:
            if len(levels) == 0:
                return _EMPTY, _EMPTY, True
        except TypeError:  # not a list at all
            return _EMPTY, _EMPTY, False
        try:
            arr = np.array(levels, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            # Ragged rows (some venues add fields) or junk: take the first two fields.
            try:
                rows = [row[:2] if row is not None else (None, None) for row in levels]
                arr = np.array(rows, dtype=np.float64)
            except (TypeError, ValueError, IndexError, OverflowError):
                return _EMPTY, _EMPTY, False
    if arr.ndim != 2 or arr.shape[1] < 2:
        return _EMPTY, _EMPTY, False
    return np.ascontiguousarray(arr[:, 0]), np.ascontiguousarray(arr[:, 1]), True


def _side_valid(px: FloatArray, qty: FloatArray, descending: bool) -> bool:
    if px.size == 0:
        return True
    if not (np.isfinite(px).all() and np.isfinite(qty).all()):
        return False
    if px.min() <= 0.0 or qty.min() <= 0.0:
        return False
    step = np.diff(px)
    return bool((step < 0).all()) if descending else bool((step > 0).all())


def _positive_number(x: object) -> bool:
    """A real, finite number above 0 (not a boolean or a string)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(x) and x > 0
    except OverflowError:  # an integer beyond the doubles
        return False


def make_book(
    bids: Sequence[Sequence[Any]] | FloatArray | None,
    asks: Sequence[Sequence[Any]] | FloatArray | None,
    *,
    contract_size: float | None = 1.0,
    inverse: bool = False,
    venue_ts_ms: int | None = None,
) -> tuple[Book, frozenset[str]]:
    """Build a Book from raw levels and return it with its structural quality flags.

    Flags found here: ``empty``, ``one_sided``, ``invalid`` (non-finite or non-positive price,
    amount or contract size, an ``inverse`` that is not a boolean, unsorted or duplicated
    levels, malformed rows) and ``crossed``. ``thin`` depends on the band and is decided by the
    signals; ``stale`` and ``error`` by the source; the engine adds ``invalid`` when a metric of
    the book overflows. ``contract_size=None`` means 1.
    """
    bid_px, bid_qty, bids_ok = _side(bids)
    ask_px, ask_qty, asks_ok = _side(asks)
    contract_ok = contract_size is None or _positive_number(contract_size)
    book = Book(
        bid_px,
        bid_qty,
        ask_px,
        ask_qty,
        contract_size=float(contract_size) if contract_ok and contract_size is not None else 1.0,
        inverse=inverse is True,
        venue_ts_ms=venue_ts_ms,
    )
    flags: set[str] = set()
    if not (bids_ok and asks_ok and contract_ok and isinstance(inverse, bool)):
        flags.add("invalid")
    if bid_px.size == 0 and ask_px.size == 0:
        flags.add("empty" if bids_ok and asks_ok else "invalid")
        return book, frozenset(flags)
    if (bid_px.size == 0 or ask_px.size == 0) and bids_ok and asks_ok:
        flags.add("one_sided")
    if not (_side_valid(bid_px, bid_qty, True) and _side_valid(ask_px, ask_qty, False)):
        flags.add("invalid")
    elif bid_px.size and ask_px.size and bid_px[0] >= ask_px[0]:
        flags.add("crossed")
    return book, frozenset(flags)


def format_flags(flags: frozenset[str] | set[str]) -> str:
    """The ``samples.quality`` column: '' when good, else the flags sorted and comma-separated."""
    return ",".join(sorted(flags))


def rows_with(bad: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64],
              ends: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Per row ``[start, end)`` of a flat array (rows in order): True where any ``bad`` element
    lies in it. Bad elements are rare, so only they are located."""
    out = np.zeros(starts.size, dtype=np.bool_)
    pos = np.flatnonzero(bad)
    if pos.size:
        row = np.searchsorted(starts, pos, side="right") - 1
        inside = (row >= 0) & (pos < ends[np.maximum(row, 0)])
        out[row[inside]] = True
    return out


def _sides_invalid(offsets: npt.NDArray[np.int64], px: FloatArray, qty: FloatArray,
                   descending: bool) -> npt.NDArray[np.bool_]:
    """Per row of one side (flat, finite levels cut by ``offsets``): not positive or not
    strictly sorted, as :func:`make_book` decides. Whole-array reductions first: the usual
    answer (every row valid) costs no per-element temporaries."""
    starts, ends = offsets[:-1], offsets[1:]
    out = np.zeros(starts.size, dtype=np.bool_)
    if px.size == 0:
        return out
    if not (px.min() > 0.0 and qty.min() > 0.0):
        out |= rows_with((px <= 0.0) | (qty <= 0.0), starts, ends)
    step = np.diff(px)  # within a row: negative for bids, positive for asks
    # Differences between the last level of a row and the first of the next do not count.
    between = ends[ends > starts] - 1
    step[between[between < step.size]] = -1.0 if descending else 1.0
    if step.size and not (step.max() < 0.0 if descending else step.min() > 0.0):
        unsorted = np.append(~(step < 0.0) if descending else ~(step > 0.0), False)
        out |= rows_with(unsorted, starts, ends)
    return out


def sides_clean(offsets: npt.NDArray[np.int64], px: FloatArray, qty: FloatArray,
                descending: bool) -> bool:
    """True when every row of one side (flat levels cut by ``offsets``) is finite, positive and
    strictly sorted: the usual batch, found in three passes over the levels. When False, some
    row is not (or some value between rows is unusual): check row by row."""
    if px.size != qty.size:
        return False
    if px.size == 0:
        return True
    if not (qty.min() > 0.0 and qty.max() < math.inf):  # NaN fails the first comparison
        return False
    starts, ends = offsets[:-1], offsets[1:]
    rows = ends > starts
    first, last = px[starts[rows]], px[ends[rows] - 1]
    low, high = (last, first) if descending else (first, last)
    # A strictly sorted row lies between its ends: positive and finite ends suffice.
    if low.size and not (low.min() > 0.0 and high.max() < math.inf):
        return False
    step = np.less(px[1:], px[:-1]) if descending else np.greater(px[1:], px[:-1])
    between = ends[rows] - 1  # from the last level of a row to the first of the next
    step[between[between < step.size]] = True
    return bool(step.all())


def all_finite(values: FloatArray) -> bool:
    """True when every value is finite (one reduction: NaN and infinities reach the sum)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: not finite
        return bool(np.isfinite(values.sum()))


def batch_flags(bid_offsets: npt.NDArray[np.int64], bid_px: FloatArray, bid_qty: FloatArray,
                ask_offsets: npt.NDArray[np.int64], ask_px: FloatArray, ask_qty: FloatArray,
                clean: bool = False) -> list[frozenset[str]]:
    """The structural flags :func:`make_book` would give each of many books at once.

    The books' levels are flat arrays cut into rows by ``offsets`` (row ``i`` is
    ``[offsets[i], offsets[i + 1])``), every value already finite: a columnar recording is
    checked in a few vectorised passes instead of book by book. ``clean``: both sides are known
    to pass :func:`sides_clean` (no book is ``invalid``).
    """
    n_bid = np.diff(bid_offsets)
    n_ask = np.diff(ask_offsets)
    if clean:
        invalid = np.zeros(n_bid.size, dtype=np.bool_)
    else:
        invalid = (_sides_invalid(bid_offsets, bid_px, bid_qty, True)
                   | _sides_invalid(ask_offsets, ask_px, ask_qty, False))
    both = (n_bid > 0) & (n_ask > 0)
    best_bid = np.where(both, bid_px[np.minimum(bid_offsets[:-1], max(bid_px.size - 1, 0))]
                        if bid_px.size else 0.0, 0.0)
    best_ask = np.where(both, ask_px[np.minimum(ask_offsets[:-1], max(ask_px.size - 1, 0))]
                        if ask_px.size else 0.0, 0.0)
    crossed = both & ~invalid & (best_bid >= best_ask)
    empty = (n_bid == 0) & (n_ask == 0)
    one_sided = ~empty & ~both
    if not (empty | one_sided | invalid | crossed).any():
        return [_FLAG_SETS[(False, False, False, False)]] * n_bid.size
    out: list[frozenset[str]] = []
    for e, o, i, c in zip(empty.tolist(), one_sided.tolist(), invalid.tolist(), crossed.tolist(),
                          strict=True):
        out.append(_FLAG_SETS[(e, o, i, c)])
    return out


_FLAG_SETS = {
    (e, o, i, c): frozenset(name for name, on in
                            (("empty", e), ("one_sided", o), ("invalid", i), ("crossed", c)) if on)
    for e in (False, True) for o in (False, True) for i in (False, True) for c in (False, True)
}
