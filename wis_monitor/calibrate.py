"""Calibrating the weighting: how well does each kernel's WIS predict the next mid move?

For every series of good books (flags empty or only ``thin``) and every horizon ``h``, each book
at ``t`` is paired with the mid of the first book at or after ``t + h``. Pairs whose mid did not
move are dropped (ties in the move). Each kernel is scored by:

* **AUC**: the ROC area of WIS as a predictor of the sign of the move (Mann-Whitney U with
  average ranks for tied WIS values): 0.5 is a coin toss, 1.0 perfect;
* **IC**: the rank information coefficient, Spearman's correlation of WIS with the move.

Pairs of all series are pooled. Pure computation: no printing, no clock (a caller may pass a
progress callback, shown over the kernels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from wis_monitor.book import BLOCKING_FLAGS, Book
from wis_monitor.signals import Kernel, Side, weighted_sum, wis, within_band
from wis_monitor.sources import Observation

if TYPE_CHECKING:
    from wis_monitor.replay import Progress

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
              kernels: Sequence[tuple[str, Kernel]] | None = None,
              progress: Progress | None = None) -> CalibrationResult:
    """Score every kernel at every horizon; ``progress`` is shown over the kernels."""
    grid = list(kernels or default_grid())
    result = CalibrationResult()
    series = _good_books(observations, max(k.band_bps for _, k in grid), result)
    result.series = len(series)
    pairs = {h: [_pairs(books, h) for books in series] for h in horizons_ms}
    for label, k in progress(grid, "scoring kernels", len(grid)) if progress else grid:
        values = [np.array([_nan(wis(weighted_sum(b, k), weighted_sum(a, k)))
                            for _, _, b, a in books]) for books in series]
        for h in horizons_ms:
            w, move = _pooled(values, pairs[h])
            result.scores.append(Score(label, k, h, len(w), auc(w, move > 0),
                                       spearman(w, move)))
    result.scores.sort(key=lambda s: list(horizons_ms).index(s.horizon_ms))
    return result


_Book = tuple[int, float, Side, Side]


def _good_books(observations: Iterable[Observation], band_bps: float,
                result: CalibrationResult) -> list[list[_Book]]:
    """The good books of each series in time order, cut to the band; counts all books."""
    per_series: dict[tuple[str, str], list[_Book]] = {}
    for obs in observations:
        result.books += 1
        if obs.book is None or obs.flags & BLOCKING_FLAGS:
            continue
        book: Book = obs.book
        mid = (float(book.bid_px[0]) + float(book.ask_px[0])) / 2.0
        bids = within_band(book.bid_px, book.bid_qty, mid, band_bps, book, True)
        asks = within_band(book.ask_px, book.ask_qty, mid, band_bps, book, False)
        per_series.setdefault((obs.venue, obs.symbol), []).append((obs.ts_ms, mid, bids, asks))
    for books in per_series.values():
        books.sort(key=lambda b: b[0])
    return list(per_series.values())


def _pairs(books: Sequence[_Book], horizon_ms: int) -> tuple[npt.NDArray[np.intp], Array]:
    """Each book paired with the first one at or after ``t + horizon`` (the book itself
    excluded): the index of the earlier one and the mid move, moves of zero dropped."""
    ts = np.array([b[0] for b in books], dtype=np.int64)
    mids = np.array([b[1] for b in books], dtype=np.float64)
    i = np.arange(len(ts))
    j = np.maximum(np.searchsorted(ts, ts + horizon_ms, side="left"), i + 1)
    i, j = i[j < len(ts)], j[j < len(ts)]
    move = mids[j] - mids[i]
    return i[move != 0.0], move[move != 0.0]


def _pooled(values: Sequence[Array], pairs: Sequence[tuple[npt.NDArray[np.intp], Array]]
            ) -> tuple[Array, Array]:
    """WIS and move of the pairs of all series, pairs with a null WIS dropped."""
    ws, moves = [np.empty(0)], [np.empty(0)]
    for w, (i, move) in zip(values, pairs, strict=True):
        known = ~np.isnan(w[i])
        ws.append(w[i][known])
        moves.append(move[known])
    return np.concatenate(ws), np.concatenate(moves)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


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
