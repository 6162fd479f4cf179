"""The typed rows that go into and come out of a store; no SQL here.

A caller hands the store what it knows (a sample's values by metric name, a book's levels as
arrays, an alert event) and the store lays them out in its own columns, so no caller depends
on a column order.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np

from wis_monitor.book import ALL_FLAGS, BLOCKING_FLAGS, Book, format_flags

#: ``samples.quality`` of a good sample: no flag, or only flags that merely warn (``thin``).
GOOD_QUALITIES: tuple[str, ...] = tuple(
    format_flags(set(combo))
    for n in range(len(ALL_FLAGS) + 1)
    for combo in combinations(sorted(set(ALL_FLAGS) - BLOCKING_FLAGS), n)
)

#: A delivery sent as part of a flood summary / a grouped message (not a message of its own).
FOLDED = "folded into a summary message"
GROUPED = "sent in a grouped message"

Severity = Literal["info", "warning", "critical"]

#: Alert state JSON as the evaluator keeps it (opaque to the store but for a few fields).
StateData = dict[str, Any]


def is_good(quality: str | None) -> bool:
    """Whether a ``samples.quality`` value is that of a good sample."""
    return (quality or "") in GOOD_QUALITIES


@dataclass(slots=True)
class SampleRow:
    """One sample: its series, time, quality flags (``format_flags``), fetch error and
    values by column name (metrics and their ``_z``); a missing value is null."""

    ts_ms: int
    venue: str
    symbol: str
    values: Mapping[str, float | None]
    quality: str = ""
    error: str | None = None

    @property
    def good(self) -> bool:
        return is_good(self.quality)


@dataclass(slots=True)
class BookRow:
    """A recorded book: ``(n, 2)`` price/amount levels of each side."""

    ts_ms: int
    venue: str
    symbol: str
    bids: np.ndarray
    asks: np.ndarray
    contract_size: float = 1.0
    inverse: bool = False

    @classmethod
    def within(cls, book: Book, ts_ms: int, venue: str, symbol: str, bps: float) -> BookRow:
        """The levels of ``book`` within ``bps`` of its mid (``storage.record_levels_bps``)."""
        mid = book.mid or 0.0
        reach = mid * bps / 1e4
        nb = int((book.bid_px >= mid - reach).sum())
        na = int((book.ask_px <= mid + reach).sum())
        bids = np.column_stack((book.bid_px[:nb], book.bid_qty[:nb]))
        asks = np.column_stack((book.ask_px[:na], book.ask_qty[:na]))
        return cls(ts_ms, venue, symbol, bids, asks, book.contract_size, bool(book.inverse))


@dataclass
class AlertEvent:
    """An alert event and the channels it goes to, ready to be written (or as read back)."""

    ts_ms: int
    rule: str
    key: str
    venue: str | None
    symbol: str | None
    event: str
    severity: str
    value: float | None
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    channels: Sequence[str] = ()
    silenced_by: int | None = None
    id: int | None = None

    @property
    def mode(self) -> str:
        """``live`` or ``shadow`` (a shadow rule's events are recorded, never sent)."""
        return str(self.details.get("mode") or "live")


#: The name the engine builds its events by.
AlertRow = AlertEvent


@dataclass(frozen=True)
class Delivery:
    """One outbox row (an alert event to one channel) with its alert."""

    id: int
    channel: str
    status: str
    attempts: int
    created_ms: int
    next_attempt_ms: int | None
    sent_ms: int | None
    last_error: str | None
    alert: AlertEvent

    def as_template_dict(self) -> dict[str, Any]:
        """The alert's fields as messages and templates see them (docs/channels.md)."""
        a = self.alert
        return {"delivery_id": self.id, "channel": self.channel, "attempts": self.attempts,
                "created_ts": self.created_ms, "next_attempt_ts": self.next_attempt_ms,
                "id": a.id, "ts": a.ts_ms, "rule": a.rule, "key": a.key, "venue": a.venue,
                "symbol": a.symbol, "event": a.event, "severity": a.severity, "value": a.value,
                "summary": a.summary, "labels": a.labels, "details": a.details}


@dataclass(frozen=True)
class Firing:
    """The latest ``firing`` event of a (rule, key): the channels it went to or is going to
    (not silenced, not given up on) and its mode."""

    severity: Severity
    labels: dict[str, str]
    delivered: list[str]
    mode: str = "live"


@dataclass(frozen=True)
class Silence:
    """A silence: alerts of ``rule`` (a glob) whose fields match ``matchers`` (globs) are
    recorded but not sent between ``created_ms`` and ``expires_ms``."""

    id: int
    rule: str
    matchers: dict[str, str]
    created_ms: int
    expires_ms: int
    reason: str = ""
    created_by: str = ""

    def mutes(self, alert: AlertEvent) -> bool:
        """Whether this silence keeps ``alert`` back (at the alert's time)."""
        if not fnmatch.fnmatchcase(alert.rule, self.rule or "*"):
            return False
        if self.created_ms > alert.ts_ms or self.expires_ms <= alert.ts_ms:
            return False
        fields = {"venue": alert.venue or "", "symbol": alert.symbol or "", "key": alert.key,
                  "severity": alert.severity, **alert.labels}
        return all(fnmatch.fnmatchcase(fields.get(k, ""), str(v))
                   for k, v in self.matchers.items())


@dataclass(frozen=True)
class FiringState:
    """An alert firing now (from the alert state), with the mode of its firing event."""

    rule: str
    key: str
    since_ms: int | None
    mode: str


@dataclass(frozen=True)
class RuleFirings:
    """How many ``firing`` events a rule had recently."""

    rule: str
    mode: str
    last_day: int
    last_week: int


@dataclass(frozen=True)
class ChannelBacklog:
    """A channel's outbox: pending rows (and the oldest one's queue time) and failed rows."""

    channel: str
    pending: int
    oldest_pending_ms: int | None
    failed: int


def labels_of(text: str | None) -> dict[str, Any]:
    """A JSON object column (labels, details, matchers) as a dict."""
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class InstanceRow:
    """A monitor instance sharing the store, as its last heartbeat left it."""

    id: str
    host: str
    pid: int
    started_ms: int
    heartbeat_ms: int
    version: str = ""


@dataclass(frozen=True)
class LeaseRow:
    """A lease (``venue:ID`` or ``group:NAME``): who holds it (None: released), its fencing
    token (raised by one each time the lease changes hands) and the holder's times."""

    name: str
    owner: str | None
    token: int
    acquired_ms: int
    renewed_ms: int
    expires_ms: int

    def held_by(self, owner: str) -> bool:
        return self.owner == owner

