"""The outbox dispatcher: sends the ``deliveries`` rows through :mod:`wis_monitor.channel`.

Every alert event has one ``deliveries`` row per channel, written with the event. The dispatcher
sends due rows — each channel on its own, so a dead or slow channel never holds up another —
records ``sent`` or the error with exponential backoff (5 s doubling to 5 min), and gives up
with ``failed`` after the channel's ``max_age``. Alerts alike in a channel's ``group_by`` labels
go out as one message, after ``group_wait`` (then at most every ``group_interval``); the wait is
computed from the outbox rows, so it survives a restart. Flood control folds what exceeds a
channel's ``per_minute`` messages into one summary message; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wis_monitor.channel import register_secrets, send
from wis_monitor.clock import Clock
from wis_monitor.config import Config
from wis_monitor.duration import format_duration, ms
from wis_monitor.message import Message, render, render_group, render_summary
from wis_monitor.redact import redact
from wis_monitor.settings import Channel
from wis_monitor.store import Delivery, Store

log = logging.getLogger("wis_monitor.outbox")
BACKOFF_FIRST_MS = 5_000
BACKOFF_MAX_MS = 300_000
CLAIM_SLACK_MS = 10_000  # per message claimed, on top of the channel's timeout
#: Draws the chart attached to an alert's message: PNG bytes, or None for no chart.
ChartMaker = Callable[[Store, Config, Delivery], Awaitable[bytes | None]]


class Dispatcher:
    """Sends the outbox: each channel in a task of its own, so a dead or slow channel holds up
    nobody else; a channel's rows go out one by one.

    ``clock`` is read to stamp a send when it is done (a send can take seconds); the daemon
    passes its own clock, tests a fake one. ``chart`` draws the chart of a channel with
    ``attach_chart`` (the daemon passes :func:`wis_monitor.tools.chart.alert_chart`).
    """

    def __init__(self, config: Config, store: Store, *, clock: Clock,
                 chart: ChartMaker | None = None, owner: str = "") -> None:
        self.store = store
        self.clock = clock
        self.chart = chart
        #: The instance claiming rows in a shared outbox (one instance: any name will do).
        self.owner = owner or "local"
        #: Rows taken over from an instance whose claim ran out unsettled (it may have sent
        #: them before it died: the one way a message can go out twice).
        self.reclaimed = 0
        self._busy: dict[str, asyncio.Task[None]] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take a (re)loaded config; sends in flight finish under the old one."""
        self.config = config
        self.templates = {r.name: r.spec.template.model_dump() for r in config.rules}
        self._template_failed: set[str] = set()  # rules whose failure is logged (once each)
        register_secrets(ch.url for ch in config.settings.channels.values())

    def start_due(self, now_ms: int, *, flush: bool = False) -> int:
        """Start sending the due messages of every channel that is not busy; how many rows.
        ``flush`` sends every pending group now, without waiting (one-shot runs)."""
        by_channel: dict[str, list[Delivery]] = {}
        for r in self.store.due():
            if r.channel not in self._busy:
                by_channel.setdefault(r.channel, []).append(r)
        started = 0
        for name, items in by_channel.items():
            batches = self._due_groups(name, items, now_ms, flush)
            if not batches:
                continue
            task = asyncio.create_task(self._channel(name, batches, now_ms))
            self._busy[name] = task
            task.add_done_callback(functools.partial(self._done, name))
            started += sum(len(b) for b in batches)
        return started

    def _due_groups(self, name: str, items: list[Delivery], now_ms: int, flush: bool
                    ) -> list[list[Delivery]]:
        """The channel's pending rows that are due, one list per message.

        A group (alerts of one event alike in the channel's ``group_by`` labels) is due
        ``group_wait`` after its oldest pending alert was queued, or ``group_interval`` after
        the group's last message, whichever is later, and not before a failed send's backoff.
        Rows past ``max_age`` and rows of a channel no longer configured are due at once (to
        be given up)."""
        channel = self.config.settings.channels.get(name)
        if channel is None:
            return [[r] for r in items]
        max_age = ms(channel.max_age)
        groups: dict[tuple[Any, ...], list[Delivery]] = {}
        batches: list[list[Delivery]] = []
        for r in items:
            if now_ms - r.created_ms > max_age:
                batches.append([r])
            else:
                groups.setdefault(group_key(r, channel.group_by), []).append(r)
        last_sent = {} if flush else self._last_sent(name, channel, now_ms)
        for key, rows in groups.items():
            backoff = max(r.next_attempt_ms or 0 for r in rows)
            ready = backoff if flush or not channel.group_by else max(
                backoff, min(r.created_ms for r in rows) + ms(channel.group_wait),
                last_sent.get(key, -1 << 62) + ms(channel.group_interval))
            if ready <= now_ms:
                batches.append(rows)
        return batches

    def _last_sent(self, name: str, channel: Channel, now_ms: int) -> dict[tuple[Any, ...], int]:
        """When each group of the channel last had a message, within its ``group_interval``."""
        if not channel.group_by:
            return {}
        out: dict[tuple[Any, ...], int] = {}
        for r in self.store.sent_since(name, now_ms - ms(channel.group_interval)):
            key = group_key(r, channel.group_by)
            out[key] = max(out.get(key, 0), r.sent_ms or 0)
        return out

    def _done(self, name: str, _task: asyncio.Task[None]) -> None:
        self._busy.pop(name, None)

    async def drain(self, grace_s: float | None = None) -> None:
        """Wait for the sends in flight, at most ``grace_s``; unfinished ones stay pending."""
        tasks = list(self._busy.values())
        if not tasks:
            return
        _done, left = await asyncio.wait(tasks, timeout=grace_s)
        if left:
            log.warning("deliveries to %s still in flight after %.0fs: left pending for the "
                        "next start", ", ".join(sorted(n for n, t in self._busy.items()
                                                       if t in left)), grace_s or 0)

    async def run_once(self, now_ms: int, grace_s: float | None = None, *,
                       flush: bool = False) -> int:
        """Send every due delivery and wait for the sends; returns how many were attempted."""
        n = self.start_due(now_ms, flush=flush)
        await self.drain(grace_s)
        return n

    async def _channel(self, name: str, batches: list[list[Delivery]], now_ms: int) -> None:
        try:
            await self._send_rows(name, batches, now_ms)
        except Exception as exc:  # a bug or a store error must not stop the outbox
            log.error("%s: sending the outbox failed: %s: %s", name, type(exc).__name__,
                      redact(str(exc)))

    async def _send_rows(self, name: str, batches: list[list[Delivery]], now_ms: int) -> None:
        channel = self.config.settings.channels.get(name)
        if channel is None:
            self.store.give_up(_ids([r for b in batches for r in b]), now_ms,
                               f'channel "{name}" is no longer configured')
            return
        max_age = ms(channel.max_age)
        claimed = self._claim(name, channel, [r for b in batches for r in b], now_ms,
                              len(batches))
        fresh = []
        for rows in ([r for r in b if r.id in claimed] for b in batches):
            if not rows:
                continue
            if len(rows) == 1 and now_ms - rows[0].created_ms > max_age:
                self.store.give_up(_ids(rows), now_ms, "gave up after max_age")
                log.error("%s to channel %s: gave up after max_age %s (delivery %d)",
                          _what(rows), name, format_duration(max_age), rows[0].id)
            else:
                fresh.append(rows)
        room = channel.per_minute - self.store.messages_sent(name, now_ms - 60_000)
        if room <= 0:
            return  # they stay pending and are folded once the minute has passed
        single, folded = (fresh, []) if len(fresh) <= room else (fresh[:room - 1], fresh[room - 1:])
        for rows in single:
            if len(self._claim(name, channel, rows, self._now_ms(now_ms), 1)) < len(rows):
                continue  # another instance took them over while this one was held up
            msg = (await self._render(rows[0]) if len(rows) == 1
                   else render_group([r.as_template_dict() for r in rows]))
            attach = await self._chart(rows[0]) if channel.attach_chart else None
            ok, err = await send(channel.url, channel.timeout.total_seconds(), msg, attach)
            self._outcome(rows, ok, err, self._now_ms(now_ms), name)
        if folded:
            flat = [r for rows in folded for r in rows]
            msg = render_summary([r.as_template_dict() for r in flat], name, channel.per_minute)
            ok, err = await send(channel.url, channel.timeout.total_seconds(), msg)
            self._outcome(flat, ok, err, self._now_ms(now_ms), name, summary=True)

    def _claim(self, name: str, channel: Channel, rows: list[Delivery], now_ms: int,
               messages: int) -> set[int]:
        """Claim ``rows`` for as long as ``messages`` sends may take (each its timeout, and
        ten seconds to render and record it); which this instance may send."""
        ttl = messages * (ms(channel.timeout) + CLAIM_SLACK_MS)
        taken = self.store.claim(_ids(rows), self.owner, now_ms, ttl)
        for i, previous in taken.items():
            if previous is not None and previous != self.owner:
                self.reclaimed += 1
                log.warning("%s: delivery %d was claimed by instance %s, which did not settle it "
                            "in time: sending it (a duplicate if %s sent it before it stopped)",
                            name, i, previous, previous)
        return set(taken)

    async def _render(self, delivery: Delivery) -> Message:
        """The alert's message, rendered off the event loop (a template may take its budget)."""
        rule = delivery.alert.rule
        msg = await asyncio.to_thread(render, delivery.as_template_dict(), self.templates.get(rule))
        if msg.template_error and rule not in self._template_failed:
            self._template_failed.add(rule)
            log.warning('rule "%s": its template failed (%s); its alerts go out with the default '
                        "message", rule, redact(msg.template_error or ""))
        return msg

    async def _chart(self, delivery: Delivery) -> bytes | None:
        """The chart attached to the alert's message (``attach_chart``), if the dispatcher was
        given a way to draw one; a chart is a nicety: a failure sends the message without."""
        if self.chart is None:
            return None
        try:
            return await self.chart(self.store, self.config, delivery)
        except Exception as exc:
            log.warning("chart for %s failed: %s", delivery.alert.rule, exc)
            return None

    def _now_ms(self, floor: int) -> int:
        return max(floor, self.clock.now_ms())

    def _outcome(self, rows: Sequence[Delivery], ok: bool, err: str, now_ms: int,
                 channel: str, summary: bool = False) -> None:
        if ok:
            if summary:
                self.store.fold(_ids(rows), now_ms)
                log.warning("%s: %d alerts over the flood limit folded into one summary",
                            channel, len(rows))
            else:
                self.store.mark_sent(_ids(rows), now_ms)
            return
        for r in rows:
            attempts = r.attempts + 1
            self.store.record_failure(r.id, attempts, err, now_ms + backoff_ms(attempts))
        log.warning("%s to channel %s failed: %s; retrying in %.0fs", _what(rows), channel,
                    redact(err), backoff_ms(rows[0].attempts + 1) / 1000)


def backoff_ms(attempts: int) -> int:
    """The wait after the ``attempts``-th failed send: 5 s doubling up to 5 min."""
    return int(min(BACKOFF_FIRST_MS * 2 ** (attempts - 1), BACKOFF_MAX_MS))


def _ids(rows: Sequence[Delivery]) -> list[int]:
    return [r.id for r in rows]


def _what(rows: Sequence[Delivery]) -> str:
    """The alert of a delivery for a log line: ``firing extreme-bid-pressure on okx:BTC/USDT``;
    a grouped or summary message says how many alerts it carries."""
    a = rows[0].alert
    one = f"{a.event} {a.rule} on {a.key}"
    return one if len(rows) == 1 else f"message of {len(rows)} alerts ({one}, ...)"


#: The labels of an alert ``group_by`` knows besides the rule's own labels.
ALERT_LABELS = ("rule", "severity", "venue", "symbol", "group")


def group_key(delivery: Delivery, group_by: Sequence[str]) -> tuple[Any, ...]:
    """Which message an alert goes out in: its values of the ``group_by`` labels (``group``
    is the group of a group rule's alert); ``[]`` puts each on its own. Firing and resolved
    alerts of a group share its messages, as in Alertmanager: a message shows each series as
    it is when sent."""
    if not group_by:
        return ("delivery", delivery.id)
    alert = delivery.alert
    known = {"rule": alert.rule, "severity": alert.severity, "venue": alert.venue,
             "symbol": alert.symbol, "group": alert.key if alert.venue is None else None}
    def label(name: str) -> Any:
        return known[name] if name in ALERT_LABELS else alert.labels.get(name)
    return tuple(label(n) for n in group_by)
