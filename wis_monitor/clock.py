"""The time, for every module that needs it: the only module that reads the system clock.

Two readings: ``now_ms()``, the wall clock in ms since the epoch (sample and alert
timestamps, the outbox), and ``monotonic()``, seconds that never go back (deadlines, rates,
latencies, the watchdog). The daemon, the dispatcher and the sources are given a
:class:`Clock`; the process uses :data:`SYSTEM`, tests a :class:`FakeClock` they move by
hand, so daemon behaviour that spans minutes runs in milliseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where the time comes from."""

    def now_ms(self) -> int:
        """The wall clock: ms since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back (CLOCK_MONOTONIC)."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told (``advance``, or ``ms += …``); both readings move
    together."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000.0

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


#: The process's clock.
SYSTEM: Clock = SystemClock()


def utc(clock: Clock) -> datetime:
    """The clock's wall time as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.now_ms() / 1000.0, UTC)
