"""A risk manager's flow with the real command line: write a rule on ``unwind_bps``, ``check``
it, unit-test it with ``test-rules`` (values given directly, and books with a position), and
``replay`` it over a real COIN-M recording with the config's positions or ``--positions``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_positions import reference_unwind

from wis_monitor.book import Book

CONFIG = """\
storage: {path: wis.db}
positions: desk/positions.csv
metrics:
  zscore: {window: 1h, min_samples: 30, min_history: 2m}
venues:
  - {id: binancecoinm, exchange: binancecoinm, symbols: ["BTC/USD:BTC"]}
  - {id: binanceusdm, exchange: binanceusdm, symbols: ["ETH/USDT:USDT"]}
rules:
  include: [rules/desk.yaml]
"""
POSITIONS = "venue,symbol,size\nbinancecoinm,BTC/USD:BTC,-3000\nbinanceusdm,ETH/USDT:USDT,150\n"
RULES = """\
rules:
  - name: short-squeeze-cost
    when: unwind_bps > 2 and wis_z >= 1
    severity: critical
    description: covering the desk's short costs over 2 bps while the book leans up
    template:
      body: "{% if position %}Desk {{ '%+g' % position.size }} on {{ symbol }}{% endif %}"
  - name: unwind-cost
    when: unwind_bps > 25
"""
TESTS = """\
rule_files: [../rules/desk.yaml]
tests:
  - name: a costly unwind fires only while the book leans against the position
    input_series:
      - series: "binancecoinm:BTC/USD:BTC"
        values:
          unwind_bps: "1x3 3x4 1x3"
          wis_z:      "2x5 0x5"
    expected:
      - {at: 3s, rule: short-squeeze-cost, key: "binancecoinm:BTC/USD:BTC", event: firing}
      - {at: 5s, rule: short-squeeze-cost, key: "binancecoinm:BTC/USD:BTC", event: resolved}
  - name: the cost computed from books for a position
    input_series:
      - {series: "desk:X/USD", books: thin.jsonl, position: -1}
    expected:
      - {at: 1s, rule: unwind-cost, key: "desk:X/USD", event: firing}
      - {at: 3s, rule: unwind-cost, key: "desk:X/USD", event: resolved}
"""
#: Buying back 1 unit (100 of notional at the mid): 10 bps on a tight book, 50 on a wide one.
TIGHT = {"bids": [[99.9, 10]], "asks": [[100.1, 10]]}
WIDE = {"bids": [[99.5, 10]], "asks": [[100.5, 10]]}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_write_check_test_and_replay_a_rule_on_unwind_bps(tmp_path: Path,
                                                          shared_data: Path) -> None:
    (tmp_path / "desk").mkdir()
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "desk" / "positions.csv").write_text(POSITIONS)
    (tmp_path / "rules" / "desk.yaml").write_text(RULES)
    (tmp_path / "tests" / "desk_test.yaml").write_text(TESTS)
    (tmp_path / "tests" / "thin.jsonl").write_text("".join(
        json.dumps({"ts": 1_000 * i, "venue": "desk", "symbol": "X/USD", **book}) + "\n"
        for i, book in enumerate((TIGHT, WIDE, WIDE, TIGHT))))

    check = cli("check", "-c", "config.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "config.yaml: OK (2 venue(s), 2 series, 2 rule(s)" in check.stdout

    tested = cli("test-rules", "tests/desk_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr

    recording = shared_data / "books-full" / "binancecoinm-BTCUSD-BTC-20240808-1000ms.jsonl.gz"
    replayed = cli("replay", "-c", "config.yaml", "--books", str(recording), "--out",
                   "replay.db", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "alert(s) would have fired" in replayed.stdout
    assert "per rule: short-squeeze-cost " in replayed.stdout
    with sqlite3.connect(tmp_path / "replay.db") as db:
        db.row_factory = sqlite3.Row
        firing = db.execute("SELECT * FROM alerts WHERE event = 'firing'").fetchall()
        costs = {r["ts"]: r["unwind_bps"] for r in db.execute("SELECT ts, unwind_bps FROM "
                                                              "samples")}
    assert firing
    for a in firing:
        position = json.loads(a["details"])["position"]
        assert position["size"] == -3000.0 and position["notional"] == 300_000.0
        assert position["currency"] == "USD" and position["unwind_bps"] > 2
        assert position["unwind_bps"] == pytest.approx(costs[a["ts"]], rel=1e-12)
        assert "position -3,000 (300,000 USD), unwind" in a["summary"]

    # The same recording with a small position of the desk's choosing: covered cheaply.
    (tmp_path / "small.yaml").write_text(
        "- {venue: binancecoinm, symbol: 'BTC/USD:BTC', size: -100}\n")
    small = cli("replay", "-c", "config.yaml", "--positions", "small.yaml", "--books",
                str(recording), "--out", "small.db", cwd=tmp_path)
    assert small.returncode == 0, small.stderr
    assert "no alert would have fired" in small.stdout
    with sqlite3.connect(tmp_path / "small.db") as db:
        assert db.execute("SELECT max(unwind_bps) FROM samples").fetchone()[0] < 2.0

    (tmp_path / "wrong.csv").write_text("venue,symbol,size\nokx,BTC/USDT,1\n")
    wrong = cli("replay", "-c", "config.yaml", "--positions", "wrong.csv", "--books",
                str(recording), cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert 'wrong.csv:2: "okx:BTC/USDT" is not a series the configuration samples' in \
        wrong.stdout + wrong.stderr


def test_test_rules_says_a_position_needs_books(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "t.yaml").write_text(
        "rule_files: [rules.yaml]\ntests:\n  - name: n\n    input_series:\n"
        "      - {series: 'v:X/USD', values: {unwind_bps: '1x2'}, position: 3}\n")
    run = cli("test-rules", "t.yaml", cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'series "v:X/USD": position goes with books' in run.stdout


def test_the_books_of_the_test_file_cost_what_the_comment_says() -> None:
    for levels, bps in ((TIGHT, 10.0), (WIDE, 50.0)):
        b, a = np.array(levels["bids"], float), np.array(levels["asks"], float)
        book = Book(b[:, 0].copy(), b[:, 1].copy(), a[:, 0].copy(), a[:, 1].copy())
        assert reference_unwind(book, -1.0) == pytest.approx(bps, rel=1e-3)
