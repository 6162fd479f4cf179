"""What the engine remembers of one (venue, symbol), and how a book of it becomes numbers:
signals (pure, :mod:`~wis_monitor.signals`), then the series' windows — z-scores, the
order-flow chain, smoothed averages (:mod:`~wis_monitor.stats`). No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wis_monitor.alerting import Feed
from wis_monitor.book import BLOCKING_FLAGS, Book
from wis_monitor.duration import ms
from wis_monitor.impact import impacts, unwind_bps
from wis_monitor.signals import Kernel, TopLevels, change_bps, ofi_event, snapshot, top_levels
from wis_monitor.sources import Observation
from wis_monitor.stats import Ema, OfiWindow, SeriesStats

if TYPE_CHECKING:
    from wis_monitor.settings import Metrics


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
    position: float | None = None  # the desk's, when the latest observation was measured
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

    def adopt(self, old: Series, scored: Iterable[str]) -> tuple[set[str], list[str]]:
        """Take over what ``old`` (this series under the previous configuration) knows: the
        windows and averages computed the same way, the latest book and values. Returns the
        scored metrics whose windows start afresh, and those of them that only the z-score
        settings changed (the logged values still hold: they can be rebuilt)."""
        fresh: set[str] = set()
        rewarm: list[str] = []
        same_z = old.metrics.zscore == self.metrics.zscore
        for m in scored:
            same = m in old.stats.scorers and old.definition(m) == self.definition(m)
            if same and same_z:
                self.stats.scorers[m] = old.stats.scorers[m]
                continue
            fresh.add(m)
            if same:
                rewarm.append(m)
        if old.metrics.ofi == self.metrics.ofi and old.interval_ms == self.interval_ms:
            self.ofi, self.ofi_book = old.ofi, old.ofi_book
        for name, ema in old.smooth.items():
            if name in self.smooth and old.definition(name) == self.definition(name):
                self.smooth[name] = ema
        self.stats.last_good_ms, self.stats.last_mid = old.stats.last_good_ms, old.stats.last_mid
        self.last_values, self.last_book = old.last_values, old.last_book
        self.book_since_ms, self.first_seen_ms = old.book_since_ms, old.first_seen_ms
        self.last_quality, self.last_error = old.last_quality, old.last_error
        self.last_ts_ms, self.position = old.last_ts_ms, old.position
        return fresh, rewarm

    def feed(self, now_ms: int) -> Feed:
        """What the feed-stale rule judges this series by at ``now_ms``."""
        good = self.stats.last_good_ms
        age = now_ms - (good if good is not None else self.first_seen_ms)
        return Feed(age, self.stale_after_ms, good)

    def feed_details(self, now_ms: int) -> dict[str, Any]:
        """What an alert of the feed-stale rule shows."""
        return {"age_s": self.feed(now_ms).age_ms / 1000.0, "quality": self.last_quality,
                "error": self.last_error}

    def definition(self, metric: str) -> object:
        """What a scored metric of the series is computed from (equal: the same numbers)."""
        m = self.metrics
        if metric == "ofi":
            return m.ofi, self.interval_ms
        if metric in m.smooth:
            return m.smooth[metric], self.interval_ms, self.definition(m.smooth[metric].of)
        if metric.endswith("_z"):
            return m.zscore, self.definition(metric.removesuffix("_z"))
        if metric in ("bid_depth", "ask_depth", "depth", "coverage_bps"):
            return m.wis.band_bps, m.wis.symmetric
        if metric in m.impact_metrics():
            return "impact", m.impact.sizes[metric.split("_impact_", 1)[1]]
        return self.kernels.get(metric)  # a WIS kernel; None for the other companions

    def measure(self, obs: Observation, z_first: tuple[str, ...], z_smooth: tuple[str, ...],
                position: float | None = None) -> tuple[dict[str, float | None], frozenset[str]]:
        """The signals and z-scores of an observation of this series, and its quality flags
        (updates the windows): ``z_first`` are scored before smoothing, ``z_smooth`` after;
        ``position``: the desk's (signed, in the book's amount unit), for ``unwind_bps``."""
        self.position = position
        flags = set(obs.flags)
        book = obs.book
        values: dict[str, float | None] = {"latency_ms": obs.latency_ms,
                                           "book_age_ms": obs.book_age_ms,
                                           "drift_bps": obs.drift_bps}
        last_good = self.stats.last_good_ms
        values["age_s"] = (obs.ts_ms - last_good) / 1000.0 if last_good is not None else None
        if book is not None and not (flags & BLOCKING_FLAGS):
            if self.last_book is not None and book.same_levels(self.last_book):
                since = self.book_since_ms if self.book_since_ms is not None else obs.ts_ms
                if obs.ts_ms - since >= self.stale_after_ms:
                    flags.add("stale")
            else:
                self.book_since_ms = obs.ts_ms
            self.last_book = book
            if book.venue_ts_ms is not None and obs.ts_ms - book.venue_ts_ms >= self.stale_after_ms:
                flags.add("stale")
        snap = None
        if book is not None and not (flags & BLOCKING_FLAGS):
            wis = self.metrics.wis
            snap = snapshot(book, self.kernels, wis.band_bps, symmetric=wis.symmetric)
            metrics: dict[str, float | None] = dict(
                mid=snap.mid, spread_bps=snap.spread_bps, imbalance=snap.imbalance,
                microprice=snap.microprice, bid_depth=snap.bid_depth, ask_depth=snap.ask_depth,
                depth=snap.depth, mid_change_bps=change_bps(self.stats.last_mid, snap.mid),
                coverage_bps=snap.coverage_bps, **snap.wis,
                unwind_bps=unwind_bps(book, position) if position else None,
                **impacts(book, self.metrics.impact.sizes),
            )
            top = top_levels(book, self.metrics.ofi.levels)
            if not (all(v is None or math.isfinite(v) for v in metrics.values())
                    and math.isfinite(sum(top.bid_notional) + sum(top.ask_notional))):
                flags.add("invalid")  # prices or amounts so large that a metric overflowed
                snap = None
        ofi = self.order_flow(obs.ts_ms, top if snap is not None else None)
        if snap is not None:
            if snap.thin:
                flags.add("thin")
            if any(metrics[m] is None for m in self.metrics.impact_metrics()):
                flags.add("short")  # the returned levels cannot fill a size
            values.update(metrics, ofi=ofi)
            self._score(obs.ts_ms, values, z_first)
            if self.smooth:
                values.update(self.smoothed(obs.ts_ms, values))
                self._score(obs.ts_ms, values, z_smooth)
            self.stats.last_mid = snap.mid
        elif book is not None and (mid := book.mid) and math.isfinite(mid):
            # Informative only: a crossed or stale book still has a mid and a spread.
            values["mid"] = mid
            values["spread_bps"] = (float(book.ask_px[0]) - float(book.bid_px[0])) / mid * 1e4
        return values, frozenset(flags)

    def _score(self, ts_ms: int, values: dict[str, float | None],
               metrics: tuple[str, ...]) -> None:
        for name, z in self.stats.update(ts_ms, values, metrics).items():
            values[f"{name}_z"] = z
