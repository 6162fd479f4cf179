"""Leases over venues and groups: spread, renewal, takeover after the TTL, release to a joining
instance, preferences, fencing (the policy of wis_monitor/leases.py on a real store file)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testclock import NOW

from wis_monitor.clock import FakeClock
from wis_monitor.errors import Fenced, StoreError
from wis_monitor.leases import LeaseKeeper, assign
from wis_monitor.store import Batch, InstanceRow, SampleRow, SqliteStore

TTL_MS = 15_000
VENUES = {f"venue:v{i}": [] for i in range(6)}


def keeper(store: SqliteStore, name: str, clock: FakeClock) -> LeaseKeeper:
    me = InstanceRow(name, "host", 1, clock.now_ms(), clock.now_ms())
    return LeaseKeeper(store, me, TTL_MS, clock)


def run(keepers: list[LeaseKeeper], clock: FakeClock, seconds: int,
        wanted: dict[str, list[str]] = VENUES) -> None:
    for _ in range(seconds):
        for k in keepers:
            k.tick(wanted)
        clock.advance(1.0)


def holders(store: SqliteStore) -> dict[str, str | None]:
    return {r.name: r.owner for r in store.leases()}


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "wis.db"))


@given(st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=6,
                unique=True), st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=20))
@settings(max_examples=200)
def test_every_instance_computes_the_same_even_spread(live: list[str], names: set[str]) -> None:
    wanted = {n: [] for n in names}
    owners = assign(wanted, live)
    assert set(owners) == names and set(owners.values()) <= set(live)
    assert assign(wanted, list(reversed(live))) == owners
    share = -(-len(names) // len(live))
    assert max(Counter(owners.values()).values()) <= share


def test_preferred_instances_hold_a_venue_while_one_of_them_is_alive() -> None:
    wanted = {"venue:okx": ["c"], "venue:binance": []}
    assert assign(wanted, ["a", "b", "c"])["venue:okx"] == "c"
    assert assign(wanted, ["a", "b"])["venue:okx"] in ("a", "b")


def test_an_instance_leaving_moves_only_its_own_leases_when_loads_allow() -> None:
    wanted = {f"venue:v{i}": [] for i in range(12)}
    before = assign(wanted, ["a", "b", "c", "d"])
    after = assign(wanted, ["a", "b", "c"])
    moved = {n for n in wanted if before[n] != after[n]}
    assert {n for n in wanted if before[n] == "d"} <= moved
    assert len(moved) <= 6  # d's three, and few others


def test_three_instances_spread_six_venues_each_held_by_exactly_one(store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    ks = [keeper(store, n, clock) for n in ("a", "b", "c")]
    run(ks, clock, 20)
    held = holders(store)
    assert set(held) == set(VENUES) and None not in held.values()
    for k in ks:  # each knows exactly what the store says it holds
        assert set(k.tokens) == {n for n, o in held.items() if o == k.id}
    assert sum(len(k.tokens) for k in ks) == 6
    assert Counter(held.values()) == {"a": 2, "b": 2, "c": 2}  # an even spread


def test_a_dead_instance_s_venues_are_taken_over_within_the_ttl_with_new_tokens(
        store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    ks = [keeper(store, n, clock) for n in ("a", "b", "c")]
    run(ks, clock, 20)
    before = {r.name: r for r in store.leases()}
    dead = next(k for k in ks if k.tokens)
    its = set(dead.tokens)
    alive = [k for k in ks if k is not dead]
    second = 0
    while any(holders(store)[n] == dead.id for n in its) and second < 40:
        run(alive, clock, 1)
        second += 1
    assert TTL_MS / 1000 <= second <= TTL_MS / 1000 + 2
    after = {r.name: r for r in store.leases()}
    for n in its:
        assert after[n].owner in {k.id for k in alive}
        assert after[n].token == before[n].token + 1
    assert sum(k.takeovers for k in alive) == len(its)
    run(alive, clock, 2)  # the survivors even out their loads (a release, then a take)
    assert sum(len(k.tokens) for k in alive) == 6
    assert Counter(holders(store).values()) == {k.id: 3 for k in alive}


def test_a_joining_instance_gets_its_share_released_to_it_without_waiting_for_the_ttl(
        store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    a = keeper(store, "a", clock)
    run([a], clock, 3)
    assert len(a.tokens) == 6
    b, c = keeper(store, "b", clock), keeper(store, "c", clock)
    run([a, b, c], clock, 3)
    assert sum(len(k.tokens) for k in (a, b, c)) == 6
    assert b.tokens and c.tokens
    assert a.takeovers + b.takeovers + c.takeovers == 0  # handed over, not taken


def test_an_instance_that_lost_sight_of_the_store_does_not_take_leases_at_once(
        store: SqliteStore, tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    a, b = keeper(store, "a", clock), keeper(store, "b", clock)
    run([a, b], clock, 5)
    held_by_a = set(a.tokens)
    # b is cut off from the store for a minute (its ticks fail), a keeps renewing
    b.store = SqliteStore(str(tmp_path / "missing" / "no.db"))
    b.store.close()
    for _ in range(60):
        with pytest.raises(StoreError):
            b.tick(VENUES)
        a.tick(VENUES)
        clock.advance(1.0)
    b.store = store
    run([a, b], clock, 3)
    assert set(a.tokens) == held_by_a  # b watched a renew: nothing taken


def test_a_write_under_an_outdated_token_is_refused_and_one_under_the_current_is_taken(
        store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    a, b = keeper(store, "a", clock), keeper(store, "b", clock)
    run([a], clock, 2)
    token = a.tokens["venue:v0"]
    row = SampleRow(clock.now_ms(), "v0", "X/Y", {"mid": 1.0})
    store.write(Batch(samples=[row], fence={"venue:v0": token}))
    run([b], clock, 20)  # a paused: b takes everything over
    assert "venue:v0" in b.tokens
    late = SampleRow(clock.now_ms(), "v0", "X/Y", {"mid": 2.0})
    with pytest.raises(Fenced) as refused:
        store.write(Batch(samples=[late], fence={"venue:v0": token}))
    assert refused.value.leases == ["venue:v0"]
    assert [s.values["mid"] for s in store.good_samples(NOW, clock.now_ms(), "v0")] == [1.0]


def test_leases_of_venues_no_longer_configured_are_released(store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    a = keeper(store, "a", clock)
    run([a], clock, 2)
    fewer = {n: p for n, p in VENUES.items() if n != "venue:v5"}
    changes = a.tick(fewer)
    assert changes.lost == ["venue:v5"]
    assert holders(store)["venue:v5"] is None


def test_an_instance_stopping_cleanly_hands_its_leases_over_at_once(store: SqliteStore) -> None:
    clock = FakeClock(NOW)
    a, b = keeper(store, "a", clock), keeper(store, "b", clock)
    run([a, b], clock, 3)
    assert a.tokens and b.tokens
    a.leave()
    run([b], clock, 2)  # well within the TTL
    assert set(b.tokens) == set(VENUES)
    assert b.takeovers == 0  # handed over, not taken over
    a_again = keeper(store, "a", clock)  # a restarts: it is back in the spread
    run([a_again, b], clock, 3)
    assert len(a_again.tokens) == 3 and len(b.tokens) == 3
