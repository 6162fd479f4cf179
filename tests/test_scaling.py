"""Several real daemons on one PostgreSQL store: each venue sampled by exactly one instance,
failover after kill -9 within lease_ttl plus an interval without a lost or doubled alert, a
paused owner fenced off, and a server restart under load (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from daemon_harness import DaemonProcess, SteppedDaemon, wait_until
from testclock import NOW
from webhook import Receiver

from wis_monitor.clock import FakeClock
from wis_monitor.config import load_config
from wis_monitor.outbox import CLAIM_SLACK_MS, Dispatcher
from wis_monitor.store import AlertEvent, Batch
from wis_monitor.store.postgres import PostgresStore

pytestmark = pytest.mark.slow
TTL_S = 3.0
INTERVAL_S = 1.0
VENUES = [f"v{i}" for i in range(6)]


def config(tmp_path: Path, url: str, receiver: Receiver, when: str = "mid > 0",
           venues: list[str] = VENUES, for_: str = "0s") -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: lopsided\n"
        f"    when: {when}\n    for: {for_}\n    channels: [hook]\n")
    cfg = tmp_path / "c.yaml"
    lines = [f"storage: {{url: \"{url}\"}}",
             f"sampling: {{interval: {int(INTERVAL_S * 1000)}ms}}",
             f"instance: {{lease_ttl: {int(TTL_S)}s}}",
             "venues:"]
    lines += [f"  - {{id: {v}, exchange: sim, symbols: [BTC/USDT], sim: {{seed: {i}}}}}"
              for i, v in enumerate(venues)]
    lines += ["channels:",
              f"  hook: {{url: \"json://127.0.0.1:{receiver.port}/hook\", timeout: 2s, "
              "group_by: []}",
              "feed_stale: {enabled: false}",
              "rules: {include: [rules.yaml]}"]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    yield s
    s.close()


def start(cfg: Path, *names: str) -> dict[str, DaemonProcess]:
    return {n: DaemonProcess(cfg, env={"WIS_INSTANCE_ID": n}) for n in names}


def holders(store: PostgresStore) -> dict[str, str | None]:
    return {r.name.removeprefix("venue:"): r.owner for r in store.leases()}


def spread(store: PostgresStore, names: list[str]) -> bool:
    """Every venue held, by one of ``names``, each holding its share."""
    held = holders(store)
    counts = Counter(held.values())
    share = -(-len(VENUES) // len(names))
    return (set(held) == set(VENUES) and set(counts) <= set(names)
            and all(counts[n] <= share for n in names))


def titles(receiver: Receiver) -> Counter[str]:
    return Counter(p["title"] for p in receiver.posts)


def alert_events(store: PostgresStore) -> list[dict[str, Any]]:
    return store.query("SELECT rule, venue, event FROM alerts ORDER BY id")


def samples_per_venue(store: PostgresStore, since_ms: int, until_ms: int) -> dict[str, int]:
    rows = store.query("SELECT venue, count(*) AS n FROM samples WHERE ts >= %s AND ts < %s"
                       " GROUP BY venue", [since_ms, until_ms])
    return {r["venue"]: int(r["n"]) for r in rows}


def stop_all(daemons: dict[str, DaemonProcess]) -> None:
    for d in daemons.values():
        d.stop()


def logs(daemons: dict[str, DaemonProcess]) -> str:
    return "\n".join(f"--- {n}\n{d.log()}" for n, d in daemons.items())


def test_three_daemons_share_six_venues_and_a_kill9_moves_them_without_a_lost_or_doubled_alert(
        tmp_path: Path, pg_url: str, store: PostgresStore, receiver: Receiver) -> None:
    cfg = config(tmp_path, pg_url, receiver)
    daemons = start(cfg, "a", "b", "c")
    try:
        assert wait_until(lambda: spread(store, ["a", "b", "c"]), 30), logs(daemons)
        # one alert per venue, each delivered once
        assert wait_until(lambda: len(receiver.posts) >= 6, 30), logs(daemons)
        # `status` on any host lists the instances and what each holds
        out = subprocess.run([sys.executable, "-m", "wis_monitor", "status", "-c", str(cfg),
                              "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        assert [(i["id"], i["alive"], len(i["leases"])) for i in shown["instances"]] == [
            ("a", True, 2), ("b", True, 2), ("c", True, 2)]
        assert "pg-test-secret" not in out.stdout
        # each venue is sampled by one instance: one sample per interval, not two or three
        t0 = int(time.time() * 1000)
        time.sleep(5.0)
        counts = samples_per_venue(store, t0, t0 + 5000)
        assert set(counts) == set(VENUES), counts
        assert all(3 <= n <= 6 for n in counts.values()), counts

        victim = next(n for n, o in Counter(holders(store).values()).most_common() if o)
        moved = sorted(v for v, o in holders(store).items() if o == victim)
        killed_ms = int(time.time() * 1000)
        daemons.pop(victim).kill9()
        survivors = sorted(daemons)

        def resampled() -> bool:
            counts = samples_per_venue(store, killed_ms + 1, killed_ms + 60_000)
            held = holders(store)
            return all(held[v] in survivors and counts.get(v, 0) > 0 for v in moved)

        assert wait_until(resampled, 30), logs(daemons)
        firsts = store.query(
            "SELECT venue, min(ts) AS first FROM samples WHERE ts > %s GROUP BY venue",
            [killed_ms])
        failover_s = max(int(r["first"]) - killed_ms for r in firsts
                         if r["venue"] in moved) / 1000
        print(f"failover: kill -9 to the first sample by the new owner: {failover_s:.1f} s "
              f"(lease_ttl {TTL_S:.0f} s, interval {INTERVAL_S:.0f} s)")
        assert failover_s <= TTL_S + 2 * INTERVAL_S + 2.0  # ttl, a tick, an interval (+ CI)
        time.sleep(3.0)
        assert sum(titles(receiver).values()) == 6  # the moved alerts were not sent again

        # The rule stops matching: the new owners resolve what the dead one fired.
        config(tmp_path, pg_url, receiver, when="mid > 1e15")
        for d in daemons.values():
            d.signal(signal.SIGHUP)
        assert wait_until(lambda: len(receiver.posts) >= 12, 30), logs(daemons)
        time.sleep(2.0)
    finally:
        stop_all(daemons)
    events = alert_events(store)
    assert Counter((e["venue"], e["event"]) for e in events) == {
        **{(v, "firing"): 1 for v in VENUES}, **{(v, "resolved"): 1 for v in VENUES}}
    posted = titles(receiver)  # each alert's firing and resolved message, once each
    assert len(receiver.posts) == 12 and set(posted.values()) == {1}, posted
    assert sum("(resolved)" in t for t in posted) == 6
    sent = store.query("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    assert {r["status"]: int(r["n"]) for r in sent} == {"sent": 12}


def test_a_paused_owner_steps_down_when_resumed_and_nothing_doubles(
        tmp_path: Path, pg_url: str, store: PostgresStore, receiver: Receiver) -> None:
    """SIGSTOP past the lease, SIGCONT: whichever comes first after the resume — its next
    write, refused by the fencing token, or its next lease tick, which finds the leases taken
    — it steps down, then gets its share back under new tokens (the refused write on its own
    is the next test's, made deterministic in one process)."""
    cfg = config(tmp_path, pg_url, receiver)
    daemons = start(cfg, "a", "b")
    try:
        assert wait_until(lambda: spread(store, ["a", "b"]), 30), logs(daemons)
        assert wait_until(lambda: len(receiver.posts) >= 6, 30), logs(daemons)
        paused = daemons["a"]
        its = sorted(v for v, o in holders(store).items() if o == "a")
        tokens = {r.name: r.token for r in store.leases()}
        paused.signal(signal.SIGSTOP)
        stopped_ms = int(time.time() * 1000)
        assert wait_until(lambda: all(o == "b" for o in holders(store).values()), 30), \
            logs(daemons)
        time.sleep(2.0)
        paused.signal(signal.SIGCONT)
        resumed_ms = int(time.time() * 1000)
        # a comes back: refused or outrun, it steps down, then gets its share handed back
        assert wait_until(lambda: spread(store, ["a", "b"]) and
                          "a" in holders(store).values(), 30), logs(daemons)
        time.sleep(3.0)
        done_ms = int(time.time() * 1000)
    finally:
        stop_all(daemons)
    log_a = daemons["a"].log()
    fenced = "stepping down" in log_a
    assert fenced or "leases lost" in log_a, log_a
    assert all(r.token > tokens[r.name] for r in store.leases() if r.name[6:] in its)
    # one sampler per venue all along: never more than one sample per interval (+ slack)
    counts = samples_per_venue(store, stopped_ms, done_ms)
    span_s = (done_ms - stopped_ms) / 1000
    assert all(n <= span_s / INTERVAL_S + 2 for n in counts.values()), (counts, span_s)
    assert Counter(e["event"] for e in alert_events(store)) == {"firing": 6}
    assert len(receiver.posts) == 6
    print(f"paused for {(resumed_ms - stopped_ms) / 1000:.1f} s; "
          f"{'its writes were refused' if fenced else 'it saw its leases lost first'}; "
          f"samples per venue {counts}")


def test_a_postgresql_restart_under_load_loses_no_sample_or_alert(
        tmp_path: Path, pg_url: str, pg_server: pgserver.Server, store: PostgresStore,
        receiver: Receiver) -> None:
    # The alerts fire 6 s after the start: while the server is down.
    cfg = config(tmp_path, pg_url, receiver, for_="6s")
    daemons = start(cfg, "a", "b")
    try:
        assert wait_until(lambda: spread(store, ["a", "b"]), 30), logs(daemons)
        store.close()
        down_ms = int(time.time() * 1000)
        pg_server.stop_for(8.0)
        up_ms = int(time.time() * 1000)
        assert wait_until(lambda: len(receiver.posts) >= 6, 40), logs(daemons)
        time.sleep(3.0)
    finally:
        stop_all(daemons)
    after = PostgresStore(pg_url)
    try:
        counts = samples_per_venue(after, down_ms, up_ms)
        expected = (up_ms - down_ms) / 1000 / INTERVAL_S
        assert all(n >= expected - 2 for n in counts.values()) and set(counts) == set(VENUES), (
            counts, expected)
        assert Counter(e["event"] for e in alert_events(after)) == {"firing": 6}
    finally:
        after.close()
    alerts = [t for t in titles(receiver) if "database error" not in t]
    assert sorted(alerts) == sorted(f"[WARNING] lopsided {v} BTC/USDT" for v in VENUES)
    ops = titles(receiver)["[CRITICAL] wis-monitor database error"]
    assert ops == 2  # each instance told the operators once that it could not write
    assert "database writable again" in logs(daemons)


def test_an_owner_resuming_after_its_lease_was_taken_has_its_batch_refused_and_steps_down(
        tmp_path: Path, pg_url: str, store: PostgresStore, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Two daemons in this process on clocks of their own: ``a`` stops between two cycles
    (as a paused process does), ``b`` takes its venues over, then ``a``'s next cycle writes
    under the old tokens: the store refuses the batch and ``a`` steps down."""
    cfg = config(tmp_path, pg_url, receiver)
    clock_a, clock_b = FakeClock(NOW), FakeClock(NOW)

    async def main() -> None:
        monkeypatch.setenv("WIS_INSTANCE_ID", "a")
        async with SteppedDaemon(cfg, clock_a, interval_s=INTERVAL_S) as a:
            await a.cycle(3)
            assert len(holders_of(store, "a")) == 6
            assert len(receiver.posts) == 6  # every venue's alert fired and was sent
            before = {r.name: r.token for r in store.leases()}
            monkeypatch.setenv("WIS_INSTANCE_ID", "b")
            clock_b.advance((clock_a.now_ms() - clock_b.now_ms()) / 1000)
            async with SteppedDaemon(cfg, clock_b, interval_s=INTERVAL_S) as b:
                # a is paused: b sees its heartbeat and leases stand still, and takes over
                assert await b.until(lambda: len(holders_of(store, "b")) == 6, cycles=30)
                assert b.daemon.shard is not None and b.daemon.shard.keeper.takeovers == 6
                await b.cycle()
                metrics = b.daemon.telemetry.registry
                assert metrics.get_sample_value("wis_lease_takeovers_total") == 6
                assert metrics.get_sample_value("wis_leases_held", {"kind": "venue"}) == 6
                clock_a.advance((clock_b.now_ms() - clock_a.now_ms()) / 1000)
                resumed_ms = clock_a.now_ms()
                await a.daemon.sample_all()  # a's next cycle, before its lease tick
                assert a.daemon.telemetry.fenced._value.get() == 1
                assert a.daemon.rt is not None and a.daemon.rt.sources == {}
                assert store.query("SELECT count(*) AS n FROM samples WHERE ts = %s",
                                   [resumed_ms]) == [{"n": 0}]
                # a comes back with its share handed over, under new tokens
                for _ in range(10):
                    await a.cycle()
                    await b.cycle()
                assert len(holders_of(store, "a")) == 3 and len(holders_of(store, "b")) == 3
                assert all(r.token > before[r.name] for r in store.leases())
                await b.cycle(3)
                await a.cycle(3)

    asyncio.run(main())
    assert "stepping down" in caplog.text
    # b carried the firing alerts on (restored from the store): nothing fired or was sent twice
    assert Counter(e["event"] for e in alert_events(store)) == {"firing": 6}
    assert len(receiver.posts) == 6


def holders_of(store: PostgresStore, instance: str) -> list[str]:
    return [v for v, o in holders(store).items() if o == instance]


def test_a_delivery_whose_sender_died_mid_send_is_sent_by_another_instance_and_counted(
        tmp_path: Path, pg_url: str, store: PostgresStore, receiver: Receiver) -> None:
    """``a`` claims a delivery and its send hangs (its channel does not answer): ``b`` leaves
    it alone while the claim holds, then sends it, and counts it as possibly sent twice."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen()  # accepts connections, never answers
    configs = {}
    for name, port in (("a", hung.getsockname()[1]), ("b", receiver.port)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f'storage: {{url: "{pg_url}"}}\n'
                        "venues: [{id: v0, exchange: sim, symbols: [BTC/USDT]}]\n"
                        f'channels: {{hook: {{url: "json://127.0.0.1:{port}/hook", '
                        "timeout: 2s, group_by: []}}\n")
        configs[name] = load_config(str(path))
    store.write(Batch(alerts=[AlertEvent(NOW, "lopsided", "v0:BTC/USDT", "v0", "BTC/USDT",
                                         "firing", "warning", 1.0, "lopsided v0 BTC/USDT",
                                         channels=["hook"])]))
    clock = FakeClock(NOW)

    async def main() -> None:
        a = Dispatcher(configs["a"], store, clock=clock, owner="a")
        b = Dispatcher(configs["b"], store, clock=clock, owner="b")
        a.start_due(clock.now_ms())
        for _ in range(50):  # a's send is under way
            await asyncio.sleep(0.1)
            if store.query("SELECT claimed_by FROM deliveries") == [{"claimed_by": "a"}]:
                break
        await b.run_once(clock.now_ms())
        assert receiver.posts == [] and b.reclaimed == 0  # a's claim holds
        clock.advance(2 + CLAIM_SLACK_MS / 1000 + 0.1)  # a never settled it: its claim ran out
        await b.run_once(clock.now_ms())
        assert [p["title"] for p in receiver.posts] == ["[WARNING] lopsided v0 BTC/USDT"]
        assert b.reclaimed == 1
        await a.drain(10.0)  # a's send times out; the row b settled stays settled

    try:
        asyncio.run(main())
    finally:
        hung.close()
    (row,) = store.query("SELECT status, claimed_by FROM deliveries")
    assert row == {"status": "sent", "claimed_by": "b"}


def test_a_group_rule_is_evaluated_by_its_holder_over_members_sampled_elsewhere(
        tmp_path: Path, pg_url: str, store: PostgresStore, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Six venues on two instances, one group of all six: the group's holder fires once on
    members half of which the other instance samples; when that instance dies its members
    go stale (unknown) and the alert resolves, until their new holder samples them."""
    cfg = config(tmp_path, pg_url, receiver)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: all-six\n    scope: group\n    group: all\n"
        "    when: count(mid > 0) >= 6\n    channels: [hook]\n")
    members = ", ".join(f"{v}:BTC/USDT" for v in VENUES)
    cfg.write_text(cfg.read_text().replace("sampling: {interval: 1000ms}",
                                           "sampling: {interval: 1000ms, stale_after: 2s}")
                   + f"groups: {{all: [{members}]}}\n")
    clock_a, clock_b = FakeClock(NOW), FakeClock(NOW)

    def group_events() -> list[str]:
        return [e["event"] for e in alert_events(store)]

    async def main() -> None:
        monkeypatch.setenv("WIS_INSTANCE_ID", "a")
        async with SteppedDaemon(cfg, clock_a, interval_s=INTERVAL_S) as a:
            monkeypatch.setenv("WIS_INSTANCE_ID", "b")
            b = SteppedDaemon(cfg, clock_b, interval_s=INTERVAL_S)
            await b.__aenter__()
            for _ in range(8):
                await a.cycle()
                await b.cycle()
            held = holders(store)
            assert Counter(held.values()) == {"a": 4, "b": 3} or \
                Counter(held.values()) == {"a": 3, "b": 4}
            assert group_events() == ["firing"]
            await b.crash()  # b dies: its venues go stale, then a takes them over
            for _ in range(12):
                await a.cycle()
            assert set(holders(store).values()) == {"a"}

    asyncio.run(main())
    assert group_events() == ["firing", "resolved", "firing"]
    assert [p["title"].endswith("(resolved)") for p in receiver.posts] == [False, True, False]
