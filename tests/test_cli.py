"""Bad input to any command: a clear one-line message, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "-c", "{tmp}/nope.yaml"], 2, "nope.yaml: cannot read file"),
        (["check", "-c", "{tmp}/junk.jsonl"], 2, "invalid YAML"),
        (["replay", "--books", "{tmp}/nope.gz"], 2, "nope.gz: no such file"),
        (["replay", "--db", "{tmp}/junk.jsonl"], 1, "this file is not a SQLite database"),
        (["replay"], 2, "give --books FILE or --db DB"),
        (["export-books", "--db", "{tmp}/other.db", "-o", "{tmp}/x.jsonl"], 1,
         "not a wis-monitor database"),
        (["calibrate", "--books", "{tmp}/junk.jsonl", "--horizon", "1x"], 2, "bad duration"),
        (["report", "--db", "{tmp}/nope.db", "-o", "{tmp}/x.png"], 2, "no database at"),
        (["demo", "--duration", "soon"], 2, "bad duration"),
        (["test-rules", "{tmp}/nope.yaml"], 2, "cannot read file"),
        (["status", "-c", "{tmp}/ok.yaml"], 2, "no database at"),
        (["status", "-c", "{tmp}/nopath.yaml"], 2, "is storage.path right?"),
        (["silence", "add", "-c", "{tmp}/nopath.yaml", "--for", "1h", "--reason", "x"], 2,
         "no database at wis.db"),
        (["silence", "add", "-c", "{tmp}/ok.yaml", "--rule", "extreme-bid", "--for", "1h",
          "--reason", "x"], 2, 'no configured rule matches "extreme-bid"'),
        (["silence", "add", "-c", "{tmp}/ok.yaml", "--for", "0s", "--reason", "x"], 2,
         "must be longer than 0s"),
        (["silence", "add", "-c", "{tmp}/ok.yaml", "--match", "venue=a", "--match", "venue=b",
          "--for", "1h", "--reason", "x"], 2, '"venue" given twice'),
        (["replay", "--db", "{tmp}/nope.db"], 2, "no database at"),
        (["replay", "--books", "{tmp}/junk.jsonl", "--rules", "{tmp}/none/*.yaml"], 2,
         "no rule file matches"),
        (["calibrate", "--books", "{tmp}/junk.jsonl", "--kernels", "flta"], 2,
         "unknown kernel flta"),
        (["report", "--db", "{tmp}/junk.jsonl", "--from", "yesterday", "-o", "{tmp}/x.png"], 2,
         "is not a time like"),
        (["notify-test", "-c", "{tmp}/ok.yaml", "slack"], 2, 'unknown channel "slack"'),
        (["silence", "expire", "-c", "{tmp}/ok.yaml", "7"], 2, "no database at"),
        (["silence", "add", "-c", "{tmp}/ok.yaml", "--for", "1h", "--reason", "x"], 2,
         "wis.db (is storage.path right? has the daemon run yet?)"),
        (["silence", "list", "-c", "{tmp}/ok.yaml"], 2, "no database at"),
        (["report", "-c", "{tmp}/ok.yaml", "-o", "{tmp}/x.png"], 2, "no database at"),
        (["silence", "add", "-c", "{tmp}/ok.yaml", "--match", "vnue=okx", "--for", "1h",
          "--reason", "x"], 2, 'unknown key "vnue" (did you mean "venue"?)'),
        (["calibrate", "--books", "{tmp}/junk.jsonl", "--horizon", "0s,5s"], 2,
         "give horizons longer than 0s"),
        (["report", "--db", "{tmp}/junk.jsonl", "--since", "0s", "-o", "{tmp}/x.png"], 2,
         "must be longer than 0s"),
    ],
)
def test_bad_input(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    (tmp_path / "junk.jsonl").write_text("this is not yaml: [\n")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    (tmp_path / "ok.yaml").write_text(f"storage: {{path: {tmp_path / 'wis.db'}}}\n")
    (tmp_path / "nopath.yaml").write_text("sampling: {interval: 5s}\n")
    argv = [a.format(tmp=tmp_path) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    r = subprocess.run([sys.executable, "-m", "wis_monitor", *argv], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path, env=env)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "wis.db").exists()  # no tool but the daemon creates the database
