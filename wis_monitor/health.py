"""The health of each sampled venue, and the policy for its failures.

A fetch always ends in an observation: within its timeout, and a source's defect becomes an
error too. The failures arrive as :class:`~wis_monitor.errors.SourceError`, classified once
by the source with their remedy; here the remedy decides what happens: a rate limit with a
``Retry-After`` holds the venue back that long, an error only an operator can fix is logged
as an error, the rest as warnings. Each symbol's failures are logged when they start and
when they end, not at every cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wis_monitor.clock import Clock
from wis_monitor.errors import Remedy, SourceError
from wis_monitor.redact import redact
from wis_monitor.sources import Observation, Source, error_observation
from wis_monitor.telemetry import Telemetry

if TYPE_CHECKING:
    from apscheduler.events import JobSubmissionEvent

    from wis_monitor.config import Config

log = logging.getLogger("wis_monitor")
VENUE_JOB = "venue:"  # prefix of the id of a venue's sampling job


@dataclass
class VenueHealth:
    up: bool = True  # its latest cycle had a fetch without error
    last_error: str | None = None
    last_up_ms: int | None = None  # when a cycle last had a fetch without error
    backoff_until_ms: int = 0
    cycles: int = 0
    failing: dict[str, str] = field(default_factory=dict)  # symbol -> the kind of its error


class VenueHealthBoard:
    """Every sampled venue's health, updated after each of its cycles."""

    def __init__(self, clock: Clock, telemetry: Telemetry) -> None:
        self.clock = clock
        self.telemetry = telemetry
        self.venues: dict[str, VenueHealth] = {}
        self._slow_venues: set[str] = set()

    def retain(self, venue_ids: Iterable[str]) -> None:
        """After a reload: the venues still sampled keep their health, the others go."""
        self.venues = {v: self.venues.get(v, VenueHealth()) for v in venue_ids}

    def held_back(self, venue_id: str, now_ms: int) -> bool:
        """Whether a venue's cycle is to be skipped (it asked us to wait)."""
        return now_ms < self.venues.setdefault(venue_id, VenueHealth()).backoff_until_ms

    def up(self, stale_after_ms: dict[str, int]) -> dict[str, bool]:
        """Each sampled venue: up when its latest cycle had a fetch without error, and that
        cycle ended less than the venue's ``stale_after`` ago (a venue whose cycles hang or
        are held back by a rate limit goes down too)."""
        now = self.clock.now_ms()
        return {v: h.up and h.last_up_ms is not None
                and now - h.last_up_ms < stale_after_ms.get(v, 0)
                for v, h in self.venues.items()}

    def report(self, up: dict[str, bool], *, stalled: bool, store_error: str | None,
               status: str, standby: bool = False, modes: dict[str, str] | None = None
               ) -> tuple[bool, dict[str, Any]]:
        """Healthy (``/healthz`` 200, ``run --once`` exit 0): the loop runs, the database
        accepts writes, and at least one venue is up — or, ``standby``, this instance of
        several holds no venue; with the details (each venue's ``mode``: ``poll``,
        ``stream`` or ``poll (fallback)``), secrets masked."""
        problems = []
        if stalled:
            problems.append("the event loop or the scheduler is stalled")
        if store_error is not None:
            problems.append("the database refuses writes")
        if not any(up.values()) and not (standby and not up):
            problems.append("no venue up")
        venues = {v: {"up": up[v], "last_error": _redacted(h.last_error),
                      "mode": (modes or {}).get(v, "poll")} for v, h in self.venues.items()}
        return not problems, {"venues": venues, "store_error": _redacted(store_error),
                              "status": redact(status), "problems": problems}

    def record(self, venue_id: str, observations: list[Observation]) -> None:
        """Take one cycle's observations of a venue."""
        health = self.venues.setdefault(venue_id, VenueHealth())
        health.cycles += 1
        errors = [o for o in observations if o.error]
        was_up = health.up
        health.up = len(errors) < len(observations)
        if health.up:
            health.last_up_ms = self.clock.now_ms()
        if errors:
            health.last_error = errors[0].error
            self._back_off(venue_id, health, [o.fault for o in errors if o.fault])
        if was_up and not health.up:
            log.warning("venue %s down: %s", venue_id, health.last_error)
        elif not was_up and health.up:
            log.info("venue %s back up", venue_id)
        for o in observations:
            self._symbol(venue_id, health, o)

    def _back_off(self, venue_id: str, health: VenueHealth, faults: list[SourceError]) -> None:
        for fault in faults:
            self.telemetry.errors.labels(venue_id, fault.kind).inc()
        retry = max((f.retry_after_s or 0.0 for f in faults if f.remedy is Remedy.BACK_OFF),
                    default=0.0)
        if retry:
            health.backoff_until_ms = self.clock.now_ms() + int(retry * 1000)
            log.warning("venue %s: rate limited, waiting %.1fs (Retry-After)", venue_id, retry)

    @staticmethod
    def _symbol(venue_id: str, health: VenueHealth, o: Observation) -> None:
        """A symbol's failures: said when they start (or change kind) and when they end."""
        was = health.failing.get(o.symbol)
        kind = (o.fault.kind if o.fault else "SourceError") if o.error else None
        if kind and kind != was:
            fix = o.fault is not None and o.fault.remedy is Remedy.FIX_CONFIG
            log.log(logging.ERROR if fix else logging.WARNING, "venue %s %s: %s", venue_id,
                    o.symbol, o.error)
        elif kind:
            log.debug("venue %s %s: %s", venue_id, o.symbol, o.error)
        elif was:
            log.info("venue %s %s: fetches succeed again", venue_id, o.symbol)
        if kind:
            health.failing[o.symbol] = kind
        else:
            health.failing.pop(o.symbol, None)

    def skipped(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a cycle that was due while the previous one still ran: count
        it, and say so once per venue."""
        if not str(event.job_id).startswith(VENUE_JOB):
            return  # housekeeping: its next second comes soon enough
        venue = str(event.job_id).removeprefix(VENUE_JOB)
        self.telemetry.cycles_skipped.labels(venue).inc()
        if venue not in self._slow_venues:
            self._slow_venues.add(venue)
            log.warning("venue %s: a sampling cycle outlasted the interval, so the next one was "
                        "skipped (rate limit or slow venue; the interval is not met)", venue)


def status_line(up: dict[str, bool], firing: int, store_error: str | None,
                modes: dict[str, str] | None = None) -> str:
    """The one-line state for ``STATUS=`` and ``/healthz``."""
    down = sorted(v for v, ok in up.items() if not ok)
    parts = [f"{len(up) - len(down)}/{len(up)} venues up"]
    if down:
        parts.append("down: " + ",".join(down))
    fallback = sorted(v for v, mode in (modes or {}).items() if mode == "poll (fallback)")
    if fallback:
        parts.append("poll (fallback): " + ",".join(fallback))
    parts.append(f"{firing} alert(s) firing")
    if store_error:
        parts.append(f"STORE ERROR: {store_error}")
    return "; ".join(parts)


class NoSkipWarnings(logging.Filter):
    """Drop APScheduler's warning at every skipped cycle (``skipped`` says it once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


async def fetch(source: Source, symbol: str, ts: int, timeout_s: float,
                clock: Clock) -> Observation:
    """One fetch that ends in an observation, within ``timeout_s``, whatever the source does."""
    try:
        return await asyncio.wait_for(source.fetch(symbol, ts), timeout_s)
    except TimeoutError:
        return error_observation(source.venue, symbol, clock.now_ms(), SourceError(
            f"no answer within {timeout_s:g}s", kind="FetchTimeout"), timeout_s * 1000.0)
    except Exception as exc:  # a source bug must not kill the venue's job
        log.exception("venue %s %s: unexpected error", source.venue, symbol)
        return error_observation(source.venue, symbol, clock.now_ms(), exc)


def source_modes(sources: Mapping[str, Source]) -> dict[str, str]:
    """Each source's mode: ``poll``, or a streamed venue's ``stream`` / ``poll (fallback)``."""
    return {v: str(getattr(s, "mode", "poll")) for v, s in sources.items()}


async def notify_operators(config: Config, title: str, text: str) -> None:
    """Tell the operators directly, on the feed-stale channels (else all): not through the
    outbox, which lives in a database that may be what failed."""
    from wis_monitor.channel import send
    from wis_monitor.message import Message

    names = config.settings.feed_stale.channels or list(config.settings.channels)
    msg = Message(f"[CRITICAL] {title}", text, f"<p>{text}</p>", text, level="critical")
    for name in names:
        channel = config.settings.channels[name]
        ok, err = await send(channel.url, channel.timeout.total_seconds(), msg)
        if not ok:
            log.error("ops alert to %s failed: %s", name, err)


def _redacted(text: str | None) -> str | None:
    return redact(text) if text else text
