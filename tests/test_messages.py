"""What a receiver gets and what an operator reads: apprise's notification type per severity
(Slack's colour, a JSON hook's ``type``), messages with the best levels in book order and
labelled numbers, runbooks on every shipped rule, one log line per failed send, and masking of
secrets only."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import yaml
from daemon_harness import DaemonProcess
from test_engine import engine, obs
from test_notify import NOW, SLACK_TOKEN, Clock, Webhook, alert, free_port, setup, write_alerts
from test_notify import webhook as webhook  # the fixture, for pytest

from wis_monitor.channel import url_secrets
from wis_monitor.message import render
from wis_monitor.outbox import Dispatcher

ROOT = Path(__file__).resolve().parent.parent
#: The attachment colours apprise's Slack plugin sends per notification type.
SLACK_COLOURS = {"info": "#3AA3E3", "warning": "#CACF29", "critical": "#A32037",
                 "resolved": "#3AA337"}


def four_levels(store: object, config: object) -> None:
    """An info, a warning and a critical firing, then the critical one resolved."""
    rows = []
    for n, severity in enumerate(("info", "warning", "critical")):
        a = alert(NOW + n, n)
        a.severity = severity
        rows.append(a)
    resolved = alert(NOW + 3, 2, event="resolved")
    rows.append(resolved)
    write_alerts(store, config, rows)  # type: ignore[arg-type]


def test_slack_colours_the_attachment_by_severity(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path, f"  slack: {{url: 'slack://{SLACK_TOKEN}'}}\n")
    four_levels(store, config)
    asyncio.run(Dispatcher(config, store, clock=Clock(NOW + 5)).run_once(NOW + 5))
    colours = [p["json"]["attachments"][0]["color"] for p in webhook.posts]
    assert colours == [SLACK_COLOURS[k] for k in ("info", "warning", "critical", "resolved")]


def test_a_json_hook_gets_the_type_of_each_severity(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path, f"  hook: {{url: 'json://127.0.0.1:{webhook.port}/h'}}\n")
    four_levels(store, config)
    asyncio.run(Dispatcher(config, store, clock=Clock(NOW + 5)).run_once(NOW + 5))
    assert [p["json"]["type"] for p in webhook.posts] == ["info", "warning", "failure",
                                                          "success"]


def test_a_summary_has_the_type_of_its_gravest_alert(tmp_path: Path, webhook: Webhook) -> None:
    config, store = setup(tmp_path,
                          f"  hook: {{url: 'json://127.0.0.1:{webhook.port}/h', per_minute: 2}}\n")
    rows = [alert(NOW + n, n) for n in range(4)]
    for a in rows[:3]:
        a.severity = "info"
    write_alerts(store, config, rows)
    asyncio.run(Dispatcher(config, store, clock=Clock(NOW + 5)).run_once(NOW + 5))
    assert [p["json"]["type"] for p in webhook.posts] == ["info", "failure"]
    assert webhook.posts[1]["json"]["title"].startswith("[SUMMARY] 3 more alert(s)")


def test_levels_in_book_order_labelled_value_and_depth_unit() -> None:
    """Levels stored by older versions (by contribution) are shown in book order too."""
    a = {"rule": "r", "key": "okx:ETH/USDT", "venue": "okx", "symbol": "ETH/USDT",
         "event": "firing", "severity": "critical", "value": 3.41, "ts": NOW,
         "details": {"value_of": "wis_z", "depth_band_bps": 50.0,
                     "values": {"wis": 0.6, "wis_z": 3.41, "bid_depth": 2.5e6,
                                "ask_depth": 9e5},
                     "top_bids": [[2728.26, 5452.0], [2728.4, 12.5], [2728.3, 0.0042]],
                     "top_asks": [[2728.9, 3.0], [2728.5, 1.0]]}}
    text = render(a).text
    assert "Value: wis_z = 3.410" in text
    assert "Depth (USDT within 50 bps): bids 2,500,000 / asks 900,000" in text
    assert "Top bids (price × amount): 2,728.40 × 12.5, 2,728.30 × 0.0042, " \
        "2,728.26 × 5,452" in text
    assert "Top asks (price × amount): 2,728.50 × 1, 2,728.90 × 3" in text


def test_an_engine_alert_carries_the_best_levels_and_its_value_metric(tmp_path: Path) -> None:
    e = engine(tmp_path, "rules:\n  - {name: heavy, when: wis > 0.3 and mid > 0}\n")
    bids = [[100.0, 1.0], [99.9, 50.0], [99.8, 2.0], [99.7, 3.0]]
    asks = [[100.1, 1.0], [100.2, 1.0], [100.3, 7.0], [100.4, 1.0]]
    batch, _ = e.process([obs(1000, bids, asks)])
    (fired,) = batch.alerts
    d = fired.details
    assert d["top_bids"] == [(100.0, 1.0), (99.9, 50.0), (99.8, 2.0)]
    assert d["top_asks"] == [(100.1, 1.0), (100.2, 1.0), (100.3, 7.0)]
    assert d["value_of"] == "wis" and d["depth_band_bps"] == 50.0
    text = render({**fired.__dict__, "ts": fired.ts_ms, "details": d}).text
    # Depth is summed within the effective band: both sides reach 35 bps of the 50 configured.
    assert "Value: wis = 0.776\n" in text and "Depth (Y within 35 bps)" in text
    assert "Top bids (price × amount): 100.00 × 1, 99.90 × 50, 99.80 × 2" in text


def test_every_shipped_rule_has_a_runbook_that_exists() -> None:
    for path in [*sorted((ROOT / "rules").glob("*.yaml")),
                 ROOT / "wis_monitor" / "default" / "demo-rules.yaml"]:
        for rule in yaml.safe_load(path.read_text())["rules"]:
            page, _, anchor = str(rule.get("runbook", "")).partition("#")
            assert page.startswith("docs/") and anchor, (path.name, rule["name"])
            headings = [_anchor(h) for h in re.findall(r"^#+ (.+)$", (ROOT / page).read_text(),
                                                        re.MULTILINE)]
            assert anchor in headings, (path.name, rule["name"], anchor)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_a_failed_send_is_one_line_naming_the_alert(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: always, when: mid > 0, severity: critical, channels: [hook]}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
                   "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
                   "channels:\n  hook: {url: '${HOOK_URL}', timeout: 1s}\n"
                   "feed_stale: {enabled: false}\nrules: {include: [rules.yaml]}\n")
    d = DaemonProcess(cfg, env={"HOOK_URL": f"json://u:pw-sekret-77@127.0.0.1:{free_port()}/h"},
                      args=("--once",))
    assert d.wait(60) == 0, d.log()
    lines = [line for line in d.log().splitlines() if "Connection error" in line]
    assert lines == ["WARNING firing always on simex:BTC/USDT to channel hook failed: A Connection "
                     "error occurred sending JSON notification to 127.0.0.1.; retrying in 5s"]


def test_notify_test_masks_only_secrets(tmp_path: Path, webhook: Webhook) -> None:
    (tmp_path / "c.yaml").write_text(
        f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
        "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
        "channels:\n"
        f"  hook: {{url: 'json://localhost:{webhook.port}/riskdesk-alerts/hook"
        "?token=abcdef123'}\n"
        f"  keyed: {{url: 'json://127.0.0.1:{webhook.port}/hook/a8f3e2c9d1b7'}}\n")

    def notify_test(name: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wis_monitor", "notify-test", "-c", str(tmp_path / "c.yaml"),
             name], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return done.stdout

    out = notify_test("hook")
    assert out.startswith(f"hook: sent: json://localhost:{webhook.port}/riskdesk-alerts/hook"), out
    assert "abcdef123" not in out
    out = notify_test("keyed")
    assert out.startswith(f"keyed: sent: json://127.0.0.1:{webhook.port}/hook/***"), out
    assert [p["path"] for p in webhook.posts] == ["/riskdesk-alerts/hook",
                                                  "/hook/a8f3e2c9d1b7"]


def test_the_credential_parts_of_channel_urls() -> None:
    assert url_secrets(f"slack://{SLACK_TOKEN}") == set(SLACK_TOKEN.split("/"))
    assert url_secrets("mailto://deskalerts:mail-pw-91c2@smtp.example.com:587"
                       "?to=risk@example.com") == {"mail-pw-91c2"}
    assert url_secrets("json://hooks.example.com:8443/riskdesk-alerts/hook/a8f3e2c9d1b7"
                       "?token=abcdef123") == {"a8f3e2c9d1b7", "abcdef123"}
    assert url_secrets("json://127.0.0.1/riskdesk-alerts-webhook/sekretWebhookTokenAbc") == \
        {"sekretWebhookTokenAbc"}
    assert url_secrets("console://") == set()
