"""Files in and out of the command line: a file that is no book recording is refused, every
output's missing directories are created and a directory is no output, an export's format
follows its suffix, --db wherever the database is read, quoted globs wherever files are
taken, whole lines from `top` into a pipe, and no misleading hint for an impact metric."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_cli_tools import START_MS, recording

from wis_monitor.store import SqliteStore, encode_levels

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120)


def refused(r: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2 with ``message`` on one line of stderr and no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert any(message in line for line in r.stderr.splitlines()), r.stderr


def books_db(path: Path) -> Path:
    """A database with one recorded book."""
    SqliteStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO books (ts, venue, symbol, bids, asks) VALUES (?, ?, ?, ?, ?)",
                     (START_MS, "v", "BTC/USDT", encode_levels(np.array([[1.0, 1.0]])),
                      encode_levels(np.array([[2.0, 1.0]]))))
    return path


def test_a_file_that_is_no_book_recording_is_refused_not_read_line_by_line(
        tmp_path: Path) -> None:
    db = tmp_path / "wis.db"
    SqliteStore(str(db)).close()
    r = cli("replay", "--books", str(db))
    refused(r, f"{db}: a SQLite database, not a book recording (did you mean --db?)")
    assert len(r.stderr.splitlines()) == 1 and "replayed" not in r.stdout
    yaml = tmp_path / "config.yaml"
    yaml.write_text("storage: {path: wis.db}\nvenues:\n  - {id: s, exchange: sim}\n" * 40)
    r = cli("replay", "--books", str(yaml))
    refused(r, f"{yaml}: not a book recording")
    assert len(r.stderr.splitlines()) == 1
    binary = tmp_path / "noise.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    refused(cli("calibrate", "--books", str(binary)), f"{binary}: not a book recording")
    # A genuine recording with a few bad lines, even first, is read: they are skipped.
    rec = recording(tmp_path, 60)
    rec.write_text('{"ts": 1}\nnot json\n' + rec.read_text())
    r = cli("replay", "--books", str(rec))
    assert r.returncode == 0, r.stderr
    assert "2 bad lines skipped" in r.stderr and "replayed 60 books" in r.stdout


def test_every_output_gets_its_directories_and_a_directory_is_no_output(
        tmp_path: Path) -> None:
    rec = recording(tmp_path, 120)
    out = tmp_path / "new" / "replay.db"
    assert cli("replay", "--books", str(rec), "--out", str(out)).returncode == 0
    db = books_db(tmp_path / "books.db")
    made = {
        "report": ["report", "--db", str(out), "-o", "{}/a.png"],
        "new-config": ["new-config", "-o", "{}/x.yaml"],
        "export-books": ["export-books", "--db", str(db), "-o", "{}/b.jsonl"],
        "convert-books": ["convert-books", str(rec), "-o", "{}/c.jsonl.gz"],
        "calibrate": ["calibrate", "--books", str(rec), "--replicates", "50",
                      "--horizon", "1s", "--kernels", "flat", "--write", "{}/s.yaml"],
        "replay": ["replay", "--books", str(rec), "--out", "{}/r.db"],
    }
    for name, args in made.items():
        where = tmp_path / name / "missing" / "dir"
        r = cli(*[a.format(where) for a in args])
        assert r.returncode == 0, (name, r.stderr)
        assert len(list(where.iterdir())) == 1, name
        target = tmp_path / name / ("existing" + "".join(Path(args[-1]).suffixes))
        target.mkdir()
        r = cli(*args[:-1], str(target), *(["--force"] if name == "new-config" else []))
        refused(r, f"{target}: is a directory")


def test_export_books_writes_the_format_of_its_suffix_and_refuses_others(
        tmp_path: Path) -> None:
    db = books_db(tmp_path / "rec.db")
    csv = tmp_path / "rec.csv"
    r = cli("export-books", "--db", str(db), "-o", str(csv))
    refused(r, f"{csv}: ")
    assert ".jsonl, .jsonl.gz, .parquet" in r.stderr and not csv.exists()
    r = cli("convert-books", str(recording(tmp_path, 5)), "-o", str(csv))
    refused(r, ".jsonl, .jsonl.gz, .parquet")
    for name, magic in (("b.jsonl", b'{"ts":'), ("b.jsonl.gz", b"\x1f\x8b"),
                        ("b.parquet", b"PAR1")):
        r = cli("export-books", "--db", str(db), "-o", str(tmp_path / name))
        assert r.returncode == 0, (name, r.stderr)
        assert (tmp_path / name).read_bytes().startswith(magic), name


def test_new_config_over_an_existing_file_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    assert cli("new-config", "-o", str(cfg)).returncode == 0
    refused(cli("new-config", "-o", str(cfg)), f"{cfg}: exists (--force overwrites it)")
    assert cli("new-config", "-o", str(cfg), "--force").returncode == 0


def test_status_and_silences_take_db(tmp_path: Path) -> None:
    db = tmp_path / "wis.db"
    SqliteStore(str(db)).close()
    r = cli("status", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["database"] == str(db)
    r = cli("silence", "add", "--db", str(db), "--for", "1h", "--reason", "maintenance")
    assert r.returncode == 0, r.stderr
    r = cli("silence", "list", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    assert [s["reason"] for s in json.loads(r.stdout)] == ["maintenance"]
    assert cli("silence", "expire", "--db", str(db), "1").returncode == 0
    assert json.loads(cli("silence", "list", "--db", str(db), "--json").stdout) == []
    none = str(tmp_path / "none.db")
    for args in (["status", "--db", none],
                 ["silence", "add", "--db", none, "--for", "1h", "--reason", "x"]):
        refused(cli(*args), f"no database at {none}")


def test_rule_commands_expand_quoted_globs(tmp_path: Path) -> None:
    r = cli("test-rules", str(REPO / "rules" / "tests" / "*.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed, 0 failed" in r.stdout
    r = cli("check-rules", str(REPO / "rules" / "p*.yaml"))
    assert r.returncode == 0, r.stderr
    assert f"{REPO / 'rules' / 'pressure.yaml'}: OK" in r.stdout
    for command in ("check-rules", "test-rules"):
        refused(cli(command, str(tmp_path / "x*")), f"{tmp_path / 'x*'}: no file matches")


def test_top_into_a_pipe_keeps_whole_lines(tmp_path: Path) -> None:
    deep = tmp_path / ("a-directory-with-a-long-name-" * 5)
    deep.mkdir()
    db = deep / "wis.db"
    SqliteStore(str(db)).close()
    r = cli("top", "--db", str(db), "--once")
    assert r.returncode == 0, r.stderr
    assert str(db) in r.stdout.splitlines()[0]


def test_check_rules_hints_no_impact_metric_that_is_not_built_in(tmp_path: Path) -> None:
    rules = tmp_path / "impact.yaml"
    rules.write_text("rules:\n  - {name: buy, when: buy_impact_m > 5}\n"
                     "  - {name: sell, when: sell_impact_m > 5}\n")
    r = cli("check-rules", str(rules))
    assert r.returncode == 0, r.stderr
    assert "did you mean" not in r.stderr, r.stderr
    notes = [line for line in r.stderr.splitlines() if "impact_m" in line]
    assert len(notes) == 2 and all("metrics.impact.sizes" in n for n in notes), r.stderr
