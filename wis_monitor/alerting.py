"""The alert state machine of one rule instance (SPEC §6) — pure: no I/O, no clock.

Modelled on Prometheus' ``rules/alerting.go``: an ordered state (inactive < pending < firing);
"resolved" is inactive with a ``resolved_at_ms``; one record per (rule, key) holds every
lifecycle time. Evaluation takes the time as an argument; whether to notify is part of the
transition it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Literal

EventKind = Literal["firing", "repeat", "resolved"]


class State(IntEnum):
    INACTIVE = 0
    PENDING = 1
    FIRING = 2


@dataclass(frozen=True)
class Timing:
    """A rule's lifecycle settings, in milliseconds (0 = off)."""

    for_ms: int = 0
    keep_firing_for_ms: int = 0
    repeat_ms: int = 0
    cooldown_ms: int = 0
    notify_resolved: bool = True


@dataclass(frozen=True)
class Instance:
    """One alert instance; persisted as JSON in ``alert_state``."""

    state: State = State.INACTIVE
    active_at_ms: int | None = None
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    last_sent_ms: int | None = None
    keep_firing_since_ms: int | None = None
    value: float | None = None  # the rule's value when it last changed state
    silenced: bool = False  # firing, but a silence has kept every notification back so far

    def to_json(self) -> dict[str, Any]:
        return {
            "state": int(self.state), "active_at_ms": self.active_at_ms,
            "fired_at_ms": self.fired_at_ms, "resolved_at_ms": self.resolved_at_ms,
            "last_sent_ms": self.last_sent_ms, "keep_firing_since_ms": self.keep_firing_since_ms,
            "value": self.value, "silenced": self.silenced,
        }

    def latest_ms(self) -> int | None:
        """The latest time this instance has seen (times before it are ignored)."""
        times = [t for t in (self.active_at_ms, self.fired_at_ms, self.resolved_at_ms,
                             self.last_sent_ms, self.keep_firing_since_ms) if t is not None]
        return max(times) if times else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        known: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__
                                 if k in data and k != "state"}
        return cls(State(int(data.get("state", 0))), **known)


@dataclass(frozen=True)
class Event:
    """A transition worth telling someone about."""

    kind: EventKind
    ts_ms: int
    active_at_ms: int | None
    fired_at_ms: int | None
    value: float | None


def step(inst: Instance, timing: Timing, ts_ms: int, *, when: bool | None,
         clear: bool | None, value: float | None = None) -> tuple[Instance, Event | None]:
    """Evaluate the rule at ``ts_ms`` on an observation (a good sample).

    ``when`` is the truth of the rule's condition, ``clear`` of its clear condition (``not when``
    without one); None is unknown (a null metric). Unknown is not true: it ends a pending run;
    while firing it neither resolves nor restarts ``keep_firing_for``, and repeats go on. A time
    earlier than the instance's latest transition is ignored. The instance changes only on
    transitions, so callers persist it only then.
    """
    latest = inst.latest_ms()
    if latest is not None and ts_ms < latest:
        return inst, None
    if inst.state == State.INACTIVE:
        if when is not True:
            return inst, None
        if (inst.resolved_at_ms is not None and timing.cooldown_ms
                and ts_ms - inst.resolved_at_ms < timing.cooldown_ms):
            return inst, None
        inst = replace(inst, state=State.PENDING, active_at_ms=ts_ms, value=value,
                       keep_firing_since_ms=None)
    elif inst.state == State.PENDING and when is not True:
        return interrupt(inst), None
    if inst.state == State.PENDING:
        active = inst.active_at_ms if inst.active_at_ms is not None else ts_ms
        if ts_ms - active >= timing.for_ms:
            inst = replace(inst, state=State.FIRING, fired_at_ms=ts_ms, last_sent_ms=ts_ms,
                           value=value)
            return inst, Event("firing", ts_ms, inst.active_at_ms, ts_ms, value)
        return inst, None
    # FIRING: only `clear` matters (hysteresis); unknown changes nothing.
    if clear is True:
        since = inst.keep_firing_since_ms if inst.keep_firing_since_ms is not None else ts_ms
        if ts_ms - since >= timing.keep_firing_for_ms:
            resolved = Instance(State.INACTIVE, resolved_at_ms=ts_ms,
                                last_sent_ms=inst.last_sent_ms, value=value)
            event = Event("resolved", ts_ms, inst.active_at_ms, inst.fired_at_ms, value)
            return resolved, event if timing.notify_resolved else None
        if inst.keep_firing_since_ms is None:
            inst = replace(inst, keep_firing_since_ms=since)
    elif clear is False and inst.keep_firing_since_ms is not None:
        inst = replace(inst, keep_firing_since_ms=None)
    last = inst.last_sent_ms if inst.last_sent_ms is not None else ts_ms
    if timing.repeat_ms and ts_ms - last >= timing.repeat_ms:
        inst = replace(inst, last_sent_ms=ts_ms)
        return inst, Event("repeat", ts_ms, inst.active_at_ms, inst.fired_at_ms, value)
    return inst, None


def interrupt(inst: Instance) -> Instance:
    """The run of observations broke (an unknown, or no good sample for ``stale_after``): a
    pending instance starts over; any other is unchanged."""
    if inst.state != State.PENDING:
        return inst
    return replace(inst, state=State.INACTIVE, active_at_ms=None, value=None)


def describe(inst: Instance) -> str:
    """``firing since 2024-08-08T12:00:00Z`` and the like, for people."""
    def iso(ms: int | None) -> str:
        if ms is None:
            return "?"
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

    if inst.state == State.FIRING:
        return f"firing since {iso(inst.fired_at_ms)}"
    if inst.state == State.PENDING:
        return f"pending since {iso(inst.active_at_ms)}"
    if inst.resolved_at_ms is not None:
        return f"resolved at {iso(inst.resolved_at_ms)}"
    return "inactive"
