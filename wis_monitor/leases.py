"""Venues and groups spread over the instances sharing a store, under leases (docs/scaling.md).

Every instance heartbeats each tick. The owner of a lease — ``venue:ID`` or ``group:NAME`` —
is picked among the instances alive by rendezvous hashing with bounded loads (among the
venue's ``prefer`` instances while one of them is alive), so every instance computes the same
even spread and an instance joining or leaving moves few leases. An instance:

- renews the leases it holds (each tick);
- takes a lease it should own when the lease is free, or when its holder has been seen not to
  renew it for ``lease_ttl``;
- releases a lease another live instance should own (it joined), so that one takes it at once.

"Seen not to renew" is measured on this instance's own monotonic clock from the moment it last
saw the lease row change, never by comparing times written by other hosts: clocks need not
agree, and an instance that lost sight of the store (an outage) starts watching again instead
of taking every lease at once. Taking a lease raises its fencing token; every batch a holder
writes carries its tokens, and the store refuses one whose token is outdated
(:class:`~wis_monitor.errors.Fenced`), so a holder that was paused and resumed cannot write
over its successor.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from wis_monitor.clock import Clock
from wis_monitor.config import Config
from wis_monitor.duration import format_duration, ms
from wis_monitor.engine import Engine
from wis_monitor.errors import Fenced, StoreError
from wis_monitor.sources import Source
from wis_monitor.store import InstanceRow, LeaseRow, Store
from wis_monitor.telemetry import Telemetry

log = logging.getLogger("wis_monitor.leases")
VENUE = "venue:"
GROUP = "group:"
#: An instance whose heartbeat, at first sight, is older than this many TTLs is taken as gone.
LONG_GONE_TTLS = 3
#: The heartbeat of an instance that stopped cleanly (and released its leases).
STOPPED = 0


def assign(names: Mapping[str, Sequence[str]], live: Sequence[str]) -> dict[str, str]:
    """The instance that should hold each lease (name -> its preferred instances), by
    rendezvous hashing with bounded loads: each lease goes to the live instance ranking
    highest for it (by the hash of instance and lease name) that holds fewer than its fair
    share, ceil(leases / instances); a lease whose preferred instances are alive goes to
    one of them. Every instance computes the same answer from the same live set, and an
    instance joining or leaving moves few leases."""
    if not live:
        return {}
    cap = -(-len(names) // len(live))
    load = dict.fromkeys(live, 0)
    out = {}
    for name in sorted(names):
        pool = [i for i in live if i in names[name]] or list(live)
        ranked = sorted(pool, key=lambda i: hashlib.sha256(f"{i}\0{name}".encode()).digest(),
                        reverse=True)
        owner = next((i for i in ranked if load[i] < cap), ranked[0])
        load[owner] += 1
        out[name] = owner
    return out


class Watch:
    """How long each thing read from the store has stayed the same, on this clock."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[Hashable, float]] = {}

    def unchanged_for(self, key: Hashable, value: Hashable, now_s: float) -> float:
        seen = self._seen.get(key)
        if seen is None or seen[0] != value:
            self._seen[key] = (value, now_s)
            return 0.0
        return now_s - seen[1]

    def first_sight(self, key: Hashable) -> bool:
        return key not in self._seen

    def forget(self) -> None:
        """Lost sight of the store: nothing counts as unchanged any more."""
        self._seen.clear()


@dataclass
class Changes:
    """What one tick changed: leases this instance now holds, and those it no longer does."""

    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    #: Of the lost: those released to the instance that should hold them (a hand-over).
    released: list[str] = field(default_factory=list)


class LeaseKeeper:
    """This instance's side of the leases: heartbeat, take, renew, release."""

    def __init__(self, store: Store, me: InstanceRow, ttl_ms: int, clock: Clock) -> None:
        self.store = store
        self.me = me
        self.ttl_ms = ttl_ms
        self.clock = clock
        #: The leases held, with their fencing tokens.
        self.tokens: dict[str, int] = {}
        #: Leases taken from another instance that stopped renewing them.
        self.takeovers = 0
        self.live: list[str] = [me.id]
        self.rows: dict[str, LeaseRow] = {}
        self._watch = Watch()

    @property
    def id(self) -> str:
        return self.me.id

    def holds(self, name: str) -> bool:
        return name in self.tokens

    def tick(self, wanted: Mapping[str, Sequence[str]]) -> Changes:
        """Heartbeat, then take, renew and release leases; ``wanted`` maps every lease name the
        configuration has to its preferred instances. A store error propagates (the leases
        held stay held until their holder is seen not to renew them)."""
        now_ms, now_s = self.clock.now_ms(), self.clock.monotonic()
        try:
            self.store.heartbeat(InstanceRow(self.me.id, self.me.host, self.me.pid,
                                             self.me.started_ms, now_ms, self.me.version))
            self.live = self._live(now_ms, now_s)
            self.rows = {r.name: r for r in self.store.leases()}
            owners = assign(wanted, self.live)
            held, released = {}, []
            for name in wanted:
                row = self.rows.get(name)
                if owners[name] == self.id:
                    got = self._take(name, row, now_ms, now_s)
                    if got is not None:
                        held[name] = got
                elif row is not None and row.owner == self.id:
                    self.store.release([name], self.id)
                    released.append(name)
                    log.info("lease %s handed over to instance %s", name, owners[name])
                elif row is not None:
                    self._watch.unchanged_for(name, _state(row), now_s)
            dropped = sorted(set(self.tokens) - set(wanted))  # no longer configured
            if dropped:
                self.store.release(dropped, self.id)
        except Exception:
            self._watch.forget()
            raise
        changes = Changes(sorted(set(held) - set(self.tokens)),
                          sorted(set(self.tokens) - set(held)), sorted(released))
        self.tokens = {n: r.token for n, r in held.items()}
        return changes

    def _take(self, name: str, row: LeaseRow | None, now_ms: int, now_s: float
              ) -> LeaseRow | None:
        if row is None or row.owner is None or row.owner == self.id:
            got = self.store.acquire(name, self.id, now_ms, self.ttl_ms)
            if got is not None and row is not None and row.owner is None:
                log.info("lease %s taken (released by its holder; token %d)", name, got.token)
            return got
        if self._watch.unchanged_for(name, _state(row), now_s) * 1000 < self.ttl_ms:
            return None  # its holder may still be alive
        got = self.store.acquire(name, self.id, now_ms, self.ttl_ms, expect=row)
        if got is not None:
            self.takeovers += 1
            log.warning("lease %s taken over from instance %s, which stopped renewing it "
                        "(token %d)", name, row.owner, got.token)
        return got

    def _live(self, now_ms: int, now_s: float) -> list[str]:
        """The instances alive: this one, and those whose heartbeat this one has seen change
        within the TTL (or, at first sight, that is recent by the clock)."""
        live = []
        for inst in self.store.instances():
            if inst.id == self.id:
                live.append(inst.id)
                continue
            if inst.heartbeat_ms == STOPPED:
                continue
            key = ("instance", inst.id)
            if self._watch.first_sight(key) and \
                    now_ms - inst.heartbeat_ms > LONG_GONE_TTLS * self.ttl_ms:
                self._watch.unchanged_for(key, inst.heartbeat_ms, now_s - self.ttl_ms / 1000)
                continue
            if self._watch.unchanged_for(key, inst.heartbeat_ms, now_s) * 1000 < self.ttl_ms:
                live.append(inst.id)
        return live

    def leave(self) -> None:
        """Stopping: release every lease and say so in the heartbeat, so that the others take
        this instance's share at their next tick instead of after the TTL."""
        names = sorted(self.tokens)
        self.tokens = {}
        if names:
            self.store.release(names, self.id)
        self.store.heartbeat(InstanceRow(self.me.id, self.me.host, self.me.pid,
                                         self.me.started_ms, STOPPED, self.me.version))


def _state(row: LeaseRow) -> tuple[str | None, int, int]:
    """What changes when a lease is renewed or changes hands."""
    return row.owner, row.token, row.renewed_ms


#: Starts the sources of these venues of a configuration (the daemon's).
SourceStarter = Callable[[Config, set[str]], Awaitable[dict[str, Source]]]


class Shard:
    """This instance's share of a shared store: the leases it holds, and what they cover in
    the engine (series, alert state, groups) and in the sources (the venues sampled here)."""

    def __init__(self, store: Store, config: Config, clock: Clock, telemetry: Telemetry,
                 start_sources: SourceStarter) -> None:
        now = clock.now_ms()
        me = InstanceRow(config.instance_id(), socket.gethostname(), os.getpid(), now, now,
                         _version())
        self.keeper = LeaseKeeper(store, me, ms(config.settings.instance.lease_ttl), clock)
        self.store = store
        self.clock = clock
        self.telemetry = telemetry
        self.start_sources = start_sources
        self.error: str | None = None  # the store's answer to the last tick, if it failed
        self._takeovers = 0
        log.info("shared store: instance %s; venues and groups are spread by leases "
                 "(lease_ttl %s)", me.id, format_duration(self.keeper.ttl_ms))

    @property
    def id(self) -> str:
        return self.keeper.id

    async def tick(self, config: Config, engine: Engine, sources: dict[str, Source]
                   ) -> set[str]:
        """Renew, take and release leases; start sampling the venues taken, stop the lost.
        Returns the venues taken (to be sampled at once)."""
        try:
            changes = self.keeper.tick(lease_names(config))
        except StoreError as exc:
            if self.error is None:
                log.error("leases: %s; sampling what this instance holds until another is seen "
                          "to take it over", exc)
            self.error = str(exc)
            return set()
        if self.error is not None:
            log.info("leases: the store answers again")
            self.error = None
        if self.keeper.takeovers > self._takeovers:
            self.telemetry.takeovers.inc(self.keeper.takeovers - self._takeovers)
            self._takeovers = self.keeper.takeovers
        self._count()
        lost_v, lost_g = split(changes.lost)
        taken = sorted(set(changes.lost) - set(changes.released))
        if taken:
            log.warning("leases lost: %s: held by another instance now; no longer sampled or "
                        "evaluated here", ", ".join(taken))
        if changes.lost:
            engine.step_down(lost_v, lost_g)
            await _close([sources.pop(v) for v in lost_v if v in sources])
        return await self._take(changes.gained, config, engine, sources) \
            if changes.gained else set()

    async def _take(self, names: list[str], config: Config, engine: Engine,
                    sources: dict[str, Source]) -> set[str]:
        venues, groups = split(names)
        try:
            n = engine.take_over(venues, groups, self.clock.now_ms())
        except StoreError as exc:  # cannot carry on where the last holder stopped: not now
            log.error("leases %s: cannot read their state: %s; released", ", ".join(names), exc)
            engine.step_down(venues, groups)
            self.release(names)
            return set()
        sources.update(await self.start_sources(config, venues - set(sources)))
        log.info("leases taken: %s (%d samples of history restored)", ", ".join(names), n)
        return venues

    def fence(self, venue: str | None) -> dict[str, int]:
        """The tokens a batch carries: its venue's, else (housekeeping) every one held."""
        tokens = self.keeper.tokens
        if venue is None:
            return dict(tokens)
        name = VENUE + venue
        return {name: tokens[name]} if name in tokens else {}

    def release(self, names: list[str]) -> None:
        for n in names:
            self.keeper.tokens.pop(n, None)
        try:
            self.store.release(names, self.id)
        except StoreError as exc:
            log.warning("leases: cannot release %s: %s", ", ".join(names), exc)
        self._count()

    def step_down_all(self, fenced: Fenced, engine: Engine, sources: dict[str, Source]
                      ) -> dict[str, Source]:
        """A write was refused: another instance took a lease over while this one was held up
        (paused, cut off), so its view of every series may be behind. Give up every lease and
        what the engine knew of them; the next tick takes back what is this instance's, from
        the store, with new tokens. Returns the sources to close."""
        log.error("%s: this instance was held up past its lease; stepping down from all "
                  "(what it had not written is dropped: the new holder sampled it)", fenced)
        names = sorted(self.keeper.tokens)
        venues, groups = split(names)
        engine.step_down(venues, groups)
        self.release(names)
        return {v: sources.pop(v) for v in venues if v in sources}

    def leave(self) -> None:
        """At a clean stop: hand every lease over at once."""
        held = sorted(self.keeper.tokens)
        try:
            self.keeper.leave()
        except StoreError as exc:
            log.warning("leases: cannot hand over %s at the stop (taken over after "
                        "lease_ttl): %s", ", ".join(held) or "nothing", exc)
            return
        if held:
            log.info("leases released for the other instances: %s", ", ".join(held))

    def _count(self) -> None:
        venues, groups = split(list(self.keeper.tokens))
        self.telemetry.leases.labels("venue").set(len(venues))
        self.telemetry.leases.labels("group").set(len(groups))


def lease_names(config: Config) -> dict[str, list[str]]:
    """Every lease of a configuration with its preferred instances: one per venue, one per
    group that a group rule evaluates."""
    names = {VENUE + v.id: list(v.prefer) for v in config.settings.venues}
    names.update({GROUP + (r.spec.group or ""): [] for r in config.rules
                  if r.spec.scope == "group"})
    return names


def split(names: list[str]) -> tuple[set[str], set[str]]:
    """Lease names as the venues and the groups they are of."""
    return ({n[len(VENUE):] for n in names if n.startswith(VENUE)},
            {n[len(GROUP):] for n in names if n.startswith(GROUP)})


async def _close(sources: list[Source]) -> None:
    for s in sources:
        with contextlib.suppress(Exception):
            await s.close()


def _version() -> str:
    try:
        return version("wis-monitor")
    except PackageNotFoundError:
        return ""
