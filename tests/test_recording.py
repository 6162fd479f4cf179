"""Recording books in the database, exporting them, and replaying recordings with rules."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from daemon_harness import DaemonProcess, rows

CONFIG = """\
storage: {{path: {db}, record_books: true, record_levels_bps: 60}}
sampling: {{interval: 200ms}}
metrics:
  zscore: {{window: 1m, min_samples: 5}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT], sim: {{seed: 9}}}}
rules:
  include: [rules.yaml]
"""
RULES = """\
rules:
  - name: tilted
    when: abs(wis) > 0.02
    for: 1s
"""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def write_config(tmp_path: Path, db: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db))
    (tmp_path / "rules.yaml").write_text(RULES)
    return cfg


def test_record_export_and_replay_match_the_live_run(tmp_path: Path) -> None:
    live_db = tmp_path / "live.db"
    cfg = write_config(tmp_path, live_db)
    for _ in range(12):  # twelve cycles, as the live daemon would run them
        d = DaemonProcess(cfg, args=("--once",))
        assert d.wait() == 0, d.log()
    books = rows(live_db, "SELECT * FROM books")
    assert len(books) == 12
    out = tmp_path / "books.jsonl.gz"
    r = cli("export-books", "--db", str(live_db), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 12 books" in r.stdout
    with gzip.open(out, "rt") as fh:
        lines = [json.loads(x) for x in fh]
    assert [x["ts"] for x in lines] == sorted(x["ts"] for x in lines)
    assert all(x["venue"] == "simex" and x["symbol"] == "BTC/USDT" for x in lines)
    # Only levels within the recorded band were kept.
    for x in lines:
        mid = (x["bids"][0][0] + x["asks"][0][0]) / 2
        assert all(abs(p - mid) / mid * 1e4 <= 60 + 1e-9 for p, _ in x["bids"] + x["asks"])

    for source in (["--books", str(out)], ["--db", str(live_db)]):
        replay_db = tmp_path / f"replay-{source[0][2:]}.db"
        r = cli("replay", "-c", str(cfg), *source, "--out", str(replay_db))
        assert r.returncode == 0, r.stderr
        assert "replayed 12 books of 1 series" in r.stdout
        live = rows(live_db, "SELECT wis, mid, bid_depth, ask_depth FROM samples ORDER BY ts")
        again = rows(replay_db, "SELECT wis, mid, bid_depth, ask_depth FROM samples ORDER BY ts")
        assert len(again) == 12
        for a, b in zip(live, again, strict=True):
            # The band used for WIS (50 bps) lies within the recorded 60 bps: same numbers.
            assert abs(a["wis"] - b["wis"]) <= 1e-9 * max(1.0, abs(a["wis"]))
            assert a["mid"] == b["mid"]


def test_replay_reports_what_would_have_fired(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    lines = []
    for i in range(20):
        bid_q = 20.0 if 5 <= i < 12 else 1.0
        lines.append(json.dumps({
            "ts": 1_723_161_255_000 + 1000 * i, "venue": "v", "symbol": "BTC/USDT",
            "bids": [[100.0, bid_q], [99.99, 1.0]], "asks": [[100.01, 1.0], [100.02, 1.0]]}))
    rec.write_text("\n".join(lines) + "\n")
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: heavy-bids\n    when: wis > 0.5\n    for: 2s\n    severity: critical\n"
        "    channels: [desk]\n")
    (tmp_path / "c.yaml").write_text(
        "channels: {desk: {url: 'json://127.0.0.1:9/never'}}\nrules: {include: [rules.yaml]}\n")
    out = tmp_path / "out.db"
    r = cli("replay", "-c", str(tmp_path / "c.yaml"), "--books", str(rec), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 alert(s) would have fired" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "heavy-bids" in x)
    assert "v:BTC/USDT" in line and "2024-08-08 23:54:22" in line and "5s" in line
    events = rows(out, "SELECT event, ts FROM alerts ORDER BY ts")
    assert [e["event"] for e in events] == ["firing", "resolved"]
    # Nothing was sent: replay without --notify creates no pending deliveries to send.
    assert rows(out, "SELECT * FROM deliveries") == []


def test_replay_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    good = json.dumps({"ts": 1, "venue": "v", "symbol": "S", "bids": [[1.0, 1.0]],
                       "asks": [[1.1, 1.0]]})
    rec.write_text(f"{good}\nnot json\n{{\"ts\": 2}}\n{good}\n")
    r = cli("replay", "--books", str(rec))
    assert r.returncode == 0
    assert "replayed 2 books" in r.stdout
    assert f"{rec}:2: not JSON" in r.stderr
    assert f'{rec}:3: missing "venue", "symbol", "bids", "asks"' in r.stderr
