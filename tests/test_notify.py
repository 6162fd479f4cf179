"""Delivery with real receivers: an SMTP server (aiosmtpd), a Slack webhook receiver on
127.0.0.1, a channel that is down and comes back, a burst over the flood limit, secrets."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from apprise.plugins.slack import NotifySlack
from testclock import NOW, Clock

from wis_monitor.config import load_config
from wis_monitor.outbox import Dispatcher
from wis_monitor.store import AlertRow, Batch, SampleRow, SqliteStore, Store
from wis_monitor.tools.chart import alert_chart

SLACK_TOKEN = "T1A2B3C4D/B5E6F7G8H/sekretWebhookToken42"
SMTP_PASSWORD = "hunter2-sekret-pw"
class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any
                  ) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"alerts" and \
        data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticator,
                     auth_require_tls=False)
    ctl.start()
    yield box, port
    ctl.stop()


class Webhook:
    """A Slack-like webhook receiver; ``fail`` answers 500 that many times first."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.posts.append({"path": self.path, "json": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    # Point apprise's Slack plugin at the local receiver (the production URL syntax stays).
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{hook.port}/services")
    yield hook
    hook.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(tmp_path: Path, channels: str) -> tuple[Any, Store]:
    """A config with ``channels`` (flow mappings, one a line); a channel that does not say
    ``group_by`` sends each alert on its own, at once (grouping has tests of its own)."""
    channels = "".join(line if "group_by" in line else line.replace(": {", ": {group_by: [], ", 1)
                       for line in channels.splitlines(keepends=True))
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: extreme-bid-pressure\n    when: wis_z >= 3\n    severity: critical\n"
        "    channels: [" + ", ".join(
            line.split(":")[0].strip() for line in channels.strip().splitlines()) + "]\n"
        "    runbook: https://wiki.example/wis\n")
    (tmp_path / "c.yaml").write_text(
        f"storage: {{path: {tmp_path / 'wis.db'}}}\nchannels:\n{channels}"
        "rules: {include: [rules.yaml]}\n")
    config = load_config(str(tmp_path / "c.yaml"))
    return config, SqliteStore(config.db_path())


def alert(ts: int, n: int = 0, event: str = "firing") -> AlertRow:
    return AlertRow(
        ts, "extreme-bid-pressure", f"binance:BTC/USDT{n}", "binance", f"BTC/USDT{n}", event,
        "critical", 3.4, "s", {"desk": "spot"},
        {"values": {"wis": 0.61, "wis_z": 3.4, "mid": 61234.5, "spread_bps": 0.3,
                    "bid_depth": 2.5e6, "ask_depth": 0.9e6},
         "baseline": {"n": 720, "mean": 0.02, "std": 0.17},
         "top_bids": [[61230.0, 250000.0]], "top_asks": [[61240.0, 90000.0]],
         "group_peers": {"okx:BTC/USDT": {"wis": 0.4, "wis_z": 2.2}},
         "runbook": "https://wiki.example/wis", "description": "Strong buying pressure"},
    )


def write_alerts(store: Store, config: Any, rows: list[AlertRow]) -> None:
    channels = list(config.settings.channels)
    for r in rows:
        r.channels = channels
    store.write(Batch(alerts=rows))


def statuses(store: Store) -> list[tuple[str, int]]:
    return [(r["status"], r["attempts"]) for r in store.query(
        "SELECT status, attempts FROM deliveries ORDER BY id")]


def test_email_with_chart(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    config, store = setup(tmp_path, f"  mail: {{url: 'mailto://127.0.0.1:{port}?from=wis@"
                                    f"example.com&to=risk@example.com', attach_chart: true}}\n")
    now = NOW
    store.write(Batch(samples=[
        SampleRow(now - 60_000 + i * 1000, "binance", "BTC/USDT0", {
            "mid": 61000.0 + i, "spread_bps": 0.2, "wis": 0.1 * (i % 7), "wis_z": 0.5 * (i % 5),
            "imbalance": 0.0, "bid_depth": 1e6, "ask_depth": 1e6, "latency_ms": 1.0,
            "coverage_bps": 50.0})
        for i in range(60)]))
    write_alerts(store, config, [alert(now)])
    assert asyncio.run(Dispatcher(config, store, clock=Clock(now), chart=alert_chart
                                  ).run_once(now)) == 1
    assert statuses(store) == [("sent", 1)]
    (rcpts, msg), = box.messages
    assert rcpts == ["risk@example.com"]
    assert msg["Subject"] == "[CRITICAL] extreme-bid-pressure binance BTC/USDT0"
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert "text/plain" in parts and "text/html" in parts
    html = parts["text/html"].get_content()
    assert "WIS" in html and "0.610" in html and "3.40" in html and "wiki.example/wis" in html
    assert "okx:BTC/USDT" in html and "window mean 0.020" in html
    png = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert png and png[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"


def test_email_with_auth_keeps_the_password_secret(tmp_path: Path, smtp: tuple[Mailbox, int],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    box, port = smtp
    caplog.set_level(logging.DEBUG)
    config, store = setup(
        tmp_path, f"  mail: {{url: 'mailto://alerts:{SMTP_PASSWORD}@127.0.0.1:{port}?from="
                  "wis@example.com&to=risk@example.com'}\n")
    now = NOW
    write_alerts(store, config, [alert(now)])
    asyncio.run(Dispatcher(config, store, clock=Clock(now)).run_once(now))
    assert statuses(store) == [("sent", 1)] and len(box.messages) == 1
    # A wrong password: the failure is recorded, the password is not.
    (tmp_path / "bad").mkdir()
    bad = setup(tmp_path / "bad",
                f"  mail: {{url: 'mailto://alerts:wrong-{SMTP_PASSWORD}@127.0.0.1:{port}?from="
                "wis@example.com&to=risk@example.com', timeout: 2s}\n")
    write_alerts(bad[1], bad[0], [alert(now)])
    asyncio.run(Dispatcher(*bad, clock=Clock(now)).run_once(now))
    row = bad[1].query("SELECT status, last_error FROM deliveries")[0]
    assert row["status"] == "pending" and row["last_error"]
    store.close()
    bad[1].close()
    for f in tmp_path.rglob("wis.db*"):
        assert SMTP_PASSWORD.encode() not in f.read_bytes()
    assert SMTP_PASSWORD not in caplog.text


def test_slack_payload(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n")
    now = NOW
    write_alerts(store, config, [alert(now), alert(now + 1000, event="resolved")])
    store.execute("UPDATE alerts SET details = json_set(details, '$.fired_for_ms', 252000)"
                  " WHERE event = 'resolved'")
    asyncio.run(Dispatcher(config, store, clock=Clock(now + 1000)).run_once(now + 1000))
    assert [p["path"] for p in webhook.posts] == [f"/services/{SLACK_TOKEN}"] * 2
    first = json.dumps(webhook.posts[0]["json"])
    assert "[CRITICAL] extreme-bid-pressure binance BTC/USDT0" in first
    assert "*WIS:*" in first and "3.40" in first
    assert "after 4m12s firing" in json.dumps(webhook.posts[1]["json"])


def test_channel_down_then_back_delivers_exactly_once(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}', timeout: 1s}}\n")
    now = NOW
    write_alerts(store, config, [alert(now, n) for n in range(3)])
    clock = Clock(now)
    d = Dispatcher(config, store, clock=clock)
    webhook.fail = 3 + 3
    asyncio.run(d.run_once(now))
    assert statuses(store) == [("pending", 1)] * 3
    nxt = store.query("SELECT next_attempt_ts FROM deliveries")[0]["next_attempt_ts"]
    assert nxt == now + 5000
    clock.ms = now + 4000
    assert asyncio.run(d.run_once(now + 4000)) == 0  # backing off
    clock.ms = now + 5300  # the sends end 300 ms after they were due: the backoff counts from then
    asyncio.run(d.run_once(now + 5000))
    assert statuses(store) == [("pending", 2)] * 3
    assert store.query("SELECT next_attempt_ts FROM deliveries")[0]["next_attempt_ts"] == \
        now + 5300 + 10_000
    clock.ms = now + 15_300
    asyncio.run(d.run_once(now + 15_300))
    assert statuses(store) == [("sent", 3)] * 3
    assert {r["sent_ts"] for r in store.query("SELECT sent_ts FROM deliveries")} == {now + 15_300}
    clock.ms = now + 60_000
    asyncio.run(d.run_once(now + 60_000))
    assert len(webhook.posts) == 3
    assert len({json.dumps(p["json"]) for p in webhook.posts}) == 3


def test_refused_and_silent_channels_do_not_block_others(tmp_path: Path,
                                                         webhook: Webhook) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts, never answers
    closed = free_port()
    config, store = setup(tmp_path, (
        f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n"
        f"  silent: {{url: 'json://127.0.0.1:{silent.getsockname()[1]}/hook', timeout: 1s}}\n"
        f"  refused: {{url: 'json://127.0.0.1:{closed}/hook', timeout: 1s}}\n"))
    now = NOW
    write_alerts(store, config, [alert(now)])
    start = time.monotonic()
    asyncio.run(Dispatcher(config, store, clock=Clock(now)).run_once(now))
    assert time.monotonic() - start < 8
    got = {r["channel"]: (r["status"], bool(r["last_error"])) for r in store.query(
        "SELECT channel, status, last_error FROM deliveries")}
    assert got == {"slack": ("sent", False), "silent": ("pending", True),
                   "refused": ("pending", True)}
    assert len(webhook.posts) == 1
    silent.close()


def test_burst_over_the_flood_limit_is_folded_not_lost(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}', per_minute: 20}}\n")
    now = NOW
    write_alerts(store, config, [alert(now, n) for n in range(200)])
    asyncio.run(Dispatcher(config, store, clock=Clock(now)).run_once(now))
    assert len(webhook.posts) == 20
    summary = json.dumps(webhook.posts[-1]["json"])
    assert "181 more alert(s)" in summary
    for n in range(19, 200):
        assert f"BTC/USDT{n}" in summary
    assert {s for s, _ in statuses(store)} == {"sent"}
    folded = store.query("SELECT count(*) AS n FROM deliveries WHERE last_error LIKE 'folded%'")
    assert folded[0]["n"] == 180  # plus the summary's own row
    # Within the same minute nothing more goes out; the next minute has room again.
    write_alerts(store, config, [alert(now + 1000, 500)])
    asyncio.run(Dispatcher(config, store, clock=Clock(now + 1000)).run_once(now + 1000))
    assert len(webhook.posts) == 20
    asyncio.run(Dispatcher(config, store, clock=Clock(now + 61_000)).run_once(now + 61_000))
    assert len(webhook.posts) == 21


def test_rule_templates_render_in_a_sandbox() -> None:
    from wis_monitor.message import render

    row = {"rule": "r", "key": "binance:BTC/USDT", "venue": "binance", "symbol": "BTC/USDT",
           "event": "firing", "severity": "warning", "value": 3.2, "ts": 0,
           "labels": {"desk": "spot"}, "details": {"values": {"wis_z": 3.2}}}
    msg = render(row, {"title": "{{ rule }} on {{ venue }}: z={{ '%.1f' % values.wis_z }}",
                       "body": "Desk {{ labels.desk }}"})
    assert msg.title == "r on binance: z=3.2"
    assert msg.text.startswith("Desk spot\n")
    hostile = render(row, {"title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    assert hostile.title == "[WARNING] r binance BTC/USDT"
    assert "template failed" in hostile.text


def test_a_busy_channel_does_not_hold_up_the_next_alert_elsewhere(tmp_path: Path,
                                                                  webhook: Webhook) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(50)  # accepts, never answers
    config, store = setup(tmp_path, (
        f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n"
        f"  silent: {{url: 'json://127.0.0.1:{silent.getsockname()[1]}/hook', timeout: 2s}}\n"))
    now = NOW

    async def scenario() -> float:
        d = Dispatcher(config, store, clock=Clock(now))
        write_alerts(store, config, [alert(now, n) for n in range(5)])
        d.start_due(now)  # slack sends its 5; silent hangs on its first of 5
        await asyncio.sleep(0.5)
        write_alerts(store, config, [alert(now + 1, 9)])
        started = time.monotonic()
        d.start_due(now + 1)  # slack is free again: the new alert goes out at once
        while len(webhook.posts) < 6 and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        waited = time.monotonic() - started
        await d.drain(0.1)  # the silent channel is still busy: left pending
        return waited

    waited = asyncio.run(scenario())
    assert len(webhook.posts) == 6 and waited < 1.0, waited
    assert {r["status"] for r in store.query(
        "SELECT status FROM deliveries WHERE channel = 'silent'")} == {"pending"}
    silent.close()


@pytest.mark.parametrize("body", [
    "{{ values.nothing | round(2) }}",  # a filter on a missing (null) metric
    "{{ values.mid / 0 }}",
    "{{ range(10**9) | list }}",  # the sandbox refuses huge ranges
])
def test_a_failing_template_falls_back_to_the_default_message(
        tmp_path: Path, webhook: Webhook, body: str) -> None:
    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n")
    rule = config.rules[0]
    now = NOW
    d = Dispatcher(config, store, clock=Clock(now))
    d.templates[rule.name] = {"title": None, "body": body}
    write_alerts(store, config, [alert(now)])
    asyncio.run(d.run_once(now))
    assert statuses(store) == [("sent", 1)]
    sent = json.dumps(webhook.posts[0]["json"])
    assert "template failed" in sent and "3.40" in sent


def test_status_shows_the_outbox_backlog_of_a_down_channel(tmp_path: Path) -> None:
    import subprocess
    import sys

    config, store = setup(tmp_path, f"  down: {{url: 'json://127.0.0.1:{free_port()}/h'}}\n")
    now = NOW
    write_alerts(store, config, [alert(now, n) for n in range(2)])
    asyncio.run(Dispatcher(config, store, clock=Clock(now)).run_once(now))
    out = subprocess.run([sys.executable, "-m", "wis_monitor", "status", "-c",
                          str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "down: 2 pending, oldest" in out.stdout


def test_a_looping_template_renders_off_the_loop_and_is_logged_once(
        tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    from wis_monitor.template import BUDGET_S

    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n")
    now = NOW
    d = Dispatcher(config, store, clock=Clock(now))
    d.templates[config.rules[0].name] = {"title": None, "body": (  # a text no other test uses
        "{# dispatcher #}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
        "{% endfor %}")}
    write_alerts(store, config, [alert(now, n) for n in range(2)])

    async def scenario() -> list[float]:
        ticks: list[float] = []
        sending = asyncio.create_task(d.run_once(now))
        while not sending.done():  # the loop keeps turning while the template runs
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)
        await sending
        return ticks

    ticks = asyncio.run(scenario())
    assert ticks[-1] - ticks[0] >= BUDGET_S * 0.9
    assert max(b - a for a, b in pairwise(ticks)) < 0.3
    assert statuses(store) == [("sent", 1)] * 2
    for post in webhook.posts:
        sent = json.dumps(post["json"])
        assert "[CRITICAL] extreme-bid-pressure binance" in sent and "3.40" in sent
        assert f"did not finish within {BUDGET_S:g}s" in sent
    warnings = [r.getMessage() for r in caplog.records if "template failed" in r.getMessage()]
    assert warnings == [f'rule "extreme-bid-pressure": its template failed (body: did not '
                        f"finish within {BUDGET_S:g}s); its alerts go out with the default "
                        "message"]


def test_the_daemon_attaches_the_chart_of_the_alerts_series(tmp_path: Path,
                                                            smtp: tuple[Mailbox, int]) -> None:
    """The running daemon gives its dispatcher the chart: an email channel with
    ``attach_chart`` gets the series' PNG with the first alert of a simulated venue."""
    from daemon_harness import SteppedDaemon

    box, port = smtp
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
        "sampling: {interval: 200ms}\n"
        "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
        "channels:\n"
        f"  mail: {{url: 'mailto://127.0.0.1:{port}?from=wis@example.com&to=risk@example.com',"
        " attach_chart: true, group_by: []}\n"
        "rules:\n  include: [rules.yaml]\n")
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: always, when: mid > 0, for: 1s, channels: [mail]}\n")

    async def main() -> None:
        async with SteppedDaemon(cfg) as d:
            assert await d.until(lambda: box.messages, cycles=100)

    asyncio.run(main())
    (_, msg), = box.messages
    assert "always" in msg["Subject"]
    png = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert png and png[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
