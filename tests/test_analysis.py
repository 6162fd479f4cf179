"""Calibration figures against an independent computation; the report chart renders."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.store import AlertRow, Batch, SampleRow, SqliteStore
from wis_monitor.tools.calibrate import auc, spearman


def pairwise_auc(scores: list[float], positive: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def plain_ranks(xs: list[float]) -> list[float]:
    return [sum(1 for y in xs if y < x) + (sum(1 for y in xs if y == x) + 1) / 2 for x in xs]


def plain_spearman(a: list[float], b: list[float]) -> float:
    ra, rb = plain_ranks(a), plain_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.booleans()), min_size=4, max_size=60))
def test_auc_and_ic_match_plain_definitions(data: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in data]
    labels = [p for _, p in data]
    got = auc(np.array(scores), np.array(labels))
    if all(labels) or not any(labels):
        assert got is None
    else:
        assert got == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)
    moves = [float(i % 7) - 3 + (0.5 if p else 0) for i, (_, p) in enumerate(data)]
    if len(set(scores)) > 1 and len(set(moves)) > 1:
        got_ic = spearman(np.array(scores), np.array(moves))
        assert got_ic == pytest.approx(plain_spearman(scores, moves), abs=1e-9)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_chart(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = SqliteStore(str(db))
    now = int(time.time() * 1000)
    rows = []
    for i in range(600):
        ts = now - 3_600_000 + i * 6000
        w = float(np.sin(i / 40))
        rows.append(SampleRow(ts, "simex", "BTC/USDT", {
            "mid": 60_000 + 20 * np.sin(i / 90), "spread_bps": 0.1, "wis": w, "wis_z": 3.5 * w,
            "imbalance": 0.0, "bid_depth": 1e6, "ask_depth": 1e6, "latency_ms": 1.0,
            "coverage_bps": 50.0}))
    store.write(Batch(samples=rows, alerts=[
        AlertRow(now - 3_000_000, "extreme-bid-pressure", "simex:BTC/USDT", "simex", "BTC/USDT",
                 "firing", "critical", 3.4, "s"),
        AlertRow(now - 2_500_000, "extreme-bid-pressure", "simex:BTC/USDT", "simex", "BTC/USDT",
                 "resolved", "critical", 1.0, "s")]))
    store.close()
    out = tmp_path / "report.png"
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "report", "--db", str(db),
                        "--since", "1h", "-o", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert png_size(data) == (1400, 900)
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.std() > 0.05  # not blank
    # No red: thresholds are grey, alert markers are symbols in their series' colour.
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((r > 0.7) & (g < 0.35) & (b < 0.35)).sum() == 0


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120, env=env)


RULES = """\
rules:
  - {name: leaning, when: wis_z >= 1.5, channels: [risk-slack]}
"""


def test_replay_with_rule_files_and_an_old_database_chart(tmp_path: Path,
                                                          shared_data: Path) -> None:
    """A quant tries a candidate rule file on history (no config, no secrets), then charts
    the replay database without computing offsets from 2024."""
    (tmp_path / "candidate.yaml").write_text(RULES)
    books = shared_data / "books" / "binance-BTCUSDT-20240808.jsonl.gz"
    out = tmp_path / "r.db"
    r = cli("replay", "--books", str(books), "--rules", str(tmp_path / "cand*.yaml"),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert any(line.split()[:2] == ["leaning", "binance:BTC/USDT"]
               for line in r.stdout.splitlines()), r.stdout
    import sqlite3

    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*) FROM alerts WHERE rule = 'leaning'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
        newest = conn.execute("SELECT max(ts) FROM samples").fetchone()[0]
    png = tmp_path / "r.png"
    r = cli("report", "--db", str(out), "-o", str(png))
    assert r.returncode == 0, r.stderr
    assert png_size(png.read_bytes()) == (1400, 900)
    # --from/--to: an absolute window of the same data.
    from datetime import UTC, datetime

    end = datetime.fromtimestamp(newest / 1000, UTC)
    r = cli("report", "--db", str(out), "--from", f"{end:%Y-%m-%dT%H:%M:%S}Z", "--to",
            f"{end:%Y-%m-%dT%H:%M:%S}", "-o", str(png))
    assert r.returncode == 2 and "start must be before the end" in r.stderr


def test_replay_notify_sends_what_fired(tmp_path: Path, shared_data: Path) -> None:
    """--notify queues the deliveries at the wall clock: a 2024 recording still sends."""
    (tmp_path / "rules.yaml").write_text(RULES.replace("risk-slack", "out"))
    (tmp_path / "c.yaml").write_text(
        "metrics: {zscore: {window: 1h, min_samples: 30, min_history: 2m}}\n"
        "channels:\n  out: {url: 'console://'}\nrules: {include: [rules.yaml]}\n")
    books = shared_data / "books" / "binance-ETHUSDT-20240808.jsonl.gz"
    r = cli("replay", "-c", str(tmp_path / "c.yaml"), "--books", str(books), "--notify",
            "--out", str(tmp_path / "n.db"))
    assert r.returncode == 0, r.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "n.db") as conn:
        statuses = {s for (s,) in conn.execute("SELECT status FROM deliveries")}
    assert statuses == {"sent"}
    assert "[WARNING] leaning binance ETH/USDT" in r.stdout

