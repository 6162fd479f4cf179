"""The pipeline itself: quality flags keep numbers out, staleness, feed-stale inhibition, group
rules over the latest good samples."""

from __future__ import annotations

from pathlib import Path

from wis_monitor.book import make_book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.sources import Observation
from wis_monitor.store import Silence

BIDS = [[100.0, 5.0], [99.9, 1.0]]
ASKS = [[100.1, 1.0], [100.2, 1.0]]


def engine(tmp_path: Path, rules: str = "rules: []\n", extra: str = "") -> Engine:
    (tmp_path / "r.yaml").write_text(rules)
    (tmp_path / "c.yaml").write_text(
        "sampling: {interval: 1s, stale_after: 5s}\n"
        + (extra or "metrics:\n  zscore: {window: 1m, min_samples: 2, min_history: 0s}\n")
        + "venues:\n  - {id: a, exchange: sim, symbols: [X/Y]}\n"
        "  - {id: b, exchange: sim, symbols: [X/Y]}\n"
        "groups: {g: ['a:X/Y', 'b:X/Y']}\n"
        "rules: {include: [r.yaml]}\n")
    return Engine(load_config(str(tmp_path / "c.yaml")))


def obs(ts: int, bids: list[list[float]] = BIDS, asks: list[list[float]] = ASKS,
        venue: str = "a", venue_ts: int | None = None) -> Observation:
    book, flags = make_book(bids, asks, venue_ts_ms=venue_ts)
    return Observation(venue, "X/Y", ts, book, flags, 1.0)


def varied(i: int) -> tuple[list[list[float]], list[list[float]]]:
    return [[100.0, 1.0 + i % 3], [99.9, 1.0]], ASKS


def heavy(i: int) -> tuple[list[list[float]], list[list[float]]]:
    """Bids heavy enough for WIS > 0.3, a little different each time."""
    return [[100.0, 5.0 + i], [99.9, 1.0]], ASKS


def test_flagged_samples_have_no_imbalance_and_stay_out_of_windows(tmp_path: Path) -> None:
    e = engine(tmp_path)
    zs = []
    for i in range(6):
        _, (s,) = e.process([obs(i * 1000, *varied(i))])
        zs.append(s.values.get("wis_z"))
    _, (crossed,) = e.process([obs(6000, [[100.3, 1.0]], ASKS)])
    assert crossed.flags == {"crossed"} and crossed.values.get("wis") is None
    assert crossed.values["mid"] == (100.3 + 100.1) / 2  # informative only
    window = e.series[("a", "X/Y")].stats.scorers["wis"]
    assert window.baseline() is not None and window.baseline().n == 5  # type: ignore[union-attr]
    _, (after,) = e.process([obs(7000, *varied(7))])
    assert window.baseline().n == 6  # type: ignore[union-attr]
    assert after.values["age_s"] == 2.0  # since the last good sample, not the crossed one


def test_identical_book_becomes_stale(tmp_path: Path) -> None:
    e = engine(tmp_path)
    flags = [e.process([obs(i * 1000)])[1][0].flags - {"thin"} for i in range(8)]
    assert flags[:5] == [frozenset()] * 5
    assert all("stale" in f for f in flags[5:])


def test_old_venue_timestamp_is_stale(tmp_path: Path) -> None:
    e = engine(tmp_path)
    _, (s,) = e.process([obs(100_000, venue_ts=94_000)])
    assert "stale" in s.flags and s.values.get("wis") is None
    _, (s,) = e.process([obs(101_000, *varied(1), venue_ts=100_500)])
    assert s.flags - {"thin"} == frozenset()  # two-level books never reach 50 bps


def test_feed_stale_fires_inhibits_and_resolves(tmp_path: Path) -> None:
    e = engine(tmp_path, "rules:\n  - {name: heavy, when: wis > 0.3}\n")
    events: list[tuple[str, str, int]] = []

    def step(o: Observation) -> None:
        batch, _ = e.process([o])
        events.extend((a.rule, a.event, a.ts_ms) for a in batch.alerts)

    step(obs(0, *heavy(0)))  # heavy fires (wis > 0.3)
    for t in range(1000, 8000, 1000):
        book, _ = make_book([], [])
        step(Observation("a", "X/Y", t, book, frozenset({"empty"}), 1.0))
    step(obs(8000, [[100.0, 1.0]], [[100.1, 9.0]]))  # good again: wis < 0
    # While feed-stale fired, `heavy` was inhibited (the flagged samples did not resolve it);
    # the good sample that ends the staleness is evaluated at once and resolves it.
    assert events == [("heavy", "firing", 0), ("feed-stale", "firing", 5000),
                      ("feed-stale", "resolved", 8000), ("heavy", "resolved", 8000)]


def test_group_rule_uses_latest_good_samples(tmp_path: Path) -> None:
    e = engine(tmp_path, "rules:\n  - {name: both, scope: group, group: g, "
                         "when: 'count(wis > 0.3) >= 2'}\n")
    batch, _ = e.process([obs(0, *heavy(1), venue="a")])
    assert not batch.alerts
    batch, _ = e.process([obs(1000, *heavy(2), venue="b")])
    assert [(a.rule, a.key, a.event) for a in batch.alerts] == [("both", "g", "firing")]
    assert set(batch.alerts[0].details["values"]["members"]) == {"a:X/Y", "b:X/Y"}
    # a's latest good sample ages out after stale_after: the group loses a member and clears.
    batch, _ = e.process([obs(7000, *heavy(3), venue="b")])
    assert [(a.rule, a.event) for a in batch.alerts if a.rule == "both"] == [("both", "resolved")]


def test_named_variants_get_their_own_zscores_and_columns(tmp_path: Path) -> None:
    from wis_monitor.store import SqliteStore

    e = engine(tmp_path, extra="metrics:\n  zscore: {window: 1m, min_samples: 2, min_history: 0s}\n"
               "  wis_variants: {wis_fast: {half_life_bps: 1}}\n")
    store = SqliteStore(str(tmp_path / "v.db"), variants=["wis_fast"])
    for i in range(5):
        batch, (s,) = e.process([obs(i * 1000, *heavy(i))])
        store.write(batch)
    assert s.values["wis_fast"] is not None and s.values["wis_fast_z"] is not None
    assert s.values["wis_fast"] != s.values["wis"]
    row = store.query("SELECT wis, wis_z, wis_fast, wis_fast_z FROM samples ORDER BY ts DESC")[0]
    assert row["wis_fast"] == s.values["wis_fast"] and row["wis_fast_z"] == s.values["wis_fast_z"]
    store.close()


def test_reload_with_new_zscore_settings_rebuilds_windows_from_the_store(tmp_path: Path) -> None:
    from wis_monitor.store import SqliteStore

    old = engine(tmp_path)
    store = SqliteStore(str(tmp_path / "wis.db"))
    old.store = store
    for i in range(10):
        batch, _ = old.process([obs(i * 1000, *varied(i))])
        store.write(batch)
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text().replace(
        "min_samples: 2", "min_samples: 5"))
    new = Engine(load_config(str(tmp_path / "c.yaml")), store)
    assert new.adopt(old) == ["wis", "ofi"]  # not carried over: the settings changed ...
    _, samples = new.process([obs(10_000, *varied(10))])
    assert samples[0].values["wis_z"] is not None  # ... but rebuilt from the logged values


SILENCE_CHANNELS = ("metrics:\n  zscore: {window: 1m, min_samples: 2, min_history: 0s}\n"
                    "channels:\n  a: {url: 'console://'}\n  b: {url: 'console://'}\n"
                    "feed_stale: {enabled: false}\n")


def deliveries(store: object) -> list[tuple[int, str, str, str]]:
    from wis_monitor.store import SqliteStore

    assert isinstance(store, SqliteStore)
    return [(r["ts"], r["event"], r["channel"], r["status"]) for r in store.query(
        "SELECT a.ts, a.event, d.channel, d.status FROM alerts a JOIN deliveries d"
        " ON d.alert_id = a.id ORDER BY a.id, d.channel")]


def test_resolved_goes_only_where_the_firing_went(tmp_path: Path) -> None:
    """A silence holds the firing back: it ends with the silence (housekeeping, or the first
    repeat to get through); a resolved whose firing nobody saw is recorded, sent nowhere."""
    from wis_monitor.store import Batch, SqliteStore

    e = engine(tmp_path, "rules:\n  - {name: heavy, when: wis > 0.3, repeat: 4s, "
               "channels: [a, b]}\n", extra=SILENCE_CHANNELS)
    store = SqliteStore(str(tmp_path / "s.db"))
    e.store = store
    store.add_silence("heavy", {}, 0, 3000, "maintenance", "test")
    e.refresh_silences(0)
    for t, book in ((0, heavy(0)), (5000, heavy(1))):
        store.write(e.process([obs(t, *book)])[0])
    # The silence ended at 3 s: the repeat due at 5 s is the alert's first notification.
    assert deliveries(store) == [(0, "firing", "a", "silenced"), (0, "firing", "b", "silenced"),
                                 (5000, "firing", "a", "pending"),
                                 (5000, "firing", "b", "pending")]
    store.execute("DELETE FROM deliveries")
    store.execute("DELETE FROM alerts")
    store.add_silence("heavy", {}, 6000, 9000, "again", "test")
    e.refresh_silences(6000)
    store.write(e.process([obs(6000, *varied(1))])[0])  # resolves, silenced
    store.write(e.process([obs(7000, *heavy(2))])[0])  # fires, silenced
    e.refresh_silences(9500)
    store.write(e.process([obs(9500, *varied(0))])[0])  # resolves: nobody saw it fire
    assert deliveries(store) == [(6000, "resolved", "a", "silenced"),
                                 (6000, "resolved", "b", "silenced"),
                                 (7000, "firing", "a", "silenced"),
                                 (7000, "firing", "b", "silenced")]
    assert [r["event"] for r in store.query("SELECT event FROM alerts ORDER BY id")] == [
        "resolved", "firing", "resolved"]
    # Held back by a silence that ends while it fires: `firing` at the next housekeeping.
    store.write(e.process([obs(10_000, *heavy(3))])[0])  # fires, not silenced now
    e.silences = []
    batch = Batch()
    e.release_silenced(11_000, batch)
    assert not batch.alerts  # it was announced: nothing to release
    store.close()


def test_the_repeat_that_gets_through_a_silence_reads_as_the_firing(tmp_path: Path) -> None:
    """Announced by its first repeat after the silence: a `firing` event, with all the details
    of a firing never held back (the sample's values, the rule, the best levels)."""
    rules = "rules:\n  - {name: heavy, when: wis > 0.3, repeat: 4s, channels: [a]}\n"
    quiet, held = (engine(tmp_path, rules, extra=SILENCE_CHANNELS) for _ in range(2))
    held.silences = [Silence(1, "heavy", {}, created_ms=0, expires_ms=3000)]
    held.process([obs(0, *heavy(0))])
    quiet.process([obs(0, *heavy(0))])
    (announced,) = held.process([obs(5000, *heavy(1))])[0].alerts
    (repeat,) = quiet.process([obs(5000, *heavy(1))])[0].alerts
    assert (announced.event, announced.silenced_by, repeat.event) == ("firing", None, "repeat")
    assert announced.summary == repeat.summary.replace(" repeat ", " firing ")
    assert announced.details == repeat.details and "top_bids" in announced.details


def failed(ts: int, venue: str = "a") -> Observation:
    return Observation(venue, "X/Y", ts, None, frozenset({"error"}), 1.0, "ConnectionRefused")


def test_feed_staleness_goes_on_from_the_database_after_a_restart(tmp_path: Path) -> None:
    """Measured from the first sample of a series that never had a good one, and resolved only
    by a good sample (a restart is none)."""
    from wis_monitor.store import SqliteStore

    store = SqliteStore(str(tmp_path / "f.db"))
    e = engine(tmp_path)
    for t in range(0, 4000, 1000):
        store.write(e.process([failed(t)])[0])
    again = Engine(e.config, store)
    again.restore(4500)
    batch, _ = again.process([failed(5000)])
    assert [(a.rule, a.event) for a in batch.alerts] == [("feed-stale", "firing")]
    store.write(batch)
    third = Engine(e.config, store)
    third.restore(9000)
    events = []
    for o in (failed(9000), failed(20_000), obs(21_000)):
        batch, _ = third.process([o])
        events += [(a.rule, a.event, a.ts_ms) for a in batch.alerts]
    assert events == [("feed-stale", "resolved", 21_000)]
    store.close()


def test_a_reload_resolves_what_the_configuration_no_longer_covers(tmp_path: Path) -> None:
    from wis_monitor.store import Batch

    old = engine(tmp_path, "rules:\n  - {name: heavy, when: wis > 0.3}\n")
    for venue in ("a", "b"):
        old.process([obs(0, *heavy(0), venue=venue)])
    old.process([failed(6000, venue="b")])  # feed-stale fires for b
    assert {(r, k) for (r, k), i in old.instances.items() if i.state == 2} == {
        ("heavy", "a:X/Y"), ("heavy", "b:X/Y"), ("feed-stale", "b:X/Y")}
    # b leaves the configuration; heavy now only matches venue a.
    cfg = Path(old.config.path)
    cfg.write_text(cfg.read_text().replace("  - {id: b, exchange: sim, symbols: [X/Y]}\n", "")
                   .replace("groups: {g: ['a:X/Y', 'b:X/Y']}\n", ""))
    new = Engine(load_config(str(cfg)))
    new.adopt(old)
    batch = Batch()
    new.retire(7000, batch, old.config)
    got = sorted((a.rule, a.key, a.event, a.details["reason"]) for a in batch.alerts)
    assert got == [("feed-stale", "b:X/Y", "resolved", "series removed from the configuration"),
                   ("heavy", "b:X/Y", "resolved", "series no longer evaluated by this rule")]
    assert set(new.instances) == {("heavy", "a:X/Y")}
