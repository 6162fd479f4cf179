"""Calibrating the weighting: how well does each kernel's WIS predict the next mid move, and how
sure can we be?

Per series (venue, symbol) of good books (no flags but ``thin``) and every horizon ``h``, each
book at ``t`` is paired with the mid of the first book at or after ``t + h`` (with ``--target``,
the target series' mid at or after ``t + h`` over its mid at or before ``t``). The move is in
basis points, ``10,000 · (mid_after / mid_before − 1)``; pairs whose mid did not move are
dropped. Every WIS kernel of the grid, the series' current kernel and two baselines (the touch
``imbalance`` and the ``microprice`` offset from mid in bps) are scored by:

* **AUC**: the ROC area of the predictor for the sign of the move (Mann-Whitney U, tied values
  count half): 0.5 is a coin toss, 1.0 perfect;
* **IC**: the rank information coefficient, Spearman's correlation with the move in bps.

Intervals come from a moving-block bootstrap over the books of each series (blocks at least as
long as the horizon, so that overlapping moves stay together), seeded: the same input gives the
same intervals. Pure computation: no printing, no clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from wis_monitor.book import BLOCKING_FLAGS
from wis_monitor.signals import BPS, Kernel, snapshot
from wis_monitor.sources import Observation

if TYPE_CHECKING:
    from wis_monitor.tools.replay import Progress

Array = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.intp]
#: Bootstrap weights: per replicate (row), how many times each element is drawn.
Weights = npt.NDArray[np.integer[Any] | np.floating[Any]]

BASELINES = ("imbalance", "microprice")
CURRENT = "current"
REPLICATES = 500
SEED = 12
#: A side "reaches" the band when its farthest level is at least this share of it away.
REACH_TOLERANCE = 0.98
#: Coverage is worth a warning when more than this share of a series' books fall short.
SHORT_SHARE = 0.05
_CELLS = 2_000_000  # replicates × pairs computed at once (memory bound)


def default_grid(band_bps: float = 50.0) -> list[tuple[str, Kernel]]:
    grid = [(f"exponential {h:g} bps", Kernel("exponential", half_life_bps=h, band_bps=band_bps))
            for h in (0.5, 1, 2, 5, 10, 20, 50)]
    grid.append(("linear", Kernel("linear", band_bps=band_bps)))
    grid.append(("flat", Kernel("flat", band_bps=band_bps)))
    grid.extend((f"levels {h:g} levels", Kernel("levels", band_bps=band_bps, half_life_levels=h))
                for h in (1, 5, 20))
    return grid


# -- the statistics, weighted so that a bootstrap resample is a row of weights ---------------


def _groups(x: Array) -> tuple[Ints, Ints, Ints]:
    """The sort order of ``x``, where each group of tied values starts (in sorted
    positions), and each sorted position's group."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    start = np.r_[True, xs[1:] != xs[:-1]] if xs.size else np.zeros(0, dtype=bool)
    return order, np.flatnonzero(start), np.cumsum(start) - 1


def weighted_auc(x: Array, positive: Bools, w: Weights) -> Array:
    """AUC of ``x`` for ``positive`` per row of weights ``w`` (counts of each element in a
    resample): the AUC of the resampled data; NaN where a class is empty."""
    order, starts, _ = _groups(x)
    # elements × replicates, so that the reductions run along contiguous rows
    ws = w.T[order].astype(np.float64)
    pos = positive[order, None]
    pos_g = np.add.reduceat(ws * pos, starts, axis=0)
    neg_g = np.add.reduceat(ws * ~pos, starts, axis=0)
    below = np.cumsum(neg_g, axis=0) - neg_g
    num = (pos_g * (below + 0.5 * neg_g)).sum(axis=0)
    wp, wn = pos_g.sum(axis=0), neg_g.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((wp > 0) & (wn > 0), num / (wp * wn), np.nan)


def weighted_ranks(x: Array, w: Weights) -> Array:
    """Per row of weights, the average rank each element would have in the resample
    (transposed: elements × replicates)."""
    order, starts, group = _groups(x)
    gw = np.add.reduceat(w.T[order].astype(np.float64), starts, axis=0)
    rank_g = np.cumsum(gw, axis=0) - gw + (gw + 1.0) / 2.0
    out = np.empty((w.shape[1], w.shape[0]))
    out[order] = rank_g[group]
    return out


def weighted_spearman(a: Array, b: Array, w: Weights) -> Array:
    """Spearman's correlation of ``a`` and ``b`` per row of weights; NaN where undefined."""
    ra, rb, wt = weighted_ranks(a, w), weighted_ranks(b, w), w.T.astype(np.float64)
    total = wt.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = ra - (wt * ra).sum(axis=0) / total
        db = rb - (wt * rb).sum(axis=0) / total
        cov = (wt * da * db).sum(axis=0)
        den = np.sqrt((wt * da * da).sum(axis=0) * (wt * db * db).sum(axis=0))
        return np.where((den > 0) & (total >= 3), cov / den, np.nan)


def auc(scores: Array, positive: Bools) -> float | None:
    return _scalar(weighted_auc(scores, positive, np.ones((1, len(scores)))))


def spearman(a: Array, b: Array) -> float | None:
    return _scalar(weighted_spearman(a, b, np.ones((1, len(a)))))


def _scalar(v: Array) -> float | None:
    x = float(v[0])
    return None if math.isnan(x) else x


def block_weights(n: int, block: int, replicates: int, rng: np.random.Generator
                  ) -> Weights:
    """Moving-block bootstrap: per replicate, how many times each of ``n`` consecutive items
    is drawn when ``ceil(n / block)`` blocks of ``block`` items start at uniform positions.
    Counts are small integers (at most the number of blocks): stored compactly."""
    block = min(max(block, 1), n)
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(replicates, k))
    out = np.empty((replicates, n), dtype=np.uint16 if k < 2**16 else np.int64)
    step = max(1, _CELLS // (n + 1))
    for lo in range(0, replicates, step):
        part = starts[lo:lo + step]
        diff = np.zeros((len(part), n + 1), dtype=np.int64)
        rows = np.repeat(np.arange(len(part)), k)
        np.add.at(diff, (rows, part.ravel()), 1)
        np.add.at(diff, (rows, part.ravel() + block), -1)
        out[lo:lo + step] = np.cumsum(diff, axis=1)[:, :n]
    return out


# -- books, pairs and scores --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SeriesBooks:
    """The good books of one series in time order: their mids, every predictor's value (NaN
    when null) and the depth each book covers (the nearer side's farthest level, bps)."""

    venue: str
    symbol: str
    ts: npt.NDArray[np.int64]
    mid: Array
    values: dict[str, Array]
    reach_bps: Array
    kernels: dict[str, Kernel]
    current: Kernel  # the series' configured kernel (scored as CURRENT unless in the grid)

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"

    def step_ms(self) -> float:
        """The median time between books (their sampling interval)."""
        return float(np.median(np.diff(self.ts))) if len(self.ts) > 1 else 1.0


@dataclass(frozen=True)
class Coverage:
    """How far the books of a series reach against the band."""

    books: int
    band_bps: float
    median_reach_bps: float
    short_share: float  # share of books whose nearer side stops short of the band

    @property
    def warn(self) -> bool:
        return self.short_share > SHORT_SHARE


@dataclass(frozen=True, eq=False)
class Score:
    label: str
    kernel: Kernel | None  # None for a baseline
    horizon_ms: int
    n: int
    n_eff: float
    auc: float | None
    ic: float | None
    auc_ci: tuple[float, float] | None
    ic_ci: tuple[float, float] | None
    auc_boot: Array  # the bootstrap replicates, for paired comparisons


@dataclass
class Table:
    """The scores of the predictors of one series (or of the pooled series, or of one series
    against a target's moves)."""

    name: str
    venue: str | None
    symbol: str | None
    scores: list[Score] = field(default_factory=list)
    current: Kernel | None = None

    def at(self, horizon_ms: int) -> list[Score]:
        return [s for s in self.scores if s.horizon_ms == horizon_ms]

    def get(self, label: str, horizon_ms: int) -> Score | None:
        return next((s for s in self.at(horizon_ms) if s.label == label), None)

    def current_score(self, horizon_ms: int) -> Score | None:
        """The score of the current kernel (a grid row when the grid has it)."""
        return next((s for s in self.at(horizon_ms)
                     if s.kernel is not None and s.kernel == self.current), None)

    def best(self, horizon_ms: int) -> Score | None:
        """The grid kernel with the highest AUC (baselines and an off-grid current kernel
        are not candidates)."""
        cands = [s for s in self.at(horizon_ms)
                 if s.kernel is not None and s.label != CURRENT and s.auc is not None]
        return max(cands, key=lambda s: s.auc or 0.0) if cands else None


@dataclass(frozen=True)
class Recommendation:
    venue: str
    symbol: str
    horizon_ms: int
    kernel: Kernel | None  # None: keep the current setting
    best: Score | None
    reason: str


@dataclass
class CalibrationResult:
    tables: list[Table] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)
    horizons_ms: list[int] = field(default_factory=list)
    books: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    replicates: int = REPLICATES
    seed: int = SEED
    target: str | None = None

    def recommendations(self, horizon_ms: int) -> list[Recommendation]:
        return [recommend(t, horizon_ms) for t in self.tables
                if t.venue is not None and t.symbol is not None and self.target is None]

    def span(self) -> str:
        """The period of the good books, in UTC, and how long it is."""
        if self.first_ms is None or self.last_ms is None:
            return "no good books"
        first, last = (f"{datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
                       for t in (self.first_ms, self.last_ms))
        return f"{first} to {last} ({(self.last_ms - self.first_ms) / 60_000:.1f} min)"


def read_series(observations: Iterable[Observation], grid: Sequence[tuple[str, Kernel]],
                band_bps: float, current: Callable[[str, str], Kernel],
                result: CalibrationResult) -> list[SeriesBooks]:
    """The good books of each series with every predictor computed as the daemon does
    (``signals.snapshot``): the grid, the series' ``current`` kernel and the baselines;
    counts all books into ``result``."""
    raw: dict[tuple[str, str], list[tuple[int, float, list[float], float]]] = {}
    kernels: dict[tuple[str, str], dict[str, Kernel]] = {}
    currents: dict[tuple[str, str], Kernel] = {}
    for obs in observations:
        result.books += 1
        book = obs.book
        if book is None or obs.flags & BLOCKING_FLAGS:
            continue
        k = (obs.venue, obs.symbol)
        if k not in kernels:
            now = currents[k] = current(obs.venue, obs.symbol)
            kernels[k] = dict(grid) if now in dict(grid).values() else {**dict(grid), CURRENT: now}
        snap = snapshot(book, kernels[k], band_bps)
        mid = snap.mid
        reach = min(mid - float(book.bid_px[-1]), float(book.ask_px[-1]) - mid) / mid * BPS
        micro = (snap.microprice - mid) / mid * BPS if snap.microprice is not None else None
        row = [_nan(snap.wis[name]) for name in kernels[k]]
        row += [_nan(snap.imbalance), _nan(micro)]
        raw.setdefault(k, []).append((obs.ts_ms, mid, row, reach))
        result.first_ms = min(result.first_ms or obs.ts_ms, obs.ts_ms)
        result.last_ms = max(result.last_ms or obs.ts_ms, obs.ts_ms)
    out = []
    for (venue, symbol), books in raw.items():
        books.sort(key=lambda b: b[0])
        names = [*kernels[(venue, symbol)], *BASELINES]
        matrix = np.array([b[2] for b in books], dtype=np.float64)
        out.append(SeriesBooks(
            venue, symbol, np.array([b[0] for b in books], dtype=np.int64),
            np.array([b[1] for b in books]), {n: matrix[:, i] for i, n in enumerate(names)},
            np.array([b[3] for b in books]), kernels[(venue, symbol)],
            currents[(venue, symbol)]))
    return out


def coverage(series: SeriesBooks, band_bps: float) -> Coverage:
    short = series.reach_bps < band_bps * REACH_TOLERANCE
    return Coverage(len(series.ts), band_bps, float(np.median(series.reach_bps)),
                    float(short.mean()) if len(short) else 0.0)


def pairs(ts: npt.NDArray[np.int64], target_ts: npt.NDArray[np.int64], target_mid: Array,
          horizon_ms: int) -> tuple[Ints, Array]:
    """Each book at ``t`` paired with the target's mid at or before ``t`` and its first mid at
    or after ``t + h`` (a later book than the first): the book's index and the move in bps,
    moves of zero dropped. A series is its own target for its own moves."""
    before = np.searchsorted(target_ts, ts, side="right") - 1
    after = np.maximum(np.searchsorted(target_ts, ts + horizon_ms, side="left"), before + 1)
    ok = (before >= 0) & (after < len(target_ts))
    i = np.flatnonzero(ok)
    move = (target_mid[after[ok]] / target_mid[before[ok]] - 1.0) * BPS
    return i[move != 0.0], move[move != 0.0]


@dataclass(frozen=True)
class _Cell:
    """The pairs of one series at one horizon with their bootstrap weights."""

    index: Ints
    move: Array
    weights: Weights  # (replicates, books of the series)
    n_eff_per_pair: float


def _cell(series: SeriesBooks, target: SeriesBooks, horizon_ms: int, replicates: int,
          seed: int) -> _Cell:
    i, move = pairs(series.ts, target.ts, target.mid, horizon_ms)
    step = series.step_ms()
    block = math.ceil(horizon_ms / step)
    rng = np.random.default_rng([seed, zlib.crc32(f"{series.key}>{target.key}".encode()),
                                 horizon_ms])
    weights = block_weights(len(series.ts), block, replicates, rng)
    return _Cell(i, move, weights, min(1.0, step / horizon_ms))


def _score(label: str, kernel: Kernel | None, horizon_ms: int,
           parts: Sequence[tuple[Array, _Cell]]) -> Score:
    """Score a predictor over the pairs of one or more series (pooled)."""
    xs, moves, ws, n_eff = [], [], [], 0.0
    for values, cell in parts:
        x = values[cell.index]
        known = ~np.isnan(x)
        xs.append(x[known])
        moves.append(cell.move[known])
        ws.append(cell.weights[:, cell.index[known]])
        n_eff += known.sum() * cell.n_eff_per_pair
    x, move, w = np.concatenate(xs), np.concatenate(moves), np.concatenate(ws, axis=1)
    ones = np.ones((1, len(x)))
    point_auc = _scalar(weighted_auc(x, move > 0, ones)) if len(x) else None
    point_ic = _scalar(weighted_spearman(x, move, ones)) if len(x) else None
    boot_auc, boot_ic = _boot(x, move, w)
    return Score(label, kernel, horizon_ms, len(x), n_eff, point_auc, point_ic,
                 _interval(boot_auc), _interval(boot_ic), boot_auc)


def score_series(label: str, series: Sequence[SeriesBooks], horizon_ms: int, *,
                 replicates: int = REPLICATES, seed: int = SEED) -> Score:
    """Score the predictor ``label`` of one or more series (pooled) for their own moves at
    ``horizon_ms``, with the block-bootstrap intervals of the tables; for any value a series
    carries (a metric of the replay pipeline as well as a kernel)."""
    return _score(label, None, horizon_ms,
                  [(s.values[label], _cell(s, s, horizon_ms, replicates, seed)) for s in series])


def _boot(x: Array, move: Array, w: Weights) -> tuple[Array, Array]:
    if not len(x):
        nan = np.full(len(w), np.nan)
        return nan, nan
    chunk = max(1, _CELLS // len(x))
    aucs, ics = [], []
    for lo in range(0, len(w), chunk):
        wc = w[lo:lo + chunk]
        aucs.append(weighted_auc(x, move > 0, wc))
        ics.append(weighted_spearman(x, move, wc))
    return np.concatenate(aucs), np.concatenate(ics)


def _interval(boot: Array) -> tuple[float, float] | None:
    ok = boot[~np.isnan(boot)]
    if not len(ok):
        return None
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return float(lo), float(hi)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def calibrate(observations: Iterable[Observation], horizons_ms: Sequence[int],
              kernels: Sequence[tuple[str, Kernel]] | None = None, *, band_bps: float = 50.0,
              current: Callable[[str, str], Kernel] | None = None,
              replicates: int = REPLICATES, seed: int = SEED, pooled: bool = False,
              target: str | None = None, progress: Progress | None = None
              ) -> CalibrationResult:
    """Score the grid, the current kernel and the baselines per series at every horizon.

    ``current`` gives a series' configured kernel (default: the built-in one). ``pooled`` adds
    a table of all series together; ``target`` (``VENUE:SYMBOL``) scores every series against
    that series' moves instead of its own. ``progress`` is shown over the scoring."""
    grid = list(kernels or default_grid(band_bps))
    result = CalibrationResult(horizons_ms=list(horizons_ms), replicates=replicates, seed=seed,
                               target=target)
    series = read_series(observations, grid, band_bps, current or (lambda v, s: Kernel()),
                         result)
    for s in series:
        result.coverage[s.key] = coverage(s, band_bps)
    goal = {s.key: s for s in series}.get(target) if target else None
    if target and goal is None:
        raise LookupError(f"no good books of the target {target} "
                          f"(series read: {', '.join(s.key for s in series) or 'none'})")
    tables = {s.key: Table(f"{s.key} -> {target}" if target else s.key, s.venue, s.symbol,
                           current=s.current) for s in series}
    result.tables.extend(tables.values())
    together = Table("pooled" + (f" -> {target}" if target else ""), None, None)
    if pooled and len(series) > 1:
        result.tables.append(together)
    work = [(h, s) for h in horizons_ms for s in series]
    cells: dict[str, _Cell] = {}  # one horizon's bootstrap weights at a time (memory)
    for h, s in progress(work, "scoring kernels", len(work)) if progress else work:
        if s is series[0] or together not in result.tables:
            cells = {}
        cell = cells[s.key] = _cell(s, goal or s, h, replicates, seed)
        for label in s.values:
            tables[s.key].scores.append(_score(label, s.kernels.get(label), h,
                                               [(s.values[label], cell)]))
        if s is series[-1] and together in result.tables:
            for label in [*dict(grid), *BASELINES]:
                together.scores.append(_score(label, dict(grid).get(label), h,
                                              [(t.values[label], cells[t.key]) for t in series]))
    return result


def recommend(table: Table, horizon_ms: int) -> Recommendation:
    """The best kernel of a series, only where it beats both the current setting and the touch
    imbalance: the 95% lower bound of the paired bootstrap of the AUC difference above 0."""
    venue, symbol = table.venue or "", table.symbol or ""
    best = table.best(horizon_ms)
    cur = table.current_score(horizon_ms)
    imb = table.get("imbalance", horizon_ms)

    def keep(reason: str) -> Recommendation:
        return Recommendation(venue, symbol, horizon_ms, None, best, reason)

    if best is None or cur is None or best.kernel is None:
        return keep("not enough pairs to score")
    if best.kernel == table.current:
        return keep(f"the current setting is the best kernel ({best.label})")
    lo = paired_lower(best, cur)
    if lo is None or lo <= 0.0:
        return keep(f"{best.label} does not beat the current setting within the interval "
                    f"(AUC difference lower bound {_fmt(lo)})")
    lo_imb = paired_lower(best, imb) if imb is not None else None
    if lo_imb is None or lo_imb <= 0.0:
        return keep(f"{best.label} is not better than the touch imbalance within the interval "
                    f"(AUC difference lower bound {_fmt(lo_imb)}): the touch imbalance "
                    "does as well")
    gain = (best.auc or 0.0) - (cur.auc or 0.0)
    return Recommendation(venue, symbol, horizon_ms, best.kernel, best,
                          f"{best.label} beats the current setting by AUC {gain:+.3f} (lower "
                          f"bound {lo:+.3f}) and the touch imbalance (lower bound {lo_imb:+.3f})")


def paired_lower(a: Score, b: Score) -> float | None:
    """The 2.5% quantile of AUC(a) − AUC(b) over the same bootstrap resamples."""
    diff = a.auc_boot - b.auc_boot
    ci = _interval(diff)
    return ci[0] if ci else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def describe(k: Kernel) -> str:
    """A kernel in words: ``exponential 10 bps, band 50 bps``."""
    shape = {"exponential": f"exponential {k.half_life_bps:g} bps",
             "levels": f"levels {k.half_life_levels:g} levels"}.get(k.kernel, k.kernel)
    return f"{shape}, band {k.band_bps:g} bps"


def kernel_settings(k: Kernel) -> dict[str, float | str]:
    """The ``metrics.wis`` mapping of a kernel (only the keys its family uses)."""
    out: dict[str, float | str] = {"kernel": k.kernel}
    if k.kernel == "exponential":
        out["half_life_bps"] = k.half_life_bps
    if k.kernel == "levels":
        out["half_life_levels"] = k.half_life_levels
    out["band_bps"] = k.band_bps
    return out


def series_settings_yaml(recs: Sequence[Recommendation], header: Sequence[str]) -> str:
    """A series-settings file (``series_settings:``) of the recommended kernels only, with a
    comment header saying how it was made."""
    lines = [f"# {h}" for h in header]
    chosen = [r for r in recs if r.kernel is not None]
    if not chosen:
        return "\n".join([*lines, "series: []", ""])
    lines.append("series:")
    for r in chosen:
        assert r.kernel is not None
        flow = ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in kernel_settings(r.kernel).items())
        lines += [f"  - venue: {_quote(r.venue)}", f"    symbol: {_quote(r.symbol)}",
                  "    metrics:", f"      wis: {{{flow}}}"]
    return "\n".join(lines) + "\n"


def _yaml_scalar(v: float | str) -> str:
    return f"{v:g}" if isinstance(v, float) else v


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
