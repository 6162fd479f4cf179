"""The tests' own time: a fixed instant and a clock the test moves by hand."""

from __future__ import annotations

#: 2023-11-14 22:13 UTC, whatever the clock on the wall says.
NOW = 1_700_000_000_000


class Clock:
    """What a Dispatcher reads as the time: the test's, moved by the test (``clock.ms += …``)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms
