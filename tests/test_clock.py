"""The time: read only in ``wis_monitor/clock.py``, given to whoever needs it."""

from __future__ import annotations

import ast
from pathlib import Path

from testclock import NOW

from wis_monitor.clock import SYSTEM, FakeClock, utc

PACKAGE = Path(__file__).resolve().parents[1] / "wis_monitor"
#: Calls that read a clock (time.sleep, strftime and gmtime only convert or wait).
READS = {("time", n) for n in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                               "perf_counter_ns", "clock_gettime", "clock_gettime_ns",
                               "process_time", "localtime")} \
    | {("datetime", n) for n in ("now", "utcnow", "today")} | {("date", "today")}


def clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in READS:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                         f"{node.value.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: from {node.module} "
                      f"import {a.name}" for a in node.names if (node.module, a.name) in READS]
    return found


def test_only_the_clock_module_reads_the_time() -> None:
    reads = [r for p in sorted(PACKAGE.rglob("*.py")) if p.name != "clock.py"
             for r in clock_reads(p)]
    assert reads == [], "\n".join(reads)


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
