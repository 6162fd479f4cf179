"""The alert state machine (SPEC §6), with explicit times: no clock anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.alerting import Instance, State, Timing, describe, interrupt, step

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
