"""One pipeline for the daemon, replay, the demo and the tests (SPEC §2).

Per observation: book -> signals and stats (:mod:`~wis_monitor.series`) -> sample -> each
rule's :class:`~wis_monitor.alerting.Evaluator` -> alert events, told by
:mod:`~wis_monitor.enrich` and collected into a :class:`~wis_monitor.store.Batch` that the
caller writes in one transaction. The engine keeps no clock: every call takes ``now_ms``; only
the source and the clock differ between modes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from operator import methodcaller
from typing import Any

from wis_monitor.across import Across, across_venues, quote_of, same_quote
from wis_monitor.alerting import (
    Evaluator,
    Event,
    FeedStaleRule,
    Instance,
    State,
    Timing,
    Transition,
)
from wis_monitor.book import Book, format_flags
from wis_monitor.config import Config
from wis_monitor.duration import ms
from wis_monitor.enrich import Context, describe, peers, public, retired, where
from wis_monitor.errors import StoreError
from wis_monitor.expr import Expr, Members
from wis_monitor.rulefile import FEED_STALE, Rule
from wis_monitor.series import Sample as Sample  # what the engine makes of an observation
from wis_monitor.series import Series
from wis_monitor.settings import Venue, split_member
from wis_monitor.sources import Observation
from wis_monitor.stats import SeriesStats
from wis_monitor.store import AlertRow, Batch, BookRow, Firing, SampleRow, Silence, Store

log = logging.getLogger("wis_monitor.engine")
_FIRST_NAME = re.compile(r"[a-z_][a-z0-9_]*")


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
        self._rules_for: dict[tuple[str, str], list[tuple[Rule, Evaluator[Any]]]] = {}
        self._rules = {r.name: r for r in config.rules}
        self._evaluators = {r.name: _evaluator(r) for r in config.rules}
        self._feed = FeedStaleRule(FEED_STALE)
        self._value_metric = {r.name: _value_metric(r) for r in config.rules}
        fs = config.settings.feed_stale
        self.feed_stale_enabled = fs.enabled
        self.feed_stale_channels = (
            list(fs.channels) if fs.channels is not None else list(config.settings.channels)
        )
        #: Told of each observation dropped for not being newer than its series' last one.
        self.on_out_of_order: Callable[[Observation, int], None] | None = None
        #: On a shared store: the venues and groups whose leases this instance holds (None:
        #: all, one instance). The others' series and alerts are their holders' business.
        self.owned: set[str] | None = None
        self.held_groups: set[str] | None = None
        self._member_columns: list[str] | None = None
        self.positions = config.positions  # replaced when the positions file changes

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
                (r, self._evaluators[r.name]) for r in self.series_rules if r.matches(venue, symbol)
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
            if s.venue not in self.venues or s.symbol not in self.venues[s.venue].symbols:
                continue  # the venue or the symbol was removed
            new = self.series_for(s.venue, s.symbol, s.first_seen_ms)
            afresh, same = new.adopt(s, self.z_metrics)
            fresh.update(afresh)
            if same:
                rewarm[key] = same
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
        n = self._restore(now_ms, self.owned, self.held_groups)
        self.refresh_silences(now_ms)
        self.retire(now_ms, batch if batch is not None else Batch())
        return n

    def take_over(self, venues: set[str], groups: set[str], now_ms: int) -> int:
        """This instance now holds these venues' and groups' leases: carry on from the store
        (alert state, pending timers, z-score windows) where their previous holder left off."""
        if self.owned is not None:
            self.owned |= venues
        if self.held_groups is not None:
            self.held_groups |= groups
        return self._restore(now_ms, venues, groups) if self.store is not None else 0

    def step_down(self, venues: set[str], groups: set[str]) -> None:
        """Another instance holds these now: forget their series and alert state."""
        if self.owned is not None:
            self.owned -= venues
        if self.held_groups is not None:
            self.held_groups -= groups
        for key in [k for k in self.series if k[0] in venues]:
            del self.series[key]
            self._rules_for.pop(key, None)
        for held in [k for k in self.instances if _covers(k[1], venues, groups)]:
            del self.instances[held]

    def _restore(self, now_ms: int, venues: set[str] | None, groups: set[str] | None) -> int:
        """Alert state and windows of these venues and groups (None: every one) from the
        store; returns the samples replayed."""
        assert self.store is not None
        for (rule, key), data in self.store.alert_states().items():
            if venues is None or _covers(key, venues, groups or set()):
                self.instances[(rule, key)] = Instance.from_json(data)
        configured = {(v.id, sym) for v in self.config.settings.venues for sym in v.symbols
                      if venues is None or v.id in venues}
        if not configured:
            return 0
        since = now_ms - max([self.zspec.history_ms(), *(
            self.config.metrics_for(*key).zscore.spec().history_ms() for key in configured)])
        n = 0
        history: dict[tuple[str, str], int] = {}  # how far back each series' z-scores look
        for row in self.store.history(since, self._restored_columns(), venues):
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
        if symbol and (v := self.venues.get(venue)) and v.select and symbol not in v.symbols:
            return "series left the venue's selection (expired, or no longer within it)"
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
        fired_for = now_ms - inst.fired_at_ms if inst.fired_at_ms is not None else None
        summary, details = retired(severity, name, where(venue_, symbol_, key), reason,
                                   fired_for, name != FEED_STALE and mode == "shadow")
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
                batch.books.append(BookRow.within(obs.book, obs.ts_ms, obs.venue, obs.symbol,
                                                  self.record_bps))
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
        values, flags = s.measure(obs, self._z_first, self._z_smooth,
                                  self.positions.size(obs.venue, obs.symbol))
        return Sample(obs.ts_ms, obs.venue, obs.symbol, values, flags, obs.error)

    def _row(self, sample: Sample) -> SampleRow:
        return SampleRow(sample.ts_ms, sample.venue, sample.symbol, sample.values,
                         format_flags(sample.flags) if sample.flags else "", sample.error)

    # -- rules ------------------------------------------------------------------------------

    def _feed_stale_firing(self, key: str) -> bool:
        inst = self.instances.get((FEED_STALE, key))
        return inst is not None and inst.state == State.FIRING

    def _evaluate_series(self, s: Series, sample: Sample, batch: Batch, gap: bool) -> None:
        inputs = {s.key: sample.values}
        for rule, ev in self._rules_for[(s.venue, s.symbol)]:
            for t in ev.evaluate(sample.ts_ms, inputs, self.instances, restart=gap):
                self._commit(rule.name, rule, t, batch, s.venue, s.symbol, sample.values)

    def rule_value(self, rule: Rule, values: dict[str, float | None]) -> float | None:
        """The number a series rule reports: its `value` expression, else its first metric."""
        return self._evaluators[rule.name].value_of(values)

    def evaluate_groups(self, now_ms: int, batch: Batch,
                        sampled: set[tuple[str, str]] | None = None) -> None:
        """Evaluate group rules over each group's latest good samples: the rules of the groups
        a member of which was just ``sampled`` (default: all)."""
        for rule in self.group_rules:
            group = rule.spec.group or ""
            if self.held_groups is not None and group not in self.held_groups:
                continue  # another instance holds the group's lease
            if sampled is not None and sampled.isdisjoint(self.config.group_members(group)):
                continue
            members = self._current_members(group, now_ms)
            across = self._across(rule, members)
            inputs = {group: Members(members.values(), across.values) if members else None}
            for t in self._evaluators[rule.name].evaluate(now_ms, inputs, self.instances):
                detail = {"members": {n: public(m) for n, m in members.items()}}
                self._commit(rule.name, rule, t, batch, None, None, detail | across.detail)

    def _across(self, rule: Rule, members: dict[str, dict[str, float | None]]) -> Across:
        """Where a group rule on impacts finds each size cheapest, and its split impacts."""
        impact = self.config.settings.metrics.impact
        used = rule.when.metrics | (rule.value.metrics if rule.value is not None else set())
        if not any("_impact_" in m for m in used):
            return Across()
        books = {k: s.last_book for k in members if (s := self.series.get(split_member(k)))
                 is not None and s.last_book is not None}
        return across_venues(books, members, impact.sizes, impact.equal_quotes)

    def _current_members(self, group: str, now_ms: int) -> dict[str, dict[str, float | None]]:
        """The latest good values of the members of ``group`` that have a current one (a
        failed fetch keeps its last good values; none for stale_after: left out until it
        recovers)."""
        out = {}
        for venue, symbol in self.config.group_members(group):
            if self.owned is not None and venue not in self.owned:
                shared = self._shared_member(venue, symbol, now_ms)
                if shared is not None:
                    out[f"{venue}:{symbol}"] = shared
                continue
            s = self.series.get((venue, symbol))
            if s is None or s.stats.last_good_ms is None or not s.last_values:
                continue
            if now_ms - s.stats.last_good_ms < s.stale_after_ms:
                out[s.key] = s.last_values
        return out

    def _shared_member(self, venue: str, symbol: str, now_ms: int
                       ) -> dict[str, float | None] | None:
        """A group member sampled by another instance: its latest good sample in the shared
        store, if younger than its venue's ``stale_after`` (else unknown: left out)."""
        v = self.venues.get(venue)
        if self.store is None or v is None:
            return None
        if self._member_columns is None:
            self._member_columns = sorted(self.store.sample_columns() - {
                "ts", "venue", "symbol", "quality", "error"})
        try:
            row = self.store.latest_good(venue, symbol, self._member_columns)
        except StoreError as exc:
            log.warning("group member %s:%s: cannot read its latest sample: %s", venue, symbol,
                        exc)
            return None
        if row is None or now_ms - row.ts_ms >= self.config.stale_after_ms(v):
            return None
        values = dict(row.values)
        bid, ask = values.get("bid_depth"), values.get("ask_depth")
        if bid is not None and ask is not None:
            values["depth"] = bid + ask
        return values

    def _check_stale(self, s: Series, now_ms: int, batch: Batch) -> None:
        if not self.feed_stale_enabled:
            return
        for t in self._feed.evaluate(now_ms, {s.key: s.feed(now_ms)}, self.instances):
            self._commit(FEED_STALE, None, t, batch, s.venue, s.symbol, s.feed_details(now_ms))

    def check_all_stale(self, now_ms: int, batch: Batch) -> None:
        """The feed-stale rule for every known series (run on a timer, not only on samples)."""
        for s in self.series.values():
            self._check_stale(s, now_ms, batch)

    def _commit(self, name: str, rule: Rule | None, t: Transition, batch: Batch,
                venue: str | None, symbol: str | None, values: dict[str, Any]) -> None:
        """Record a transition of rule ``name`` (``rule`` None: feed-stale) and its event."""
        new, event = t.instance, t.event
        if event is not None:
            row = self._alert(name, t.key, rule, event, venue, symbol)
            shadow = rule is not None and rule.spec.mode == "shadow"
            if event.kind == "firing":  # a shadow rule's alert fires unannounced too
                new = replace(new, silenced=row.silenced_by is not None or shadow)
            elif event.kind == "repeat" and new.silenced and row.silenced_by is None and \
                    not shadow:
                # The first notification to get through a silence announces the alert.
                new = replace(new, silenced=False)
                event = replace(event, kind="firing")
                row.event = event.kind
            self._describe(row, rule, event, values)
            batch.alerts.append(row)
        self.instances[(name, t.key)] = new
        batch.states[(name, t.key)] = new.to_json()

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
            event = Event("firing", now_ms, inst.active_at_ms, inst.fired_at_ms, inst.value)
            row = self._alert(name, key, rule, event, venue if symbol else None, symbol or None)
            if row.silenced_by is not None:
                continue
            s = self.series.get((venue, symbol)) if symbol else None
            values = {} if s is None else dict(s.last_values) if rule is not None else \
                s.feed_details(now_ms)
            self._describe(row, rule, event, values)
            new = replace(inst, silenced=False, last_sent_ms=now_ms)
            self.instances[(name, key)] = new
            batch.states[(name, key)] = new.to_json()
            batch.alerts.append(row)

    def _alert(self, name: str, key: str, rule: Rule | None, event: Event, venue: str | None,
               symbol: str | None) -> AlertRow:
        """An alert event, and the silence keeping it back; :meth:`_describe` says the rest."""
        severity = rule.spec.severity if rule is not None else \
            self.config.settings.feed_stale.severity
        labels = dict(rule.spec.labels) if rule is not None else {}
        channels = rule.channels if rule is not None else self.feed_stale_channels
        row = AlertRow(event.ts_ms, name, key, venue, symbol, event.kind, severity, event.value,
                       "", labels, {}, channels)
        row.silenced_by = self._silenced(row)
        return row

    def _describe(self, row: AlertRow, rule: Rule | None, event: Event,
                  values: dict[str, Any]) -> None:
        """Fill in the summary and the details of an alert event (see :mod:`enrich`)."""
        ctx = Context(values)
        venue, symbol = row.venue, row.symbol
        if rule is not None and venue and symbol:  # a series rule
            s = self.series.get((venue, symbol))
            wis = s.stats.scorers.get("wis") if s is not None else None
            ctx = Context(public(values), self._value_metric.get(rule.name),
                          self.config.metrics_for(venue, symbol).wis.band_bps,
                          peers(row.key, self.config.settings.groups.values(), self._last_values),
                          wis.baseline() if wis is not None else None,
                          *((s.last_book, s.position, self._hedges(s)) if s is not None
                            else ()))
        row.summary, row.details = describe(event, row.severity, row.rule,
                                            where(venue, symbol, row.key),
                                            rule.spec if rule is not None else None, ctx)

    def _hedges(self, s: Series) -> dict[str, Book] | None:
        """The latest good books of the other members of the groups of ``s`` quoted alike."""
        if not s.position:
            return None
        equal = self.config.settings.metrics.impact.equal_quotes
        return {m: o.last_book for g in self.config.settings.groups.values() if s.key in g
                for m in g if m != s.key and (o := self.series.get(split_member(m))) is not None
                and o.last_book is not None
                and same_quote(quote_of(o.symbol), quote_of(s.symbol), equal)} or None

    def _last_values(self, member: str) -> dict[str, float | None] | None:
        s = self.series.get(split_member(member))
        return s.last_values if s is not None else None

    def _silenced(self, row: AlertRow) -> int | None:
        return next((sil.id for sil in self.silences if sil.mutes(row)), None)


def _covers(key: str, venues: set[str], groups: set[str]) -> bool:
    """Whether an alert's key (``venue:symbol``, or a group's name) is one of these."""
    venue, symbol = split_member(key)
    return venue in venues if symbol else key in groups


def _evaluator(rule: Rule) -> Evaluator[Any]:
    """A rule's expressions as an evaluator: on a sample's values (a series rule) or on the
    group members' (a group rule); its value is its `value` expression, else (a series rule)
    the first metric of its condition."""
    group = rule.spec.scope == "group"

    def fn(e: Expr) -> Callable[[Any], object]:
        return e.evaluate_group if group else e.evaluate

    metric = None if group else _value_metric(rule)
    value = fn(rule.value) if rule.value is not None else \
        methodcaller("get", metric) if metric is not None else None
    sp = rule.spec
    timing = Timing(ms(sp.for_), ms(sp.keep_firing_for), ms(sp.repeat), ms(sp.cooldown),
                    sp.notify_resolved)
    return Evaluator(rule.name, timing, fn(rule.when),
                     fn(rule.clear) if rule.clear is not None else None, value)
