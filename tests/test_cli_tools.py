"""The offline tools as an operator uses them: no secrets, no stray database, silences that
check what they would match, report windows and threshold lines, replay with candidate rules
and --notify, progress bars on a terminal only."""

from __future__ import annotations

import json
import math
import os
import pty
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from wis_monitor.store import Batch, BookRow, SqliteStore

START_MS = 1_723_161_255_000  # 2024-08-08 23:54:15 UTC
RULES = """\
rules:
  - {name: bid-heavy, when: wis > 0.5, channels: [risk-slack], labels: {desk: deriv}}
"""
CONFIG = """\
storage: {{path: {db}}}
channels:
  risk-slack: {{url: '{url}'}}
rules: {{include: [rules.yaml]}}
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def book(i: int, mid: float) -> dict[str, object]:
    """A book whose bids outweigh its asks while sin(i/15) > 0, and the reverse after."""
    tilt = math.sin(i / 15)
    return {"ts": START_MS + 1000 * i, "venue": "v", "symbol": "BTC/USDT",
            "bids": [[round(mid - 0.01, 2), 1 + 9 * max(tilt, 0)], [round(mid - 0.02, 2), 1.0]],
            "asks": [[round(mid + 0.01, 2), 1 + 9 * max(-tilt, 0)], [round(mid + 0.02, 2), 1.0]]}


def recording(tmp_path: Path, n: int = 300) -> Path:
    """``n`` books on a 1 s grid from 2024-08-08 23:54:15 UTC; the mid follows the imbalance."""
    lines, mid = [], 100.0
    for i in range(n):
        lines.append(json.dumps(book(i, mid)))
        mid = round(mid + (0.01 if math.sin(i / 15) > 0 else -0.01), 2)
    path = tmp_path / "books.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def setup(tmp_path: Path, url: str = "${credential:slack-webhook}") -> tuple[Path, Path]:
    """A config with a channel secret and one rule; returns it and its (absent) database."""
    db = tmp_path / "wis.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=db, url=url))
    (tmp_path / "rules.yaml").write_text(RULES)
    return cfg, db


def no_credentials() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}


def test_tools_that_send_nothing_need_no_secrets_and_create_no_database(tmp_path: Path) -> None:
    cfg, db = setup(tmp_path)
    env = no_credentials()
    r = cli("check", "-c", str(cfg), env=env)
    assert r.returncode == 0 and 'note: credential "slack-webhook"' in r.stderr
    r = cli("check", "--strict", "-c", str(cfg), env=env)
    assert r.returncode == 2 and 'credential "slack-webhook"' in r.stderr
    r = cli("replay", "-c", str(cfg), "--books", str(recording(tmp_path)), "--notify", env=env)
    assert r.returncode == 2 and 'credential "slack-webhook"' in r.stderr
    for args in (["status"], ["silence", "list"], ["report", "-o", str(tmp_path / "r.png")],
                 ["silence", "add", "--for", "1h", "--reason", "maintenance"]):
        r = cli(*args, "-c", str(cfg), env=env)
        assert r.returncode == 2, (args, r.stderr)
        assert f"no database at {db} (is storage.path right? has the daemon run yet?)" \
            in r.stderr
        assert not db.exists()
    # A replay without --notify needs no secret either; it fills the database.
    r = cli("replay", "-c", str(cfg), "--books", str(recording(tmp_path)), "--out", str(db),
            env=env)
    assert r.returncode == 0, r.stderr
    assert "bid-heavy" in r.stdout
    r = cli("status", "-c", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert "BTC/USDT" in r.stdout
    r = cli("report", "-c", str(cfg), "-o", str(tmp_path / "r.png"), env=env)
    assert r.returncode == 0, r.stderr


def test_silence_add_keeps_every_matcher_and_refuses_what_would_match_nothing(
        tmp_path: Path) -> None:
    cfg, db = setup(tmp_path, url="console://")
    SqliteStore(str(db)).close()  # as the daemon leaves it
    add = ("silence", "add", "-c", str(cfg), "--for", "2h", "--reason", "venue v maintenance")
    r = cli(*add, "--rule", "bid-hevy")
    assert r.returncode == 2 and 'no configured rule matches "bid-hevy" (did you mean ' \
        '"bid-heavy"?)' in r.stderr
    r = cli(*add, "--rule", "feed-stale", "--match", "desk=deriv")
    assert r.returncode == 2
    assert 'unknown key "desk": a silence matches venue, symbol, key, severity or a label of ' \
        'the rules "feed-stale" selects (they have none)' in r.stderr
    r = cli(*add, "--match", "dsk=deriv")
    assert r.returncode == 2 and 'unknown key "dsk" (did you mean "desk"?)' in r.stderr
    r = cli(*add, "--match", "venue=v", "--match", "desk=der*", "--match", "symbol=BTC/*")
    assert r.returncode == 0, r.stderr
    r = cli("silence", "list", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert '{"desk": "der*", "symbol": "BTC/*", "venue": "v"}' in r.stdout
    assert "venue v maintenance" in r.stdout


def test_report_charts_the_data_when_it_is_old_and_takes_absolute_times(tmp_path: Path) -> None:
    db = tmp_path / "replay.db"
    r = cli("replay", "--books", str(recording(tmp_path)), "--out", str(db))
    assert r.returncode == 0, r.stderr
    png = str(tmp_path / "r.png")

    def window(*args: str) -> str:
        r = cli("report", *args, "-o", png)
        assert r.returncode == 0, r.stderr
        return r.stdout.split(": ", 1)[1].split(" (")[0]

    # 2024 data: the last hour of data (here all 5 minutes of it), not an empty hour of today.
    assert window("--db", str(db)) == \
        "2024-08-08 23:54:15 to 2024-08-08 23:59:14 UTC, z lines at +3, -3"
    assert window("--db", str(db), "--since", "2m").startswith(
        "2024-08-08 23:57:14 to 2024-08-08 23:59:14 UTC")
    assert window("--db", str(db), "--from", "2024-08-08T23:58:00Z").startswith(
        "2024-08-08 23:58:00 to 2024-08-08 23:59:14 UTC")
    # A date alone: from its start to its end.
    assert window("--db", str(db), "--from", "2024-08-08", "--to", "2024-08-08",
                  "--threshold", "2.5") == \
        "2024-08-08 00:00:00 to 2024-08-09 00:00:00 UTC, z lines at +2.5, -2.5"
    # Without --threshold, the levels the configured rules compare wis_z with.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: {db}}}\nrules: {{include: [z.yaml]}}\n")
    (tmp_path / "z.yaml").write_text("rules:\n  - {name: z, when: wis_z >= 2 or wis_z <= -4}\n")
    assert window("-c", str(cfg)).endswith("z lines at +2, -4")


def test_replay_rules_replace_the_configs_and_notify_queues_at_the_wall_clock(
        tmp_path: Path) -> None:
    cfg, _ = setup(tmp_path, url="console://")
    rec = recording(tmp_path)
    (tmp_path / "candidate.yaml").write_text(
        "rules:\n  - {name: ask-heavy, when: wis < -0.5, channels: [desk-email]}\n")
    r = cli("replay", "-c", str(cfg), "--books", str(rec), "--rules",
            str(tmp_path / "cand*.yaml"))
    assert r.returncode == 0, r.stderr
    assert "ask-heavy" in r.stdout and "bid-heavy" not in r.stdout
    before = int(time.time() * 1000)
    out = tmp_path / "notified.db"
    r = cli("replay", "-c", str(cfg), "--books", str(rec), "--notify", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(out) as conn:
        rows = conn.execute("SELECT d.status, d.created_ts, a.ts FROM deliveries d"
                            " JOIN alerts a ON a.id = d.alert_id").fetchall()
    assert rows and {status for status, _, _ in rows} == {"sent"}
    assert all(created >= before > alert_ts for _, created, alert_ts in rows)
    assert "=== [WARNING] bid-heavy v BTC/USDT" in r.stdout  # what the console channel got


def on_terminal(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run with stderr on a pseudo-terminal; returns the result and what the terminal got."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        r = subprocess.run([sys.executable, "-m", "wis_monitor", *args], stdout=subprocess.PIPE,
                           stderr=slave, text=True, timeout=120)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return r, b"".join(chunks).decode(errors="replace")


def test_progress_bars_with_a_known_length_on_a_terminal_only(tmp_path: Path) -> None:
    rec = recording(tmp_path)
    db = tmp_path / "books.db"
    store = SqliteStore(str(db))
    levels = np.array([[100.0, 1.0], [99.9, 2.0]])
    asks = np.array([[100.1, 1.0], [100.2, 2.0]])
    store.write(Batch(books=[BookRow(START_MS + i, "v", "BTC/USDT", levels, asks)
                             for i in range(40)]))
    store.close()
    calibrate = ("calibrate", "--books", str(rec), "--horizon", "1s", "--kernels", "flat,linear")
    runs = {
        "calibrate": (calibrate, ("reading books", "scoring kernels")),
        "replay": (("replay", "--books", str(rec)), ("replaying",)),
        "export": (("export-books", "--db", str(db), "-o", str(tmp_path / "x.jsonl")),
                   ("exporting",)),
    }
    for name, (args, labels) in runs.items():
        r, terminal = on_terminal(*args)
        assert r.returncode == 0, (name, terminal)
        for label in labels:
            # The length is known: the bar counts up to 100%.
            bars = [x for x in terminal.split("\r") if label in x]
            assert bars and "100%" in bars[-1], (name, label, terminal)
        piped = cli(*args)
        assert piped.returncode == 0, piped.stderr
        assert not any(label in piped.stderr for label in labels), piped.stderr
    # --kernels limits the grid to those families (the current kernel is scored besides).
    r = cli(*calibrate)
    assert "flat" in r.stdout and "linear" in r.stdout
    assert "exponential 0.5 bps" not in r.stdout and "levels 1 levels" not in r.stdout
