"""Delivery through the real daemon: a dead channel, kill -9, restart; secrets stay secret; a
looping template stalls neither sampling nor shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, rows, wait_until
from webhook import Receiver

pytestmark = pytest.mark.slow
TOKEN = "sekret-hook-token-8d1f0c"



@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The channel starts down: each test brings it up."""
    r = Receiver(up=False)
    yield r
    r.close()


def setup(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "wis.db"
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: every-series\n    when: mid > 0\n    channels: [hook]\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
storage: {{path: {db}}}
sampling: {{interval: 300ms}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT, SOL/USDT], sim: {{seed: 1}}}}
channels:
  hook: {{url: "${{HOOK_URL}}", timeout: 2s, group_by: []}}
feed_stale: {{enabled: false}}
rules: {{include: [rules.yaml]}}
""")
    return cfg, db


def test_pending_deliveries_survive_kill9_and_arrive_once(tmp_path: Path,
                                                          receiver: Receiver) -> None:
    cfg, db = setup(tmp_path)
    env = {"HOOK_URL": f"json://127.0.0.1:{receiver.port}/hook/{TOKEN}"}
    d = DaemonProcess(cfg, env=env)
    assert wait_until(lambda: len(rows(db, "SELECT * FROM deliveries WHERE attempts >= 1")) == 3,
                      30), d.log()
    d.kill9()
    pending = rows(db, "SELECT status FROM deliveries")
    assert [r["status"] for r in pending] == ["pending"] * 3
    receiver.up = True
    d2 = DaemonProcess(cfg, env=env)
    try:
        # Backoff is 5 s after the first failure: they go out within that after the restart.
        assert wait_until(lambda: len(receiver.posts) >= 3, 30), d2.log()
        time.sleep(1.5)  # and nothing more arrives
    finally:
        assert d2.stop() == 0
    assert len(receiver.posts) == 3
    titles = sorted(p["title"] for p in receiver.posts)
    assert titles == [f"[WARNING] every-series simex {s}" for s in
                      ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    assert [r["status"] for r in rows(db, "SELECT status FROM deliveries")] == ["sent"] * 3
    # The secret token is nowhere: not in the logs, not in the database.
    for text in (d.log(), d2.log()):
        assert TOKEN not in text
    for f in tmp_path.glob("wis.db*"):
        assert TOKEN.encode() not in f.read_bytes()


def test_failure_messages_mask_the_secret(tmp_path: Path) -> None:
    cfg, db = setup(tmp_path)
    # Nothing listens there: every send fails and the error is logged and stored.
    env = {"HOOK_URL": f"json://user:{TOKEN}@127.0.0.1:9/hook"}
    d = DaemonProcess(cfg, env=env, args=("--once",))
    assert d.wait(60) == 0, d.log()
    errors = [r["last_error"] for r in rows(db, "SELECT last_error FROM deliveries")]
    assert errors and all(errors)
    assert TOKEN not in d.log() and all(TOKEN not in e for e in errors)
    for f in tmp_path.glob("wis.db*"):
        assert TOKEN.encode() not in f.read_bytes()


def test_a_looping_template_neither_stalls_sampling_nor_shutdown(tmp_path: Path,
                                                                 receiver: Receiver) -> None:
    from wis_monitor.template import BUDGET_S

    cfg, db = setup(tmp_path)
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    # `check` renders a sample alert of the first series (BTC/USDT): only ETH/USDT loops.
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: every-series\n    when: mid > 0\n    channels: [hook]\n"
        f"    template: {{body: '{{% if symbol == \"ETH/USDT\" %}}{loop}{{% endif %}}fine'}}\n")
    env = {"HOOK_URL": f"json://127.0.0.1:{receiver.port}/hook"}

    def samples() -> int:
        return int(rows(db, "SELECT count(*) AS n FROM samples")[0]["n"]) if db.exists() else 0

    def stop_within_10s(d: DaemonProcess) -> None:
        start = time.monotonic()
        assert d.stop() == 0, d.log()
        assert time.monotonic() - start < 10

    # The channel is down. SIGTERM comes as the BTC delivery has been tried, so while the ETH
    # template runs (the channel's next row): the daemon stops anyway, the deliveries kept.
    d = DaemonProcess(cfg, env=env)
    try:
        assert wait_until(lambda: rows(
            db, "SELECT 1 FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
                " WHERE a.symbol = 'BTC/USDT' AND d.attempts >= 1"), 30), d.log()
    finally:
        stop_within_10s(d)
    assert d.log().count("its template failed (body: did not finish within") == 1, d.log()
    assert [r["status"] for r in rows(db, "SELECT status FROM deliveries")] == ["pending"] * 3

    # A restart with those deliveries pending: they go out, the ETH one with the default
    # message, while the samples keep coming every 300 ms (during a rejected reload too).
    receiver.up = True
    before = rows(db, "SELECT max(ts) AS ts FROM samples")[0]["ts"]
    d2 = DaemonProcess(cfg, env=env)
    try:
        assert wait_until(lambda: len(receiver.posts) >= 3, 30), d2.log()
        # A reload whose template loops on the sample alert too is rejected, without a stall.
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - name: every-series\n    when: mid > 0\n    channels: [hook]\n"
            f"    template: {{body: '{loop}'}}\n")
        d2.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload rejected" in d2.log(), 10), d2.log()
        seen = samples()
        assert wait_until(lambda: samples() >= seen + 9, 10), d2.log()
    finally:
        stop_within_10s(d2)
    assert "template body: rendering a sample firing alert: did not finish" in d2.log()
    by_title = {p["title"]: p["message"] for p in receiver.posts}
    assert by_title["[WARNING] every-series simex BTC/USDT"].startswith("fine\n")
    eth = by_title["[WARNING] every-series simex ETH/USDT"]
    assert eth.startswith("Rule: mid > 0\n") and f"did not finish within {BUDGET_S:g}s" in eth
    ts = [r["ts"] for r in rows(db, "SELECT ts FROM samples WHERE symbol = 'BTC/USDT' AND"
                                    " ts > ? ORDER BY ts", (before,))]
    assert len(ts) > 10 and max(b - a for a, b in pairwise(ts)) < \
        BUDGET_S * 1000, ts
