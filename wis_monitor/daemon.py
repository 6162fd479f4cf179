"""The daemon: APScheduler wiring, POSIX signals, sd_notify, reload and shutdown (SPEC §10).

Signal handlers only queue the signal; the main coroutine handles HUP (reload) and TERM/INT
(stop). One job per venue samples all its symbols concurrently, so a slow or failing venue
never delays another; the engine and the store run on the event loop between fetches.
The daemon orchestrates: venue health and its policy are in :mod:`wis_monitor.health`,
the metrics and the HTTP endpoint in :mod:`wis_monitor.telemetry`, the sources come from
:func:`wis_monitor.sources.make_source`, and the time from the :class:`~wis_monitor.clock.Clock`
it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from wis_monitor.clock import SYSTEM, Clock, utc
from wis_monitor.config import Config, load_config, runnable
from wis_monitor.duration import ms
from wis_monitor.engine import Engine, Sample
from wis_monitor.errors import ConfigError, StoreError
from wis_monitor.health import (
    VENUE_JOB,
    NoSkipWarnings,
    VenueHealthBoard,
    fetch,
    notify_operators,
    source_modes,
    status_line,
)
from wis_monitor.leases import Shard
from wis_monitor.positions import PositionsWatch
from wis_monitor.sdnotify import Notifier
from wis_monitor.selector import Selector
from wis_monitor.sources import Observation, Source, make_source
from wis_monitor.store import Batch, BufferedWriter, Store, open_store
from wis_monitor.telemetry import HttpEndpoint, Telemetry, start_endpoint

log = logging.getLogger("wis_monitor")
PRUNE_EVERY_S = 600.0
PRUNE_SLICE = 20_000  # rows of samples/books per housekeeping second when catching up
STOP_GRACE_S = 10.0
STORE_BUSY_S = 1.0  # how long a write waits for another writer's lock (on the event loop)
DELIVERY_GRACE_S = 5.0  # for sends in flight and waiting groups at SIGTERM; the rest stay pending
EXIT_UNHEALTHY = 3  # `run --once`: the cycle ran, but no venue is up or the database refused it
SampleHook = Callable[[Sample], None]


@dataclass
class Runtime:
    config: Config
    engine: Engine
    sources: dict[str, Source]


class Daemon:
    """The long-running monitor; ``run()`` returns the process exit code."""

    def __init__(self, config_path: str, *, once: bool = False, duration_s: float | None = None,
                 on_sample: SampleHook | None = None, clock: Clock = SYSTEM) -> None:
        self.config_path = config_path
        self.clock = clock
        self.once = once
        self.duration_s = duration_s
        self.on_sample = on_sample
        self.notifier = Notifier.from_env(clock)
        self.signals: asyncio.Queue[int] = asyncio.Queue()
        self.store: Store | None = None
        self.writer: BufferedWriter | None = None  # write-behind while the database refuses
        self.rt: Runtime | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.dispatcher: Any = None
        self.store_error: str | None = None
        self._wake_dispatcher = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.telemetry = Telemetry()
        self.health = VenueHealthBoard(clock, self.telemetry)
        self.http: HttpEndpoint | None = None
        self._last_prune = 0.0
        self._loop_beat = clock.monotonic()
        self._in_flight = 0
        self._out_of_order_warned: set[tuple[str, str]] = set()
        self.shard: Shard | None = None  # on a shared store: this instance's leases
        self._reclaimed = 0
        self._positions = PositionsWatch()  # the file, reread when it changes
        self.selector: Selector | None = None  # the venues' select: resolved

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> int:
        """Load the config, open the database, start the sources; 0 or the exit status."""
        try:
            config = runnable(load_config(self.config_path))
        except ConfigError as exc:
            for p in exc.problems:
                log.error("%s", p)
            log.error("configuration rejected: %d problem(s)", len(exc.problems))
            return 2
        except Exception as exc:  # a loader defect: still a bad config, not a restart loop
            log.error("%s: configuration rejected: unexpected %s while loading it",
                      self.config_path, type(exc).__name__)
            return 2
        self.selector = Selector(config, self.clock)
        config = await self.selector.resolve_all()
        try:
            self.store = open_store(config.store_location(), variants=config.column_metrics,
                                    busy_timeout_s=STORE_BUSY_S)
            self.writer = BufferedWriter(self.store)
        except StoreError as exc:
            log.error("%s", exc)
            return 1
        engine = Engine(config, self.store)
        if self.store.shared:  # the leases say which venues and groups are this instance's
            self.shard = Shard(self.store, config, self.clock, self.telemetry,
                               self._start_sources)
            engine.owned, engine.held_groups = set(), set()
        retired = Batch()  # alerts of rules no longer in the configuration: resolved
        engine.on_out_of_order = self._out_of_order
        restored = engine.restore(self.clock.now_ms(), retired)
        try:
            sources = await self._start_sources(config, only=engine.owned)
        except Exception as exc:  # e.g. a replay venue's recording cannot be read
            log.error("cannot start the sources: %s: %s", type(exc).__name__, exc)
            self.store.close()
            return 1
        self.rt = Runtime(config, engine, sources)
        self._write(retired)
        log.info("config %s: %d venue(s), %d rule(s); database %s (%d samples of history)",
                 config.path, len(config.settings.venues), len(config.rules), self.store.path,
                 restored)
        self.dispatcher = self._make_dispatcher(config)
        if self.shard is not None:
            await self.shard.tick(config, engine, sources)
        return 0

    async def sample_all(self) -> None:
        """One cycle of every venue, concurrently."""
        rt = self._rt()
        ts = self.clock.now_ms()
        await asyncio.gather(*(self._cycle(v.id, ts) for v in rt.config.settings.venues))

    async def close(self) -> None:
        rt = self._rt()
        await self._close_sources(rt.sources)
        if self.store is not None:
            self.store.close()
        self.notifier.close()

    async def run(self) -> int:
        status = await self.open()
        if status:
            return status
        if self.once:
            return await self._run_once()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:  # handlers only queue the signal; the main loop acts on it
                loop.add_signal_handler(sig, self.signals.put_nowait, sig)
            except (ValueError, RuntimeError):  # not the main thread (embedded use)
                log.debug("not handling %s outside the main thread", signal.Signals(sig).name)
        self._start_scheduler()
        self._spawn(self._dispatch_loop())
        await self.start_http()
        self.notifier.ready(self._status())
        try:
            await self._main_loop()
        finally:
            await self.shutdown()
        return 0

    async def start_http(self) -> None:
        """Serve ``/metrics`` and ``/healthz`` when configured (not for one cycle)."""
        listen = self._rt().config.settings.http.listen
        if listen and self.http is None:
            self.http = await start_endpoint(listen, self._metrics, self._health_detail,
                                             self.clock)

    async def _run_once(self) -> int:
        """One cycle; exit 0 if it left the daemon healthy (some venues may be down: they
        are named), else EXIT_UNHEALTHY."""
        await self.sample_all()
        if self.dispatcher is not None:
            await self.dispatcher.run_once(self.clock.now_ms(), grace_s=10.0, flush=True)
        ok, detail = self._health_detail()
        if ok:
            some_down = not all(v["up"] for v in detail["venues"].values())
            log.log(logging.WARNING if some_down else logging.INFO, "one cycle: %s",
                    detail["status"])
        else:
            log.error("one cycle: unhealthy: %s (%s)", "; ".join(detail["problems"]),
                      detail["status"])
        await self.close()
        return 0 if ok else EXIT_UNHEALTHY

    def _rt(self) -> Runtime:
        if self.rt is None:
            raise RuntimeError("daemon not started")
        return self.rt

    async def _main_loop(self) -> None:
        deadline = self.clock.monotonic() + self.duration_s if self.duration_s else None
        interval = self.notifier.watchdog_interval_s()
        tick = min(interval / 2.0, 1.0) if interval else 1.0
        while True:
            timeout = tick
            if deadline is not None:
                timeout = min(timeout, max(deadline - self.clock.monotonic(), 0.0))
            try:
                sig = await asyncio.wait_for(self.signals.get(), timeout)
            except TimeoutError:
                sig = None
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s: stopping", signal.Signals(sig).name)
                return
            if sig == signal.SIGHUP:
                await self.reload()
            if deadline is not None and self.clock.monotonic() >= deadline:
                log.info("duration reached: stopping")
                return
            if self._healthy():
                self.notifier.watchdog()
            self.notifier.status(self._status())

    def _healthy(self) -> bool:
        """Ping the watchdog only while the scheduler's jobs still run.

        The housekeeping job beats every second; if it has not run for a while the loop is
        wedged (or the scheduler died), and the missing pings let systemd restart us. A
        database that refuses writes is no reason to restart (a restart frees no disk): it
        shows in STATUS=, /healthz and an ops alert, and the writes are retried.
        """
        return self.clock.monotonic() - self._loop_beat < 10.0

    def _health_detail(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz`` and the exit status of ``run --once`` (see ``VenueHealthBoard.report``)."""
        stalled = self.scheduler is not None and not self._healthy()  # not with --once
        return self.health.report(self._venues_up(), stalled=stalled,
                                  store_error=self.store_error, status=self._status(),
                                  standby=self.shard is not None and not self._rt().sources,
                                  modes=source_modes(self._rt().sources))

    def _venues_up(self) -> dict[str, bool]:
        config = self._rt().config
        return self.health.up({v.id: config.stale_after_ms(v) for v in config.settings.venues})

    def _firing(self) -> dict[str, int]:
        firing: dict[str, int] = {}
        for (rule, _key), inst in self._rt().engine.instances.items():
            if inst.state == 2:
                firing[rule] = firing.get(rule, 0) + 1
        return firing

    def _metrics(self) -> bytes:
        reclaimed = getattr(self.dispatcher, "reclaimed", 0)
        if reclaimed > self._reclaimed:
            self.telemetry.reclaimed.inc(reclaimed - self._reclaimed)
            self._reclaimed = reclaimed
        self.telemetry.streams(self._rt().sources)
        return self.telemetry.scrape(self._firing(), self.store, self._venues_up(),
                                     self.store_error is None)

    def _status(self) -> str:
        if self.rt is None:
            return "starting"
        up = self._venues_up()
        if self.shard is not None and not self.rt.sources:
            return f"standby: instance {self.shard.id} holds no venue"
        if not up:
            return f"starting: {len(self.rt.config.settings.venues)} venue(s), no sample yet"
        line = status_line(up, sum(self._firing().values()), self.store_error,
                           source_modes(self.rt.sources))
        return line if self.shard is None else f"{line}; instance {self.shard.id}"

    async def shutdown(self) -> None:
        """Stop as at SIGTERM: cycles in flight finish, the outbox gets its grace period."""
        self.notifier.stopping()
        if self.scheduler is not None:
            self.scheduler.pause()
            # Let cycles in flight finish (they are bounded by the fetch timeout) so their
            # samples are written, then stop the scheduler.
            deadline = self.clock.monotonic() + STOP_GRACE_S
            while self._in_flight and self.clock.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.scheduler.shutdown(wait=False)
        if self.http is not None:
            await self.http.stop()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.dispatcher is not None:  # sends in flight get a bounded grace period
            await self._flush_outbox()
        if self.shard is not None:
            self.shard.leave()
        await self.close()
        log.info("stopped")

    async def _flush_outbox(self) -> None:
        """At a stop: finish the sends in flight, then send the groups still waiting (their
        ``group_wait``/``group_interval``), all within the delivery grace period."""
        assert self.dispatcher is not None
        deadline = self.clock.monotonic() + DELIVERY_GRACE_S
        await self.dispatcher.drain(DELIVERY_GRACE_S)
        try:
            self.dispatcher.start_due(self.clock.now_ms(), flush=True)
        except Exception as exc:  # the stop must go on
            log.error("outbox: %s: %s", type(exc).__name__, exc)
        await self.dispatcher.drain(max(0.0, deadline - self.clock.monotonic()))

    # -- reload -------------------------------------------------------------------------------

    async def reload(self) -> bool:
        self.notifier.reloading()
        self._rt()  # started
        try:  # off the loop: rendering the rules' templates may take their budget
            config = runnable(await asyncio.to_thread(load_config, self.config_path))
        except ConfigError as exc:
            for p in exc.problems:
                log.error("reload rejected: %s", p)
            log.error("reload rejected: %d problem(s); the previous configuration keeps running",
                      len(exc.problems))
            self.notifier.ready(self._status())
            return False
        except Exception as exc:  # a loader defect: the running configuration stays
            log.error("reload rejected: %s: unexpected %s while loading it; the previous "
                      "configuration keeps running", self.config_path, type(exc).__name__)
            self.notifier.ready(self._status())
            return False
        selector = Selector(config, self.clock)
        if self.selector is not None:
            selector.adopt(self.selector)
        self.selector = selector
        return await self._switch(await selector.resolve_all(), "reload")

    async def _reselect(self, venue_id: str) -> None:
        """Refresh a venue's selection; run on what it resolves to when that changed."""
        if self.selector is None or self.rt is None:
            return
        selector = self.selector
        symbols = await selector.refresh(venue_id, self.clock.now_ms())
        if symbols is not None and self.selector is selector and self.rt is not None:
            await self._switch(self.rt.config.with_symbols(venue_id, symbols), "selection")

    async def _switch(self, config: Config, why: str) -> bool:
        """Run on ``config`` from now on (a reload, a refreshed selection): windows and alert
        state carried over, alerts no longer covered resolved, changed venues restarted."""
        rt = self._rt()
        old_sources = rt.sources
        keep = {v.id for v in config.settings.venues
                if v in rt.config.settings.venues and v.id in old_sources}
        try:
            new = await self._start_sources(config, skip=keep, only=rt.engine.owned)
        except Exception as exc:  # e.g. a replay venue's file vanished since `check`
            log.error("%s rejected: %s: %s; the previous configuration keeps running",
                      why, type(exc).__name__, exc)
            self.notifier.ready(self._status())
            return False
        if self.store is not None:
            try:
                self.store.use_variants(config.column_metrics)
            except StoreError as exc:
                log.error("reload: %s", exc)
        engine = Engine(config, self.store)
        engine.on_out_of_order = self._out_of_order
        if rt.engine.owned is not None and rt.engine.held_groups is not None:  # shared store
            engine.owned, engine.held_groups = set(rt.engine.owned), set(rt.engine.held_groups)
        for metric in engine.adopt(rt.engine):
            log.info("reload: the z-score window of %s is not carried over (its definition "
                     "changed): rebuilt from the database unless its kernel changed",
                     metric)
        retired = Batch()
        engine.retire(self.clock.now_ms(), retired, rt.config)
        self._write(retired)
        for what, old_v, new_v in (
                ("storage", rt.config.store_location(), config.store_location()),
                ("http.listen", rt.config.settings.http.listen, config.settings.http.listen)):
            if old_v != new_v:
                log.warning("reload: %s changed; it takes effect at the next restart", what)
        sources = {k: s for k, s in old_sources.items() if k in keep}
        sources.update(new)
        await self._close_sources({k: s for k, s in old_sources.items() if k not in keep})
        self.rt = Runtime(config, engine, sources)
        self.health.retain(sources)
        if self.dispatcher is not None and config.settings.channels:
            self.dispatcher.configure(config)
        else:
            self.dispatcher = self._make_dispatcher(config)
        if self.scheduler is not None:
            self.scheduler.remove_all_jobs()
            self._add_jobs()
        if why == "reload":
            log.info("reloaded %s: %d venue(s), %d rule(s)", config.path,
                     len(config.settings.venues), len(config.rules))
        self.notifier.ready(self._status())
        return True

    # -- sources and sampling -----------------------------------------------------------------

    async def _start_sources(self, config: Config, only: set[str] | None = None,
                             skip: set[str] | None = None) -> dict[str, Source]:
        """The sources of the configured venues (``only`` these; not those to ``skip``)."""
        sources: dict[str, Source] = {}
        for venue in config.settings.venues:
            if (skip and venue.id in skip) or (only is not None and venue.id not in only):
                continue
            sources[venue.id] = make_source(venue, config, self.clock, self._ops_alert_titled)
        await asyncio.gather(*(s.start() for s in sources.values()))
        return sources

    @staticmethod
    async def _close_sources(sources: dict[str, Source]) -> None:
        for s in sources.values():
            with contextlib.suppress(Exception):
                await s.close()

    def _start_scheduler(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # A cycle still running when the next is due is skipped (max_instances=1). APScheduler
        # warns on every skip; say it once per venue instead, and count them in /metrics.
        logging.getLogger("apscheduler.executors.default").addFilter(NoSkipWarnings())
        logging.getLogger("apscheduler.scheduler").addFilter(NoSkipWarnings())
        self.scheduler.add_listener(self.health.skipped, EVENT_JOB_MAX_INSTANCES)
        self._add_jobs()
        self.scheduler.start()

    def _add_jobs(self) -> None:
        rt = self._rt()
        sched = self.scheduler
        if sched is None:
            return
        for venue in rt.config.settings.venues:
            interval = rt.config.interval_ms(venue) / 1000.0
            jitter = ms(rt.config.settings.sampling.jitter) / 1000.0
            sched.add_job(self._cycle, "interval", seconds=interval, args=[venue.id],
                          id=VENUE_JOB + venue.id, max_instances=1, coalesce=True,
                          jitter=jitter or None, misfire_grace_time=None,
                          next_run_time=self._soon(random.uniform(0, min(interval, 0.25))))
        sched.add_job(self.housekeeping, "interval", seconds=1.0, id="housekeeping",
                      max_instances=1, coalesce=True)

    async def _cycle(self, venue_id: str, ts: int | None = None) -> None:
        rt = self._rt()
        venue = next((v for v in rt.config.settings.venues if v.id == venue_id), None)
        source = rt.sources.get(venue_id)
        if venue is None or source is None:
            return
        start = self.clock.now_ms() if ts is None else ts
        if self.health.held_back(venue_id, start):
            return
        timeout_s = rt.config.timeout_ms(venue) / 1000.0 + 1.0
        self._in_flight += 1
        try:
            observations = await asyncio.gather(
                *(fetch(source, sym, start, timeout_s, self.clock) for sym in venue.symbols)
            )
            if self.rt is not rt or venue_id not in rt.sources:  # reloaded or lease lost
                return
            self.health.record(venue_id, observations)
            self._process(rt, observations, venue_id)
        finally:
            self._in_flight -= 1

    def _process(self, rt: Runtime, observations: list[Observation], venue: str) -> None:
        batch, samples = rt.engine.process(observations, self.clock.now_ms())
        batch.fence = self.shard.fence(venue) if self.shard is not None else {}
        self._write(batch)
        self.telemetry.observe(samples, rt.engine.z_metrics)
        if self.on_sample is not None:
            for s in samples:
                self.on_sample(s)

    def _out_of_order(self, obs: Observation, last_ms: int) -> None:
        """Count a sample dropped for not being newer than its series' last; warn once."""
        self.telemetry.dropped.labels(obs.venue, obs.symbol, "out_of_order").inc()
        if (obs.venue, obs.symbol) not in self._out_of_order_warned:
            self._out_of_order_warned.add((obs.venue, obs.symbol))
            log.warning("venue %s %s: a sample at %d is not after the series' last one at %d "
                        "(the clock went back?): dropped, as is every such sample (counted in "
                        "wis_samples_dropped_total)", obs.venue, obs.symbol, obs.ts_ms, last_ms)

    def _write(self, batch: Batch) -> None:
        """Write a batch, after any the database refused before (the writer keeps them in
        memory, in order, so no alert event is lost while the disk is full or locked)."""
        if self.writer is None:
            return
        out = self.writer.write(batch, self.clock.monotonic())
        self.store_error = self.writer.error
        if out.failed is not None:
            if out.first_failure:
                log.error("cannot write samples: %s", out.failed)
                self._ops_alert(f"wis-monitor cannot write its database: {out.failed}")
            self.notifier.status(self._status())
        if out.recovered:
            log.info("database writable again")
        if out.fenced:
            self.telemetry.fenced.inc(len(out.fenced))
            if self.shard is not None:
                rt = self._rt()
                stale = self.shard.step_down_all(out.fenced[0][1], rt.engine, rt.sources)
                self._spawn(self._close_sources(stale))
        for written in out.batches:
            for a in written.alerts:
                log.warning("alert %s", a.summary)
            if written.alerts:
                self._wake_dispatcher.set()

    def _ops_alert(self, text: str, title: str = "wis-monitor database error") -> None:
        """Tell the operators directly (the outbox lives in the database that just failed)."""
        if self.rt is not None:
            self._spawn(notify_operators(self.rt.config, title, text))

    def _ops_alert_titled(self, title: str, text: str) -> None:
        self._ops_alert(text, title)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of the daemon's (cancelled at the stop)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def housekeeping(self) -> None:
        """Every second: stale feeds, silences that end, retention; beats the watchdog."""
        self._loop_beat = self.clock.monotonic()
        rt = self._rt()
        if self.shard is not None:
            taken = await self.shard.tick(rt.config, rt.engine, rt.sources)
            self.health.retain(rt.sources)  # the venues sampled here
            for venue in taken:  # sampled now, not at their next turn
                with contextlib.suppress(JobLookupError):
                    if self.scheduler is not None:
                        self.scheduler.modify_job(VENUE_JOB + venue, next_run_time=self._soon(0))
        rt.engine.positions = self._positions.poll(rt.engine.positions, [
            (v.id, sym) for v in rt.config.settings.venues for sym in v.symbols])
        batch = Batch()
        now = self.clock.now_ms()
        for venue_id in self.selector.due(now) if self.selector is not None else ():
            self._spawn(self._reselect(venue_id))
        rt.engine.check_all_stale(now, batch)
        try:
            rt.engine.refresh_silences(now)
        except StoreError as exc:
            log.warning("cannot read silences: %s", exc)
        rt.engine.release_silenced(now, batch)
        if rt.engine.held_groups:  # members sampled elsewhere: evaluated on this timer
            rt.engine.evaluate_groups(now, batch)
        batch.fence = self.shard.fence(None) if self.shard is not None else {}
        self._write(batch)
        if self.store is not None and self.clock.monotonic() - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = self.clock.monotonic()
            retention = ms(rt.config.settings.storage.retention)
            try:
                n = self.store.prune(now - retention, limit=PRUNE_SLICE)
                if n >= PRUNE_SLICE:  # more to go: the next slice in a second
                    self._last_prune -= PRUNE_EVERY_S
                else:
                    self.store.maintain()
            except StoreError as exc:
                log.error("housekeeping: %s", exc)
                return
            if n:
                log.info("housekeeping: removed %d rows older than the retention", n)

    async def _dispatch_loop(self) -> None:
        """Send the outbox as soon as an alert is written, and every second for retries."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_dispatcher.wait(), 1.0)
            self._wake_dispatcher.clear()
            if self.dispatcher is None:
                continue
            try:
                self.dispatcher.start_due(self.clock.now_ms())
            except Exception as exc:  # the loop must outlive any one failure
                log.error("outbox: %s: %s", type(exc).__name__, exc)

    def _make_dispatcher(self, config: Config) -> Any:
        if not config.settings.channels or self.store is None:
            return None
        from wis_monitor.outbox import Dispatcher
        from wis_monitor.tools.chart import alert_chart

        return Dispatcher(config, self.store, clock=self.clock, chart=alert_chart,
                          owner=self.shard.id if self.shard is not None else "")

    def _soon(self, delay_s: float) -> Any:
        return utc(self.clock) + timedelta(seconds=delay_s)
