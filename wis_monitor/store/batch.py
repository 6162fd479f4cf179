"""What one cycle writes, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from wis_monitor.store.rows import AlertEvent, BookRow, SampleRow, StateData


@dataclass
class Batch:
    """Everything one cycle writes, in one transaction."""

    samples: list[SampleRow] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    states: dict[tuple[str, str], StateData] = field(default_factory=dict)
    books: list[BookRow] = field(default_factory=list)
    #: When the deliveries of its alerts were queued (default: each alert's own time); a
    #: replay with --notify queues at the wall clock, not at the recording's.
    queued_ms: int | None = None
    #: The fencing tokens of the leases the writer holds over what the batch holds (lease
    #: name -> token): a shared store refuses the batch, raising Fenced, when one of them is
    #: no longer current. Empty: no lease is checked (one instance).
    fence: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.samples or self.alerts or self.states or self.books)
