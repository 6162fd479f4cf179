"""The alert state machine of one rule instance (SPEC §6), and the one evaluator every rule —
series, group and the feed-stale rule — runs on. Pure: no I/O, no clock.

Modelled on Prometheus' ``rules/alerting.go``: an ordered state (inactive < pending < firing);
"resolved" is inactive with a ``resolved_at_ms``; one record per (rule, key) holds every
lifecycle time. Evaluation takes the time as an argument; whether to notify is part of the
transition it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Generic, Literal, NamedTuple, TypeVar

EventKind = Literal["firing", "repeat", "resolved"]
#: A condition's value: True, False or None (unknown: a null metric).
Truth = bool | None
V = TypeVar("V")


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


@dataclass(frozen=True)
class Transition:
    """An instance's new state after an evaluation, and the event to tell of it, if any."""

    key: str
    instance: Instance
    event: Event | None


_INACTIVE = Instance()
_OFF = State.INACTIVE  # looked up once: compared for every rule on every sample


class Evaluator(Generic[V]):
    """One rule over its instances, one per key (a series' ``venue:symbol`` or a group).

    ``when`` and ``clear`` give a condition's value on the rule's input ``V`` (anything but
    True or False is unknown); without ``clear`` a firing alert clears when ``when`` is false.
    ``value`` gives the number the rule reports (anything but a number is none).
    """

    def __init__(self, name: str, timing: Timing, when: Callable[[V], object],
                 clear: Callable[[V], object] | None = None,
                 value: Callable[[V], object] | None = None) -> None:
        self.name = name
        self.timing = timing
        self.when = when
        self.clear = clear
        self.value = value

    def evaluate(self, ts_ms: int, inputs: Mapping[str, V | None],
                 instances: Mapping[tuple[str, str], Instance], *,
                 restart: bool = False) -> list[Transition]:
        """The transitions of the instances of ``inputs``' keys at ``ts_ms``; ``instances``
        holds the current ones by (rule, key) (none: inactive) and is not changed.

        An input of None is nothing current to judge by: a pending run breaks, nothing else.
        ``restart``: the run of observations broke before this one (pending runs start over).
        """
        out = []
        for key, x in inputs.items():
            inst = instances.get((self.name, key), _INACTIVE)
            if x is None:
                ended = interrupt(inst)
                if ended != inst:
                    out.append(Transition(key, ended, None))
                continue
            when = self.when(x)
            if when is not True and inst.state == _OFF:
                continue  # inactive and staying so: nothing more to evaluate (the usual case)
            t = self._step(ts_ms, key, x, inst, _truth(when), restart)
            if t is not None:
                out.append(t)
        return out

    def value_of(self, x: V) -> float | None:
        """The number the rule reports on ``x``."""
        v = self.value(x) if self.value is not None else None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def cleared(self, x: V, inst: Instance, when: Truth) -> Truth:
        """Whether the firing instance ``inst`` clears on ``x`` (hysteresis)."""
        if self.clear is not None:
            return _truth(self.clear(x))
        return None if when is None else not when

    def _step(self, ts_ms: int, key: str, x: V, inst: Instance, when: Truth,
              restart: bool) -> Transition | None:
        """One instance's step on ``x``, whose ``when`` is known; None: nothing changed."""
        clear = self.cleared(x, inst, when) if inst.state == State.FIRING else None
        new, event = step(interrupt(inst) if restart else inst, self.timing, ts_ms, when=when,
                          clear=clear, value=self.value_of(x))
        return None if new == inst else Transition(key, new, event)


class Feed(NamedTuple):
    """What the feed-stale rule judges a series by at one time."""

    age_ms: int  # since the last good sample, else since the series was first seen
    stale_after_ms: int
    good_ms: int | None  # the last good sample


class FeedStaleRule(Evaluator[Feed]):
    """The built-in rule: no good sample for ``stale_after``; its value is the age in seconds,
    its resolution always told. Only a good sample newer than its firing resolves it (a restart
    is no good sample)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, Timing(notify_resolved=True),
                         lambda f: f.age_ms >= f.stale_after_ms, value=lambda f: f.age_ms / 1000)

    def cleared(self, x: Feed, inst: Instance, when: Truth) -> Truth:
        fired = inst.fired_at_ms
        return when is False and x.good_ms is not None and (fired is None or x.good_ms > fired)


def _truth(v: object) -> Truth:
    return v if isinstance(v, bool) else None
