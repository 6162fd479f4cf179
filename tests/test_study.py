"""The shipped rules on real books: `wis-monitor replay` of the six books-full series with the
study config fires 0.5-4 alerts per series-hour, and the book-shape thresholds sit inside the
range those books reach (see docs/signal-study.md)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wis_monitor.config import load_config

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "examples" / "study.yaml"


_REPLAYED: dict[Path, sqlite3.Connection] = {}


@pytest.fixture
def replayed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> sqlite3.Connection:
    """The output database of the documented study replay (run once for the module)."""
    books = sorted((shared_data / "books-full").glob("*.jsonl.gz"))
    assert len(books) == 6, f"{shared_data / 'books-full'}: expected six recordings"
    if shared_data not in _REPLAYED:
        out = tmp_path_factory.mktemp("study") / "study.db"
        args = [a for b in books for a in ("--books", str(b))]
        r = subprocess.run([sys.executable, "-m", "wis_monitor", "replay", "-c", str(STUDY),
                            *args, "--out", str(out)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "replayed 3282 books of 6 series" in r.stdout, r.stdout
        conn = sqlite3.connect(out)
        conn.row_factory = sqlite3.Row
        _REPLAYED[shared_data] = conn
    return _REPLAYED[shared_data]


def _series(conn: sqlite3.Connection, column: str) -> dict[str, np.ndarray]:
    rows = conn.execute(f"SELECT venue, symbol, {column} AS v FROM samples "
                        "WHERE quality IN ('', 'thin') AND v IS NOT NULL").fetchall()
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(f"{r['venue']}:{r['symbol']}", []).append(float(r["v"]))
    return {k: np.array(v) for k, v in out.items()}


def _series_hours(conn: sqlite3.Connection) -> float:
    rows = conn.execute("SELECT venue, symbol, (max(ts) - min(ts) + 1000) AS span FROM samples "
                        "GROUP BY venue, symbol").fetchall()
    assert len(rows) == 6
    return float(sum(r["span"] for r in rows)) / 3_600_000


def test_shipped_rules_fire_half_to_four_alerts_per_series_hour(
        replayed: sqlite3.Connection) -> None:
    shipped = {r.name for r in load_config(str(STUDY)).rules}
    firing = [r["rule"] for r in replayed.execute(
        "SELECT rule FROM alerts WHERE event = 'firing' AND rule != 'feed-stale'")]
    assert set(firing) <= shipped
    rate = len(firing) / _series_hours(replayed)
    assert 0.5 <= rate <= 4.0, (rate, firing)


def _threshold(rule: str, comparison: str) -> float:
    """The number after ``comparison`` (``spread_bps >``) in the rule's ``when``."""
    when = {r.name: r.spec.when for r in load_config(str(STUDY)).rules}[rule]
    found = re.search(rf"{re.escape(comparison)}\s*(-?[\d.]+)", when)
    assert found, (rule, when)
    return float(found.group(1))


def test_book_shape_thresholds_sit_inside_what_real_books_reach(
        replayed: sqlite3.Connection) -> None:
    """Each threshold is one the recorded books reach (or, for a collapse, come near) but
    that only their extremes cross: above the 99th percentile of every series, at most the
    largest value seen."""
    spread = np.concatenate(list(_series(replayed, "spread_bps").values()))
    t = _threshold("spread-blowout", "spread_bps >")
    assert np.percentile(spread, 99) < t <= spread.max()

    lean = {k: np.abs(v) for k, v in _series(replayed, "wis_s").items()}
    t = _threshold("sustained-one-sided-book", "abs(wis_s) >=")
    assert all(np.percentile(v, 99) < t for k, v in lean.items() if "usdm:BTC" not in k)
    assert t <= max(v.max() for v in lean.values())

    ratio = np.concatenate(list(_series(replayed, "(bid_depth + ask_depth) / depth_avg")
                                .values()))
    t = _threshold("depth-collapse", "depth <")
    assert ratio.min() / 2 <= t < np.percentile(ratio, 1)

    flow = {k: np.abs(v) for k, v in _series(replayed, "ofi").items()}
    for rule, op in (("extreme-bid-pressure", "ofi >="), ("extreme-ask-pressure", "ofi <=")):
        t = abs(_threshold(rule, op))
        assert all(np.percentile(v, 99) < t for k, v in flow.items() if "usdm" not in k)
        assert t <= max(v.max() for v in flow.values())


def test_example_config_depth_reaches_its_band_on_real_binance_books(
        shared_data: Path, tmp_path: Path) -> None:
    """The example config's binance venue asks for 1,000 levels: on the recorded books, cut to
    that many levels a side, both sides reach the band it measures over."""
    import gzip
    import json
    import os

    (tmp_path / "slack-webhook").write_text("slack://T000/B000/XXXXXXXX\n")
    (tmp_path / "smtp-password").write_text("pw\n")
    cfg = load_config(str(ROOT / "docs" / "examples" / "config.yaml"),
                      env={**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    venue = next(v for v in cfg.settings.venues if v.id == "binance")
    assert venue.depth == 1000
    for symbol, name in (("BTC/USDT", "BTCUSDT"), ("ETH/USDT", "ETHUSDT")):
        band = cfg.metrics_for("binance", symbol).wis.band_bps
        path = shared_data / "books-full" / f"binance-{name}-20240808-1000ms.jsonl.gz"
        reach = []
        with gzip.open(path, "rt") as fh:
            for line in fh:
                b = json.loads(line)
                bids, asks = b["bids"][:venue.depth], b["asks"][:venue.depth]
                mid = (bids[0][0] + asks[0][0]) / 2
                reach.append(min(mid - bids[-1][0], asks[-1][0] - mid) / mid * 1e4)
        assert min(reach) >= band, (symbol, min(reach), band)
