"""The tests' own time: a fixed instant and a clock the test moves by hand."""

from __future__ import annotations

from wis_monitor.clock import FakeClock as Clock

#: 2023-11-14 22:13 UTC, whatever the clock on the wall says.
NOW = 1_700_000_000_000

__all__ = ["NOW", "Clock"]
