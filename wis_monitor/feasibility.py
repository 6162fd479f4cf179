"""Settings that are valid but under which a metric or a rule can never have a value.

``check`` prints these as notes (``PATH:LINE: note: ...``, exit 0), each with its arithmetic:
a z-score window too short for ``min_samples`` at the venue's interval, a ``timeout`` not
shorter than the ``interval`` (when either is set), a rule whose z metric never warms up on a
series it matches, a rule's ``for`` longer than the z-score window its z metric is measured
over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wis_monitor.duration import format_duration, ms
from wis_monitor.errors import Problem

if TYPE_CHECKING:
    from wis_monitor.config import Config
    from wis_monitor.rulefile import Rule
    from wis_monitor.settings import Metrics, Venue
    from wis_monitor.yamlsource import Document


def never_notes(doc: Document, cfg: Config) -> list[Problem]:
    """Every note on ``cfg`` (its main file is ``doc``), in file order."""
    notes: list[Problem] = []
    cold: dict[tuple[str, str], str] = {}  # series -> why its z-scores never have a value
    for i, venue in enumerate(cfg.settings.venues):
        interval, timeout = cfg.interval_ms(venue), cfg.timeout_ms(venue)
        if timeout >= interval and _timing_set(cfg, venue):
            where = ("venues", i, "timeout") if venue.timeout else ("sampling", "timeout")
            notes.append(_note(doc, where, f'venue "{venue.id}": timeout '
                               f"{format_duration(timeout)} is not shorter than the "
                               f"{format_duration(interval)} interval: a fetch that waits out "
                               "its timeout makes the next cycle be skipped"))
        reported: set[str] = set()
        for symbol in venue.symbols:
            why = _cold(cfg.metrics_for(venue.id, symbol), interval)
            if why is None:
                continue
            cold[(venue.id, symbol)] = why
            if why not in reported:
                reported.add(why)
                z = ", ".join(f"{m}_z" for m in cfg.metrics_for(venue.id, symbol).scored())
                who = (f'venue "{venue.id}"' if _same_for_all(cfg, venue, interval, why)
                       else f'series "{venue.id}:{symbol}"')
                notes.append(_note(doc, _zscore_loc(doc, i, venue),
                                   f"{who}: {why}: {z} never have a value"))
    for rule in cfg.rules:
        notes.extend(_rule_notes(rule, cfg, cold))
    return notes


def _timing_set(cfg: Config, venue: Venue) -> bool:
    """Whether the config sets the venue's interval or timeout (the defaults are equal: a
    cycle that waits out the whole timeout skips one, and only that one)."""
    written = cfg.settings.sampling.model_fields_set | venue.model_fields_set
    return bool(written & {"interval", "timeout"})


def _cold(m: Metrics, interval_ms: int) -> str | None:
    """Why the z-scores of a series with metrics ``m`` sampled every ``interval_ms`` can never
    warm up, or None."""
    z = m.zscore
    if z.method == "ewma":  # no window: its samples accumulate until min_samples
        return None
    window = ms(z.window)
    holds = window // interval_ms
    if holds < z.min_samples:
        return (f"metrics.zscore.min_samples {z.min_samples} needs {z.min_samples} samples, but "
                f"the {format_duration(window)} window holds at most {holds} at a "
                f"{format_duration(interval_ms)} interval")
    history = z.spec().min_history_ms
    if history > window:
        return (f"metrics.zscore.min_history {format_duration(history)} needs samples that "
                f"old, but the window keeps {format_duration(window)}")
    return None


def _same_for_all(cfg: Config, venue: Venue, interval: int, why: str) -> bool:
    return all(_cold(cfg.metrics_for(venue.id, s), interval) == why for s in venue.symbols)


def _zscore_loc(doc: Document, i: int, venue: Venue) -> tuple[Any, ...]:
    """Where to point: the venue's own z-score settings, else its interval, else the global."""
    if "zscore" in venue.metrics:
        return ("venues", i, "metrics", "zscore")
    if venue.interval is not None:
        return ("venues", i, "interval")
    if ("metrics", "zscore") in doc.lines:
        return ("metrics", "zscore")
    return ("venues", i)


def _rule_notes(rule: Rule, cfg: Config, cold: dict[tuple[str, str], str]) -> list[Problem]:
    if rule.spec.scope != "series":
        return []
    used = rule.when.metrics | (rule.clear.metrics if rule.clear else frozenset())
    zs = sorted(m for m in used if m.endswith("_z"))
    if not zs:
        return []
    matched = [(v.id, s) for v in cfg.settings.venues for s in v.symbols if rule.matches(v.id, s)]
    out: list[Problem] = []
    never = [f"{v}:{s}" for v, s in matched if (v, s) in cold]
    if never:
        shown = ", ".join(never[:3]) + (f" and {len(never) - 3} more" if len(never) > 3 else "")
        out.append(_at(rule, f'rule "{rule.name}" uses {", ".join(zs)}, which never has a '
                   f"value on {shown} (see the note on its z-score settings): it cannot fire "
                   "there"))
    windows = {ms(cfg.metrics_for(v, s).zscore.window) for v, s in matched if (v, s) not in cold}
    held = ms(rule.spec.for_)
    if windows and held > min(windows):
        out.append(_at(rule, f'rule "{rule.name}": for {format_duration(held)} is longer than '
                   f"the {format_duration(min(windows))} z-score window of {', '.join(zs)}: a "
                   "move held that long has become the baseline it is measured against"))
    return out


def _note(doc: Document, loc: tuple[Any, ...], message: str) -> Problem:
    return Problem(doc.path, doc.line(loc), f"note: {message}")


def _at(rule: Rule, message: str) -> Problem:
    path, _, line = rule.source.rpartition(":")
    return Problem(path, int(line) if line.isdigit() else None, f"note: {message}")
