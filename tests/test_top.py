"""``wis-monitor top``: the frame of a view (exactly), the view of a real database (with and
without the optional metric columns), ``--once`` on the database of a real daemon, the live
view on a pseudo-terminal (q and Ctrl-C restore it); the Grafana dashboard queries only
metrics a running daemon exposes."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, wait_until
from test_http import free_port, get

from wis_monitor.store import AlertRow, Batch, SampleRow, SqliteStore
from wis_monitor.tools.top import (
    ENTER,
    LEAVE,
    Backlog,
    SeriesRow,
    VenueHealth,
    View,
    frame,
    read_view,
)

ROOT = Path(__file__).resolve().parent.parent
#: The tests' own time (2023-11-14 22:13:20 UTC), whatever the clock on the wall says.
NOW = 1_700_000_000_000


def view(**changes: object) -> View:
    fields: dict[str, object] = dict(
        database="/var/lib/wis-monitor/wis.db", now_ms=NOW,
        metrics=("mid", "spread_bps", "wis", "wis_z", "ofi", "coverage_bps"),
        series=(
            SeriesRow("binance", "BTC/USDT", NOW - 400, "", None, NOW - 400,
                      {"mid": 61234.5, "spread_bps": 0.3, "wis": 0.612, "wis_z": 3.41,
                       "ofi": -0.25, "coverage_bps": 50.0}, ("extreme-bid-pressure",)),
            SeriesRow("okx", "BTC/USDT:USDT", NOW - 95_000, "error",
                      "NetworkError: timed out", NOW - 120_000,
                      {"mid": 61230.0, "spread_bps": 1.25, "wis": -0.1, "wis_z": None,
                       "ofi": None, "coverage_bps": 12.0}, ("feed-stale", "slow (shadow)")),
            SeriesRow("okx", "ETH/USDT"),
        ),
        venues=(VenueHealth("binance", True, NOW - 400, None),
                VenueHealth("okx", False, NOW - 95_000, "NetworkError: timed out")),
        outbox=(Backlog("risk-email", 0, None, 0), Backlog("risk-slack", 3, NOW - 125_000, 1)),
        other_firing=(("btc-consensus", "btc", NOW - 30_000, "live"),))
    fields.update(changes)
    return View(**fields)  # type: ignore[arg-type]


def test_a_frame_shows_every_series_health_outbox_and_alerts() -> None:
    assert frame(view(), 140) == [
        "wis-monitor top  /var/lib/wis-monitor/wis.db  2023-11-14 22:13:20Z",
        "venues: binance up, okx DOWN (last sample 1m35s ago): NetworkError: timed out",
        "outbox: risk-slack 3 pending (oldest 2m05s), 1 failed",
        "firing: 4",
        "  btc-consensus btc for 30.0s",
        "",
        "VENUE    SYMBOL               MID  SPREAD bps     WIS       Z      OFI  COVER bps"
        "  QUALITY    AGE  FIRING",
        "binance  BTC/USDT       61,234.50        0.30  +0.612   +3.41    -0.25         50"
        "  good      0.4s  extreme-bid-pressure",
        "okx      BTC/USDT:USDT  61,230.00        1.25  -0.100       -        -         12"
        "  error    1m35s  feed-stale, slow (shadow)",
        "okx      ETH/USDT               -           -       -       -        -          -"
        "  no data      -",
    ]


def test_a_frame_fits_the_window() -> None:
    lines = frame(view(), 40, 9, interval_s=1.0)
    assert lines[0] == "wis-monitor top  /var/lib/wis-monitor/wi"
    assert all(len(line) <= 40 for line in lines) and len(lines) == 9
    assert lines[-1] == "... 2 more series: enlarge the window"
    assert frame(view(), 200, interval_s=2.0)[0].endswith("every 2s, q quits")


def test_a_frame_without_samples_or_alerts() -> None:
    empty = view(series=(), venues=(), outbox=(), other_firing=())
    assert frame(empty)[1:4] == ["venues: none", "outbox: empty", "firing: none"]


def sample(ts: int, venue: str, symbol: str, quality: str = "", error: str | None = None,
           wis: float | None = 0.5) -> SampleRow:
    return SampleRow(ts, venue, symbol, {"mid": 100.0, "spread_bps": 1.0, "wis": wis,
                                         "wis_z": 1.5}, quality, error)


def test_the_view_of_a_database_with_and_without_the_optional_columns(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "wis.db"))
    store.write(Batch(samples=[
        sample(NOW - 2000, "a", "X/Y"), sample(NOW - 1000, "a", "X/Y", "thin", wis=0.25),
        sample(NOW - 40_000, "b", "X/Y"), sample(NOW - 35_000, "b", "X/Y", "error", "boom"),
        sample(NOW - 1000, "c", "Z/W", "crossed", wis=None)]))
    store.write(Batch(alerts=[AlertRow(NOW - 5000, "r", "a:X/Y", "a", "X/Y", "firing",
                                       "critical", 1.0, "s", channels=["hook"])],
                      states={("r", "a:X/Y"): {"state": 2, "active_at_ms": NOW - 5000},
                              ("g", "grp"): {"state": 2, "active_at_ms": NOW - 9000}}))
    v = read_view(store, NOW, [("a", "X/Y"), ("a", "Q/R")], {"c": 500})
    assert [(s.venue, s.symbol) for s in v.series] == [("a", "X/Y"), ("a", "Q/R"), ("b", "X/Y"),
                                                       ("c", "Z/W")]
    a, never, b, c = v.series
    assert (a.quality, a.last_ts, a.good_ts, a.firing) == ("thin", NOW - 1000, NOW - 1000, ("r",))
    assert a.values == {"mid": 100.0, "spread_bps": 1.0, "wis": 0.25, "wis_z": 1.5,
                        "ofi": None, "coverage_bps": None}
    assert never.last_ts is None and b.error == "boom" and b.values["wis"] == 0.5
    assert c.good_ts is None and c.values == {}
    assert v.venues == (VenueHealth("a", True, NOW - 1000, None),
                        VenueHealth("b", False, NOW - 35_000, "boom"),
                        VenueHealth("c", False, NOW - 1000, None))  # stale after 500 ms
    assert v.outbox == (Backlog("hook", 1, NOW - 5000, 0),)
    assert v.other_firing == (("g", "grp", NOW - 9000, "live"),)
    assert table(frame(v))[1].split()[6:8] == ["-", "-"]
    store.db.conn.execute("UPDATE samples SET ofi = 0.125, coverage_bps = 42")
    store.close()
    ro = SqliteStore(str(tmp_path / "wis.db"), readonly=True)
    v = read_view(ro, NOW)
    ro.close()
    assert v.series[0].values["ofi"] == 0.125
    assert table(frame(v))[1].split()[6:8] == ["+0.125", "42"]
    # A database written before those columns existed, opened read-only, shows "-".
    with sqlite3.connect(tmp_path / "wis.db") as conn:
        for column in ("ofi_z", "ofi", "coverage_bps"):
            conn.execute(f"ALTER TABLE samples DROP COLUMN {column}")
    ro = SqliteStore(str(tmp_path / "wis.db"), readonly=True)
    v = read_view(ro, NOW)
    ro.close()
    assert "ofi" not in v.series[0].values
    assert table(frame(v))[1].split()[6:8] == ["-", "-"]


def table(lines: list[str]) -> list[str]:
    """The series table of a frame: from its header on."""
    return lines[next(i for i, line in enumerate(lines) if line.startswith("VENUE")):]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def daemon_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database a real daemon wrote: two venues, a firing rule, a dead channel."""
    tmp = tmp_path_factory.mktemp("top")
    (tmp / "rules.yaml").write_text(
        "rules:\n  - {name: always, when: mid > 0, match: {symbol: 'BTC/*'}, channels: [hook]}\n")
    cfg = tmp / "c.yaml"
    cfg.write_text(f"storage: {{path: {tmp / 'wis.db'}}}\n"
                   "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT]}\n"
                   "  - {id: simfut, exchange: sim, symbols: [BTC/USDT:USDT]}\n"
                   f"channels:\n  hook: {{url: 'json://127.0.0.1:{free_port()}/h', timeout: 1s}}\n"
                   "rules: {include: [rules.yaml]}\n")
    d = DaemonProcess(cfg, args=("--once",))
    assert d.wait(60) == 0, d.log()
    return cfg


def test_top_once_on_the_database_of_a_daemon(daemon_db: Path) -> None:
    done = run_cli("top", "-c", str(daemon_db), "--once")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"wis-monitor top  {daemon_db.parent / 'wis.db'}  ")
    assert lines[1] == "venues: simex up, simfut up"
    assert re.fullmatch(r"outbox: hook 2 pending \(oldest \d+\.\ds\)", lines[2]), lines[2]
    assert lines[3] == "firing: 2"
    rows = [line.split() for line in lines[6:]]
    assert [r[:2] for r in rows] == [["simex", "BTC/USDT"], ["simex", "ETH/USDT"],
                                     ["simfut", "BTC/USDT:USDT"]]
    assert [r[-1] for r in rows[::2]] == ["always", "always"]
    assert re.fullmatch(r"\d+\.\ds", rows[1][-1])  # ETH/USDT fires nothing: its age ends it
    by_db = run_cli("top", "--db", str(daemon_db.parent / "wis.db"), "--once")
    assert [r.split()[:9] for r in by_db.stdout.splitlines()[4:]] == \
        [r.split()[:9] for r in lines[4:]]  # the same, but for the ages


def test_top_without_a_database_says_so(tmp_path: Path) -> None:
    done = run_cli("top", "--db", str(tmp_path / "none.db"), "--once")
    assert done.returncode == 2 and "no database at" in done.stderr
    assert "Traceback" not in done.stderr


def read_until(fd: int, marker: bytes, timeout: float = 20.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got and time.monotonic() < deadline:
        try:
            got += os.read(fd, 65536)
        except OSError:
            break
    return got


@pytest.mark.parametrize("stop", ["q", "SIGINT"])
def test_live_view_on_a_terminal_quits_and_restores_it(daemon_db: Path, stop: str) -> None:
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wis_monitor", "top", "-c", str(daemon_db), "--interval", "200ms"],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "100",
                                                      "LINES": "20"})
    try:
        shown = read_until(master, b"simfut  BTC/USDT:USDT")
        assert shown.startswith(ENTER.encode()), shown[:80]
        assert termios.tcgetattr(slave)[3] & termios.ECHO == 0  # keys are not echoed
        if stop == "q":
            os.write(master, b"q")
        else:
            proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        rest = read_until(master, LEAVE.encode(), timeout=5)
        assert (shown + rest).rstrip(b"\r\n").endswith(LEAVE.encode())
        assert b"Traceback" not in shown + rest
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)


def dashboard_queries() -> list[str]:
    doc = json.loads((ROOT / "docs" / "grafana" / "wis-monitor.json").read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    exprs += [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) > 10
    return exprs


def test_the_dashboard_queries_only_what_a_running_daemon_exposes(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: always, when: mid > 0, channels: [hook]}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: {tmp_path / 'wis.db'}}}\nsampling: {{interval: 300ms}}\n"
                   "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
                   f"channels:\n  hook: {{url: 'json://127.0.0.1:{free_port()}/h', timeout: 1s}}\n"
                   f"http: {{listen: '127.0.0.1:{port}'}}\nrules: {{include: [rules.yaml]}}\n")
    d = DaemonProcess(cfg)
    try:
        def exposition() -> str | None:
            try:
                body = get(port, "/metrics")[1].decode()
            except OSError:
                return None
            return body if "wis_outbox_backlog{" in body else None

        text = wait_until(exposition, 30)
        assert text, d.log()
    finally:
        assert d.stop() == 0
    families: dict[str, str] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        families[name] = kind
        if kind == "histogram":
            families.update({f"{name}_{s}": kind for s in ("bucket", "sum", "count")})
    labels: dict[str, set[str]] = {}
    for name, body in re.findall(r"^(\w+)\{([^}]*)\}", text, re.MULTILINE):
        labels.setdefault(name, set()).update(re.findall(r"(\w+)=", body))
    for expr in dashboard_queries():
        for name in set(re.findall(r"\bwis_\w+", expr)):
            assert name in families, (name, expr)
            used = set(re.findall(rf"{name}\{{([^}}]*)\}}", expr))
            for matcher in used:
                for label in re.findall(r"(\w+)\s*[=!~]", matcher):
                    assert name not in labels or label in labels[name], (label, expr)
