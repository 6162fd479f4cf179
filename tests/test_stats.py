"""Rolling z-scores equal a plain recomputation over the same window (SPEC §4)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.stats import EwmaZ, RobustZ, RollingZ, SeriesStats, ZScoreSpec


def run(scorer: RollingZ | RobustZ, series: list[tuple[int, float]]) -> list[float | None]:
    out = []
    for ts, x in series:
        out.append(scorer.score(ts, x))
        scorer.push(ts, x)
    return out


timestamps = st.lists(st.integers(0, 5_000), min_size=1, max_size=150).map(
    lambda gaps: list(np.cumsum(gaps).tolist()))


@settings(max_examples=200, deadline=None)
@given(timestamps, st.integers(1_000, 60_000), st.integers(2, 10), st.data())
def test_rolling_equals_plain_recomputation(ts: list[int], window: int, min_samples: int,
                                            data: st.DataObject) -> None:
    xs = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=len(ts), max_size=len(ts)))
    series = list(zip(ts, xs, strict=True))
    got = run(RollingZ(ZScoreSpec(window, min_samples)), series)
    want = ref.zscores(series, window, min_samples)
    for g, w in zip(got, want, strict=True):
        assert ref.close(g, w, rel=1e-9, abs_=1e-9), (g, w)


def test_window_excludes_the_sample_itself_and_same_timestamp() -> None:
    z = RollingZ(ZScoreSpec(10_000, 2))
    for ts, x in [(0, 0.0), (1000, 1.0)]:
        z.push(ts, x)
    # Two samples at t=2000: neither counts for the other.
    assert z.score(2000, 10.0) == pytest.approx((10.0 - 0.5) / np.std([0.0, 1.0], ddof=1))
    z.push(2000, 10.0)
    assert z.score(2000, 0.5) == pytest.approx(0.0)


def test_constant_series_and_min_samples() -> None:
    z = RollingZ(ZScoreSpec(60_000, 3))
    assert run(z, [(i * 1000, 0.25) for i in range(10)]) == [None] * 10


def test_long_run_stays_exact() -> None:
    rng = np.random.default_rng(3)
    xs = rng.normal(0.1, 0.3, 20_000)
    ts = np.cumsum(rng.integers(200, 2000, 20_000)).tolist()
    z = RollingZ(ZScoreSpec(300_000, 30))
    got = run(z, list(zip(ts, xs.tolist(), strict=True)))
    # Check the last 200 samples against numpy over their windows.
    for i in range(len(ts) - 200, len(ts)):
        w = xs[[j for j in range(i - 2000, i) if ts[i] - 300_000 <= ts[j] < ts[i]]]
        want = (xs[i] - w.mean()) / w.std(ddof=1)
        assert ref.close(got[i], float(want), rel=1e-9, abs_=1e-9)


def test_robust_is_median_and_mad() -> None:
    rng = np.random.default_rng(5)
    xs = rng.standard_t(3, 300).tolist()
    z = RobustZ(ZScoreSpec(50_000, 10, "robust"))
    got = run(z, [(i * 1000, x) for i, x in enumerate(xs)])
    for i in (20, 100, 299):
        w = np.array(xs[max(0, i - 50):i])
        med = np.median(w)
        mad = np.median(np.abs(w - med)) * 1.4826
        assert got[i] == pytest.approx((xs[i] - med) / mad, rel=1e-9)


def test_ewma_tracks_a_shift() -> None:
    z = EwmaZ(ZScoreSpec(min_samples=5, method="ewma", half_life_ms=10_000))
    rng = np.random.default_rng(1)
    for i in range(200):
        z.push(i * 1000, float(rng.normal(0.0, 0.1)))
    assert abs(z.score(200_000, 0.0) or 0.0) < 1.0
    assert (z.score(200_000, 1.0) or 0.0) > 5.0
    b = z.baseline()
    assert b is not None and abs(b.center) < 0.1 and 0.03 < b.scale < 0.3


def test_series_stats_nulls_stay_out() -> None:
    s = SeriesStats(("wis",), ZScoreSpec(60_000, 2))
    assert s.update(0, {"wis": None}) == {"wis": None}
    s.update(1000, {"wis": 0.1})
    s.update(2000, {"wis": 0.3})
    out = s.update(3000, {"wis": 0.2})
    assert out["wis"] == pytest.approx(0.0)


@pytest.mark.parametrize("tail", [
    [1.0] * 700,                                       # an ask side empty within the band
    [-0.9] * 700,                                      # a level shift, then flat
    (-0.9 + np.random.default_rng(5).normal(0, 1e-6, 700)).tolist(),  # shift, tiny noise
])
def test_level_shift_keeps_full_precision(tail: list[float]) -> None:
    """After the mean moves far from where it was, z is still exact, and null once flat."""
    head = np.random.default_rng(4).uniform(-1, 1, 40).tolist()
    series = [(i * 1000, x) for i, x in enumerate(head + tail)]
    got = run(RollingZ(ZScoreSpec(600_000, 10)), series)
    want = ref.zscores(series, 600_000, 10)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert ref.close(g, w, rel=1e-9, abs_=1e-9), (i, g, w)
