"""z-score warm-up by time, and an EWMA whose start is not biased: no z until the samples
behind it span ``min_history``; the z of stationary noise has unit variance from the first
minute after warm-up, for every method; the EWMA equals its defining weighted sums; a restart
neither begins a new warm-up nor changes a z."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.book import make_book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.errors import ConfigError
from wis_monitor.sources import Observation
from wis_monitor.stats import EwmaZ, Method, ZScoreSpec, make_scorer
from wis_monitor.store import SqliteStore

METHODS: tuple[Method, ...] = ("rolling", "ewma", "robust")


def run(spec: ZScoreSpec, series: list[tuple[int, float]]) -> list[float | None]:
    scorer = make_scorer(spec)
    out = []
    for ts, x in series:
        out.append(scorer.score(ts, x))
        scorer.push(ts, x)
    return out


# -- warm-up by time -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_no_z_until_the_samples_span_min_history(method: Method) -> None:
    """At 100 ms sampling 30 samples are 3 s: with min_history 10 s the first z comes at
    10 s exactly (the oldest sample at 0 s), not after 30 samples."""
    spec = ZScoreSpec(60_000, 30, method, 5_000, min_history_ms=10_000)
    rng = np.random.default_rng(1)
    series = [(i * 100, float(x)) for i, x in enumerate(rng.normal(0, 1, 200))]
    got = run(spec, series)
    first = next(ts for (ts, _), z in zip(series, got, strict=True) if z is not None)
    assert first == 10_000
    assert all(z is not None for z in got[100:])


@pytest.mark.parametrize("method", METHODS)
def test_min_history_defaults_to_half_the_window(tmp_path: Path, method: Method) -> None:
    (tmp_path / "c.yaml").write_text(
        f"metrics: {{zscore: {{method: {method}, window: 40s, min_samples: 2}}}}\n")
    spec = load_config(str(tmp_path / "c.yaml")).settings.metrics.zscore.spec()
    assert spec.min_history_ms == 20_000
    series = [(i * 1000, float(i % 7)) for i in range(40)]
    got = run(spec, series)
    assert got[19] is None and got[20] is not None


def test_a_gap_longer_than_the_window_starts_a_new_warm_up() -> None:
    """The window empties: its oldest sample is the first after the gap."""
    spec = ZScoreSpec(10_000, 2, "rolling", min_history_ms=5_000)
    series = [(i * 1000, float(i % 3)) for i in range(20)]
    series += [(100_000 + i * 1000, float(i % 3)) for i in range(10)]
    got = run(spec, series)
    assert got[19] is not None
    assert got[20:25] == [None] * 5 and got[25] is not None  # 105 s: 5 s after 100 s


# -- unit variance from the first minute -----------------------------------------------------

RUNS = 40
WINDOW_MS = 120_000  # min_history: the default, half the window = 60 s


def _timestamps(rng: np.random.Generator, irregular: bool) -> list[int]:
    """Two minutes at 100 ms, or at gaps drawn uniformly from 1 to 199 ms (mean 100 ms)."""
    gaps = rng.integers(1, 200, 1_300) if irregular else np.full(1_300, 100)
    ts = np.cumsum(gaps) - gaps[0]
    return [int(t) for t in ts[ts < WINDOW_MS]]


@pytest.mark.parametrize("irregular", [False, True], ids=["regular", "irregular"])
@pytest.mark.parametrize("method", METHODS)
def test_z_of_stationary_noise_has_unit_variance_from_the_first_minute(method: Method,
                                                                      irregular: bool) -> None:
    """The z-scores of the first minute after warm-up (60 s to 120 s), pooled over 40 seeded
    runs of Gaussian noise, have mean square 1 within 0.06.

    Why 0.06: with n >= 600 values behind each z, a perfect estimator gives
    E[z²] = (1 + 1/n)(n - 1)/(n - 3) <= 1.005 (a t distribution); the robust scale (MAD) and
    the EWMA's fewer effective samples add a little more. The spread of the estimate comes
    mostly from each run's one baseline: its standard error, measured from the 40 independent
    runs, is checked to be under a quarter of the tolerance, so the test can tell a
    2-fold inflation (the unbiased-start EWMA's failure) from sampling noise many times over.
    """
    spec = ZScoreSpec(WINDOW_MS, 30, method, half_life_ms=60_000, min_history_ms=WINDOW_MS // 2)
    rng = np.random.default_rng(12 if irregular else 11)
    per_run = []
    for _ in range(RUNS):
        ts = _timestamps(rng, irregular)
        xs = rng.normal(0.3, 2.0, len(ts))
        got = run(spec, list(zip(ts, xs.tolist(), strict=True)))
        assert all(z is None for t, z in zip(ts, got, strict=True) if t < 60_000)
        first_minute = [z for t, z in zip(ts, got, strict=True) if t >= 60_000]
        assert all(z is not None for z in first_minute)
        per_run.append(float(np.mean(np.square(first_minute))))
    mean_square = float(np.mean(per_run))
    se = float(np.std(per_run, ddof=1)) / math.sqrt(RUNS)
    assert se < 0.06 / 4, se
    assert abs(mean_square - 1.0) < 0.06, (mean_square, se)


# -- the bias-corrected EWMA, exactly --------------------------------------------------------


def ewma_reference(series: list[tuple[int, float]], half_life_ms: int, min_samples: int,
                   min_history_ms: int) -> list[float | None]:
    """For each (ts, x): z against every earlier value, weighted 2**(-age / half_life) with the
    age counted from the latest earlier value; mean = Σwx / W, variance = Σw(x - mean)² /
    (W - Σw² / W). Plain sums, no recurrence; W² - Σw² is summed as 2 Σ_{i<j} w_i w_j, which
    does not cancel when the old weights are tiny."""
    out: list[float | None] = []
    for i, (ts, x) in enumerate(series):
        before = series[:i]
        if len(before) < max(min_samples, 2) or ts - before[0][0] < min_history_ms:
            out.append(None)
            continue
        last = before[-1][0]
        w = [2.0 ** (-(last - t) / half_life_ms) for t, _ in before]
        total = math.fsum(w)
        ref = before[-1][1]  # deviations from the heaviest value: no cancelling
        dev = [xi - ref for _, xi in before]
        shift = math.fsum(wi * di for wi, di in zip(w, dev, strict=True)) / total
        mean = ref + shift
        ss = math.fsum(wi * (di - shift) ** 2 for wi, di in zip(w, dev, strict=True))
        prefix = np.cumsum([0.0, *w[:-1]])  # Σ_{i<j} w_i, for each j
        pairs = math.fsum(wj * float(pj) for wj, pj in zip(w, prefix, strict=True))
        var = ss / (2.0 * pairs / total)
        std = math.sqrt(var)
        out.append(None if std < 1e-12 else (x - mean) / std)
    return out


timestamps = st.lists(st.integers(0, 20_000), min_size=1, max_size=120).map(
    lambda gaps: np.cumsum(gaps).tolist())


@settings(max_examples=200, deadline=None)
@given(timestamps, st.integers(500, 60_000), st.integers(2, 10), st.integers(0, 30_000),
       st.data())
def test_ewma_equals_its_weighted_sums(ts: list[int], half_life: int, min_samples: int,
                                       min_history: int, data: st.DataObject) -> None:
    xs = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=len(ts), max_size=len(ts)))
    series = list(zip(ts, xs, strict=True))
    spec = ZScoreSpec(60_000, min_samples, "ewma", half_life, min_history_ms=min_history)
    got = run(spec, series)
    want = ewma_reference(series, half_life, min_samples, min_history)
    for g, w in zip(got, want, strict=True):
        if w is not None and abs(w) > 1e6:
            continue  # a near-constant history: the variance is rounding noise in both
        assert (g is None) == (w is None), (g, w)
        if g is not None and w is not None:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-9)


def test_ewma_with_equal_weights_is_the_sample_mean_and_variance() -> None:
    """Values at one timestamp weigh the same: ddof=1 statistics."""
    z = EwmaZ(ZScoreSpec(60_000, 2, "ewma", 10_000, min_history_ms=0))
    for x in (1.0, 2.0, 4.0, 7.0):
        z.push(5_000, x)
    b = z.baseline()
    assert b is not None
    assert b.center == pytest.approx(3.5, rel=1e-12)
    assert b.scale == pytest.approx(float(np.std([1.0, 2.0, 4.0, 7.0], ddof=1)), rel=1e-12)


# -- restarts and configuration --------------------------------------------------------------


def _engine(tmp_path: Path, zscore: str) -> Engine:
    (tmp_path / "c.yaml").write_text(
        f"sampling: {{interval: 1s, stale_after: 1h}}\nmetrics:\n  zscore: {zscore}\n"
        "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n")
    return Engine(load_config(str(tmp_path / "c.yaml")))


def _book(i: int) -> Observation:
    qty = 1.0 + (i * 7919 % 13) / 4
    book, flags = make_book([[100.0, qty], [99.9, 2.0]], [[100.1, 1.0], [100.2, 1.5]])
    return Observation("a", "X/Y", i * 1000, book, flags, 1.0)


@pytest.mark.parametrize(("zscore", "restart_at"), [
    ("{window: 2m, min_samples: 5}", 30),                                 # mid warm-up
    ("{method: robust, window: 2m, min_samples: 5}", 30),
    ("{method: ewma, half_life: 10s, window: 2m, min_samples: 5}", 30),
    # 40 half-lives (40 s) are less than the warm-up (90 s): the rebuild reaches back 90 s.
    ("{method: ewma, half_life: 1s, window: 2m, min_history: 90s, min_samples: 5}", 85),
])
def test_a_restart_neither_restarts_the_warm_up_nor_changes_z(tmp_path: Path, zscore: str,
                                                               restart_at: int) -> None:
    store = SqliteStore(str(tmp_path / "wis.db"))
    steady = _engine(tmp_path, zscore)
    for i in range(restart_at):
        batch, _ = steady.process([_book(i)])
        store.write(batch)
    restarted = _engine(tmp_path, zscore)
    restarted.store = store
    restarted.restore(restart_at * 1000)
    seen = 0
    for i in range(restart_at, 200):
        _, (want,) = steady.process([_book(i)])
        _, (got,) = restarted.process([_book(i)])
        w, g = want.values["wis_z"], got.values["wis_z"]
        assert (w is None) == (g is None), i
        if w is not None and g is not None:
            seen += 1
            assert g == pytest.approx(w, abs=1e-9, rel=1e-9)
    assert seen > 100
    store.close()


def test_min_history_longer_than_the_window_is_a_config_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("metrics:\n  zscore:\n    window: 1m\n    min_history: 2m\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={})
    assert f"{cfg}:4:" in str(info.value)
    assert "min_history (2m) must not be longer than the z-score window (1m)" in str(info.value)
