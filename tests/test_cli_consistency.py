"""One command line: globs in --books like --rules, the same exit codes everywhere (0 ok,
1 runtime failure, 2 bad input or usage), group options before or after the subcommand,
--json where a script needs it, silences checked against the config's venues and symbols,
expired silences marked, no empty export of a database that recorded no books."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_cli_tools import START_MS, recording

from wis_monitor.cli import hoist_global_options
from wis_monitor.store import SqliteStore, encode_levels

CONFIG = """\
storage: {{path: {db}}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT]}}
channels:
  out: {{url: 'console://'}}
rules: {{include: [rules.yaml]}}
"""
RULES = """\
rules:
  - {name: hot, when: wis_z >= 3, channels: [out]}
  - {name: quiet, when: wis > 0.9, channels: []}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120)


def config(tmp_path: Path, *, with_db: bool = True) -> Path:
    db = tmp_path / "wis.db"
    if with_db:
        SqliteStore(str(db)).close()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db))
    (tmp_path / "rules.yaml").write_text(RULES)
    return cfg


def test_books_expand_globs_and_say_when_one_matches_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    rec = recording(tmp_path / "a", 60)
    rec.rename(tmp_path / "a" / "day1.jsonl")
    r = cli("replay", "--books", str(tmp_path / "a" / "day*.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "replayed 60 books" in r.stdout
    r = cli("replay", "--books", str(tmp_path / "a" / "day*.jsonl"),
            "--books", str(tmp_path / "nope*.jsonl"))
    assert r.returncode == 2
    assert f"{tmp_path / 'nope*.jsonl'}: no file matches this --books pattern" in r.stderr
    r = cli("calibrate", "--books", str(tmp_path / "x?.jsonl"))
    assert r.returncode == 2 and "no file matches this --books pattern" in r.stderr


def test_a_missing_database_exits_2_everywhere(tmp_path: Path) -> None:
    cfg = config(tmp_path, with_db=False)
    none = str(tmp_path / "none.db")
    for args in (["status", "-c", str(cfg)], ["silence", "list", "-c", str(cfg)],
                 ["report", "--db", none, "-o", str(tmp_path / "r.png")],
                 ["top", "--db", none, "--once"], ["replay", "--db", none],
                 ["calibrate", "--db", none], ["export-books", "--db", none, "-o",
                                               str(tmp_path / "b.jsonl")]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "no database at" in r.stderr and "Traceback" not in r.stderr, args


def test_group_options_work_after_the_subcommand(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    r = cli("status", "-c", str(cfg), "--log-format", "json", "--log-level=debug")
    assert r.returncode == 0, r.stderr
    r = cli("status", "-c", str(cfg), "--log-level", "loud")
    assert r.returncode == 2 and "'loud' is not one of" in r.stderr
    assert hoist_global_options(["check", "-c", "x", "--log-format", "json", "--", "a"]) == \
        ["--log-format", "json", "check", "-c", "x", "--", "a"]


def test_check_json_locates_problems_and_notes(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    r = cli("check", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["problems"] == []
    assert out["counts"] == {"venues": 1, "series": 2, "rules": 2, "rule_files": 1,
                             "channels": 1}
    rules = str(tmp_path / "rules.yaml")
    assert {(n["path"], n["line"]) for n in out["notes"]} == {(rules, 3)}
    assert "has no channels" in out["notes"][0]["message"]
    (tmp_path / "rules.yaml").write_text(RULES.replace("wis_z >= 3", "wis_zz >= 3"))
    r = cli("check", "-c", str(cfg), "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    assert out["ok"] is False
    assert [(p["path"], p["line"]) for p in out["problems"]] == [(rules, 2)]
    assert 'unknown metric "wis_zz"' in out["problems"][0]["message"]


def test_silences_check_venues_and_symbols_mark_expired_and_list_as_json(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    add = ("silence", "add", "-c", str(cfg), "--for", "1h", "--reason", "maintenance")
    r = cli(*add, "--match", "venue=simx")
    assert r.returncode == 2
    assert 'venue=simx matches no configured venue (did you mean "simex"?); venues: simex' \
        in r.stderr
    r = cli(*add, "--match", "symbol=ETHUSDT")
    assert r.returncode == 2 and "symbols: BTC/USDT, ETH/USDT" in r.stderr
    assert cli(*add, "--match", "venue=sim*", "--match", "symbol=ETH/*").returncode == 0
    assert cli(*add, "--match", "symbol=BTC/USDT").returncode == 0
    assert cli("silence", "expire", "-c", str(cfg), "1").returncode == 0
    r = cli("silence", "list", "-c", str(cfg), "--all")
    lines = r.stdout.splitlines()
    assert " expired " in lines[0] and " until " in lines[1], r.stdout
    r = cli("silence", "list", "-c", str(cfg), "--all", "--json")
    listed = json.loads(r.stdout)
    assert [(s["id"], s["expired"], s["matchers"]) for s in listed] == [
        (1, True, {"venue": "sim*", "symbol": "ETH/*"}), (2, False, {"symbol": "BTC/USDT"})]
    assert set(listed[0]) == {"id", "rule", "matchers", "created", "expires", "expired", "by",
                              "reason"}
    r = cli("silence", "list", "-c", str(cfg), "--json")
    assert [s["id"] for s in json.loads(r.stdout)] == [2]


def test_export_books_without_recorded_books_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "wis.db"
    SqliteStore(str(db)).close()
    out = tmp_path / "b.jsonl"
    r = cli("export-books", "--db", str(db), "-o", str(out))
    assert r.returncode == 2
    assert "holds no recorded books: the daemon records them only with storage.record_books on" \
        in r.stderr
    assert not out.exists()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO books (ts, venue, symbol, bids, asks) VALUES (?, ?, ?, ?, ?)",
                     (START_MS, "v", "BTC/USDT", encode_levels(np.array([[1.0, 1.0]])),
                      encode_levels(np.array([[2.0, 1.0]]))))
    r = cli("export-books", "--db", str(db), "--venue", "w", "-o", str(out))
    assert r.returncode == 2 and "no recorded books of --venue w; it has: v BTC/USDT" in r.stderr
    assert not out.exists()
    r = cli("export-books", "--db", str(db), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 1 books" in r.stdout
