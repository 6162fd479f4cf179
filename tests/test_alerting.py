"""The alert state machine (SPEC §6), with explicit times: no clock anywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.alerting import (
    Evaluator,
    Feed,
    FeedStaleRule,
    Instance,
    State,
    Timing,
    Transition,
    describe,
    interrupt,
    step,
)

S = 1000


def run(timing: Timing, seq: list[tuple[int, bool]], clear: list[bool] | None = None,
        inst: Instance | None = None) -> tuple[Instance, list[tuple[str, int]]]:
    inst = inst or Instance()
    events = []
    for i, (ts, when) in enumerate(seq):
        c = clear[i] if clear is not None else not when
        inst, ev = step(inst, timing, ts, when=when, clear=c, value=1.0)
        if ev is not None:
            events.append((ev.kind, ts))
    return inst, events


def every(n: int, when: bool, start: int = 0, dt: int = 5 * S) -> list[tuple[int, bool]]:
    return [(start + i * dt, when) for i in range(n)]


def test_for_zero_fires_at_once() -> None:
    inst, events = run(Timing(), [(0, True)])
    assert events == [("firing", 0)] and inst.state == State.FIRING


def test_for_waits_the_full_duration() -> None:
    _, events = run(Timing(for_ms=30 * S), every(8, True))
    assert events == [("firing", 30 * S)]


def test_pending_is_dropped_when_the_condition_stops() -> None:
    seq = [*every(5, True), (25 * S, False), *every(5, True, start=30 * S)]
    inst, events = run(Timing(for_ms=30 * S), seq)
    assert events == [] and inst.state == State.PENDING and inst.active_at_ms == 30 * S


def test_repeat() -> None:
    _, events = run(Timing(repeat_ms=10 * S), every(7, True))
    assert events == [("firing", 0), ("repeat", 10 * S), ("repeat", 20 * S), ("repeat", 30 * S)]


def test_keep_firing_for_delays_resolution_and_resets() -> None:
    t = Timing(keep_firing_for_ms=10 * S)
    seq = [(0, True), (5 * S, False), (10 * S, True), (15 * S, False), (20 * S, False),
           (25 * S, False)]
    _, events = run(t, seq)
    assert events == [("firing", 0), ("resolved", 25 * S)]


def test_cooldown_blocks_refiring() -> None:
    t = Timing(cooldown_ms=60 * S)
    seq = [(0, True), (5 * S, False), (30 * S, True), (64 * S, True), (65 * S, True)]
    _, events = run(t, seq)
    assert events == [("firing", 0), ("resolved", 5 * S), ("firing", 65 * S)]


def test_notify_resolved_off_still_resolves() -> None:
    inst, events = run(Timing(notify_resolved=False), [(0, True), (5 * S, False)])
    assert events == [("firing", 0)] and inst.state == State.INACTIVE


def test_hysteresis_only_clear_resolves() -> None:
    seq = [(0, True), (5 * S, False), (10 * S, False)]
    _, events = run(Timing(), seq, clear=[False, False, True])
    assert events == [("firing", 0), ("resolved", 10 * S)]


def test_time_going_backwards_is_ignored() -> None:
    inst, _ = run(Timing(), [(10 * S, True)])
    again, ev = step(inst, Timing(), 5 * S, when=False, clear=True)
    assert again == inst and ev is None


def test_unknown_ends_a_pending_run() -> None:
    inst, _ = run(Timing(for_ms=20 * S), every(3, True))
    inst, ev = step(inst, Timing(for_ms=20 * S), 15 * S, when=None, clear=None)
    assert ev is None and inst.state == State.INACTIVE and inst.active_at_ms is None


def test_unknown_while_firing_keeps_keep_firing_for_and_repeats() -> None:
    t = Timing(keep_firing_for_ms=10 * S, repeat_ms=10 * S)
    inst, _ = run(t, [(0, True), (5 * S, False)])
    inst, ev = step(inst, t, 10 * S, when=None, clear=None)
    assert ev is not None and ev.kind == "repeat"
    assert inst.state == State.FIRING and inst.keep_firing_since_ms == 5 * S
    inst, ev = step(inst, t, 15 * S, when=False, clear=True)
    assert ev is not None and ev.kind == "resolved"


def test_interrupt_restarts_pending_only() -> None:
    pending, _ = run(Timing(for_ms=20 * S), [(0, True)])
    firing, _ = run(Timing(), [(0, True)])
    assert interrupt(pending).state == State.INACTIVE
    assert interrupt(firing) == firing and interrupt(Instance()) == Instance()


def test_describe() -> None:
    inst, _ = run(Timing(), [(1_723_161_255_000, True)])
    assert describe(inst) == "firing since 2024-08-08T23:54:15Z"
    assert describe(Instance()) == "inactive"


instances = st.builds(
    Instance, st.sampled_from(list(State)), *[st.none() | st.integers(0, 10**13)] * 5,
    st.none() | st.floats(allow_nan=False), st.booleans())


@given(instances)
def test_json_round_trip(inst: Instance) -> None:
    assert Instance.from_json(inst.to_json()) == inst


seconds = st.integers(0, 60).map(lambda s: s * S)
timings = st.builds(Timing, seconds, st.integers(0, 20).map(lambda s: s * S), seconds, seconds,
                    st.booleans())
sequences = st.lists(st.tuples(st.integers(1, 15), st.booleans()), min_size=1, max_size=80)


def timeline(raw: list[tuple[int, bool]]) -> list[tuple[int, bool]]:
    t, out = 0, []
    for dt, when in raw:
        t += dt * S
        out.append((t, when))
    return out


@settings(max_examples=300, deadline=None)
@given(timings, sequences)
def test_lifecycle_invariants(timing: Timing, raw: list[tuple[int, bool]]) -> None:
    seq = timeline(raw)
    _, events = run(timing, seq)
    kinds = [k for k, _ in events]
    firing = False
    for k in kinds:  # firing, then repeats, then resolved, never two firings in a row
        if k == "firing":
            assert not firing or not timing.notify_resolved  # resolution may go unannounced
            firing = True
        elif k == "repeat":
            assert firing
        else:
            assert firing
            firing = False
    for kind, ts in events:
        if kind == "firing":  # `when` held continuously for `for` before firing
            held = [w for t, w in seq if ts - timing.for_ms <= t <= ts]
            assert all(held)
            start = max((t for t, w in seq if t <= ts and not w), default=-1)
            first_true = min(t for t, w in seq if t > start)
            assert ts - first_true >= timing.for_ms


@settings(max_examples=300, deadline=None)
@given(timings, sequences, st.integers(0, 80))
def test_restart_anywhere_gives_the_same_events(timing: Timing, raw: list[tuple[int, bool]],
                                                cut: int) -> None:
    seq = timeline(raw)
    cut = min(cut, len(seq))
    _, whole = run(timing, seq)
    inst, first = run(timing, seq[:cut])
    restored = Instance.from_json(inst.to_json())
    _, second = run(timing, seq[cut:], inst=restored)
    assert first + second == whole


# -- the evaluator every rule runs on ----------------------------------------------------------

Values = Mapping[str, float | None]
V = TypeVar("V")


def x_above(level: float) -> Callable[[Values], bool | None]:
    """The condition ``x > level`` (unknown for a null ``x``)."""
    return lambda v: None if (x := v["x"]) is None else x > level


def above(level: float) -> Evaluator[Values]:
    """A rule ``x > level``, reporting ``x``, firing at once."""
    return Evaluator("r", Timing(), x_above(level), value=lambda v: v["x"])


def apply(ts: int, ev: Evaluator[V], inputs: Mapping[str, V | None],
          instances: dict[tuple[str, str], Instance], restart: bool = False
          ) -> list[Transition]:
    """Evaluate and keep the new instances, as the engine does."""
    out = ev.evaluate(ts, inputs, instances, restart=restart)
    for t in out:
        instances[(ev.name, t.key)] = t.instance
    return out


@settings(max_examples=200, deadline=None)
@given(timings, st.lists(st.tuples(st.integers(1, 15), st.sampled_from([0.0, 1.0, 2.0, None])),
                         min_size=1, max_size=60))
def test_the_evaluator_is_the_state_machine_on_the_rules_conditions(
        timing: Timing, raw: list[tuple[int, float | None]]) -> None:
    def below_1(v: Values) -> bool | None:
        return None if (x := v["x"]) is None else x < 1
    ev: Evaluator[Values] = Evaluator("r", timing, x_above(1), below_1, lambda v: v["x"])
    instances: dict[tuple[str, str], Instance] = {}
    inst, t = Instance(), 0
    for dt, x in raw:
        t += dt * S
        inst, want = step(inst, timing, t, when=None if x is None else x > 1,
                          clear=None if x is None else x < 1, value=x)
        got = apply(t, ev, {"k": {"x": x}}, instances)
        assert [tr.event for tr in got if tr.event is not None] == ([want] if want else [])
        assert instances.get(("r", "k"), Instance()) == inst  # only transitions change it


def test_the_evaluator_reports_only_transitions_and_leaves_its_input_alone() -> None:
    ev = above(1.0)
    instances: dict[tuple[str, str], Instance] = {}
    assert ev.evaluate(0, {"k": {"x": 0.0}}, instances) == []  # inactive, staying so
    [t] = ev.evaluate(S, {"k": {"x": 2.0}}, instances)
    assert t.key == "k" and t.instance.state == State.FIRING and t.event is not None
    assert (t.event.kind, t.event.value) == ("firing", 2.0) and instances == {}
    instances[("r", "k")] = t.instance
    assert ev.evaluate(2 * S, {"k": {"x": 3.0}}, instances) == []  # firing, nothing new


def test_a_quiet_inactive_instance_evaluates_neither_clear_nor_value() -> None:
    def boom(*_: object) -> bool:
        raise AssertionError("evaluated")
    ev: Evaluator[Values] = Evaluator("r", Timing(), lambda v: False, boom, boom)
    assert ev.evaluate(0, {"k": {}}, {}) == []


def test_the_evaluator_keeps_one_instance_per_key() -> None:
    ev: Evaluator[Values] = Evaluator("r", Timing(for_ms=10 * S), x_above(1))
    instances: dict[tuple[str, str], Instance] = {}
    apply(0, ev, {"a": {"x": 2.0}, "b": {"x": 0.0}}, instances)
    apply(5 * S, ev, {"b": {"x": 2.0}}, instances)
    fired = apply(10 * S, ev, {"a": {"x": 2.0}, "b": {"x": 2.0}}, instances)
    assert [(t.key, t.event.kind if t.event else None) for t in fired] == [("a", "firing")]
    assert instances[("r", "b")].state == State.PENDING
    assert instances[("r", "b")].active_at_ms == 5 * S


def test_nothing_to_judge_by_breaks_a_pending_run_and_nothing_else() -> None:
    ev: Evaluator[Values] = Evaluator("r", Timing(for_ms=10 * S), x_above(1))
    instances: dict[tuple[str, str], Instance] = {}
    apply(0, ev, {"p": {"x": 2.0}}, instances)
    [t] = apply(5 * S, ev, {"p": None, "idle": None}, instances)
    assert t.key == "p" and t.instance == Instance() and t.event is None
    firing = Instance(State.FIRING, active_at_ms=0, fired_at_ms=0, last_sent_ms=0)
    assert ev.evaluate(6 * S, {"f": None}, {("r", "f"): firing}) == []


def test_a_restart_starts_a_pending_run_over() -> None:
    ev: Evaluator[Values] = Evaluator("r", Timing(for_ms=10 * S), x_above(1))
    instances: dict[tuple[str, str], Instance] = {}
    apply(0, ev, {"k": {"x": 2.0}}, instances)
    assert apply(10 * S, ev, {"k": {"x": 2.0}}, instances, restart=True)[0].event is None
    assert instances[("r", "k")].active_at_ms == 10 * S
    assert apply(20 * S, ev, {"k": {"x": 2.0}}, instances)[0].event is not None


def test_without_clear_a_firing_alert_clears_when_its_condition_is_false() -> None:
    ev = above(1.0)
    instances: dict[tuple[str, str], Instance] = {}
    apply(0, ev, {"k": {"x": 2.0}}, instances)
    assert apply(S, ev, {"k": {"x": None}}, instances) == []  # unknown: still firing
    [t] = apply(2 * S, ev, {"k": {"x": 0.5}}, instances)
    assert t.event is not None and (t.event.kind, t.event.value) == ("resolved", 0.5)


def test_a_firing_alert_looks_only_at_clear() -> None:
    ev: Evaluator[Values] = Evaluator("r", Timing(), x_above(1), lambda v: v["y"] == -1)
    instances: dict[tuple[str, str], Instance] = {}
    apply(0, ev, {"k": {"x": 2.0, "y": 1.0}}, instances)
    assert apply(S, ev, {"k": {"x": 0.0, "y": 1.0}}, instances) == []
    [t] = apply(2 * S, ev, {"k": {"x": 2.0, "y": -1.0}}, instances)
    assert t.instance.state == State.INACTIVE and t.event is not None


def test_a_value_that_is_no_number_is_none() -> None:
    ev: Evaluator[Values] = Evaluator("r", Timing(), x_above(1), value=x_above(1))
    [t] = ev.evaluate(0, {"k": {"x": 2.0}}, {})
    assert t.event is not None and t.event.value is None
    assert Evaluator("r", Timing(), x_above(1), value=lambda v: 3).value_of({}) == 3.0


def test_feed_stale_fires_after_stale_after_and_reports_the_age() -> None:
    ev = FeedStaleRule("feed-stale")
    instances: dict[tuple[str, str], Instance] = {}
    assert apply(29 * S, ev, {"k": Feed(29 * S, 30 * S, 0)}, instances) == []
    [t] = apply(30 * S, ev, {"k": Feed(30 * S, 30 * S, 0)}, instances)
    assert t.event is not None and (t.event.kind, t.event.value) == ("firing", 30.0)


def test_feed_stale_resolves_only_on_a_good_sample_newer_than_its_firing() -> None:
    ev = FeedStaleRule("feed-stale")
    instances = {("feed-stale", "k"): Instance(State.FIRING, active_at_ms=40 * S,
                                               fired_at_ms=40 * S, last_sent_ms=40 * S)}
    # A restart: the last good sample is older than the firing, yet within stale_after.
    assert apply(50 * S, ev, {"k": Feed(20 * S, 30 * S, 30 * S)}, instances) == []
    assert apply(55 * S, ev, {"k": Feed(5 * S, 30 * S, None)}, instances) == []  # no good one
    [t] = apply(60 * S, ev, {"k": Feed(1 * S, 30 * S, 59 * S)}, instances)
    assert t.event is not None and t.event.kind == "resolved"
    assert ev.timing.notify_resolved
