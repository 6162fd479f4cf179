"""What an alert event says beyond its rule's verdict: summary and details, with explicit times
and plain inputs (no engine, no clock)."""

from __future__ import annotations

from wis_monitor.alerting import Event
from wis_monitor.book import make_book
from wis_monitor.enrich import Context, describe, peers, public, retired, where
from wis_monitor.rulefile import RuleSpec
from wis_monitor.stats import Baseline

SPEC = RuleSpec(name="heavy", when="wis > 0.3", description="Bids outweigh asks",
                runbook="docs/runbooks.md#heavy")
FIRING = Event("firing", 5_000, 0, 5_000, 0.61)


def test_a_series_alert_shows_its_rule_values_baseline_best_levels_and_peers() -> None:
    book, _ = make_book([[100.0, 1.0], [99.9, 50.0], [99.8, 2.0], [99.7, 3.0]],
                        [[100.1, 1.0], [100.2, 1.0]])
    values = {"wis": 0.61, "wis_z": None, "mid": 100.05}
    ctx = Context(public(values), "wis", 50.0, {"b:X/Y": {"wis": 0.2, "wis_z": 1.0, "mid": 1.0}},
                  Baseline(30, 0.02, 0.17), book)
    summary, d = describe(FIRING, "warning", "heavy", where("a", "X/Y", "a:X/Y"), SPEC, ctx)
    assert summary == "[WARNING] heavy a X/Y firing value=0.61"
    assert d == {
        "values": {"wis": 0.61, "mid": 100.05}, "description": "Bids outweigh asks",
        "runbook": "docs/runbooks.md#heavy", "when": "wis > 0.3", "depth_band_bps": 50.0,
        "value_of": "wis", "group_peers": {"b:X/Y": {"wis": 0.2, "wis_z": 1.0, "mid": 1.0}},
        "baseline": {"n": 30, "mean": 0.02, "std": 0.17},
        "top_bids": [(100.0, 1.0), (99.9, 50.0), (99.8, 2.0)],
        "top_asks": [(100.1, 1.0), (100.2, 1.0)]}


def test_a_group_alert_shows_its_members_and_its_value_expression() -> None:
    spec = RuleSpec(name="spread", scope="group", group="g", when="count(wis_z > 3) >= 2",
                    value="max(wis_z)")
    members = {"members": {"a:X/Y": {"wis_z": 3.5}, "b:X/Y": {"wis_z": 3.1}}}
    summary, d = describe(Event("firing", 1_000, 1_000, 1_000, 3.5), "warning", "spread",
                          where(None, None, "g"), spec, Context(members))
    assert summary == "[WARNING] spread g firing value=3.5"
    assert d["values"] == members and d["value_of"] == "max(wis_z)"
    assert d["depth_band_bps"] is None
    assert not {"group_peers", "baseline", "top_bids", "top_asks"} & d.keys()


def test_a_feed_stale_alert_shows_the_feed_and_how_long_it_fired() -> None:
    feed = {"age_s": 45.0, "quality": "error", "error": "timeout"}
    resolved = Event("resolved", 90_000, 30_000, 30_000, 0.4)
    summary, d = describe(resolved, "critical", "feed-stale", where("a", "X/Y", "a:X/Y"), None,
                          Context(feed))
    assert summary == "[CRITICAL] feed-stale a X/Y resolved value=0.4"
    assert d == {"values": feed, "fired_for_ms": 60_000}


def test_a_shadow_rules_alert_is_marked() -> None:
    shadow = SPEC.model_copy(update={"mode": "shadow"})
    summary, d = describe(FIRING, "warning", "heavy", "a X/Y", shadow, Context({}))
    assert summary.endswith(" firing value=0.61 (shadow: not sent)") and d["mode"] == "shadow"
    summary, d = retired("warning", "heavy", "a X/Y", "rule removed from the configuration",
                         None, shadow=True)
    assert summary == ("[WARNING] heavy a X/Y resolved (rule removed from the configuration)"
                       " (shadow: not sent)")
    assert d == {"reason": "rule removed from the configuration", "mode": "shadow"}


def test_peers_are_the_other_members_of_the_series_groups_that_have_values() -> None:
    last = {"a:X/Y": {"wis": 0.1}, "b:X/Y": {"wis": 0.2, "wis_z": 1.5, "mid": 9.0, "ofi": 1.0},
            "c:X/Y": {}, "d:X/Y": {"wis": 0.4}}
    groups = [["a:X/Y", "b:X/Y", "c:X/Y", "e:X/Y"], ["d:X/Y", "e:X/Y"], ["a:X/Y", "d:X/Y"]]
    assert peers("a:X/Y", groups, last.get) == {
        "b:X/Y": {"wis": 0.2, "wis_z": 1.5, "mid": 9.0},
        "d:X/Y": {"wis": 0.4, "wis_z": None, "mid": None}}
