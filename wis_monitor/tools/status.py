"""What ``wis-monitor status`` shows, read from the database alone."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from wis_monitor.config import Config
from wis_monitor.duration import ms
from wis_monitor.redact import redact
from wis_monitor.store import (
    ChannelBacklog,
    FiringState,
    InstanceRow,
    LeaseRow,
    RuleFirings,
    SampleRow,
    Store,
    is_good,
)

DAY_MS = 86_400_000
#: The numbers of a series' last good sample that ``status`` shows.
SHOWN = ("wis", "wis_z", "mid", "spread_bps")


def quality_label(quality: str) -> str:
    """A sample's quality as ``status`` shows it: ``good`` (with the flags that merely warn,
    ``good (thin)``), else its flags."""
    if not is_good(quality):
        return quality
    return f"good ({quality})" if quality else "good"


@dataclass(frozen=True)
class SeriesStatus:
    """A series' newest sample (any quality, its error redacted) and newest good one."""

    venue: str
    symbol: str
    last: SampleRow | None
    good: SampleRow | None
    mode: str = "poll"  # a streamed venue's: "stream", or "poll (fallback)" while it polls

    def as_json(self, now_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {"venue": self.venue, "symbol": self.symbol, "mode": self.mode}
        if self.last is not None:
            out.update(last_ts=self.last.ts_ms, last_quality=quality_label(self.last.quality),
                       last_error=self.last.error)
        if self.good is not None:
            out.update(good_age_s=(now_ms - self.good.ts_ms) / 1000.0,
                       **{m: self.good.values.get(m) for m in SHOWN})
        return out


@dataclass(frozen=True)
class StatusReport:
    """What ``status`` shows: series, firing alerts, recent firings, the outbox."""

    database: str
    now_ms: int
    series: tuple[SeriesStatus, ...]
    firing: tuple[FiringState, ...]
    fired: tuple[RuleFirings, ...]
    outbox: tuple[ChannelBacklog, ...]
    #: On a shared store: the instances, and the leases of venues and groups.
    instances: tuple[InstanceRow, ...] = ()
    leases: tuple[LeaseRow, ...] = ()
    lease_ttl_ms: int = 15_000

    def alive(self, instance: InstanceRow) -> bool:
        return instance.heartbeat_ms > 0 and \
            self.now_ms - instance.heartbeat_ms < self.lease_ttl_ms

    def held_by(self, instance: str) -> list[str]:
        return [lease.name for lease in self.leases if lease.owner == instance]

    def as_json(self) -> dict[str, Any]:
        """The ``status --json`` document (docs/cli.md)."""
        return {
            "database": self.database,
            "now_ms": self.now_ms,
            "series": [s.as_json(self.now_ms) for s in self.series],
            "firing": [{"rule": f.rule, "key": f.key, "since": f.since_ms, "mode": f.mode}
                       for f in self.firing],
            "fired": [{"rule": f.rule, "mode": f.mode, "last_24h": f.last_day,
                       "last_7d": f.last_week} for f in self.fired],
            "outbox": {b.channel: {"pending": b.pending, "oldest_ts": b.oldest_pending_ms}
                       for b in self.outbox if b.pending},
            "failed": {b.channel: b.failed for b in self.outbox if b.failed},
            "instances": [{"id": i.id, "host": i.host, "pid": i.pid, "version": i.version,
                           "started_ts": i.started_ms, "heartbeat_ts": i.heartbeat_ms,
                           "alive": self.alive(i), "leases": self.held_by(i.id)}
                          for i in self.instances],
            "leases": [{"name": lease.name, "owner": lease.owner, "token": lease.token,
                        "renewed_ts": lease.renewed_ms, "expires_ts": lease.expires_ms}
                       for lease in self.leases],
        }


def collect(config: Config, store: Store, now_ms: int) -> StatusReport:
    """Per series the latest sample and the last good one (a streamed venue's mode read from
    it: a polled book has no ``book_age_ms``), firing alerts (shadow ones marked),
    firings per rule over the last day and week, outbox backlog."""
    configured = [(v.id, s) for v in config.settings.venues for s in v.symbols]
    streamed = {v.id for v in config.settings.venues if v.mode == "stream"}
    seen = set(store.series_names())
    series = []
    for venue, symbol in configured + sorted(seen - set(configured)):
        last = store.latest_sample(venue, symbol)
        if last is not None and last.error:  # masked again: rows written by older versions
            last = replace(last, error=redact(last.error))
        if venue not in streamed:
            series.append(SeriesStatus(venue, symbol, last,
                                       store.latest_good(venue, symbol, SHOWN)))
            continue
        good = store.latest_good(venue, symbol, (*SHOWN, "book_age_ms"))
        polled = good is not None and good.values.get("book_age_ms") is None
        series.append(SeriesStatus(venue, symbol, last, good,
                                   "poll (fallback)" if polled else "stream"))
    return StatusReport(store.path, now_ms, tuple(series), tuple(store.firing_states()),
                        tuple(store.firing_counts(now_ms - DAY_MS, now_ms - 7 * DAY_MS)),
                        tuple(store.outbox_backlog()), tuple(store.instances()),
                        tuple(store.leases()), ms(config.settings.instance.lease_ttl))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _f(x: float | None, fmt: str) -> str:
    return format(x, fmt) if x is not None else "-"


def render(report: StatusReport) -> str:
    now = report.now_ms
    lines = [f"database {report.database} at "
             f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(now / 1000))}", ""]
    lines.append(f"{'venue':<12} {'symbol':<16} {'good age':>9} {'wis':>7} {'wis_z':>7} "
                 f"{'mid':>12}  last sample")
    for s in report.series:
        if s.last is None:
            state = "no samples"
        elif is_good(s.last.quality):
            state = quality_label(s.last.quality)
        else:
            state = f"[{s.last.quality}] {s.last.error or ''}"
        good = s.good.values if s.good is not None else {}
        age = (now - s.good.ts_ms) / 1000.0 if s.good is not None else None
        lines.append(
            f"{s.venue:<12} {s.symbol:<16} {_age(age):>9} "
            f"{_f(good.get('wis'), '.3f'):>7} {_f(good.get('wis_z'), '.2f'):>7} "
            f"{_f(good.get('mid'), '.2f'):>12}  {state.strip()}"
            + (f" ({s.mode})" if s.mode != "poll" else "")
        )
    lines.append("")
    if report.firing:
        lines.append("firing:")
        for f in report.firing:
            since = (now - f.since_ms) / 1000 if f.since_ms else None
            shadow = ", shadow: not sent" if f.mode == "shadow" else ""
            lines.append(f"  {f.rule} {f.key} (active for {_age(since)}{shadow})")
    else:
        lines.append("firing: none")
    if report.fired:
        lines.append("fired (firing events) in the last 24h / 7d:")
        width = max(len(f.rule) for f in report.fired)
        for r in report.fired:
            shadow = "  shadow: not sent" if r.mode == "shadow" else ""
            lines.append(f"  {r.rule:<{width}} {r.last_day:>5} / {r.last_week:<5}{shadow}")
    backlog = [b for b in report.outbox if b.pending]
    if backlog:
        lines.append("outbox backlog:")
        for b in backlog:
            oldest = _age((now - (b.oldest_pending_ms or now)) / 1000)
            lines.append(f"  {b.channel}: {b.pending} pending, oldest {oldest}")
    else:
        lines.append("outbox backlog: none")
    for b in report.outbox:
        if b.failed:
            lines.append(f"  {b.channel}: {b.failed} failed deliveries (see the deliveries table)")
    lines.extend(_instances(report))
    return "\n".join(lines)


def _instances(report: StatusReport) -> list[str]:
    """The instances sharing the store, their last heartbeat and the leases each holds."""
    if not report.instances:
        return []
    lines = ["", "instances (heartbeat age; leases held):"]
    for i in report.instances:
        state = "up" if report.alive(i) else "stopped" if not i.heartbeat_ms else "DOWN"
        held = ", ".join(report.held_by(i.id)) or "none"
        age = _age((report.now_ms - i.heartbeat_ms) / 1000) if i.heartbeat_ms else "-"
        lines.append(f"  {i.id:<16} {state:<7} {age:>7}"
                     f"  {i.host} pid {i.pid} {i.version}".rstrip() + f"; {held}")
    unheld = [lease.name for lease in report.leases if lease.owner is None]
    if unheld:
        why = "being handed over" if any(report.alive(i) for i in report.instances) else \
            "no instance is up"
        lines.append(f"  not held ({why}): {', '.join(unheld)}")
    return lines
