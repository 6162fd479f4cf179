"""The running configuration: the settings of the main file, the rules of the files it
includes and the checks across them, composed into one frozen :class:`Config` (SPEC §5, §6).

:func:`load_config` raises :class:`~wis_monitor.errors.ConfigError` listing every problem as
``PATH:LINE: message``, and nothing else for bad input. Settings that are valid but under
which a metric or a rule can never have a value become notes (``check`` prints them as
``PATH:LINE: note: ...``, exit 0), each with its arithmetic: a z-score window too short for
``min_samples`` at the venue's interval, a ``timeout`` not shorter than the ``interval`` (when
either is set), a rule whose z metric never warms up on a series it matches, a rule's ``for``
longer than the z-score window its z metric is measured over.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wis_monitor import yamlsource
from wis_monitor.duration import format_duration, ms
from wis_monitor.errors import ConfigError, Problem
from wis_monitor.positions import Positions, load_positions, unreadable
from wis_monitor.rulefile import Rule, channels_named_in, load_rule_file, load_rules
from wis_monitor.seriessettings import per_series_metrics
from wis_monitor.settings import (
    Channel,
    Metrics,
    Settings,
    Venue,
    check_settings,
    metric_names,
    raw_series,
    salvage,
    split_member,
)
from wis_monitor.signals import Kernel

DEFAULT_PATH = "/etc/wis-monitor/config.yaml"


@dataclass(frozen=True)
class Config:
    """Everything the daemon runs on, validated."""

    path: str
    settings: Settings
    rules: tuple[Rule, ...] = ()
    rule_files: tuple[str, ...] = ()
    metrics: frozenset[str] = field(default_factory=frozenset)

    series_metrics: Mapping[tuple[str, str], Metrics] = field(default_factory=dict)
    #: What is valid but worth a look (``PATH:LINE: note: ...``): secrets not read, settings
    #: under which a metric or a rule can never have a value.
    notes: tuple[Problem, ...] = ()
    #: The desk's positions (``positions:``), read with the config.
    positions: Positions = field(default_factory=Positions)

    @property
    def kernels(self) -> dict[str, Kernel]:
        return self.settings.metrics.kernels()

    @property
    def scored_metrics(self) -> tuple[str, ...]:
        """The metrics with a z-score (``<name>_z``)."""
        return self.settings.metrics.scored()

    @property
    def column_metrics(self) -> tuple[str, ...]:
        """The configured metrics with their own sample columns (and ``<name>_z`` columns)."""
        m = self.settings.metrics
        return (*m.wis_variants, *m.impact_metrics(), *m.smooth)

    def metrics_for(self, venue: str, symbol: str) -> Metrics:
        """The metric settings of one series: the global ones with its overrides merged in."""
        return self.series_metrics.get((venue, symbol), self.settings.metrics)

    def interval_ms(self, venue: Venue) -> int:
        return ms(venue.interval or self.settings.sampling.interval)

    def timeout_ms(self, venue: Venue) -> int:
        return ms(venue.timeout or self.settings.sampling.timeout)

    def stale_after_ms(self, venue: Venue) -> int:
        explicit = venue.stale_after or self.settings.sampling.stale_after
        if explicit is not None:
            return ms(explicit)
        return max(3 * self.interval_ms(venue), 30_000)

    def db_path(self) -> str:
        if self.settings.storage.path:
            return self.settings.storage.path
        state = os.environ.get("STATE_DIRECTORY")
        if state:
            return str(Path(state.split(":")[0]) / "wis.db")
        return "wis.db"

    def store_location(self) -> str:
        """Where the store is: ``storage.url`` (PostgreSQL), else the SQLite file."""
        return self.settings.storage.url or self.db_path()

    def instance_id(self) -> str:
        """This instance's name on a shared store: ``$WIS_INSTANCE_ID``, else ``instance.id``,
        else the host name."""
        return (os.environ.get("WIS_INSTANCE_ID") or self.settings.instance.id
                or socket.gethostname())

    def group_members(self, group: str) -> list[tuple[str, str]]:
        """The group's series; ``VENUE:*`` (``select: VENUE``) is every series of the venue."""
        out: list[tuple[str, str]] = []
        for venue, symbol in map(split_member, self.settings.groups.get(group, [])):
            if symbol == "*":
                out += [(venue, s) for v in self.settings.venues if v.id == venue
                        for s in v.symbols]
            else:
                out.append((venue, symbol))
        return out

    def with_symbols(self, venue_id: str, symbols: Sequence[str]) -> Config:
        """This configuration with a venue sampling ``symbols`` (its selection resolved)."""
        venues = [v.model_copy(update={"symbols": list(symbols)}) if v.id == venue_id else v
                  for v in self.settings.venues]
        return dataclasses.replace(self, settings=self.settings.model_copy(
            update={"venues": venues}))


def config_path(explicit: str | None) -> str:
    """The main file: ``-c PATH``, else ``$WIS_MONITOR_CONFIG``, else the system default."""
    return explicit or os.environ.get("WIS_MONITOR_CONFIG") or DEFAULT_PATH


def load_config(path: str, env: Mapping[str, str] | None = None, *, secrets: bool = True
                ) -> Config:
    """Load and validate the main file and the rule files it includes; raise ConfigError.

    ``secrets=False`` is for tools that send nothing (status, report, silences, replay
    without --notify): secrets that cannot be resolved here are left unresolved.
    """
    try:
        return _load_config(path, env, secrets=secrets)
    except ConfigError:
        raise
    except Exception as exc:  # a defect here must not stop a running daemon
        raise ConfigError([Problem(path, None, "cannot load the configuration: unexpected "
                                   f"{type(exc).__name__}")]) from exc


def runnable(config: Config) -> Config:
    """``config`` if the daemon has something to do; ConfigError if it has no venue."""
    if not config.settings.venues:
        raise ConfigError([Problem(config.path, None,
                                   'no venues: the monitor needs at least one under "venues:"')])
    return config


def _load_config(path: str, env: Mapping[str, str] | None, *, secrets: bool) -> Config:
    doc = yamlsource.load(path, env, secrets=secrets)
    problems: list[Problem] = list(doc.problems)
    if doc.data is None:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(path, 1, "the config must be a mapping of sections")])
    if not doc.data:
        raise ConfigError([Problem(path, None, "the config is empty: it needs at least "
                                   '"venues:" (see docs/deployment.md)')])
    doc.problems = problems
    validated = True
    try:
        settings = Settings.model_validate(doc.data)
    except ValidationError as exc:
        yamlsource.report_validation(doc, exc, (), model=Settings)
        settings, validated = salvage(doc.data), False
    named = raw_series(doc.data)
    check_settings(doc, settings, named, _url_problem)
    series_metrics = per_series_metrics(doc, settings, named, env)
    metrics = metric_names(settings)
    rules, files = load_rules(doc, settings, metrics, env)
    positions = _positions(doc, settings, named)
    config = Config(path, settings, tuple(rules), tuple(files), frozenset(metrics),
                    series_metrics, tuple(doc.unread), positions)
    if doc.problems:
        raise ConfigError(doc.problems, notes=_notes_despite_problems(doc, config, validated))
    return dataclasses.replace(config, notes=(*config.notes, *never_notes(doc, config)))


def _notes_despite_problems(doc: yamlsource.Document, config: Config, validated: bool
                            ) -> tuple[Problem, ...]:
    """The notes of a config with problems: the secrets not read and, where its settings are
    valid, the others. Best effort: no note is worth hiding the problems."""
    if not validated:
        return config.notes
    try:
        return (*config.notes, *never_notes(doc, config))
    except Exception:  # settings that passed the schema but not the checks across sections
        return config.notes


def _positions(doc: yamlsource.Document, settings: Settings, named: set[tuple[str, str]]
               ) -> Positions:
    """The positions of the file ``positions:`` names (relative to the main file); its
    problems go with the config's. ``named``: the series the main file names, valid or not."""
    if settings.positions is None:
        return Positions()
    path = os.path.normpath(Path(doc.path).parent / settings.positions)
    why = unreadable(path)
    if why is not None:  # the line to fix is the one naming it
        doc.problem(("positions",), f"positions: cannot read {path}: {why}")
        return Positions()
    sampled = {(v.id, s) for v in settings.venues for s in v.symbols} | named
    try:
        return load_positions(path, sampled, f"{doc.path}:{doc.line(('positions',))}")
    except ConfigError as exc:
        doc.problems.extend(exc.problems)
        return Positions()


def _url_problem(url: str) -> str | None:
    from wis_monitor.channel import url_problem  # apprise loads only for configs with channels

    return url_problem(url)


def with_rule_files(config: Config, patterns: Sequence[str], *, stub_channels: bool) -> Config:
    """``config`` with the rules of these files (globs, relative to the working directory)
    instead of its own; raise ConfigError. ``stub_channels`` lets the rules name channels the
    config lacks (for tools that send nothing)."""
    problems: list[Problem] = []
    files: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            problems.append(Problem(pattern, None, "no rule file matches this pattern"))
        files.extend(f for f in found if f not in files)
    settings = config.settings
    if stub_channels:
        named = channels_named_in(files) - set(settings.channels)
        stubs = {c: Channel(url="console://") for c in named}
        settings = settings.model_copy(update={"channels": {**settings.channels, **stubs}})
    names: dict[str, str] = {}
    rules: list[Rule] = []
    for path in files:
        rules.extend(load_rule_file(path, settings, set(config.metrics), names, problems))
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, settings=settings, rules=tuple(rules),
                               rule_files=tuple(files))


# -- notes: valid settings under which a metric or a rule can never have a value ------------


def never_notes(doc: yamlsource.Document, cfg: Config) -> list[Problem]:
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


def _zscore_loc(doc: yamlsource.Document, i: int, venue: Venue) -> tuple[Any, ...]:
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


def _note(doc: yamlsource.Document, loc: tuple[Any, ...], message: str) -> Problem:
    return Problem(doc.path, doc.line(loc), f"note: {message}")


def _at(rule: Rule, message: str) -> Problem:
    path, _, line = rule.source.rpartition(":")
    return Problem(path, int(line) if line.isdigit() else None, f"note: {message}")
