"""Shadow rules: `mode: shadow` evaluates and logs a rule like any other (alerts table, status,
report, replay, test-rules) but sends nothing; `check` says its channels receive nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from webhook import Receiver

from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.errors import ConfigError
from wis_monitor.store import Batch, SqliteStore, Store
from wis_monitor.tools.chart import chart_data, render
from wis_monitor.tools.status import collect
from wis_monitor.tools.status import render as render_status

RULES = """\
rules:
  - name: any-book
    when: mid > 0
    channels: [hook]
  - name: any-book-candidate
    when: mid > 0
    mode: shadow
    channels: [hook]
"""




def write_config(tmp_path: Path, hook: str = "json://127.0.0.1:9/hook") -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
storage: {{path: {tmp_path / "wis.db"}}}
sampling: {{interval: 1s}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {{seed: 1}}}}
channels:
  hook: {{url: "{hook}", timeout: 5s, group_by: []}}
feed_stale: {{enabled: false}}
rules: {{include: [rules.yaml]}}
""")
    return cfg


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def test_a_shadow_rule_fires_in_the_daemon_and_sends_nothing(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    """`run --once`: both rules fire on both series and are logged; only the live rule's
    alerts have deliveries and reach the webhook; `status` marks the shadow ones."""
    cfg = write_config(tmp_path, f"json://127.0.0.1:{receiver.port}/hook")
    db = tmp_path / "wis.db"
    r = cli("run", "--once", "-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = query(db, "SELECT id, rule, event, summary, json_extract(details, '$.mode')"
                       " FROM alerts ORDER BY rule, key")
    assert [(rule, event, mode) for _, rule, event, _, mode in alerts] == [
        ("any-book", "firing", None), ("any-book", "firing", None),
        ("any-book-candidate", "firing", "shadow"), ("any-book-candidate", "firing", "shadow"),
    ]
    assert all(summary.endswith("(shadow: not sent)") for _, rule, _, summary, _ in alerts
               if rule == "any-book-candidate")
    delivered = query(db, "SELECT a.rule, d.status FROM deliveries d JOIN alerts a"
                          " ON a.id = d.alert_id ORDER BY a.rule")
    assert delivered == [("any-book", "sent"), ("any-book", "sent")]
    assert len(receiver.posts) == 2
    assert all("any-book-candidate" not in json.dumps(p) for p in receiver.posts)
    assert "(shadow: not sent)" in r.stdout + r.stderr  # the daemon's log names it

    status = cli("status", "-c", str(cfg))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    shadow_firing = [ln for ln in lines if ln.startswith("  any-book-candidate simex:")]
    live_firing = [ln for ln in lines if ln.startswith("  any-book simex:")]
    assert len(shadow_firing) == 2 and all("shadow: not sent" in ln for ln in shadow_firing)
    assert len(live_firing) == 2 and not any("shadow" in ln for ln in live_firing)
    fired = lines[lines.index("fired (firing events) in the last 24h / 7d:") + 1:][:2]
    assert fired[0].split() == ["any-book", "2", "/", "2"]
    assert fired[1].split() == ["any-book-candidate", "2", "/", "2", "shadow:", "not", "sent"]


def test_check_notes_that_a_shadow_rules_channels_receive_nothing(tmp_path: Path) -> None:
    r = cli("check", "-c", str(write_config(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert (f'{tmp_path / "rules.yaml"}:5: note: rule "any-book-candidate" is in shadow mode: '
            "its alerts are recorded but sent nowhere (its channels hook receive nothing until "
            "`mode: live`)") in r.stderr
    assert 'rule "any-book" ' not in r.stderr


def test_mode_accepts_live_and_shadow_only(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "rules.yaml").write_text(RULES.replace("mode: shadow", "mode: shadows"))
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg))
    assert f'{tmp_path / "rules.yaml"}:7:' in str(info.value)
    assert "'live' or 'shadow'" in str(info.value)


def engine_run(tmp_path: Path, cfg: Path) -> tuple[Engine, Store]:
    """Two good books per series through the engine into a real store."""
    from wis_monitor.book import make_book
    from wis_monitor.sources import Observation

    store = SqliteStore(str(tmp_path / "wis.db"))
    e = Engine(load_config(str(cfg)), store)
    for ts in (1_000, 2_000):
        for sym in ("BTC/USDT", "ETH/USDT"):
            book, flags = make_book([[100.0, 1.0]], [[100.1, 1.0]])
            batch, _ = e.process([Observation("simex", sym, ts, book, flags, 1.0)])
            store.write(batch)
    return e, store


def test_a_removed_shadow_rule_resolves_without_sending(tmp_path: Path) -> None:
    """After a restart without the rule, its alerts resolve, still marked, still unsent."""
    cfg = write_config(tmp_path)
    _, store = engine_run(tmp_path, cfg)
    (tmp_path / "rules.yaml").write_text(RULES.split("  - name: any-book-candidate")[0])
    restarted = Engine(load_config(str(cfg)), store)
    batch = Batch()
    restarted.restore(3_000, batch)
    store.write(batch)
    resolved = query(tmp_path / "wis.db", "SELECT rule, json_extract(details, '$.mode'), id"
                                          " FROM alerts WHERE event = 'resolved'")
    assert [(r, m) for r, m, _ in resolved] == [("any-book-candidate", "shadow")] * 2
    ids = {i for _, _, i in resolved}
    assert not [d for d in query(tmp_path / "wis.db", "SELECT alert_id FROM deliveries")
                if d[0] in ids]
    store.close()


def test_report_draws_shadow_markers_apart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    _, store = engine_run(tmp_path, cfg)
    series, alerts = chart_data(store, "simex", "BTC/USDT", 0, 3_000)
    assert {(a["rule"], a["mode"]) for a in alerts} == {
        ("any-book", "live"), ("any-book-candidate", "shadow")}
    shadow = [a for a in alerts if a["mode"] == "shadow"]
    as_live = [{**a, "mode": "live"} for a in shadow]
    assert render(series, shadow, 0, 3_000, "t", ()) != render(series, as_live, 0, 3_000, "t", ())
    report = collect(load_config(str(cfg)), store, 3_000)
    doc = report.as_json()
    assert {(f["rule"], f["mode"]) for f in doc["firing"]} == {
        ("any-book", "live"), ("any-book-candidate", "shadow")}
    assert {(f["rule"], f["mode"], f["last_24h"]) for f in doc["fired"]} == {
        ("any-book", "live", 2), ("any-book-candidate", "shadow", 2)}
    assert "shadow: not sent" in render_status(report)
    store.close()


def test_replay_counts_and_marks_shadow_firings(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES.replace("channels: [hook]", "channels: []"))
    books = shared_data / "books" / "binance-BTCUSDT-20240808.jsonl.gz"
    r = cli("replay", "--books", str(books), "--rules", str(tmp_path / "rules.yaml"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    firing = [ln.split() for ln in lines if ln.startswith("  any-book")]
    assert [f[-1] for f in firing if f[0] == "any-book-candidate"] == ["shadow"]
    assert [f[-1] for f in firing if f[0] == "any-book"] != ["shadow"]
    assert "per rule: any-book 1, any-book-candidate (shadow) 1" in lines


def test_test_rules_works_unchanged_for_a_shadow_rule(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: cand, when: wis_z >= 3, for: 10s, mode: shadow}\n")
    (tmp_path / "t.yaml").write_text("""\
rule_files: [rules.yaml]
tests:
  - name: a shadow rule fires as it would live
    interval: 5s
    input_series:
      - series: a:X/Y
        values: {wis_z: "1 3 3 3 1"}
    expected:
      - {at: 15s, rule: cand, key: "a:X/Y", event: firing}
      - {at: 20s, rule: cand, key: "a:X/Y", event: resolved}
""")
    r = cli("test-rules", str(tmp_path / "t.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 0 failed" in r.stdout


def test_switching_a_firing_shadow_rule_to_live_announces_it(tmp_path: Path) -> None:
    """A shadow alert fires unannounced (no repeat turns into a `firing`); once its rule is
    live (a reload), its `firing` goes out, as when a silence ends."""
    cfg = write_config(tmp_path)
    old, store = engine_run(tmp_path, cfg)
    batch = Batch()
    old.release_silenced(3_000, batch)
    assert not batch.alerts
    (tmp_path / "rules.yaml").write_text(RULES.replace("    mode: shadow\n", ""))
    new = Engine(load_config(str(cfg)), store)
    new.adopt(old)
    batch = Batch()
    new.release_silenced(3_000, batch)
    ids = store.write(batch)
    assert [(a.rule, a.event, list(a.channels)) for a in batch.alerts] == [
        ("any-book-candidate", "firing", ["hook"])] * 2
    assert sorted(a for (a,) in query(tmp_path / "wis.db", "SELECT alert_id FROM deliveries"
                                                             " WHERE status = 'pending'")
                  if a in ids) == sorted(ids)
    store.close()
