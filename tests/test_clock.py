"""The clocks: the system's, and the fake one tests move by hand (that only ``clock.py``
reads the time is a rule of tests/test_layout.py)."""

from __future__ import annotations

from testclock import NOW

from wis_monitor.clock import SYSTEM, FakeClock, utc


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(NOW)
    assert clock.now_ms() == NOW and clock.monotonic() == NOW / 1000
    clock.advance(1.5)
    assert clock.now_ms() == NOW + 1500 and clock.monotonic() == NOW / 1000 + 1.5
    clock.ms += 500
    assert utc(clock).isoformat() == "2023-11-14T22:13:22+00:00"


def test_the_system_clock_reads_the_machine() -> None:
    a, b = SYSTEM.monotonic(), SYSTEM.monotonic()
    assert b >= a and SYSTEM.now_ms() > NOW
