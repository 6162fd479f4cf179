"""`calibrate` is honest: exact scores, bootstrap intervals and effective N, baselines, per-series
recommendations only where they beat the current setting, alert-rate thresholds counted in
episodes, and cross-venue scoring aligned by time."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from wis_monitor.book import make_book
from wis_monitor.signals import Kernel
from wis_monitor.sources import Observation
from wis_monitor.sources.replay import book_record
from wis_monitor.tools.alertrate import MetricSeries, episodes, propose_threshold
from wis_monitor.tools.calibrate import (
    CalibrationResult,
    block_weights,
    calibrate,
    read_series,
    score_series,
    weighted_auc,
    weighted_spearman,
)

DISTS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 45.0, 60.0)


def obs(venue: str, symbol: str, ts: int, mid: float, bid_q: Sequence[float],
        ask_q: Sequence[float]) -> Observation:
    """A book with levels at DISTS bps on both sides of ``mid`` (both reach past 50 bps)."""
    bids = [[mid * (1 - d / 1e4), q] for d, q in zip(DISTS, bid_q, strict=True)]
    asks = [[mid * (1 + d / 1e4), q] for d, q in zip(DISTS, ask_q, strict=True)]
    book, flags = make_book(bids, asks)
    return Observation(venue, symbol, ts, book, flags)


def write_recording(path: Path, observations: Sequence[Observation]) -> str:
    with gzip.open(path, "wt") as fh:
        for o in observations:
            fh.write(json.dumps(book_record(o)) + "\n")
    return str(path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", "calibrate", *args],
                          capture_output=True, text=True, timeout=120)


# -- independent plain-Python definitions --------------------------------------------------------


def pairwise_auc(scores: list[float], positive: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def plain_spearman(a: list[float], b: list[float]) -> float:
    def ranks(xs: list[float]) -> list[float]:
        return [sum(y < x for y in xs) + (sum(y == x for y in xs) + 1) / 2 for x in xs]

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    return cov / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def plain_wis(o: Observation, half_life: float | None) -> float:
    """Exponential WIS over 50 bps (flat when ``half_life`` is None), level by level."""
    b = o.book
    assert b is not None
    m = (float(b.bid_px[0]) + float(b.ask_px[0])) / 2
    sums = []
    for px, qty in ((b.bid_px, b.bid_qty), (b.ask_px, b.ask_qty)):
        total = 0.0
        for p, q in zip(px.tolist(), qty.tolist(), strict=True):
            d = abs(p - m) / m * 1e4
            if d <= 50:
                total += (1.0 if half_life is None else 2 ** (-d / half_life)) * p * q
        sums.append(total)
    return (sums[0] - sums[1]) / (sums[0] + sums[1])


def plain_baselines(o: Observation) -> tuple[float, float]:
    b = o.book
    assert b is not None
    bb, ba, qb, qa = (float(b.bid_px[0]), float(b.ask_px[0]), float(b.bid_qty[0]),
                      float(b.ask_qty[0]))
    m = (bb + ba) / 2
    return (qb - qa) / (qb + qa), ((bb * qa + ba * qb) / (qb + qa) - m) / m * 1e4


def random_series(rng: np.random.Generator, n: int, venue: str = "sim",
                  symbol: str = "X/USD", step_ms: int = 1000) -> list[Observation]:
    mid, out = 100.0, []
    for i in range(n):
        q = rng.integers(1, 6, size=(2, len(DISTS))).astype(float)  # ties in WIS happen
        out.append(obs(venue, symbol, i * step_ms, mid, q[0], q[1]))
        mid *= 1 + float(rng.choice([-1.0, 0.0, 0.0, 1.0, 2.0])) / 1e4  # ties in the move
    return out


# -- the statistics ----------------------------------------------------------------------------


def test_scores_match_plain_definitions_on_bps_moves() -> None:
    """AUC and IC of a kernel, the touch imbalance and the microprice offset, per series, equal
    pairwise AUC and plain Spearman on 10,000·(mid_after/mid_before − 1)."""
    rng = np.random.default_rng(1)
    books = random_series(rng, 40)
    result = calibrate(books, [1000, 3000], [("exponential 2 bps", Kernel("exponential", 2.0)),
                                             ("flat", Kernel("flat"))], replicates=50)
    (table,) = result.tables
    mids = [(float(o.book.bid_px[0]) + float(o.book.ask_px[0])) / 2
            for o in books if o.book is not None]
    for h in (1000, 3000):
        pairs = []
        for i, o in enumerate(books):
            j = next((k for k in range(i + 1, len(books)) if books[k].ts_ms >= o.ts_ms + h), None)
            if j is not None and mids[j] != mids[i]:
                pairs.append((i, (mids[j] / mids[i] - 1) * 1e4))
        moves = [m for _, m in pairs]
        predictors = {
            "exponential 2 bps": [plain_wis(books[i], 2.0) for i, _ in pairs],
            "flat": [plain_wis(books[i], None) for i, _ in pairs],
            "imbalance": [plain_baselines(books[i])[0] for i, _ in pairs],
            "microprice": [plain_baselines(books[i])[1] for i, _ in pairs],
        }
        for label, x in predictors.items():
            s = table.get(label, h)
            assert s is not None and s.n == len(pairs)
            assert s.auc == pytest.approx(pairwise_auc(x, [m > 0 for m in moves]), abs=1e-9)
            assert s.ic == pytest.approx(plain_spearman(x, moves), abs=1e-9)


def test_score_series_is_the_table_score_of_any_value() -> None:
    """``score_series`` (used by the signal study for metrics that are not kernels) gives a
    series' values the same AUC, IC, effective N and seeded intervals as the tables."""
    books = random_series(np.random.default_rng(3), 60)
    grid = [("flat", Kernel("flat"))]
    result = calibrate(books, [2000], grid, replicates=50)
    (series,) = read_series(books, grid, 50.0, lambda v, s: Kernel(), CalibrationResult())
    for label in ("flat", "imbalance", "microprice"):
        want, got = result.tables[0].get(label, 2000), score_series(label, [series], 2000,
                                                                    replicates=50)
        assert want is not None
        assert (got.n, got.n_eff, got.auc, got.ic, got.auc_ci, got.ic_ci) == (
            want.n, want.n_eff, want.auc, want.ic, want.auc_ci, want.ic_ci)


def test_bootstrap_statistics_are_those_of_the_resampled_data() -> None:
    """A row of weights is a resample: its AUC and IC are those of the repeated data."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, size=30).astype(float)
    y = rng.integers(-3, 4, size=30).astype(float)
    w = block_weights(30, 4, 20, rng)
    for row in w:
        rep = np.repeat(np.arange(30), row.astype(int))
        xs, ys = x[rep].tolist(), y[rep].tolist()
        got = weighted_auc(x, y > 0, row[None, :])[0]
        assert got == pytest.approx(pairwise_auc(xs, [v > 0 for v in ys]), abs=1e-12)
        assert weighted_spearman(x, y, row[None, :])[0] == pytest.approx(
            plain_spearman(xs, ys), abs=1e-12)


def test_block_weights_draw_whole_blocks_reproducibly() -> None:
    w = block_weights(100, 10, 50, np.random.default_rng(3))
    assert w.shape == (50, 100) and (w.sum(axis=1) == 100).all()
    assert np.array_equal(w, block_weights(100, 10, 50, np.random.default_rng(3)))
    # Ten blocks of ten consecutive items: the counts change only where one starts or ends.
    for row in w:
        assert np.count_nonzero(np.diff(row)) <= 20
    assert (block_weights(100, 100, 5, np.random.default_rng(4)) == 1).all()


def signal_series(rng: np.random.Generator, n: int, *, informative: bool, venue: str = "sim",
                  symbol: str = "X/USD") -> list[Observation]:
    """Depth at 2-5 bps leans the way the mid moves next (when ``informative``); the touch
    and the deep book are noise, so the touch imbalance and a flat kernel see little."""
    mid, out = 100.0, []
    for i in range(n):
        s = float(rng.choice([-1.0, 1.0]))
        bid = [float(rng.uniform(1, 10)), 5.0, 5 + 3 * s, 5 + 3 * s, 5 + 3 * s,
               *rng.uniform(50, 150, size=6)]
        ask = [float(rng.uniform(1, 10)), 5.0, 5 - 3 * s, 5 - 3 * s, 5 - 3 * s,
               *rng.uniform(50, 150, size=6)]
        out.append(obs(venue, symbol, i * 1000, mid, bid, ask))
        move = s if informative and rng.random() < 0.9 else float(rng.choice([-1.0, 1.0]))
        mid *= 1 + move / 1e4
    return out


def test_intervals_contain_the_estimate_and_narrow_with_more_data() -> None:
    grid = [("exponential 2 bps", Kernel("exponential", 2.0))]
    widths = []
    for n in (150, 1200):
        books = signal_series(np.random.default_rng(5), n, informative=True)
        result = calibrate(books, [1000], grid, replicates=200)
        for s in result.tables[0].scores:
            assert s.auc is not None and s.auc_ci is not None and s.ic is not None
            assert s.ic_ci is not None
            assert s.auc_ci[0] <= s.auc <= s.auc_ci[1]
            assert s.ic_ci[0] <= s.ic <= s.ic_ci[1]
        best = result.tables[0].get("exponential 2 bps", 1000)
        assert best is not None and best.auc_ci is not None and best.auc > 0.8
        widths.append(best.auc_ci[1] - best.auc_ci[0])
    assert widths[1] < widths[0] * 0.6
    again = calibrate(signal_series(np.random.default_rng(5), 1200, informative=True), [1000],
                      grid, replicates=200)
    assert again.tables[0].scores[0].auc_ci == result.tables[0].scores[0].auc_ci  # seeded


def test_effective_n_counts_non_overlapping_horizons() -> None:
    books = random_series(np.random.default_rng(6), 200)
    result = calibrate(books, [500, 1000, 10_000], [("flat", Kernel("flat"))], replicates=50)
    for h in (500, 1000, 10_000):
        s = result.tables[0].get("flat", h)
        assert s is not None
        assert s.n_eff == pytest.approx(s.n * min(1.0, 1000 / h))


# -- recommendations and --write -----------------------------------------------------------------


def test_recommends_per_series_only_what_beats_the_current_setting_and_the_touch() -> None:
    rng = np.random.default_rng(7)
    books = sorted(signal_series(rng, 400, informative=True, symbol="A/USD")
                   + signal_series(rng, 400, informative=False, symbol="B/USD"),
                   key=lambda o: o.ts_ms)
    result = calibrate(books, [1000], current=lambda v, s: Kernel("flat"), replicates=200)
    recs = {r.symbol: r for r in result.recommendations(1000)}
    assert recs["A/USD"].kernel is not None and recs["A/USD"].kernel.kernel == "exponential"
    assert recs["B/USD"].kernel is None
    # The same signal at the touch: the best kernel is the imbalance under another name.
    touch = []
    for o in signal_series(np.random.default_rng(8), 400, informative=True):
        assert o.book is not None
        b = o.book
        q = 5 + 3 * (b.bid_qty[2] - b.ask_qty[2]) / 6
        touch.append(obs("sim", "T/USD", o.ts_ms, o.book.mid or 0.0,
                         [q, *b.bid_qty[1:]], [10 - q, *b.ask_qty[1:]]))
    rec = calibrate(touch, [1000], current=lambda v, s: Kernel("flat"),
                    replicates=200).recommendations(1000)[0]
    assert rec.kernel is None and "touch imbalance" in rec.reason


def test_write_gives_the_per_series_settings_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rec = write_recording(tmp_path / "a.jsonl.gz", signal_series(
        rng, 400, informative=True, venue="simex", symbol="A/USD"))
    noise = write_recording(tmp_path / "b.jsonl.gz", signal_series(
        rng, 400, informative=False, venue="simex", symbol="B/USD"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("metrics:\n  wis: {kernel: flat, band_bps: 50}\n")
    out = tmp_path / "tuned.yaml"
    r = cli("-c", str(cfg), "--books", rec, "--books", noise, "--horizon", "1s",
            "--write", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(h.startswith("# made by: wis-monitor calibrate") for h in header)
    assert any(h.startswith("# recordings: ") and rec in h for h in header)
    assert any(h.startswith("# horizon: 1s") for h in header)
    assert any(h.startswith("# intervals: 95% moving-block bootstrap") for h in header)
    doc = yaml.safe_load(text)
    assert list(doc) == ["series"] and len(doc["series"]) == 1
    (entry,) = doc["series"]
    assert entry["venue"] == "simex" and entry["symbol"] == "A/USD"
    assert list(entry["metrics"]) == ["wis"]
    assert entry["metrics"]["wis"]["kernel"] == "exponential"
    assert set(entry["metrics"]["wis"]) == {"kernel", "half_life_bps", "band_bps"}
    assert "simex:A/USD: use exponential" in r.stdout
    assert "simex:B/USD: keep the current setting" in r.stdout
    assert "(current: flat, band 50 bps)" in r.stdout


def test_check_accepts_what_write_wrote(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rec = write_recording(tmp_path / "a.jsonl.gz", signal_series(
        rng, 400, informative=True, venue="simex", symbol="A/USD"))
    r = cli("--books", rec, "--horizon", "1s", "--write", str(tmp_path / "tuned.yaml"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "c.yaml").write_text(
        "venues:\n  - {id: simex, exchange: sim, symbols: [A/USD]}\n"
        "series_settings: [tuned.yaml]\n")
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c",
                        str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# -- alert rates ------------------------------------------------------------------------------


def imbalance_hour() -> list[Observation]:
    """An hour at 5 s whose touch imbalance is 0 but for three 2-sample episodes at +0.9, two
    1-sample episodes at +0.7 and one at -0.5 (the mid wanders so that no book is stale)."""
    touch = {k: (19.0, 1.0) for start in (120, 360, 600) for k in (start, start + 1)}
    touch.update({240: (17.0, 3.0), 480: (17.0, 3.0), 300: (1.0, 3.0)})
    rng = np.random.default_rng(9)
    out, mid = [], 100.0
    for k in range(721):
        qb, qa = touch.get(k, (5.0, 5.0))
        out.append(obs("simex", "A/USD", k * 5000, mid, [qb, *[5.0] * 10], [qa, *[5.0] * 10]))
        mid *= 1 + float(rng.choice([-1.0, 1.0])) / 1e4
    return out


def test_episodes_are_crossings_held_for_a_while() -> None:
    ts = np.arange(10, dtype=np.int64) * 1000
    hit = np.array([0, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    assert episodes(ts, hit) == 3
    assert episodes(ts, hit, 1000) == 2
    assert episodes(ts, hit, 2000) == 1
    assert episodes(ts, np.zeros(10, dtype=bool)) == 0


def test_thresholds_that_fire_at_a_rate() -> None:
    x = np.array([plain_baselines(o)[0] for o in imbalance_hour()])
    s = MetricSeries("simex", "A/USD", np.arange(721, dtype=np.int64) * 5000, x)
    assert s.hours == 1.0
    up = propose_threshold(s, "above", 3.0, 0)
    assert up.threshold == pytest.approx(0.9) and up.episodes == 3 and up.rate_per_h == 3.0
    up5 = propose_threshold(s, "above", 5.0, 0)
    assert up5.threshold == pytest.approx(0.7) and up5.episodes == 5
    # Held for 2 s, the 1-sample episodes do not count, and nothing fires 5 times.
    assert propose_threshold(s, "above", 5.0, 2000).threshold is None
    down = propose_threshold(s, "below", 1.0, 0)
    assert down.threshold == pytest.approx(-0.5) and down.episodes == 1
    both = propose_threshold(s, "abs", 6.0, 0)
    assert both.threshold == pytest.approx(0.5) and both.episodes == 6


def test_alert_rate_runs_the_replay_pipeline(tmp_path: Path) -> None:
    rec = write_recording(tmp_path / "h.jsonl.gz", imbalance_hour())
    r = cli("--books", rec, "--alert-rate", "3/h", "--metric", "imbalance")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "simex:A/USD" in ln)
    assert "imbalance >= 0.9 (3, 3.0/h)" in line
    assert "|imbalance| >= 0.9 (3, 3.0/h)" in line
    # Below: -0.5 fires once; the next level down, 0, is every quiet stretch (6 of them).
    assert "imbalance <= 0 (6, 6.0/h)" in line
    r = cli("--books", rec, "--alert-rate", "2/h")  # wis_z: the pipeline's real z-scores
    assert r.returncode == 0, r.stderr
    assert "wis_z >= " in r.stdout and "|wis_z| >= " in r.stdout
    r = cli("--books", rec, "--alert-rate", "2/h", "--metric", "wis_zz")
    assert r.returncode == 2 and 'no "wis_zz"' in r.stderr and "wis_z" in r.stderr
    r = cli("--books", rec, "--alert-rate", "often")
    assert r.returncode == 2 and "not a rate" in r.stderr


# -- cross-venue --------------------------------------------------------------------------------


def test_target_scores_a_leader_against_the_follower() -> None:
    """The leader's WIS at t says where the follower's mid goes by t + 1 s; the follower's WIS
    says nothing of the leader's moves."""
    rng = np.random.default_rng(10)
    books: list[Observation] = []
    lead_mid, follow_mid = 100.0, 50.0
    for t in range(300):
        s = float(rng.choice([-1.0, 1.0]))
        books.append(obs("lead", "X/USD", t * 1000, lead_mid, [5 + 3 * s] * len(DISTS),
                         [5 - 3 * s] * len(DISTS)))
        noise = rng.uniform(1, 10, size=(2, len(DISTS)))
        books.append(obs("follow", "X/USD", t * 1000, follow_mid, noise[0], noise[1]))
        lead_mid *= 1 + float(rng.choice([-1.0, 1.0])) / 1e4
        follow_mid *= 1 + s / 1e4
    grid = [("flat", Kernel("flat"))]
    result = calibrate(books, [1000], grid, replicates=100, target="follow:X/USD")
    by = {t.name: t for t in result.tables}
    lead = by["lead:X/USD -> follow:X/USD"].get("flat", 1000)
    own = by["follow:X/USD -> follow:X/USD"].get("flat", 1000)
    assert lead is not None and lead.auc == 1.0 and lead.n == 299
    assert own is not None and own.auc is not None and abs(own.auc - 0.5) < 0.1
    back = calibrate(books, [1000], grid, replicates=100, target="lead:X/USD")
    rev = {t.name: t for t in back.tables}["follow:X/USD -> lead:X/USD"].get("flat", 1000)
    assert rev is not None and rev.auc is not None and abs(rev.auc - 0.5) < 0.1
    assert result.recommendations(1000) == []
    with pytest.raises(LookupError):
        calibrate(books, [1000], grid, replicates=50, target="nowhere:X/USD")


# -- the real books ------------------------------------------------------------------------------


def test_calibrate_on_real_books(shared_data: Path, tmp_path: Path) -> None:
    """On the first 5 minutes of a real series: intervals, effective N, baselines, the
    coverage warning and one recommendation per series."""
    path = shared_data / "books-full" / "binance-BTCUSDT-20240808-1000ms.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        head = [next(fh) for _ in range(300)]
    with gzip.open(tmp_path / "head.jsonl.gz", "wt") as out:
        out.writelines(head)
    r = cli("--books", str(tmp_path / "head.jsonl.gz"), "--horizon", "1s,10s", "--kernels",
            "exponential", "--replicates", "200")
    assert r.returncode == 0, r.stderr
    out_ = r.stdout
    assert "horizon 1s" in out_ and "horizon 10s" in out_ and "95% interval" in out_
    assert "imbalance (baseline)" in out_ and "microprice (baseline)" in out_
    # Half of these books stop short of the 50 bps band on one side.
    assert "WARNING: binance:BTC/USDT: 53% of books reach less than 49 bps" in out_
    recs = [ln for ln in out_.splitlines() if ln.startswith("  binance:BTC/USDT: ")]
    assert len(recs) == 1 and ("keep the current setting" in recs[0] or "use " in recs[0])
    rows = [ln.split() for ln in out_.splitlines() if ln.strip().startswith("exponential 10 bps")]
    (n1, eff1), (n10, eff10) = [(int(r[3]), float(r[4])) for r in rows]  # 1s, then 10s
    assert eff1 == pytest.approx(n1, abs=0.05) and eff10 == pytest.approx(n10 / 10, abs=0.05)


def test_result_is_empty_without_good_books() -> None:
    result = calibrate([Observation("v", "s", 0, None, frozenset({"error"}))], [1000])
    assert isinstance(result, CalibrationResult) and result.tables == [] and result.books == 1


def test_the_roundest_threshold_that_fires_the_same() -> None:
    from wis_monitor.tools.alertrate import roundest

    assert roundest(2.61, 2.7693) == 2.7
    assert roundest(2.7, 2.7693) == 2.76
    assert roundest(0.1, 0.9) == 0.9 and roundest(-0.5, 0.3) == 0.0
    assert roundest(12_345_000.0, 12_399_999.0) == 12_390_000.0
    assert roundest(-3.0, -2.5) == -2.5 and roundest(-2.5999, -2.5) == -2.5
