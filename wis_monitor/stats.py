"""Rolling z-scores per (venue, symbol, metric) — SPEC §4.

The window of a sample at ``ts`` holds the values of good samples with ``ts'`` in
``[ts - window, ts)``: strictly before, so a spike does not dilute its own score. Values that
share the current timestamp join the window only once time moves on.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Method = Literal["rolling", "ewma", "robust"]
MAD_SCALE = 1.4826
TINY_STD = 1e-12
#: Rebuild when the spread left in the running sums falls below this share of them: the
#: subtraction then loses more than about 7 of the 16 significant digits of a double.
_TRUSTED = 1e-6
EWMA_HISTORY_HALF_LIVES = 40


@dataclass(frozen=True, slots=True)
class ZScoreSpec:
    """How a metric's z-score is computed."""

    window_ms: int = 3_600_000
    min_samples: int = 30
    method: Method = "rolling"
    half_life_ms: int = 600_000  # ewma only
    #: No z until the samples behind it span this long (the configuration's default: half
    #: the window).
    min_history_ms: int = 0

    def history_ms(self) -> int:
        """How far back logged values rebuild this z-score after a restart: the window, or for
        ``ewma`` so many half-lives that what is left out weighs under 1e-12 (2**-40), and at
        least the warm-up span."""
        if self.method == "ewma":
            return max(EWMA_HISTORY_HALF_LIVES * self.half_life_ms, self.min_history_ms)
        return self.window_ms


@dataclass(frozen=True, slots=True)
class Baseline:
    """The window a z-score was measured against."""

    n: int
    center: float
    scale: float


class Scorer(Protocol):
    def score(self, ts_ms: int, x: float) -> float | None: ...
    def push(self, ts_ms: int, x: float) -> None: ...
    def baseline(self) -> Baseline | None: ...


class _TimeWindow:
    """The values of ``[ts - window, ts)``; subclasses keep statistics as values come and go."""

    def __init__(self, spec: ZScoreSpec) -> None:
        self.window_ms = spec.window_ms
        self.min_samples = spec.min_samples
        self.min_history_ms = spec.min_history_ms
        self._q: deque[tuple[int, float]] = deque()
        self._pending: list[tuple[int, float]] = []  # values of the latest timestamp

    def __len__(self) -> int:
        return len(self._q)

    def _added(self, x: float) -> None:
        raise NotImplementedError

    def _removed(self, x: float) -> None:
        raise NotImplementedError

    def baseline(self) -> Baseline | None:
        raise NotImplementedError

    def _advance(self, ts_ms: int) -> None:
        if self._pending and self._pending[0][0] < ts_ms:
            self._flush()
        lo = ts_ms - self.window_ms
        q = self._q
        while q and q[0][0] < lo:
            self._removed(q.popleft()[1])

    def _flush(self) -> None:
        for item in self._pending:
            self._q.append(item)
            self._added(item[1])
        self._pending.clear()

    def score(self, ts_ms: int, x: float) -> float | None:
        """The z-score of ``x`` at ``ts_ms`` against the window before it (None for inf/NaN,
        or while the window spans less than the warm-up)."""
        self._advance(ts_ms)
        if not self._q or ts_ms - self._q[0][0] < self.min_history_ms:
            return None
        b = self.baseline()
        if b is None or b.scale < TINY_STD or not math.isfinite(x):
            return None
        return (x - b.center) / b.scale

    def push(self, ts_ms: int, x: float) -> None:
        """Add a good sample's value (it counts for later samples only); inf and NaN never
        enter: one would make every score of the window null."""
        if not math.isfinite(x):
            return
        if self._pending and self._pending[-1][0] != ts_ms:
            self._flush()
        self._pending.append((ts_ms, x))


class RollingZ(_TimeWindow):
    """Mean and sample standard deviation (ddof=1) over a time window, O(1) amortised.

    Running sums are shifted by a reference value and rebuilt exactly from the window (with the
    window's mean as the new reference) once as many values have left it as it holds, or when
    the spread left in the sums is too small against them to be trusted (the mean moved far from
    the reference: a level shift, or a series that went flat). Both bound rounding error at
    O(1) amortised cost.
    """

    def __init__(self, spec: ZScoreSpec) -> None:
        super().__init__(spec)
        self._ref = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._removed_n = 0
        self._exact = False  # the sums were just rebuilt from the window

    def _added(self, x: float) -> None:
        if len(self._q) == 1:
            self._ref = x
            self._s1 = self._s2 = 0.0
            self._removed_n = 0
        d = x - self._ref
        self._s1 += d
        self._s2 += d * d
        self._exact = False

    def _removed(self, x: float) -> None:
        d = x - self._ref
        self._s1 -= d
        self._s2 -= d * d
        self._exact = False
        self._removed_n += 1
        if self._removed_n > len(self._q):
            self._rebuild()

    def _rebuild(self) -> None:
        self._removed_n = 0
        self._exact = True
        if not self._q:
            self._s1 = self._s2 = 0.0
            return
        self._ref = math.fsum(x for _, x in self._q) / len(self._q)
        self._s1 = math.fsum(x - self._ref for _, x in self._q)
        self._s2 = math.fsum((x - self._ref) ** 2 for _, x in self._q)

    def baseline(self) -> Baseline | None:
        n = len(self._q)
        if n < max(self.min_samples, 2):
            return None
        mean_d = self._s1 / n
        ss = self._s2 - n * mean_d * mean_d
        if ss < self._s2 * _TRUSTED and not self._exact:
            self._rebuild()
            mean_d = self._s1 / n
            ss = self._s2 - n * mean_d * mean_d
        var = ss / (n - 1)
        std = math.sqrt(var) if var > 0.0 else 0.0
        return Baseline(n, self._ref + mean_d, std)


class EwmaZ:
    """Exponentially weighted mean and variance with a time half-life, bias-corrected.

    A value ``dt`` older than the latest weighs ``2 ** (-dt / half_life)``. With ``W`` the sum
    of the weights of the values seen and ``V2`` the sum of their squares, the mean is the
    weighted mean (``Σ w x / W``: no pull toward a starting value) and the variance
    ``Σ w (x − mean)² / (W − V2 / W)``, unbiased for reliability weights (with equal weights,
    the sample variance). Updated in O(1) by West's weighted recurrence; ``W² − V2`` is kept as
    ``2 Σ_{i<j} w_i w_j``, a sum of positive terms, so that it does not cancel when the old
    weights are tiny.
    """

    def __init__(self, spec: ZScoreSpec) -> None:
        self.half_life_ms = spec.half_life_ms
        self.min_samples = spec.min_samples
        self.min_history_ms = spec.min_history_ms
        self.n = 0
        self.w = 0.0  # W: the sum of the weights
        self.pairs = 0.0  # Σ_{i<j} w_i w_j = (W² − V2) / 2
        self.mean = 0.0
        self.m2 = 0.0  # Σ w (x - mean)²
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def baseline(self) -> Baseline | None:
        if self.n < max(self.min_samples, 2):
            return None
        denom = 2.0 * self.pairs / self.w  # W − V2 / W
        var = self.m2 / denom if denom > 0.0 else 0.0
        return Baseline(self.n, self.mean, math.sqrt(max(var, 0.0)))

    def score(self, ts_ms: int, x: float) -> float | None:
        if self.first_ms is None or ts_ms - self.first_ms < self.min_history_ms:
            return None
        b = self.baseline()
        if b is None or b.scale < TINY_STD or not math.isfinite(x):
            return None
        return (x - b.center) / b.scale

    def push(self, ts_ms: int, x: float) -> None:
        if not math.isfinite(x):
            return  # as in a time window: inf and NaN never enter
        if self.last_ms is None or self.first_ms is None:
            self.first_ms = ts_ms
            decay = 1.0
        else:
            dt = max(ts_ms - self.last_ms, 0)
            decay = 2.0 ** (-dt / self.half_life_ms) if dt else 1.0
        old_w = decay * self.w  # the weight of what came before, now
        self.pairs = decay * (decay * self.pairs + self.w)
        self.w = old_w + 1.0
        diff = x - self.mean
        self.mean += diff / self.w
        # West: + diff * (x - new mean), with x - new mean = diff * old_w / W (no cancelling)
        self.m2 = decay * self.m2 + diff * diff * old_w / self.w
        self.n += 1
        self.last_ms = ts_ms


class RobustZ(_TimeWindow):
    """Median and ``1.4826 * MAD`` over the time window.

    Keeping the window sorted makes inserts O(log n) searches plus a memmove; the MAD itself is
    O(n) per score, the one variant that is not O(1) amortised.
    """

    def __init__(self, spec: ZScoreSpec) -> None:
        super().__init__(spec)
        self._sorted: list[float] = []

    def _added(self, x: float) -> None:
        bisect.insort(self._sorted, x)

    def _removed(self, x: float) -> None:
        del self._sorted[bisect.bisect_left(self._sorted, x)]

    def baseline(self) -> Baseline | None:
        n = len(self._sorted)
        if n < max(self.min_samples, 1):
            return None
        arr = np.asarray(self._sorted)
        med = float(np.median(arr))
        mad = float(np.median(np.abs(arr - med)))
        return Baseline(n, med, MAD_SCALE * mad)


def make_scorer(spec: ZScoreSpec) -> Scorer:
    if spec.method == "ewma":
        return EwmaZ(spec)
    if spec.method == "robust":
        return RobustZ(spec)
    return RollingZ(spec)


class Ema:
    """An exponential moving average with a half-life in time, exact on irregular samples.

    A value arriving ``Δt`` after the previous one gets weight ``α = 1 − 2^(−Δt/h)`` and every
    older weight is multiplied by ``2^(−Δt/h)``; the first value gets the weight of one sampling
    ``interval``. The average is divided by the total weight seen (bias-corrected start), so it
    is the weighted mean of the values so far, with no pull toward 0 at the start.
    """

    def __init__(self, half_life_ms: int, interval_ms: int) -> None:
        self.half_life_ms = half_life_ms
        self.interval_ms = interval_ms
        self.num = 0.0
        self.den = 0.0
        self.last_ms: int | None = None

    @property
    def value(self) -> float | None:
        return self.num / self.den if self.den > 0.0 else None

    def push(self, ts_ms: int, x: float) -> float | None:
        """Add a value; returns the average including it."""
        dt = self.interval_ms if self.last_ms is None else max(ts_ms - self.last_ms, 0)
        decay = 2.0 ** (-dt / self.half_life_ms)
        alpha = 1.0 - decay
        self.num = decay * self.num + alpha * x
        self.den = decay * self.den + alpha
        self.last_ms = ts_ms
        return self.value


class OfiWindow:
    """The sum of the order-flow events of ``(t − window, t]`` on one unbroken chain of books.

    Null until the chain has lasted a whole window (a partial sum would read as calm).
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.start_ms: int | None = None  # the first book of the chain
        self._ts: deque[int] = deque()
        self._events: deque[float] = deque()

    def restart(self, ts_ms: int) -> None:
        """Break the chain: a new one starts with the book at ``ts_ms``."""
        self.start_ms = ts_ms
        self._ts.clear()
        self._events.clear()

    def add(self, ts_ms: int, e: float) -> float | None:
        """Add the event of the book at ``ts_ms``; returns the window's sum, or None."""
        times, events = self._ts, self._events
        times.append(ts_ms)
        events.append(e)
        lo = ts_ms - self.window_ms
        while times[0] <= lo:
            times.popleft()
            events.popleft()
        if self.start_ms is None or ts_ms - self.start_ms < self.window_ms:
            return None
        return math.fsum(events)


class SeriesStats:
    """Everything remembered about one (venue, symbol): z-score windows and the last good sample."""

    def __init__(self, metrics: tuple[str, ...], spec: ZScoreSpec) -> None:
        self.scorers: dict[str, Scorer] = {m: make_scorer(spec) for m in metrics}
        self.last_good_ms: int | None = None
        self.last_mid: float | None = None

    def update(self, ts_ms: int, values: dict[str, float | None],
               metrics: Iterable[str] | None = None) -> dict[str, float | None]:
        """Score each metric (default: all) of a good sample, then let it into the windows.
        Returns the z's."""
        out: dict[str, float | None] = {}
        for metric in self.scorers if metrics is None else metrics:
            scorer = self.scorers[metric]
            x = values.get(metric)
            if x is None:
                out[metric] = None
                continue
            out[metric] = scorer.score(ts_ms, x)
            scorer.push(ts_ms, x)
        return out

    def warm(self, ts_ms: int, values: dict[str, float | None]) -> None:
        """Feed a historical good sample (restart), without scoring it."""
        for metric, scorer in self.scorers.items():
            x = values.get(metric)
            if x is not None:
                scorer.push(ts_ms, x)
