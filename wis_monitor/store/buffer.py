"""Write-behind: batches the database refuses wait in memory, in order, and are written later.

While the disk is full or the database locked no alert event is lost: every refused batch
is kept and retried (not more often than every ``retry_s``, since each attempt may wait for
the lock), and only the oldest samples and books are dropped once more than ``max_samples``
wait. The caller gives the time (any monotonic seconds) and reports what :class:`Written`
says: which batches went in, the first failure, the recovery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from wis_monitor.errors import Fenced, StoreError
from wis_monitor.store.batch import Batch

log = logging.getLogger("wis_monitor.store")

STORE_RETRY_S = 5.0  # between write attempts while the database refuses them
UNWRITTEN_SAMPLES = 100_000  # held in memory while the database refuses writes


class BatchWriter(Protocol):
    def write(self, batch: Batch) -> list[int]: ...


@dataclass
class Written:
    """The outcome of one :meth:`BufferedWriter.write`."""

    #: The batches written now, oldest first (those held back before, then this one).
    batches: list[Batch] = field(default_factory=list)
    #: The store refused a write now (the rest stay held).
    failed: StoreError | None = None
    #: ... and it had been writable until then: the moment to tell the operators.
    first_failure: bool = False
    #: Writable again after refusing.
    recovered: bool = False
    #: Batches refused for good: written under a lease another instance has taken since
    #: (what they held is its to write now), with the leases.
    fenced: list[tuple[Batch, Fenced]] = field(default_factory=list)


class BufferedWriter:
    """Writes batches to a store, holding those it refuses until it takes them."""

    def __init__(self, store: BatchWriter, *, retry_s: float = STORE_RETRY_S,
                 max_samples: int = UNWRITTEN_SAMPLES) -> None:
        self.store = store
        self.retry_s = retry_s
        self.max_samples = max_samples
        #: The last refusal while batches are held, else None.
        self.error: str | None = None
        self.dropped_samples = 0
        self._held: list[Batch] = []
        self._retry_at = 0.0

    @property
    def held(self) -> int:
        """Batches waiting to be written."""
        return len(self._held)

    def write(self, batch: Batch, now_s: float) -> Written:
        """Write ``batch`` after any held ones; hold it (and them) if the store refuses."""
        out = Written()
        if batch:
            self._held.append(batch)
        if self.error is not None and now_s < self._retry_at:
            self._bound()
            return out
        while self._held:
            head = self._held[0]
            try:
                self.store.write(head)
            except Fenced as exc:
                self._held.pop(0)
                out.fenced.append((head, exc))
                if self.error is not None:
                    out.recovered, self.error = True, None
                continue
            except StoreError as exc:
                out.failed, out.first_failure = exc, self.error is None
                self.error = str(exc)
                self._retry_at = now_s + self.retry_s
                self._bound()
                return out
            self._held.pop(0)
            out.batches.append(head)
            if self.error is not None:
                out.recovered, self.error = True, None
        return out

    def _bound(self) -> None:
        """Keep at most ``max_samples`` samples waiting; alerts and state always stay."""
        n = sum(len(b.samples) for b in self._held)
        before = self.dropped_samples
        for b in self._held:
            if n <= self.max_samples:
                break
            n -= len(b.samples)
            self.dropped_samples += len(b.samples)
            b.samples.clear()
            b.books.clear()
        if before == 0 < self.dropped_samples:  # once; /healthz and STATUS= say the rest
            log.error("database unwritable for long: dropping the oldest samples held in "
                      "memory (over %d; alert events are kept)", self.max_samples)
