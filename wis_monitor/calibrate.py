"""Calibrating the weighting: how well does each kernel's WIS predict the next mid move?

For every series of good books (flags empty or only ``thin``) and every horizon ``h``, each book
at ``t`` is paired with the mid of the first book at or after ``t + h``. Pairs whose mid did not
move are dropped (ties in the move). Each kernel is scored by:

* **AUC**: the ROC area of WIS as a predictor of the sign of the move (Mann-Whitney U with
  average ranks for tied WIS values): 0.5 is a coin toss, 1.0 perfect;
* **IC**: the rank information coefficient, Spearman's correlation of WIS with the move.

Pairs of all series are pooled. Pure computation: no printing, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wis_monitor.book import BLOCKING_FLAGS, Book
from wis_monitor.signals import Kernel, Side, weighted_sum, wis, within_band
from wis_monitor.sources import Observation

Array = npt.NDArray[np.float64]


def default_grid(band_bps: float = 50.0) -> list[tuple[str, Kernel]]:
    grid = [(f"exponential {h:g} bps", Kernel("exponential", half_life_bps=h, band_bps=band_bps))
            for h in (0.5, 1, 2, 5, 10, 20, 50)]
    grid.append(("linear", Kernel("linear", band_bps=band_bps)))
    grid.append(("flat", Kernel("flat", band_bps=band_bps)))
    grid.extend((f"levels {h:g} levels", Kernel("levels", band_bps=band_bps, half_life_levels=h))
                for h in (1, 5, 20))
    return grid


@dataclass(frozen=True)
class Score:
    label: str
    kernel: Kernel
    horizon_ms: int
    n: int
    auc: float | None
    ic: float | None


@dataclass
class CalibrationResult:
    scores: list[Score] = field(default_factory=list)
    books: int = 0
    series: int = 0

    def horizons(self) -> list[int]:
        return sorted({s.horizon_ms for s in self.scores})

    def best(self, horizon_ms: int) -> Score | None:
        cands = [s for s in self.scores if s.horizon_ms == horizon_ms and s.auc is not None]
        return max(cands, key=lambda s: s.auc or 0.0) if cands else None

    def recommended_yaml(self, horizon_ms: int) -> str:
        best = self.best(horizon_ms)
        if best is None:
            return "# not enough data to recommend a kernel\n"
        k = best.kernel
        parts = [f"kernel: {k.kernel}"]
        if k.kernel == "exponential":
            parts.append(f"half_life_bps: {k.half_life_bps:g}")
        if k.kernel == "levels":
            parts.append(f"half_life_levels: {k.half_life_levels:g}")
        parts.append(f"band_bps: {k.band_bps:g}")
        return (f"# best at {horizon_ms / 1000:g}s: AUC {best.auc:.3f}, IC {best.ic:.3f}, "
                f"n={best.n}\nmetrics:\n  wis: {{{', '.join(parts)}}}\n")


def ranks(x: Array) -> Array:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    r = np.empty(len(x), dtype=np.float64)
    i = 0
    n = len(x)
    while i < n:
        j = i
        while j + 1 < n and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return r


def auc(scores: Array, positive: npt.NDArray[np.bool_]) -> float | None:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    r = ranks(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(a: Array, b: Array) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else None


def calibrate(observations: Iterable[Observation], horizons_ms: Sequence[int],
              kernels: Sequence[tuple[str, Kernel]] | None = None) -> CalibrationResult:
    grid = list(kernels or default_grid())
    widest = max(k.band_bps for _, k in grid)
    per_series: dict[tuple[str, str], list[tuple[int, float, Side, Side]]] = {}
    result = CalibrationResult()
    for obs in observations:
        result.books += 1
        if obs.book is None or obs.flags & BLOCKING_FLAGS:
            continue
        book: Book = obs.book
        mid = (float(book.bid_px[0]) + float(book.ask_px[0])) / 2.0
        bids = within_band(book.bid_px, book.bid_qty, mid, widest, book, True)
        asks = within_band(book.ask_px, book.ask_qty, mid, widest, book, False)
        per_series.setdefault((obs.venue, obs.symbol), []).append((obs.ts_ms, mid, bids, asks))
    result.series = len(per_series)
    # WIS of every kernel on every book, once.
    values: dict[tuple[str, str], dict[str, list[float | None]]] = {}
    for key, books in per_series.items():
        books.sort(key=lambda b: b[0])
        values[key] = {label: [wis(weighted_sum(b, k), weighted_sum(a, k))
                               for _, _, b, a in books] for label, k in grid}
    for h in horizons_ms:
        pairs: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, _ in grid}
        for key, books in per_series.items():
            ts = [b[0] for b in books]
            mids = [b[1] for b in books]
            for i, t in enumerate(ts):
                j = bisect.bisect_left(ts, t + h, lo=i + 1)
                if j >= len(ts):
                    break
                move = mids[j] - mids[i]
                if move == 0.0:
                    continue
                for label, _ in grid:
                    w = values[key][label][i]
                    if w is not None:
                        pairs[label][0].append(w)
                        pairs[label][1].append(move)
        for label, k in grid:
            w_arr = np.asarray(pairs[label][0], dtype=np.float64)
            m_arr = np.asarray(pairs[label][1], dtype=np.float64)
            result.scores.append(Score(label, k, h, len(w_arr), auc(w_arr, m_arr > 0),
                                       spearman(w_arr, m_arr)))
    return result


def render_table(result: CalibrationResult) -> str:
    lines = [f"{result.books} books, {result.series} series", ""]
    for h in result.horizons():
        lines.append(f"horizon {h / 1000:g}s")
        lines.append(f"  {'kernel':<24} {'n':>7} {'AUC':>7} {'IC':>7}")
        best = result.best(h)
        for s in sorted((s for s in result.scores if s.horizon_ms == h),
                        key=lambda s: -(s.auc or 0.0)):
            mark = "  <- best" if best is not None and s is best else ""
            auc_s = f"{s.auc:.3f}" if s.auc is not None else "-"
            ic_s = f"{s.ic:.3f}" if s.ic is not None else "-"
            lines.append(f"  {s.label:<24} {s.n:>7} {auc_s:>7} {ic_s:>7}{mark}")
        lines.append("")
    return "\n".join(lines)
