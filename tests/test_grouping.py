"""Grouping per channel (``group_by``, ``group_wait``, ``group_interval``): one rule firing on
several series goes out as one message, its resolution as another; the wait lives in the
outbox, so a restart while a group waits still sends it, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from daemon_harness import SteppedDaemon, rows
from fakevenue import FakeVenueThread
from testclock import NOW, Clock
from webhook import Receiver

from wis_monitor.config import load_config
from wis_monitor.outbox import Dispatcher
from wis_monitor.store import AlertRow, Batch, SqliteStore, Store


def setup(tmp_path: Path, receiver: Receiver, channel: str = "") -> tuple[Any, Store]:
    (tmp_path / "rules.yaml").write_text("""\
rules:
  - {name: extreme-bid-pressure, when: wis_z >= 3, severity: critical, channels: [hook],
     runbook: "https://wiki.example/wis", labels: {desk: spot}}
  - {name: wide-spread, when: spread_bps > 5, severity: warning, channels: [hook],
     labels: {desk: spot}}
""")
    (tmp_path / "c.yaml").write_text(
        f"storage: {{path: {tmp_path / 'wis.db'}}}\nchannels:\n"
        f"  hook: {{url: 'json://127.0.0.1:{receiver.port}/hook'{channel}}}\n"
        "rules: {include: [rules.yaml]}\n")
    config = load_config(str(tmp_path / "c.yaml"))
    return config, SqliteStore(config.db_path())


def alert(ts: int, venue: str, event: str = "firing", rule: str = "extreme-bid-pressure",
          severity: str = "critical", *, fired_for_ms: int = 60_000,
          value: float = 3.4) -> AlertRow:
    details: dict[str, Any] = {"values": {"wis": 0.61, "wis_z": value}, "value_of": "wis_z",
                               "runbook": "https://wiki.example/wis"}
    if event == "resolved":
        details["fired_for_ms"] = fired_for_ms
    return AlertRow(ts, rule, f"{venue}:BTC/USDT", venue, "BTC/USDT", event, severity, value, "s",
                    {"desk": "spot"}, details, channels=["hook"])


def run(config: Any, store: Store, at: int) -> int:
    return asyncio.run(Dispatcher(config, store, clock=Clock(at)).run_once(at))


def statuses(store: Store) -> list[str]:
    return [r["status"] for r in store.query("SELECT status FROM deliveries ORDER BY id")]


def test_one_rule_on_three_series_is_one_message_and_its_resolution_another(
        tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)  # the defaults: [rule], 10s, 1m
    store.write(Batch(alerts=[alert(NOW, "binance")]))
    store.write(Batch(alerts=[alert(NOW + 2000, "okx"), alert(NOW + 4000, "deribit")]))
    assert run(config, store, NOW + 9_999) == 0  # group_wait after the first alert
    assert run(config, store, NOW + 10_000) == 3
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["title"] == "[CRITICAL] extreme-bid-pressure on 3 series"
    assert post["type"] == "failure"
    for venue in ("binance", "okx", "deribit"):
        assert f"[CRITICAL] extreme-bid-pressure {venue} BTC/USDT; wis_z = 3.400" \
            in post["message"]
    assert post["message"].count("Runbook: https://wiki.example/wis") == 1
    assert statuses(store) == ["sent"] * 3
    store.write(Batch(alerts=[alert(NOW + 60_000 + i, v, "resolved")
                              for i, v in enumerate(("binance", "okx", "deribit"))]))
    assert run(config, store, NOW + 70_001) == 3
    assert len(receiver.posts) == 2
    resolved = receiver.posts[1]
    assert resolved["title"] == "[RESOLVED] extreme-bid-pressure on 3 series"  # said once
    assert resolved["type"] == "success"
    assert "Resolved: after 1m firing" not in resolved["message"]  # facts, not labels
    assert "after 1m firing" in resolved["message"]
    assert run(config, store, NOW + 200_000) == 0
    assert len(receiver.posts) == 2


def test_a_message_shows_each_series_as_it_is_when_sent_and_loses_no_event(
        tmp_path: Path, receiver: Receiver) -> None:
    """An alert that fired and resolved while its group waited is no firing line: the message
    lists it as resolved, after the alerts still firing; every firing and every resolution
    goes out in exactly one message."""
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "binance")]))
    store.write(Batch(alerts=[alert(NOW + 1000, "okx", value=2.453)]))
    store.write(Batch(alerts=[alert(NOW + 5000, "okx", "resolved", fired_for_ms=4000,
                                    value=1.2)]))
    assert run(config, store, NOW + 10_000) == 3
    [post] = receiver.posts
    assert post["title"] == "[CRITICAL] extreme-bid-pressure binance BTC/USDT (+1 resolved)"
    assert post["type"] == "failure"
    assert post["message"].splitlines()[:2] == [
        "[CRITICAL] extreme-bid-pressure binance BTC/USDT; wis_z = 3.400; 2023-11-14 22:13:20 UTC",
        "[CRITICAL] extreme-bid-pressure okx BTC/USDT (resolved); after 4s firing; wis_z = 1.200;"
        " 2023-11-14 22:13:25 UTC"]
    assert "2.453" not in post["message"]
    assert statuses(store) == ["sent"] * 3
    # The group's next message, its last series resolving, waits for group_interval.
    store.write(Batch(alerts=[alert(NOW + 30_000, "binance", "resolved", fired_for_ms=30_000)]))
    assert run(config, store, NOW + 69_999) == 0
    assert run(config, store, NOW + 70_000) == 1
    assert receiver.posts[1]["title"] == \
        "[CRITICAL] extreme-bid-pressure binance BTC/USDT (resolved)"
    assert statuses(store) == ["sent"] * 4
    said = "\n".join(p["message"] for p in receiver.posts)
    for venue in ("binance", "okx"):
        assert said.count(f"extreme-bid-pressure {venue} BTC/USDT (resolved)") + \
            receiver.posts[1]["title"].count(venue) == 1, venue
    assert said.count("extreme-bid-pressure binance BTC/USDT;") == 1
    assert run(config, store, NOW + 200_000) == 0
    assert len(receiver.posts) == 2


def test_a_group_all_resolved_while_it_waited_goes_out_as_resolved(
        tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "okx"), alert(NOW, "binance")]))
    store.write(Batch(alerts=[alert(NOW + 3000, v, "resolved", fired_for_ms=3000)
                              for v in ("okx", "binance")]))
    assert run(config, store, NOW + 10_000) == 4
    [post] = receiver.posts
    assert post["title"] == "[RESOLVED] extreme-bid-pressure on 2 series"
    assert post["type"] == "success"
    assert "(resolved); after 3s firing" in post["message"]
    assert "BTC/USDT;" not in post["message"]  # no firing line
    assert statuses(store) == ["sent"] * 4


def test_a_series_firing_again_while_its_group_waits_is_listed_firing_and_resolved(
        tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "okx", value=3.1)]))
    store.write(Batch(alerts=[alert(NOW + 2000, "okx", "resolved", fired_for_ms=2000)]))
    store.write(Batch(alerts=[alert(NOW + 6000, "okx", value=3.6)]))
    assert run(config, store, NOW + 10_000) == 3
    [post] = receiver.posts
    assert post["title"] == "[CRITICAL] extreme-bid-pressure okx BTC/USDT (+1 resolved)"
    assert post["message"].splitlines()[:2] == [
        "[CRITICAL] extreme-bid-pressure okx BTC/USDT; wis_z = 3.600; 2023-11-14 22:13:26 UTC",
        "[CRITICAL] extreme-bid-pressure okx BTC/USDT (resolved); after 2s firing;"
        " wis_z = 3.400; 2023-11-14 22:13:22 UTC"]
    assert statuses(store) == ["sent"] * 3
    # Resolved again before the message went out: the lines no longer tell of every alert.
    store.write(Batch(alerts=[alert(NOW + 80_000 + i * 1000, "okx", e)
                              for i, e in enumerate(("resolved", "firing", "resolved"))]))
    assert run(config, store, NOW + 90_000) == 3
    assert receiver.posts[1]["title"] == \
        "[RESOLVED] extreme-bid-pressure okx BTC/USDT (3 alerts)"
    assert statuses(store) == ["sent"] * 6


def test_new_alerts_of_a_group_wait_for_group_interval(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "binance"), alert(NOW, "okx")]))
    run(config, store, NOW + 10_000)
    store.write(Batch(alerts=[alert(NOW + 15_000, "deribit"), alert(NOW + 16_000, "kraken")]))
    assert run(config, store, NOW + 69_999) == 0  # 1m after the group's last message
    assert run(config, store, NOW + 70_000) == 2
    assert [p["title"] for p in receiver.posts] == [
        "[CRITICAL] extreme-bid-pressure on 2 series"] * 2
    assert "deribit" in receiver.posts[1]["message"]
    # Another rule is another group: it waits only its own group_wait.
    store.write(Batch(alerts=[alert(NOW + 71_000, "okx", rule="wide-spread",
                                    severity="warning")]))
    assert run(config, store, NOW + 81_000) == 1
    assert receiver.posts[2]["title"] == "[WARNING] wide-spread okx BTC/USDT"  # one alert


def test_group_by_labels_and_the_gravest_severity(tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver, ", group_by: [desk], group_wait: 2s")
    store.write(Batch(alerts=[alert(NOW, "okx", rule="wide-spread", severity="warning"),
                              alert(NOW, "binance")]))
    assert run(config, store, NOW + 2000) == 2
    assert len(receiver.posts) == 1
    assert receiver.posts[0]["title"] == "[CRITICAL] 2 rules on 2 series"
    assert receiver.posts[0]["type"] == "failure"


def test_an_empty_group_by_sends_each_alert_at_once(tmp_path: Path,
                                                    receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver, ", group_by: []")
    store.write(Batch(alerts=[alert(NOW, "binance"), alert(NOW, "okx")]))
    assert run(config, store, NOW) == 2
    assert sorted(p["title"] for p in receiver.posts) == [
        "[CRITICAL] extreme-bid-pressure binance BTC/USDT",
        "[CRITICAL] extreme-bid-pressure okx BTC/USDT"]


def test_a_waiting_group_survives_a_restart_and_goes_out_once(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, v) for v in ("binance", "okx", "deribit")]))
    assert run(config, store, NOW + 5000) == 0
    store.close()  # the process ends while the group waits
    config, store = setup(tmp_path, receiver)
    assert run(config, store, NOW + 10_000) == 3
    assert run(config, store, NOW + 20_000) == 0
    assert len(receiver.posts) == 1


def test_a_failed_group_is_retried_as_one_with_what_joined_it(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    receiver.up = False
    store.write(Batch(alerts=[alert(NOW, "binance"), alert(NOW, "okx")]))
    assert run(config, store, NOW + 10_000) == 2
    store.write(Batch(alerts=[alert(NOW + 12_000, "deribit")]))
    receiver.up = True
    assert run(config, store, NOW + 14_999) == 0  # the backoff holds the group
    assert run(config, store, NOW + 22_000) == 3
    assert len(receiver.posts) == 1
    assert "deribit" in receiver.posts[0]["message"]
    assert statuses(store) == ["sent"] * 3


def test_groups_count_against_the_flood_limit(tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver, ", group_by: [venue], per_minute: 2")
    store.write(Batch(alerts=[alert(NOW, f"v{i}") for i in range(5)]))
    assert run(config, store, NOW + 10_000) == 5
    assert len(receiver.posts) == 2
    assert receiver.posts[1]["title"].startswith("[SUMMARY] 4 more alert(s) on hook")
    assert statuses(store) == ["sent"] * 5


def test_one_shot_runs_do_not_wait(tmp_path: Path, receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "binance"), alert(NOW, "okx")]))
    d = Dispatcher(config, store, clock=Clock(NOW))
    assert asyncio.run(d.run_once(NOW, flush=True)) == 2
    assert len(receiver.posts) == 1


def test_three_stale_venues_send_one_message_across_a_kill9_and_one_resolved(
        tmp_path: Path, receiver: Receiver) -> None:
    venues = ("binance", "okx", "kraken")
    clock = Clock(NOW)
    with FakeVenueThread({v: ["BTC/USDT"] for v in venues}, clock=clock) as fake:
        for v in venues:
            fake.set_fault(v, "http503")
        db = tmp_path / "wis.db"
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({
            "storage": {"path": str(db)},
            "sampling": {"interval": "250ms", "timeout": "1s", "stale_after": "2s"},
            "venues": [{"id": v, "exchange": v, "symbols": ["BTC/USDT"],
                        "ccxt": {**fake.ccxt_config(v), "enableRateLimit": False}}
                       for v in venues],
            "channels": {"hook": {"url": f"json://127.0.0.1:{receiver.port}/hook",
                                  "group_wait": "4s", "group_interval": "2s"}},
            "feed_stale": {"channels": ["hook"]}}))
        firing = "SELECT * FROM deliveries d JOIN alerts a ON a.id = d.alert_id" \
            " WHERE a.rule = 'feed-stale' AND a.event = 'firing'"

        async def main() -> None:
            d = await SteppedDaemon(cfg, clock, interval_s=0.25).__aenter__()
            assert await d.until(lambda: len(rows(db, firing)) == 3)
            await d.crash()  # while the group waits
            assert receiver.posts == []
            assert {r["status"] for r in rows(db, firing)} == {"pending"}
            async with SteppedDaemon(cfg, clock, interval_s=0.25) as d2:
                assert await d2.until(lambda: len(receiver.posts) >= 1)
                for v in venues:
                    fake.set_fault(v, None)
                assert await d2.until(lambda: len(receiver.posts) >= 2)
                await d2.cycle(4)  # nothing more is on its way

        asyncio.run(main())
    titles = [p["title"] for p in receiver.posts]
    assert titles[0] == "[WARNING] feed-stale on 3 series", titles
    # Resolved, unless a feed went stale again while the message waited: then it lists that
    # feed firing as well as the three resolutions.
    assert titles[1] == "[RESOLVED] feed-stale on 3 series" or (
        titles[1].startswith("[WARNING] feed-stale ") and titles[1].endswith("+3 resolved)")
    ), titles
    # More only if a feed went stale again after its recovery (the fake venue's books do
    # not change: frozen for stale_after).
    assert len(titles) == 2 or len(rows(db, firing)) > 3, titles
    for v in venues:
        assert f"feed-stale {v} BTC/USDT" in receiver.posts[0]["message"]
        assert f"feed-stale {v} BTC/USDT (resolved)" in receiver.posts[1]["message"]


def test_repeated_events_of_one_series_name_it_and_count_them(tmp_path: Path,
                                                              receiver: Receiver) -> None:
    config, store = setup(tmp_path, receiver)
    store.write(Batch(alerts=[alert(NOW, "okx"), alert(NOW + 1000, "okx")]))
    assert run(config, store, NOW + 10_000) == 2
    assert receiver.posts[0]["title"] == \
        "[CRITICAL] extreme-bid-pressure okx BTC/USDT (2 alerts)"
