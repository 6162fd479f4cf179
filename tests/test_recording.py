"""Recording books in the database, exporting them, and replaying recordings with rules."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from daemon_harness import DaemonProcess, rows
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.errors import Problem
from wis_monitor.sources import Observation
from wis_monitor.sources.replay import parse_line

CONFIG = """\
storage: {{path: {db}, record_books: true, record_levels_bps: 60}}
# Each `run --once` starts the simulator afresh, so every book is the same: a long stale_after
# keeps the replay from calling the unchanged book a frozen feed when the runs are slow.
sampling: {{interval: 200ms, stale_after: 1h}}
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
    later = good.replace('"ts": 1', '"ts": 2')
    rec.write_text(f"{good}\nnot json\n{{\"ts\": 2}}\n{later}\n")
    r = cli("replay", "--books", str(rec))
    assert r.returncode == 0
    assert "replayed 2 books" in r.stdout
    assert f"{rec}:2: not JSON" in r.stderr
    assert f'{rec}:3: missing "venue", "symbol", "bids", "asks"' in r.stderr


def book_line(ts: int, venue: str = "v", symbol: str = "S", **extra: object) -> str:
    """A good book, a little different each second (an unchanged book turns stale)."""
    bid = 1.0 + ts // 1000 % 7 * 0.25
    rec = {"ts": ts, "venue": venue, "symbol": symbol, "bids": [[100.0, bid], [99.9, 2.0]],
           "asks": [[100.1, 1.0], [100.2, 1.5]], **extra}
    return json.dumps(rec)


#: Lines a recording must not hold, each with the reason it is refused.
BAD_LINES = [
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": 5, "asks": []}', '"bids"'),
    ('{"ts": NaN, "venue": "v", "symbol": "S", "bids": [], "asks": []}', "NaN"),
    ('{"ts": Infinity, "venue": "v", "symbol": "S", "bids": [], "asks": []}', "Infinity"),
    ('{"ts": 1e30, "venue": "v", "symbol": "S", "bids": [], "asks": []}', '"ts"'),
    ('{"ts": -5, "venue": "v", "symbol": "S", "bids": [], "asks": []}', '"ts"'),
    ('{"ts": true, "venue": "v", "symbol": "S", "bids": [], "asks": []}', '"ts"'),
    ('{"ts": 1000, "venue": 7, "symbol": "S", "bids": [], "asks": []}', '"venue"'),
    ('{"ts": 1000, "venue": "v", "symbol": "", "bids": [], "asks": []}', '"symbol"'),
    (book_line(1000, contract_size="abc"), '"contract_size"'),
    (book_line(1000, contract_size=True), '"contract_size"'),
    (book_line(1000, contract_size=7).replace("7", "1e400"), '"contract_size"'),
    (book_line(1000, inverse="false"), '"inverse"'),
    (book_line(1000, inverse=1), '"inverse"'),
    (book_line(1000, latency_ms="fast"), '"latency_ms"'),
    (book_line(1000, latency_ms=-1), '"latency_ms"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [[true, 1.0]], "asks": []}', '"bids"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [[100.0, false]], "asks": []}', '"bids"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [["100", 1.0]], "asks": []}', '"bids"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [[100.0]], "asks": []}', '"bids"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [5], "asks": []}', '"bids"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [], "asks": [[1e400, 1]]}', '"asks"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": [], "asks": [[1' + "0" * 400 + ', 1]]}',
     '"asks"'),
    ('{"ts": 1000, "venue": "v", "symbol": "S", "bids": null, "asks": []}', '"bids"'),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "not JSON"),
    ("[1, 2]", "JSON object"),
]


def bad_recording(path: Path) -> list[tuple[int, str]]:
    """Good books at ts 0, 2000, 4000, ... with every bad line between two of them; returns
    the line number and expected reason of each bad line."""
    lines, bad = [], []
    for i, (line, reason) in enumerate(BAD_LINES):
        lines.append(book_line(i * 2000))
        lines.append(line)
        bad.append((len(lines), reason))
    lines.append(book_line(len(BAD_LINES) * 2000))
    path.write_text("\n".join(lines) + "\n")
    return bad


def test_replay_skips_every_kind_of_bad_line_and_replays_the_rest(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    bad = bad_recording(rec)
    out = tmp_path / "out.db"
    r = cli("replay", "--books", str(rec), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr
    for lineno, reason in bad:
        line = next((x for x in r.stderr.splitlines() if x.startswith(f"{rec}:{lineno}: ")), "")
        assert reason in line, (lineno, reason, r.stderr[-3000:])
    assert f"{len(bad)} bad lines skipped" in r.stderr
    assert f"replayed {len(BAD_LINES) + 1} books" in r.stdout
    assert len(rows(out, "SELECT * FROM samples WHERE quality IN ('', 'thin')")) == \
        len(BAD_LINES) + 1


def test_replay_venue_skips_bad_lines_and_samples_the_rest(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    bad = bad_recording(rec)
    db = tmp_path / "wis.db"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {{path: {db}}}\nvenues:\n"
                   f"  - {{id: v, exchange: replay, books: {rec}, symbols: [S]}}\n")
    d = DaemonProcess(cfg, args=("--once",))
    assert d.wait() == 0, d.log()
    log = d.log()
    assert "Traceback" not in log
    for lineno, _ in bad:
        assert f"{rec}:{lineno}: " in log, log[-3000:]
    assert f"{len(bad)} bad lines skipped" in log
    assert [r["quality"] for r in rows(db, "SELECT quality FROM samples")] == ["thin"]


def test_replay_reports_lines_out_of_time_order_within_a_file(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_text("\n".join([book_line(1000), book_line(3000), book_line(2000),
                              book_line(2000, symbol="T"), book_line(3000), book_line(4000)])
                   + "\n")
    r = cli("replay", "--books", str(rec))
    assert r.returncode == 0, r.stderr
    assert f"{rec}:3: ts 2000 is not after the previous (3000) of v S" in r.stderr
    assert f"{rec}:5: ts 3000 is not after the previous (3000) of v S" in r.stderr
    assert f"{rec}:4:" not in r.stderr  # another series: its own clock
    assert "2 bad lines skipped" in r.stderr
    assert "replayed 4 books of 2 series" in r.stdout


def test_replay_merges_recordings_of_one_series_in_time_order(tmp_path: Path) -> None:
    """Two recordings of one series (one every 2 s, one between them, both over the same
    stretch) replay as one series in time order; a book both hold is replayed once."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    first.write_text("".join(book_line(t) + "\n" for t in range(0, 20_000, 2000)))
    with gzip.open(second, "wt") as fh:
        ts = [*sorted([*range(1000, 20_000, 2000), 4000]), 10_000]
        fh.write("".join(book_line(t) + "\n" for t in ts))
    out = tmp_path / "out.db"
    r = cli("replay", "--books", str(first), "--books", str(second), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"{second}:12: ts 10000 is not after the previous (19000) of v S" in r.stderr
    assert "replayed 20 books of 1 series" in r.stdout
    assert "dropped 1 book not after its series' previous one" in r.stdout
    got = rows(out, "SELECT ts, age_s FROM samples")
    assert [x["ts"] for x in got] == list(range(0, 20_000, 1000))
    assert all(x["age_s"] is None or x["age_s"] == 1.0 for x in got)


def test_replay_survives_undecodable_and_truncated_recordings(tmp_path: Path) -> None:
    rec, cut = tmp_path / "rec.jsonl", tmp_path / "cut.jsonl.gz"
    rec.write_bytes(f"{book_line(1000)}\n".encode() + b'{"ts": 2000, "venue": "v\xff"}\n'
                    + f"{book_line(3000)}\n".encode())
    whole = gzip.compress("".join(book_line(t, symbol="T") + "\n"
                                  for t in range(0, 400_000, 1000)).encode())
    cut.write_bytes(whole[: len(whole) // 2])
    r = cli("replay", "--books", str(rec), "--books", str(cut))
    assert r.returncode == 0, r.stderr
    assert f"{rec}:2: not UTF-8" in r.stderr
    assert f"{cut}:" in r.stderr and "cannot read further" in r.stderr
    assert "Traceback" not in r.stderr


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=12)
LEVELS = st.lists(st.lists(JSON, min_size=2, max_size=3), max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "ts": JSON | st.integers(0, 2**45), "venue": JSON | st.just("v"),
    "symbol": JSON | st.just("S"), "bids": JSON | LEVELS, "asks": JSON | LEVELS,
    "contract_size": JSON, "inverse": JSON, "latency_ms": JSON}))
def test_no_line_crashes_the_reader(rec: dict[str, object]) -> None:
    """Whatever a line holds, it becomes a well-typed observation or a located problem."""
    item = parse_line("rec.jsonl", 7, json.dumps(rec))
    if isinstance(item, Problem):
        assert str(item).startswith("rec.jsonl:7: ")
        return
    assert isinstance(item, Observation) and item.book is not None
    assert isinstance(item.ts_ms, int) and isinstance(item.venue, str) and item.venue
    assert item.latency_ms is None or isinstance(item.latency_ms, float)
    assert isinstance(item.book.contract_size, float) and isinstance(item.book.inverse, bool)
