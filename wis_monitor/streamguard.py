"""Whether a streamed book can be trusted, and when a venue stops streaming: pure decisions.

No I/O and no clock: the stream source (:mod:`wis_monitor.sources.stream`) passes the times
and the levels in and acts on the answers. Three parts:

- :func:`okx_checksum`: okx's CRC32 of the top 25 levels of a book (ccxt does not verify it);
- :func:`staleness` and :func:`drift_bps`: a book without updates or behind the clock, and how
  far a streamed book is from a REST snapshot of the same moment;
- :class:`Fallback`: the venue's mode — streaming, or polling after too many resyncs or drifts
  until a quiet period has passed — and :class:`Burst`, to log a burst of resyncs once.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Levels per side okx's checksum covers.
OKX_CHECKSUM_LEVELS = 25

Level = Sequence[float]  # [price, amount, ...]


def okx_checksum_text(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> str:
    """The string okx's checksum is the CRC32 of: ``bid price:bid amount:ask price:ask amount``
    level by level over the top 25 of each side, a side that runs out simply left out; each
    number as the venue wrote it."""
    parts: list[str] = []
    for i in range(OKX_CHECKSUM_LEVELS):
        for side in (bids, asks):
            if i < len(side):
                parts.extend((side[i][0], side[i][1]))
    return ":".join(parts)


def okx_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """okx's checksum of a book: the CRC32 of :func:`okx_checksum_text` as a signed 32-bit
    integer (what the ``checksum`` field holds)."""
    crc = zlib.crc32(okx_checksum_text(bids, asks).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def number_text(value: float) -> str:
    """A number as okx writes it: no exponent, no trailing zeros (``7``, ``0.001``)."""
    return str(np.format_float_positional(value, trim="-"))


def staleness(now_ms: int, updated_ms: int | None, book_ts_ms: int | None,
              stale_after_ms: int) -> str | None:
    """Why a streamed book is stale at ``now_ms``, or None: ``silent`` when no update was
    applied for ``stale_after_ms``, ``lagging`` when the book's own time is that far behind
    the clock (a slow connection delivers real but old states)."""
    if updated_ms is not None and now_ms - updated_ms >= stale_after_ms:
        return "silent"
    if book_ts_ms is not None and now_ms - book_ts_ms >= stale_after_ms:
        return "lagging"
    return None


def _notional(side: Sequence[Level], n: int) -> dict[float, float]:
    return {float(lv[0]): float(lv[0]) * float(lv[1]) for lv in side[:n]}


def drift_bps(streamed: tuple[Sequence[Level], Sequence[Level]],
              snapshot: tuple[Sequence[Level], Sequence[Level]], levels: int) -> float | None:
    """How far a streamed book (bids, asks) is from a REST snapshot over the top ``levels``
    levels of each side: the notional that differs (a level missing, extra, or with another
    amount), in bps of the snapshot's notional there; 0 for the same levels, None when the
    snapshot has an empty side."""
    if not (snapshot[0] and snapshot[1]):
        return None
    differ = total = 0.0
    for mine, theirs in zip(streamed, snapshot, strict=True):
        a, b = _notional(mine, levels), _notional(theirs, levels)
        bound = min(b), max(b)  # the price range of the snapshot's levels
        for price in a.keys() | b.keys():
            if bound[0] <= price <= bound[1]:
                differ += abs(a.get(price, 0.0) - b.get(price, 0.0))
        total += sum(b.values())
    return differ / total * 1e4 if total > 0 else None


@dataclass
class Fallback:
    """A venue's mode: streaming until ``after`` troubles (resyncs or drifts) fall within
    ``window_ms``, then polling until ``quiet_ms`` have passed, then streaming again."""

    after: int
    window_ms: int
    quiet_ms: int
    polling_since_ms: int | None = None
    troubles: deque[int] = field(default_factory=deque)

    @property
    def polling(self) -> bool:
        return self.polling_since_ms is not None

    def trouble(self, now_ms: int) -> bool:
        """Count a resync or a drift at ``now_ms``; True when it switches the venue to polling."""
        if self.polling:
            return False
        self.troubles.append(now_ms)
        while self.troubles and now_ms - self.troubles[0] >= self.window_ms:
            self.troubles.popleft()
        if len(self.troubles) < self.after:
            return False
        self.polling_since_ms = now_ms
        self.troubles.clear()
        return True

    def resume(self, now_ms: int) -> bool:
        """True when a polling venue's quiet period is over at ``now_ms``: it streams again."""
        if self.polling_since_ms is None or now_ms - self.polling_since_ms < self.quiet_ms:
            return False
        self.polling_since_ms = None
        return True


@dataclass
class Burst:
    """Resyncs said once per burst: the first after ``gap_ms`` without any is logged, the rest
    only counted until the burst ends."""

    gap_ms: int
    last_ms: int | None = None
    count: int = 0

    def note(self, now_ms: int) -> bool:
        """Count one at ``now_ms``; True when it starts a burst (log it)."""
        starts = self.last_ms is None or now_ms - self.last_ms >= self.gap_ms
        self.count = 1 if starts else self.count + 1
        self.last_ms = now_ms
        return starts
