"""Numbers that cannot be trusted never pass as good: contract fields a book cannot have, and
metrics that overflow to inf or NaN, make a sample ``invalid``; the z-score windows refuse
non-finite values; an EWMA z-score is rebuilt after a restart as if nothing had happened."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.book import make_book
from wis_monitor.config import Config, load_config
from wis_monitor.engine import Engine, Sample
from wis_monitor.sources import Observation
from wis_monitor.stats import EwmaZ, RobustZ, RollingZ, ZScoreSpec
from wis_monitor.store import SqliteStore

BIDS = [[100.0, 1.0], [99.9, 2.0]]
ASKS = [[100.1, 1.0], [100.2, 1.5]]
HUGE = 1.7e308


@pytest.mark.parametrize(("contract_size", "inverse"), [
    (-1.0, False), (0.0, False), (math.nan, False), (math.inf, False), ("abc", False),
    (True, False), (1.0, "yes"), (1.0, 1),
])
def test_contract_fields_a_book_cannot_have_make_it_invalid(contract_size: object,
                                                            inverse: object) -> None:
    _, flags = make_book(BIDS, ASKS, contract_size=contract_size,  # type: ignore[arg-type]
                         inverse=inverse)  # type: ignore[arg-type]
    assert "invalid" in flags


@pytest.mark.parametrize(("contract_size", "inverse"), [(None, False), (100, True), (0.5, False)])
def test_contract_fields_a_book_can_have(contract_size: float | None, inverse: bool) -> None:
    book, flags = make_book(BIDS, ASKS, contract_size=contract_size, inverse=inverse)
    assert flags == frozenset()
    assert book.contract_size == (contract_size or 1.0) and book.inverse is inverse


def engine(tmp_path: Path, zscore: str = "{window: 1m, min_samples: 2, min_history: 0s}") -> Engine:
    (tmp_path / "c.yaml").write_text(
        f"sampling: {{interval: 1s, stale_after: 1h}}\nmetrics:\n  zscore: {zscore}\n"
        "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n")
    return Engine(load_config(str(tmp_path / "c.yaml")))


def sample(e: Engine, ts: int, bids: list[list[float]], asks: list[list[float]],
           contract_size: float = 1.0) -> Sample:
    book, flags = make_book(bids, asks, contract_size=contract_size)
    _, (s,) = e.process([Observation("a", "X/Y", ts, book, flags, 1.0)])
    return s


def warmed(tmp_path: Path) -> Engine:
    e = engine(tmp_path)
    for i in range(5):
        sample(e, i * 1000, [[100.0, 1.0 + i % 3], [99.9, 2.0]], ASKS)
    return e


@pytest.mark.parametrize(("bids", "asks", "contract_size"), [
    ([[HUGE * 0.99, 1.0]], [[HUGE, 1.0]], 1.0),             # mid = inf
    ([[1e200, 1e200]], [[1.0000001e200, 1.0]], 1.0),         # a notional overflows: WIS NaN
    ([[100.0, 1e307]], [[100.1, 1e307]], 1.0),               # depth overflows
    ([[100.0, 1.0]], [[100.1, 1.0]], 1e308),                 # contract size overflows it
])
def test_a_sample_whose_metrics_overflow_is_invalid_and_stays_out_of_windows(
        tmp_path: Path, bids: list[list[float]], asks: list[list[float]],
        contract_size: float) -> None:
    e = warmed(tmp_path)
    window = e.series[("a", "X/Y")].stats.scorers["wis"]
    s = sample(e, 5000, bids, asks, contract_size)  # warnings are errors in the tests
    assert "invalid" in s.flags and not s.good
    assert all(v is None or math.isfinite(v) for v in s.values.values()), s.values
    assert s.values.get("wis") is None and s.values.get("wis_z") is None
    after = sample(e, 6000, BIDS, ASKS)
    assert after.good and after.values["wis_z"] is not None
    # The window holds the samples of 0 s to 4 s: the invalid one at 5 s never entered it.
    assert window.baseline().n == 5  # type: ignore[union-attr]


def test_mid_change_that_overflows_makes_the_sample_invalid(tmp_path: Path) -> None:
    e = engine(tmp_path)
    assert sample(e, 0, [[1e-300, 1.0]], [[1.1e-300, 1.0]]).good
    s = sample(e, 1000, [[1e10, 1.0]], [[1.1e10, 1.0]])
    assert "invalid" in s.flags and s.values.get("mid_change_bps") is None


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    tmp = tmp_path_factory.mktemp("config")
    (tmp / "c.yaml").write_text("sampling: {interval: 1s, stale_after: 1h}\n"
                                "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n")
    return load_config(str(tmp / "c.yaml"))


finite = st.floats(min_value=5e-324, max_value=1.7976931348623157e308, allow_nan=False,
                   allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(prices=st.lists(finite, min_size=2, max_size=6, unique=True),
       amounts=st.lists(finite, min_size=6, max_size=6), contract_size=finite)
def test_any_book_of_finite_numbers_gives_finite_metrics_or_an_invalid_sample(
        config: Config, prices: list[float], amounts: list[float], contract_size: float) -> None:
    prices.sort()
    half = len(prices) // 2
    bids = [[p, q] for p, q in zip(prices[half - 1::-1], amounts, strict=False)]
    asks = [[p, q] for p, q in zip(prices[half:], amounts[3:], strict=False)]
    e = Engine(config)
    s = sample(e, 0, bids, asks, contract_size)
    assert all(v is None or math.isfinite(v) for v in s.values.values()), s.values
    assert s.good or s.flags & {"invalid", "crossed"}


def test_replay_of_huge_prices_is_invalid_without_warnings(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_text(json.dumps({"ts": 1000, "venue": "v", "symbol": "S",
                               "bids": [[HUGE * 0.99, 1.0]], "asks": [[HUGE, 1.0]]}) + "\n")
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "replay", "--books", str(rec)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "quality: invalid 1" in r.stdout
    assert "Warning" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("scorer", [RollingZ, RobustZ, EwmaZ])
def test_z_score_windows_refuse_non_finite_values(scorer: type[RollingZ | RobustZ | EwmaZ]
                                                  ) -> None:
    z = scorer(ZScoreSpec(60_000, 3, half_life_ms=10_000))
    for i, x in enumerate([0.1, 0.3, math.nan, 0.2, math.inf, -math.inf, 0.4]):
        z.push(i * 1000, x)
    assert z.score(8000, math.nan) is None
    assert z.score(8000, 0.25) is not None
    base = z.baseline()
    assert base is not None and base.n == 4
    assert math.isfinite(base.center) and math.isfinite(base.scale)


ZSCORES = {
    "rolling": "{window: 30s, min_samples: 5}",
    "robust": "{method: robust, window: 30s, min_samples: 5}",
    "ewma": "{method: ewma, half_life: 10s, window: 30s, min_samples: 5}",
}
OVERFLOWING = {880, 950}  # books whose notionals overflow, before and after the restart


def book_at(i: int) -> Observation:
    qty = 1.0 + (i * 7919 % 13) / 4  # a varied, repeatable series
    bids = [[100.0, 1e307 if i in OVERFLOWING else qty], [99.9, 2.0]]
    book, flags = make_book(bids, ASKS)
    return Observation("a", "X/Y", i * 1000, book, flags, 1.0)


@pytest.mark.parametrize("method", ZSCORES)
def test_z_after_a_restart_equals_an_uninterrupted_run(tmp_path: Path, method: str) -> None:
    """The restarted engine rebuilds its z-scores from the logged values (an EWMA from so much
    history that what it leaves out weighs less than 1e-12), and samples whose metrics
    overflowed are in neither run's windows: z matches the uninterrupted run's to 1e-9."""
    store = SqliteStore(str(tmp_path / "wis.db"))
    steady = engine(tmp_path, ZSCORES[method])
    steady.store = store
    restart_at = 900
    for i in range(restart_at):
        batch, _ = steady.process([book_at(i)])
        store.write(batch)
    restarted = engine(tmp_path, ZSCORES[method])
    restarted.store = store
    restarted.restore(restart_at * 1000)
    for i in range(restart_at, 1000):
        _, (want,) = steady.process([book_at(i)])
        _, (got,) = restarted.process([book_at(i)])
        if i in OVERFLOWING:
            assert "invalid" in want.flags and got.values.get("wis_z") is None
            continue
        assert want.values["wis_z"] is not None
        assert got.values["wis_z"] == pytest.approx(want.values["wis_z"], abs=1e-9, rel=1e-9)
    store.close()
