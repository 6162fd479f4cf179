"""One pipeline for the daemon, replay, the demo and the tests (SPEC §2).

Per observation: book -> signals -> stats -> sample -> rules -> alert events, collected into a
:class:`~wis_monitor.store.Batch` that the caller writes in one transaction. The engine keeps
no clock: every call takes ``now_ms``; only the source and the clock differ between modes.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wis_monitor.alerting import Event, Instance, State, Timing, interrupt, step
from wis_monitor.book import BLOCKING_FLAGS, Book, FloatArray, format_flags
from wis_monitor.config import FEED_STALE, Config, Metrics, Rule, Venue, split_member
from wis_monitor.duration import ms
from wis_monitor.errors import StoreError
from wis_monitor.signals import Kernel, TopLevels, change_bps, ofi_event, snapshot, top_levels
from wis_monitor.sources import Observation
from wis_monitor.stats import Ema, OfiWindow, SeriesStats
from wis_monitor.store import AlertRow, Batch, BookRow, Firing, SampleRow, Silence, Store

log = logging.getLogger("wis_monitor.engine")
_FIRST_NAME = re.compile(r"[a-z_][a-z0-9_]*")
TOP_LEVELS = 3
#: Ends the summary of a shadow rule's alert (also marked ``details.mode = "shadow"``).
SHADOW_MARK = " (shadow: not sent)"


@dataclass
class Series:
    """What the engine remembers of one (venue, symbol)."""

    venue: str
    symbol: str
    stats: SeriesStats
    stale_after_ms: int
    first_seen_ms: int
    metrics: Metrics
    interval_ms: int
    kernels: dict[str, Kernel] = field(init=False)
    ofi: OfiWindow = field(init=False)
    ofi_book: tuple[int, TopLevels] | None = None  # the order-flow chain's previous book
    smooth: dict[str, Ema] = field(init=False)
    last_values: dict[str, float | None] = field(default_factory=dict)
    last_book: Book | None = None
    book_since_ms: int | None = None  # when the current (identical) book was first seen
    last_quality: str = ""
    last_error: str | None = None
    last_ts_ms: int | None = None  # of the latest observation taken in: time only moves on
    key: str = ""  # venue:symbol, the alert key

    def __post_init__(self) -> None:
        self.key = f"{self.venue}:{self.symbol}"
        m = self.metrics
        self.kernels = m.kernels()
        self.ofi = OfiWindow(ms(m.ofi.window))
        self.smooth = {name: Ema(ms(sm.half_life), self.interval_ms)
                       for name, sm in m.smooth.items()}

    def order_flow(self, ts_ms: int, top: TopLevels | None) -> float | None:
        """The order-flow window sum with the book whose best levels are ``top`` (None: no
        good book, or the chain is too young); a gap longer than twice the interval, or no
        good book, breaks the chain."""
        prev = self.ofi_book
        if top is None:
            self.ofi_book = None
            return None
        self.ofi_book = (ts_ms, top)
        if prev is None or ts_ms - prev[0] > 2 * self.interval_ms:
            self.ofi.restart(ts_ms)
            return None
        return self.ofi.add(ts_ms, ofi_event(prev[1], top))

    def smoothed(self, ts_ms: int, values: dict[str, float | None]) -> dict[str, float | None]:
        """Push each smoothed metric's input (a null one is skipped: the average stays)."""
        out: dict[str, float | None] = {}
        for name, ema in self.smooth.items():
            x = values.get(self.metrics.smooth[name].of)
            out[name] = ema.value if x is None else ema.push(ts_ms, x)
        return out


@dataclass(frozen=True)
class Sample:
    """One processed observation: its numbers and quality flags."""

    ts_ms: int
    venue: str
    symbol: str
    values: dict[str, float | None]
    flags: frozenset[str]
    error: str | None

    @property
    def good(self) -> bool:
        return not (self.flags & BLOCKING_FLAGS)


def _levels(px: FloatArray, qty: FloatArray, n: int) -> list[tuple[float, float]]:
    """The first ``n`` (price, amount) levels of one side of a book."""
    return [(float(p), float(q)) for p, q in zip(px[:n], qty[:n], strict=True)]


def _value_metric(rule: Rule) -> str | None:
    for m in _FIRST_NAME.finditer(rule.spec.when):
        if m.group(0) in rule.when.metrics:
            return m.group(0)
    return None


class Engine:
    """Turns observations into samples and alert events for one configuration."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self.z_metrics = config.scored_metrics
        self._z_name = {m: f"{m}_z" for m in self.z_metrics}
        self._z_first = tuple(m for m in self.z_metrics if m not in config.settings.metrics.smooth)
        self._z_smooth = tuple(config.settings.metrics.smooth)
        self.zspec = config.settings.metrics.zscore.spec()
        self.venues: dict[str, Venue] = {v.id: v for v in config.settings.venues}
        self.series: dict[tuple[str, str], Series] = {}
        self.instances: dict[tuple[str, str], Instance] = {}
        self.silences: list[Silence] = []
        self.record_books = config.settings.storage.record_books
        self.record_bps = config.settings.storage.record_levels_bps
        self.series_rules = [r for r in config.rules if r.spec.scope == "series"]
        self.group_rules = [r for r in config.rules if r.spec.scope == "group"]
        self._rules_for: dict[tuple[str, str], list[Rule]] = {}
        self._rules = {r.name: r for r in config.rules}
        self._timing = {r.name: _timing(r) for r in config.rules}
        self._value_metric = {r.name: _value_metric(r) for r in config.rules}
        fs = config.settings.feed_stale
        self.feed_stale_enabled = fs.enabled
        self.feed_stale_channels = (
            list(fs.channels) if fs.channels is not None else list(config.settings.channels)
        )
        #: Told of each observation dropped for not being newer than its series' last one.
        self.on_out_of_order: Callable[[Observation, int], None] | None = None

    # -- state ------------------------------------------------------------------------------

    def series_for(self, venue: str, symbol: str, now_ms: int) -> Series:
        s = self.series.get((venue, symbol))
        if s is None:
            v = self.venues.get(venue)
            sampling = self.config.settings.sampling
            stale = (
                self.config.stale_after_ms(v) if v is not None
                else ms(sampling.stale_after) if sampling.stale_after is not None
                else max(3 * ms(sampling.interval), 30_000)
            )
            metrics = self.config.metrics_for(venue, symbol)
            interval = self.config.interval_ms(v) if v is not None else ms(sampling.interval)
            s = Series(venue, symbol, SeriesStats(self.z_metrics, metrics.zscore.spec()), stale,
                       now_ms, metrics, interval)
            self.series[(venue, symbol)] = s
            self._rules_for[(venue, symbol)] = [
                r for r in self.series_rules if r.matches(venue, symbol)
            ]
        return s

    def adopt(self, old: Engine) -> list[str]:
        """Carry windows and alert state over from a previous engine (reload).

        A series' metric keeps its z-score window unless its definition (kernel, order-flow or
        smoothing settings) or the series' z-score settings changed; order-flow chains and
        averages whose settings did not change go on too. A rule keeps its state (pending
        timer, firing), so editing a firing rule's runbook or threshold does not send `firing`
        again; :meth:`retire` then ends the alerts of rules removed or no longer covering
        their key. Returns the metrics whose windows were not carried over for some series:
        rebuilt from the store when only the z-score settings changed, empty otherwise.
        """
        fresh: set[str] = set()
        rewarm: dict[tuple[str, str], list[str]] = {}
        for key, s in old.series.items():
            if s.venue not in self.venues:
                continue  # the venue was removed
            new = self.series_for(s.venue, s.symbol, s.first_seen_ms)
            same_z = s.metrics.zscore == new.metrics.zscore
            for m in self.z_metrics:
                same = m in s.stats.scorers and _definition(s, m) == _definition(new, m)
                if same and same_z:
                    new.stats.scorers[m] = s.stats.scorers[m]
                    continue
                fresh.add(m)
                if same:
                    rewarm.setdefault(key, []).append(m)
            if s.metrics.ofi == new.metrics.ofi and s.interval_ms == new.interval_ms:
                new.ofi, new.ofi_book = s.ofi, s.ofi_book
            for name, ema in s.smooth.items():
                if name in new.smooth and _definition(s, name) == _definition(new, name):
                    new.smooth[name] = ema
            new.stats.last_good_ms, new.stats.last_mid = s.stats.last_good_ms, s.stats.last_mid
            new.last_values, new.last_book = s.last_values, s.last_book
            new.book_since_ms, new.first_seen_ms = s.book_since_ms, s.first_seen_ms
            new.last_quality, new.last_error = s.last_quality, s.last_error
            new.last_ts_ms = s.last_ts_ms
            self.series[key] = new
        self.instances.update(old.instances)  # what is no longer covered: see retire()
        self.silences = old.silences
        # Only the z-score settings changed: the logged values still hold, rebuild from them.
        self._rewarm(rewarm)
        return [m for m in self.z_metrics if m in fresh]

    def _rewarm(self, metrics: dict[tuple[str, str], list[str]]) -> None:
        if self.store is None or not metrics or not self.series:
            return
        newest = max(s.stats.last_good_ms or 0 for s in self.series.values())
        names = sorted({m for ms_ in metrics.values() for m in ms_})
        history = max(s.metrics.zscore.spec().history_ms() for s in self.series.values())
        for row in self.store.history(newest - history, names):
            key = (row["venue"], row["symbol"])
            s = self.series.get(key)
            if s is None:
                continue
            for m in metrics.get(key, ()):
                if row[m] is not None:
                    s.stats.scorers[m].push(int(row["ts"]), row[m])

    def restore(self, now_ms: int, batch: Batch | None = None) -> int:
        """Rebuild windows and alert state from the store; returns the samples replayed.

        The alerts the configuration no longer covers are resolved into ``batch``."""
        if self.store is None:
            return 0
        for (rule, key), data in self.store.alert_states().items():
            self.instances[(rule, key)] = Instance.from_json(data)
        configured = {(v.id, sym) for v in self.config.settings.venues for sym in v.symbols}
        since = now_ms - max([self.zspec.history_ms(), *(
            self.config.metrics_for(*key).zscore.spec().history_ms() for key in configured)])
        n = 0
        history: dict[tuple[str, str], int] = {}  # how far back each series' z-scores look
        for row in self.store.history(since, self._restored_columns()):
            series = (row["venue"], row["symbol"])
            if series not in configured:
                continue
            s = self.series_for(*series, int(row["ts"]))
            ts = int(row["ts"])
            if series not in history:
                history[series] = s.metrics.zscore.spec().history_ms()
            if ts >= now_ms - history[series]:
                s.stats.warm(ts, row)
            if row.get("bid_depth") is not None and row.get("ask_depth") is not None:
                row["depth"] = row["bid_depth"] + row["ask_depth"]
            s.smoothed(ts, row)
            s.stats.last_good_ms = ts
            s.stats.last_mid = row["mid"]
            n += 1
        last_good = self.store.last_good()
        for (venue, symbol), ts in self.store.first_samples(sorted(configured)).items():
            # Staleness goes on from the database: the last good sample, else the first one.
            s = self.series_for(venue, symbol, ts)
            s.first_seen_ms = min(s.first_seen_ms, ts)
            good = last_good.get((venue, symbol))
            if good is not None and (s.stats.last_good_ms is None or s.stats.last_good_ms < good):
                s.stats.last_good_ms = good
            s.last_ts_ms = s.stats.last_good_ms
        self.refresh_silences(now_ms)
        self.retire(now_ms, batch if batch is not None else Batch())
        return n

    def retire(self, now_ms: int, batch: Batch, old: Config | None = None) -> None:
        """Resolve the alerts of rules removed or renamed, of series and groups a rule no longer
        covers, and feed-stale turned off, saying why; ``old`` is the configuration they came
        from, when known (a reload). A pending one simply ends."""
        for (name, key), inst in list(self.instances.items()):
            reason = self._uncovered(name, key)
            if reason is None:
                continue
            del self.instances[(name, key)]
            if inst.state == State.INACTIVE:
                continue
            ended = Instance(State.INACTIVE, resolved_at_ms=now_ms, last_sent_ms=inst.last_sent_ms,
                             value=inst.value)
            batch.states[(name, key)] = ended.to_json()
            if inst.state == State.FIRING:
                batch.alerts.append(self._retired(name, key, inst, reason, now_ms, old))

    def _uncovered(self, name: str, key: str) -> str | None:
        """Why the configuration no longer evaluates (name, key), or None."""
        venue, symbol = split_member(key)
        if name == FEED_STALE:
            if not self.feed_stale_enabled:
                return "feed-stale turned off in the configuration"
            if symbol not in (v.symbols if (v := self.venues.get(venue)) else ()):
                return "series removed from the configuration"
            return None
        rule = self._rules.get(name)
        if rule is None:
            return "rule removed from the configuration"
        if rule.spec.scope == "group":
            return None if key == rule.spec.group else "group no longer evaluated by this rule"
        v = self.venues.get(venue)
        if v is None or symbol not in v.symbols or not rule.matches(venue, symbol):
            return "series no longer evaluated by this rule"
        return None

    def _retired(self, name: str, key: str, inst: Instance, reason: str, now_ms: int,
                 old: Config | None) -> AlertRow:
        """The `resolved` event of an alert the configuration no longer covers: to the channels
        its firing reached (as every resolved)."""
        rule = next((r for r in old.rules if r.name == name), None) if old is not None else None
        venue, symbol = split_member(key)
        venue_, symbol_ = (venue, symbol) if symbol else (None, None)
        mode = "live"
        if name == FEED_STALE:
            severity = self.config.settings.feed_stale.severity
            labels: dict[str, str] = {}
            channels = self.feed_stale_channels
        elif rule is not None:
            severity, labels = rule.spec.severity, dict(rule.spec.labels)
            channels = rule.channels if rule.spec.notify_resolved else []
            mode = rule.spec.mode
        else:  # a restart: what the database says of its firing
            fired = self._last_firing(name, key)
            severity = fired.severity if fired else "warning"
            labels = fired.labels if fired else {}
            channels = fired.delivered if fired else []
            mode = fired.mode if fired else "live"
        where = " ".join(x for x in (venue_, symbol_) if x) or key
        details: dict[str, Any] = {"reason": reason}
        if inst.fired_at_ms is not None:
            details["fired_for_ms"] = now_ms - inst.fired_at_ms
        summary = f"[{severity.upper()}] {name} {where} resolved ({reason})"
        if name != FEED_STALE and mode == "shadow":
            summary, details["mode"] = summary + SHADOW_MARK, "shadow"
        return AlertRow(now_ms, name, key, venue_, symbol_, "resolved", severity, inst.value,
                        summary, labels, details, channels)

    def _last_firing(self, name: str, key: str) -> Firing | None:
        if self.store is None:
            return None
        try:
            return self.store.last_firing(name, key)
        except StoreError as exc:
            log.warning("cannot read the firing of %s %s: %s", name, key, exc)
            return None

    def _restored_columns(self) -> list[str]:
        """The logged columns a restart reads: the z-scored metrics and what is smoothed."""
        out = list(self.z_metrics)
        for sm in self.config.settings.metrics.smooth.values():
            for col in ("bid_depth", "ask_depth") if sm.of == "depth" else (sm.of,):
                if col not in out:
                    out.append(col)
        return out

    def refresh_silences(self, now_ms: int) -> None:
        if self.store is not None:
            self.silences = self.store.active_silences(now_ms)

    # -- the pipeline -----------------------------------------------------------------------

    def process(self, observations: Iterable[Observation], now_ms: int | None = None,
                batch: Batch | None = None) -> tuple[Batch, list[Sample]]:
        """Run observations through signals, stats and rules; ``now_ms`` defaults to each ts.

        An observation not newer than its series' last one is dropped: it has no sample."""
        batch = batch if batch is not None else Batch()
        samples: list[Sample] = []
        for obs in observations:
            if not self._in_time_order(obs):
                continue
            sample = self.sample(obs)
            samples.append(sample)
            if sample.good and self.record_books and obs.book is not None:
                batch.books.append(self._book_row(obs))
            self.ingest(sample, batch, now_ms if now_ms is not None else obs.ts_ms)
        if self.group_rules and samples:
            self.evaluate_groups(now_ms if now_ms is not None else samples[-1].ts_ms, batch,
                                 {(s.venue, s.symbol) for s in samples})
        return batch, samples

    def _in_time_order(self, obs: Observation) -> bool:
        """Take ``obs`` in only when it is newer than its series' last observation.

        An older one (two recordings of one series, a wall-clock step back, a restart onto a
        database written ahead of the clock) would enter windows holding later values; it is
        dropped and reported to ``on_out_of_order`` instead.
        """
        s = self.series_for(obs.venue, obs.symbol, obs.ts_ms)
        last = s.last_ts_ms
        if last is not None and obs.ts_ms <= last:
            if self.on_out_of_order is not None:
                self.on_out_of_order(obs, last)
            return False
        s.last_ts_ms = obs.ts_ms
        return True

    def ingest(self, sample: Sample, batch: Batch, now_ms: int) -> None:
        """Log a sample and run the series rules and the feed check on it."""
        batch.samples.append(self._row(sample))
        s = self.series_for(sample.venue, sample.symbol, sample.ts_ms)
        s.last_quality = format_flags(sample.flags) if sample.flags else ""
        s.last_error = sample.error
        previous = s.stats.last_good_ms
        if sample.good:
            s.stats.last_good_ms = sample.ts_ms
            s.last_values = sample.values
        self._check_stale(s, now_ms, batch)  # first: a good sample resolves feed-stale
        if sample.good and not self._feed_stale_firing(s.key):
            # No good sample for stale_after before this one: pending runs start over.
            gap = previous is not None and sample.ts_ms - previous >= s.stale_after_ms
            self._evaluate_series(s, sample, batch, gap)

    def sample(self, obs: Observation) -> Sample:
        """Signals and z-scores of one observation (updates the series' windows)."""
        s = self.series_for(obs.venue, obs.symbol, obs.ts_ms)
        flags = set(obs.flags)
        book = obs.book
        values: dict[str, float | None] = {"latency_ms": obs.latency_ms}
        last_good = s.stats.last_good_ms
        values["age_s"] = (obs.ts_ms - last_good) / 1000.0 if last_good is not None else None
        if book is not None and not (flags & BLOCKING_FLAGS):
            if s.last_book is not None and book.same_levels(s.last_book):
                since = s.book_since_ms if s.book_since_ms is not None else obs.ts_ms
                if obs.ts_ms - since >= s.stale_after_ms:
                    flags.add("stale")
            else:
                s.book_since_ms = obs.ts_ms
            s.last_book = book
            if book.venue_ts_ms is not None and obs.ts_ms - book.venue_ts_ms >= s.stale_after_ms:
                flags.add("stale")
        snap = None
        if book is not None and not (flags & BLOCKING_FLAGS):
            wis = s.metrics.wis
            snap = snapshot(book, s.kernels, wis.band_bps, symmetric=wis.symmetric)
            metrics: dict[str, float | None] = dict(
                mid=snap.mid, spread_bps=snap.spread_bps, imbalance=snap.imbalance,
                microprice=snap.microprice, bid_depth=snap.bid_depth, ask_depth=snap.ask_depth,
                depth=snap.depth, mid_change_bps=change_bps(s.stats.last_mid, snap.mid),
                coverage_bps=snap.coverage_bps, **snap.wis,
            )
            top = top_levels(book, s.metrics.ofi.levels)
            if not (all(v is None or math.isfinite(v) for v in metrics.values())
                    and math.isfinite(sum(top.bid_notional) + sum(top.ask_notional))):
                flags.add("invalid")  # prices or amounts so large that a metric overflowed
                snap = None
        ofi = s.order_flow(obs.ts_ms, top if snap is not None else None)
        if snap is not None:
            if snap.thin:
                flags.add("thin")
            values.update(metrics, ofi=ofi)
            self._score(s, obs.ts_ms, values, self._z_first)
            if s.smooth:
                values.update(s.smoothed(obs.ts_ms, values))
                self._score(s, obs.ts_ms, values, self._z_smooth)
            s.stats.last_mid = snap.mid
        elif book is not None and (mid := book.mid) and math.isfinite(mid):
            # Informative only: a crossed or stale book still has a mid and a spread.
            values["mid"] = mid
            values["spread_bps"] = (float(book.ask_px[0]) - float(book.bid_px[0])) / mid * 1e4
        frozen = frozenset(flags)
        return Sample(obs.ts_ms, obs.venue, obs.symbol, values, frozen, obs.error)

    def _score(self, s: Series, ts_ms: int, values: dict[str, float | None],
               metrics: tuple[str, ...]) -> None:
        for name, z in s.stats.update(ts_ms, values, metrics).items():
            values[self._z_name[name]] = z

    def _row(self, sample: Sample) -> SampleRow:
        return SampleRow(sample.ts_ms, sample.venue, sample.symbol, sample.values,
                         format_flags(sample.flags) if sample.flags else "", sample.error)

    def _book_row(self, obs: Observation) -> BookRow:
        book = obs.book
        if book is None:
            raise ValueError("no book to record")
        mid = book.mid or 0.0
        reach = mid * self.record_bps / 1e4
        nb = int((book.bid_px >= mid - reach).sum())
        na = int((book.ask_px <= mid + reach).sum())
        bids = np.column_stack((book.bid_px[:nb], book.bid_qty[:nb]))
        asks = np.column_stack((book.ask_px[:na], book.ask_qty[:na]))
        return BookRow(obs.ts_ms, obs.venue, obs.symbol, bids, asks, book.contract_size,
                       bool(book.inverse))

    # -- rules ------------------------------------------------------------------------------

    def _feed_stale_firing(self, key: str) -> bool:
        inst = self.instances.get((FEED_STALE, key))
        return inst is not None and inst.state == State.FIRING

    def _evaluate_series(self, s: Series, sample: Sample, batch: Batch, gap: bool) -> None:
        values = sample.values
        instances = self.instances
        for rule in self._rules_for[(s.venue, s.symbol)]:
            truth = _truth(rule.when.evaluate(values))
            inst = instances.get((rule.name, s.key))
            if truth is not True and (inst is None or inst.state == State.INACTIVE):
                continue  # inactive and staying so: nothing to record
            clear = None  # only a firing alert looks at `clear` (hysteresis)
            if inst is not None and inst.state == State.FIRING:
                clear = _truth(rule.clear.evaluate(values)) if rule.clear is not None else \
                    _negate(truth)
            value = self.rule_value(rule, values)
            self._advance(rule.name, s.key, rule.spec.severity, rule, sample.ts_ms, truth, clear,
                          value, batch, s.venue, s.symbol, values, gap=gap)

    def rule_value(self, rule: Rule, values: dict[str, float | None]) -> float | None:
        """The number a series rule reports: its `value` expression, else its first metric."""
        if rule.value is not None:
            v = rule.value.evaluate(values)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        name = self._value_metric.get(rule.name)
        return values.get(name) if name else None

    def evaluate_groups(self, now_ms: int, batch: Batch,
                        sampled: set[tuple[str, str]] | None = None) -> None:
        """Evaluate group rules over each group's latest good samples: the rules of the groups
        a member of which was just ``sampled`` (default: all)."""
        for rule in self.group_rules:
            group = rule.spec.group or ""
            if sampled is not None and sampled.isdisjoint(self.config.group_members(group)):
                continue
            members: list[dict[str, float | None]] = []
            names: list[str] = []
            for venue, symbol in self.config.group_members(group):
                s = self.series.get((venue, symbol))
                if s is None or s.stats.last_good_ms is None or not s.last_values:
                    continue
                if now_ms - s.stats.last_good_ms >= s.stale_after_ms:
                    continue  # no good sample for stale_after: left out until it recovers
                members.append(s.last_values)  # a failed fetch keeps its last good values
                names.append(s.key)
            inst = self.instances.get((rule.name, group))
            if not members:  # nothing current to judge by: a pending run breaks, nothing else
                if inst is not None and inst.state == State.PENDING:
                    ended = interrupt(inst)
                    self.instances[(rule.name, group)] = ended
                    batch.states[(rule.name, group)] = ended.to_json()
                continue
            truth = _truth(rule.when.evaluate_group(members))
            if truth is not True and (inst is None or inst.state == State.INACTIVE):
                continue
            clear = None
            if inst is not None and inst.state == State.FIRING:
                clear = _truth(rule.clear.evaluate_group(members)) if rule.clear is not None \
                    else _negate(truth)
            value = None
            if rule.value is not None:
                v = rule.value.evaluate_group(members)
                value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
            detail = {"members": {n: _public(m) for n, m in zip(names, members, strict=True)}}
            self._advance(rule.name, group, rule.spec.severity, rule, now_ms, truth, clear,
                          value, batch, None, None, detail)

    def _check_stale(self, s: Series, now_ms: int, batch: Batch) -> None:
        if not self.feed_stale_enabled:
            return
        good = s.stats.last_good_ms
        last = good if good is not None else s.first_seen_ms
        stale = now_ms - last >= s.stale_after_ms
        inst = self.instances.get((FEED_STALE, s.key))
        if not stale and (inst is None or inst.state == State.INACTIVE):
            return
        # Only a good sample newer than the firing resolves it (a restart is no good sample).
        fired = inst.fired_at_ms if inst is not None else None
        recovered = good is not None and (fired is None or good > fired)
        details = self._feed_details(s, now_ms)
        self._advance(FEED_STALE, s.key, self.config.settings.feed_stale.severity, None, now_ms,
                      stale, not stale and recovered, details["age_s"], batch, s.venue, s.symbol,
                      details)

    @staticmethod
    def _feed_details(s: Series, now_ms: int) -> dict[str, Any]:
        last = s.stats.last_good_ms if s.stats.last_good_ms is not None else s.first_seen_ms
        return {"age_s": (now_ms - last) / 1000.0, "quality": s.last_quality,
                "error": s.last_error}

    def check_all_stale(self, now_ms: int, batch: Batch) -> None:
        """The feed-stale rule for every known series (run on a timer, not only on samples)."""
        for s in self.series.values():
            self._check_stale(s, now_ms, batch)

    def _advance(self, name: str, key: str, severity: str, rule: Rule | None, ts_ms: int,
                 when: bool | None, clear: bool | None, value: float | None, batch: Batch,
                 venue: str | None, symbol: str | None, details: dict[str, Any],
                 gap: bool = False) -> None:
        inst = self.instances.get((name, key)) or _INACTIVE
        timing = self._timing.get(name, _FEED_TIMING) if rule is not None else _FEED_TIMING
        new, event = step(interrupt(inst) if gap else inst, timing, ts_ms, when=when,
                          clear=clear, value=value)
        if event is not None:
            row = self._alert(name, key, severity, rule, event, venue, symbol, details)
            shadow = rule is not None and rule.spec.mode == "shadow"
            if event.kind == "firing":  # a shadow rule's alert fires unannounced too
                new = replace(new, silenced=row.silenced_by is not None or shadow)
            elif event.kind == "repeat" and new.silenced and row.silenced_by is None and \
                    not shadow:
                # The first notification to get through a silence announces the alert.
                new = replace(new, silenced=False)
                row = self._alert(name, key, severity, rule, replace(event, kind="firing"),
                                  venue, symbol, details)
            batch.alerts.append(row)
        if new != inst:
            self.instances[(name, key)] = new
            batch.states[(name, key)] = new.to_json()

    def release_silenced(self, now_ms: int, batch: Batch) -> None:
        """Send `firing` for the alerts firing unannounced whose silence has ended, or whose
        rule went from shadow to live."""
        for (name, key), inst in list(self.instances.items()):
            if inst.state != State.FIRING or not inst.silenced:
                continue
            rule = self._rules.get(name)
            if rule is None and name != FEED_STALE:
                continue  # retire() resolves it
            if rule is not None and rule.spec.mode == "shadow":
                continue
            venue, symbol = split_member(key)
            s = self.series.get((venue, symbol)) if symbol else None
            if rule is not None:
                severity = rule.spec.severity
                details = dict(s.last_values) if s is not None else {}
            else:
                severity = self.config.settings.feed_stale.severity
                details = self._feed_details(s, now_ms) if s is not None else {}
            event = Event("firing", now_ms, inst.active_at_ms, inst.fired_at_ms, inst.value)
            row = self._alert(name, key, severity, rule, event, venue if symbol else None,
                              symbol or None, details)
            if row.silenced_by is None:
                new = replace(inst, silenced=False, last_sent_ms=now_ms)
                self.instances[(name, key)] = new
                batch.states[(name, key)] = new.to_json()
                batch.alerts.append(row)

    def _alert(self, name: str, key: str, severity: str, rule: Rule | None, event: Event,
               venue: str | None, symbol: str | None, details: dict[str, Any]) -> AlertRow:
        labels = dict(rule.spec.labels) if rule is not None else {}
        where = " ".join(x for x in (venue, symbol) if x) or key
        value = event.value
        shown = f" value={value:.4g}" if value is not None else ""
        summary = f"[{severity.upper()}] {name} {where} {event.kind}{shown}"
        d: dict[str, Any] = {"values": _public(details) if rule is not None and venue else details}
        if rule is not None:
            band = self.config.metrics_for(venue, symbol).wis.band_bps if venue and symbol \
                else None
            d.update(description=rule.spec.description, runbook=rule.spec.runbook,
                     when=rule.spec.when, depth_band_bps=band,
                     value_of=rule.spec.value or (self._value_metric.get(name) if venue
                                                  else None))
            if venue and symbol:
                d["group_peers"] = self._peers(venue, symbol)
                s = self.series.get((venue, symbol))
                if s is not None:
                    b = s.stats.scorers.get("wis")
                    base = b.baseline() if b is not None else None
                    if base is not None:
                        d["baseline"] = {"n": base.n, "mean": base.center, "std": base.scale}
                    if s.last_book is not None:  # the best levels, in book order
                        book = s.last_book
                        d["top_bids"] = _levels(book.bid_px, book.bid_qty, TOP_LEVELS)
                        d["top_asks"] = _levels(book.ask_px, book.ask_qty, TOP_LEVELS)
        if event.kind == "resolved" and event.fired_at_ms is not None:
            d["fired_for_ms"] = event.ts_ms - event.fired_at_ms
        if rule is not None and rule.spec.mode == "shadow":
            summary, d["mode"] = summary + SHADOW_MARK, "shadow"
        channels = rule.channels if rule is not None else self.feed_stale_channels
        row = AlertRow(event.ts_ms, name, key, venue, symbol, event.kind, severity, value,
                       summary, labels, d, channels)
        row.silenced_by = self._silenced(row)
        return row

    def _peers(self, venue: str, symbol: str) -> dict[str, dict[str, float | None]]:
        me = f"{venue}:{symbol}"
        out: dict[str, dict[str, float | None]] = {}
        for members in self.config.settings.groups.values():
            if me not in members:
                continue
            for m in members:
                if m == me:
                    continue
                s = self.series.get(split_member(m))
                if s is not None and s.last_values:
                    out[m] = {k: s.last_values.get(k) for k in ("wis", "wis_z", "mid")}
        return out

    def _silenced(self, row: AlertRow) -> int | None:
        for sil in self.silences:
            if not fnmatch.fnmatchcase(row.rule, sil.rule or "*"):
                continue
            if sil.created_ms > row.ts_ms or sil.expires_ms <= row.ts_ms:
                continue
            fields = {"venue": row.venue or "", "symbol": row.symbol or "", "key": row.key,
                      "severity": row.severity, **row.labels}
            if all(fnmatch.fnmatchcase(fields.get(k, ""), str(v))
                   for k, v in sil.matchers.items()):
                return sil.id
        return None


_FEED_TIMING = Timing(notify_resolved=True)
_INACTIVE = Instance()


def _timing(rule: Rule) -> Timing:
    sp = rule.spec
    return Timing(ms(sp.for_), ms(sp.keep_firing_for), ms(sp.repeat), ms(sp.cooldown),
                  sp.notify_resolved)


def _definition(s: Series, metric: str) -> object:
    """What a scored metric of a series is computed from (equal: the same numbers)."""
    m = s.metrics
    if metric == "ofi":
        return m.ofi, s.interval_ms
    if metric in m.smooth:
        return m.smooth[metric], s.interval_ms, _definition(s, m.smooth[metric].of)
    if metric.endswith("_z"):
        return m.zscore, _definition(s, metric.removesuffix("_z"))
    if metric in ("bid_depth", "ask_depth", "depth", "coverage_bps"):
        return m.wis.band_bps, m.wis.symmetric
    return s.kernels.get(metric)  # a WIS kernel; None for the other companions


def _truth(v: object) -> bool | None:
    """A condition's value: True, False or None (unknown)."""
    return v if isinstance(v, bool) else None


def _negate(truth: bool | None) -> bool | None:
    return None if truth is None else not truth


def _public(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
