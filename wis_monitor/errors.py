"""The exception hierarchy of wis-monitor.

::

    WisMonitorError
     ├── ConfigError          bad configuration: carries every problem found, each with path:line
     ├── SourceError          a fetch failed (recorded as an `error` sample, never raised
     │                        out of a source); carries its `Remedy`: retry, back off
     │                        (rate limits) or fix the configuration (unknown symbol, bad
     │                        credentials), decided once, where the failure is understood
     └── StoreError           SQLite could not be read or written (busy, disk full, read-only)

A channel that does not accept a message is not an exception: the outbox records the outcome
(``deliveries.status`` and ``last_error``) and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    """The configuration or its rules are invalid; `problems` lists all of them, `notes` what
    was worth a look besides (``check`` shows both)."""

    def __init__(self, problems: list[Problem], notes: tuple[Problem, ...] = ()) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line or 0))
        self.notes = notes
        super().__init__("\n".join(str(p) for p in self.problems))


class Remedy(Enum):
    """What makes a failed fetch succeed again."""

    RETRY = "retry"  # the next cycle may: timeouts, resets, 5xx, maintenance
    BACK_OFF = "back off"  # fewer requests: a rate limit (wait its Retry-After, if any)
    FIX_CONFIG = "fix config"  # only an operator can: unknown symbol, bad credentials


class SourceError(WisMonitorError):
    """A fetch from a venue failed.

    ``kind`` names the failure as the venue's library does (``BadSymbol``,
    ``RequestTimeout``, ...): it leads the error text stored with the sample and labels
    ``wis_fetch_errors_total``. ``remedy`` drives the venue's health policy.
    """

    def __init__(self, message: str, remedy: Remedy = Remedy.RETRY, *, kind: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.kind = kind or type(self).__name__
        self.retry_after_s = retry_after_s


class StoreError(WisMonitorError):
    """The database refused a read or a write."""


class Fenced(WisMonitorError):
    """A write carried the fencing token of a lease another instance has taken since: the
    store refused it, and the writer must step down (its successor owns those series now)."""

    def __init__(self, leases: list[str]) -> None:
        super().__init__(f"lease(s) taken over by another instance: {', '.join(leases)}")
        self.leases = leases

