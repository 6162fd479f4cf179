"""Durations as written in the config: ``250ms``, ``5s``, ``2m``, ``1h``, ``1d`` (and ``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
#: The longest duration accepted: 100 years (longer ones are typos, and overflow timedelta).
MAX_DURATION_MS = 100 * 366 * 86_400_000


def parse_duration(text: object) -> timedelta:
    """Parse a duration string; raise ValueError with a message a user can act on."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f'expected a duration such as "5s", "2m" or "1h", got {text!r}')
    if isinstance(text, int):
        if text == 0:
            return timedelta(0)
        raise ValueError(f'a duration needs a unit: "{text}s" or "{text}ms"?')
    if not text.isascii():
        raise ValueError(f'bad duration "{text}": only ASCII digits, units and spaces are allowed')
    s = text.strip().replace(" ", "")
    if s == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(
            f'bad duration "{text[:40]}": use a number and a unit (ms, s, m, h, d), '
            'e.g. "5s" or "1h"'
        )
    if not total <= MAX_DURATION_MS:  # also catches inf and nan
        raise ValueError(f'duration "{text[:40]}" is too long: at most 100 years')
    return timedelta(milliseconds=total)


def ms(td: timedelta) -> int:
    """A timedelta in whole milliseconds."""
    return round(td.total_seconds() * 1000)


def format_duration(ms_: int) -> str:
    """``90_000`` -> ``1m30s``; the inverse of parse_duration for whole units."""
    if ms_ == 0:
        return "0s"
    out = []
    rest = ms_
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
