"""Alert rates: the thresholds of a metric that fire about N times per period on a recording,
counted in episodes (``calibrate --alert-rate``), computed by the replay pipeline."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wis_monitor.config import Config
from wis_monitor.sources import Observation

Array = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class MetricSeries:
    venue: str
    symbol: str
    ts: npt.NDArray[np.int64]
    values: Array  # NaN where the metric is null (or the sample not good)

    @property
    def hours(self) -> float:
        return float(self.ts[-1] - self.ts[0]) / 3_600_000 if len(self.ts) > 1 else 0.0


def metric_series(config: Config, observations: Iterable[Observation], metric: str
                  ) -> tuple[list[MetricSeries], set[str]]:
    """The values of ``metric`` per series, computed by the replay pipeline (the engine with
    ``config``'s metrics and z-scores); also every metric name the pipeline produced."""
    from wis_monitor.engine import Engine

    engine = Engine(config)
    seen: dict[tuple[str, str], list[tuple[int, float]]] = {}
    names: set[str] = set()
    for obs in observations:
        for sample in engine.process((obs,), obs.ts_ms)[1]:
            names.update(k for k, v in sample.values.items() if v is not None)
            v = sample.values.get(metric) if sample.good else None
            seen.setdefault((sample.venue, sample.symbol), []).append(
                (sample.ts_ms, float("nan") if v is None else float(v)))
    out = []
    for (venue, symbol), rows in seen.items():
        rows.sort(key=lambda r: r[0])
        out.append(MetricSeries(venue, symbol, np.array([r[0] for r in rows], dtype=np.int64),
                                np.array([r[1] for r in rows])))
    return out, names


def episodes(ts: npt.NDArray[np.int64], hit: Bools, for_ms: int = 0) -> int:
    """How many runs of consecutive ``hit`` samples last at least ``for_ms`` (from the run's
    first sample to its last): each is one alert, however many samples it holds."""
    if not hit.any():
        return 0
    edges = np.diff(np.r_[0, hit.astype(np.int8), 0])
    first, last = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return int(((ts[last] - ts[first]) >= for_ms).sum())


@dataclass(frozen=True)
class Threshold:
    side: str  # "above", "below" or "abs"
    threshold: float | None  # None: the recording never gets there
    episodes: int
    rate_per_h: float


def propose_threshold(ms_: MetricSeries, side: str, rate_per_h: float, for_ms: int
                      ) -> Threshold:
    """The most extreme threshold that fires at least ``rate_per_h`` (at least one episode) on
    the recording: ``x >= T`` above, ``x <= T`` below, ``|x| >= T`` abs. Every threshold
    between the value reached and the next less extreme one fires the same samples: the
    roundest of them is given."""
    x = ms_.values
    known = ~np.isnan(x)
    signed = {"above": x, "below": -x, "abs": np.abs(x)}[side]
    need = max(1, math.ceil(rate_per_h * ms_.hours - 1e-9))
    levels = np.unique(signed[known])[::-1]
    for i, t in enumerate(levels):
        n = episodes(ms_.ts, known & (signed >= t), for_ms)
        if n >= need:
            below = float(levels[i + 1]) if i + 1 < len(levels) else float(t) - abs(float(t))
            value = roundest(below, float(t))
            return Threshold(side, 0.0 - value if side == "below" else value, n,
                             n / ms_.hours if ms_.hours else math.inf)
    return Threshold(side, None, 0, 0.0)


def roundest(lo: float, hi: float) -> float:
    """The number with the fewest significant digits in ``(lo, hi]``."""
    if lo < 0.0 <= hi:
        return 0.0
    for digits in range(1, 17):
        scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(hi)))) if hi else 1.0
        candidate = math.floor(hi * scale) / scale
        if lo < candidate <= hi:
            return candidate
    return hi


def iter_thresholds(series: Sequence[MetricSeries], rate_per_h: float, for_ms: int
                    ) -> Iterator[tuple[MetricSeries, list[Threshold]]]:
    for s in series:
        yield s, [propose_threshold(s, side, rate_per_h, for_ms)
                  for side in ("above", "below", "abs")]
