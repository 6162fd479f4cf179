"""The exception hierarchy of wis-monitor.

::

    WisMonitorError
     ├── ConfigError          bad configuration: carries every problem found, each with path:line
     ├── SourceError          a fetch failed (recorded as an `error` sample, never raised
     │                        out of a source)
     │    ├── TransientSourceError   retry later (timeouts, 5xx, rate limits, resets)
     │    └── PermanentSourceError   needs an operator (unknown symbol, bad credentials)
     └── StoreError           SQLite could not be read or written (busy, disk full, read-only)

A channel that does not accept a message is not an exception: the outbox records the outcome
(``deliveries.status`` and ``last_error``) and retries.
"""

from __future__ import annotations

from dataclasses import dataclass


class WisMonitorError(Exception):
    """Base of every error wis-monitor raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in self.message)
        return f"{where}: {message}"  # one line, whatever the names in it hold


class ConfigError(WisMonitorError):
    """The configuration or its rules are invalid; `problems` lists all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line or 0))
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(WisMonitorError):
    """A fetch from a venue failed."""


class TransientSourceError(SourceError):
    """The venue may answer next time: timeouts, 5xx, rate limits, resets."""


class PermanentSourceError(SourceError):
    """Retrying will not help until an operator acts: unknown symbol, bad credentials."""


class StoreError(WisMonitorError):
    """SQLite refused a read or a write."""

