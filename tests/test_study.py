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
    return sum(r["span"] for r in rows) / 3_600_000


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
