"""The configuration: YAML -> frozen, typed settings and compiled rules (SPEC §5, §6).

Every problem is collected and reported at once as ``PATH:LINE: message`` through
:class:`~wis_monitor.errors.ConfigError`; nothing here raises anything else for bad input.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import glob
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from wis_monitor import yamlsource
from wis_monitor.duration import format_duration, ms, parse_duration
from wis_monitor.errors import ConfigError, Problem
from wis_monitor.expr import Expr, ExprError, compile_expr
from wis_monitor.message import template_problems
from wis_monitor.signals import Kernel
from wis_monitor.sources.limits import depth_problem
from wis_monitor.stats import ZScoreSpec
from wis_monitor.symbols import symbol_problem

_Z_LEVEL = re.compile(r"\bwis_z\s*[<>]=?\s*(-?\d+(?:\.\d+)?)")
#: The built-in rule of SPEC §6 that watches every series' feed.
FEED_STALE = "feed-stale"


def z_levels_of(when: str) -> tuple[float, ...]:
    """The levels a ``when`` expression compares ``wis_z`` with, highest first."""
    return tuple(sorted({float(m.group(1)) for m in _Z_LEVEL.finditer(when)}, reverse=True))


def _positive(td: timedelta) -> timedelta:
    if td <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return td


def _symbol(text: str) -> str:
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError(f"a symbol is a non-empty text without spaces or control characters, "
                         f"not {text!r}")
    return text


def _symbol_entry(entry: Any) -> Any:
    """A symbol is a text, or a mapping ``{symbol: NAME, metrics: {...}}`` (its own settings,
    checked with the other per-series overrides)."""
    if not isinstance(entry, dict):
        return entry
    unknown = sorted(str(k) for k in entry if k not in ("symbol", "metrics"))
    if unknown:
        raise ValueError(f'unknown key "{unknown[0]}" in a symbol (a symbol mapping has '
                         '"symbol" and "metrics")')
    if "symbol" not in entry:
        raise ValueError('a symbol mapping needs "symbol: NAME"')
    return entry["symbol"]


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
Symbol = Annotated[str, AfterValidator(_symbol)]
SymbolEntry = Annotated[str, BeforeValidator(_symbol_entry), AfterValidator(_symbol)]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_PATH = "/etc/wis-monitor/config.yaml"

#: Metrics every sample has (SPEC §3); configured WIS variants and ``<name>_z`` are added.
BASE_METRICS = (
    "wis", "wis_z", "imbalance", "mid", "spread_bps", "microprice", "bid_depth", "ask_depth",
    "depth", "mid_change_bps", "age_s", "latency_ms", "coverage_bps", "ofi", "ofi_z",
)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Storage(Model):
    path: str | None = None
    retention: PositiveDuration = timedelta(days=30)
    record_books: bool = False
    record_levels_bps: float = Field(100.0, gt=0)


class Sampling(Model):
    interval: PositiveDuration = timedelta(seconds=5)
    timeout: PositiveDuration = timedelta(seconds=5)
    jitter: Duration = timedelta(0)
    stale_after: PositiveDuration | None = None


class WisKernel(Model):
    kernel: Literal["exponential", "linear", "flat", "levels"] = "exponential"
    half_life_bps: float = Field(10.0, gt=0)
    band_bps: float = Field(50.0, gt=0)
    half_life_levels: float = Field(5.0, gt=0)
    symmetric: bool = True

    def to_kernel(self) -> Kernel:
        return Kernel(self.kernel, self.half_life_bps, self.band_bps, self.half_life_levels,
                      self.symmetric)


class ZScore(Model):
    window: Duration = timedelta(hours=1)
    min_samples: int = Field(30, ge=2)
    method: Literal["rolling", "ewma", "robust"] = "rolling"
    half_life: Duration = timedelta(minutes=10)
    min_history: Duration | None = None  # default: half the window

    def spec(self) -> ZScoreSpec:
        history = ms(self.min_history) if self.min_history is not None else ms(self.window) // 2
        return ZScoreSpec(ms(self.window), self.min_samples, self.method, ms(self.half_life),
                          history)


class Ofi(Model):
    levels: int = Field(5, ge=1, le=1000)
    window: PositiveDuration = timedelta(seconds=10)


class Smooth(Model):
    of: str
    half_life: PositiveDuration


class Metrics(Model):
    wis: WisKernel = WisKernel()
    wis_variants: dict[str, WisKernel] = {}
    zscore: ZScore = ZScore()
    ofi: Ofi = Ofi()
    smooth: dict[str, Smooth] = {}

    def kernels(self) -> dict[str, Kernel]:
        out = {"wis": self.wis.to_kernel()}
        out.update({name: k.to_kernel() for name, k in self.wis_variants.items()})
        return out

    def scored(self) -> tuple[str, ...]:
        """The metrics that have a z-score (``<name>_z``), in their column order."""
        return ("wis", *self.wis_variants, "ofi", *self.smooth)


class Sim(Model):
    seed: int | None = None
    price: float = Field(60_000.0, gt=0)
    tick: float = Field(0.1, gt=0)
    levels: int = Field(200, ge=1, le=20_000)
    calm: Duration = timedelta(seconds=90)  # mean time between imbalance episodes


class Venue(Model):
    id: Annotated[str, Field(pattern=NAME)]
    exchange: str
    symbols: list[SymbolEntry] = Field(min_length=1)
    metrics: dict[str, Any] = {}  # overrides of the global metrics, checked on their own
    depth: int | None = Field(None, ge=1)
    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    stale_after: PositiveDuration | None = None
    ccxt: dict[str, Any] = {}
    sim: Sim = Sim()
    books: str | None = None  # exchange: replay


class Channel(Model):
    url: str
    tags: list[str] = []
    attach_chart: bool = False
    timeout: PositiveDuration = timedelta(seconds=10)
    per_minute: int = Field(20, ge=1)
    max_age: Duration = timedelta(hours=24)
    #: Alerts alike in these labels go out in one message; ``[]`` sends each on its own.
    group_by: list[str] = ["rule"]
    group_wait: Duration = timedelta(seconds=10)
    group_interval: Duration = timedelta(minutes=1)


class RulesBlock(Model):
    include: list[str] = []


class FeedStale(Model):
    enabled: bool = True
    severity: Literal["info", "warning", "critical"] = "warning"
    channels: list[str] | None = None


class Http(Model):
    listen: str | None = None


class Settings(Model):
    storage: Storage = Storage()
    sampling: Sampling = Sampling()
    metrics: Metrics = Metrics()
    venues: list[Venue] = []
    groups: dict[str, list[str]] = {}
    channels: dict[str, Channel] = {}
    rules: RulesBlock = RulesBlock()
    feed_stale: FeedStale = FeedStale()
    http: Http = Http()
    series_settings: list[str] = []


class SeriesEntry(Model):
    venue: str
    symbol: str
    metrics: dict[str, Any] = {}


class SeriesFile(Model):
    """A series-settings file: per-series metric overrides (what ``calibrate --write`` makes)."""

    series: list[SeriesEntry] = []


class Match(Model):
    venue: str = "*"
    symbol: str = "*"


class Template(Model):
    title: str | None = None
    body: str | None = None


class RuleSpec(Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)

    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    match: Match = Match()
    scope: Literal["series", "group"] = "series"
    group: str | None = None
    when: str
    for_: Duration = Field(timedelta(0), alias="for")
    clear: str | None = None
    keep_firing_for: Duration = timedelta(0)
    repeat: Duration = timedelta(0)
    cooldown: Duration = timedelta(0)
    severity: Literal["info", "warning", "critical"] = "warning"
    channels: list[str] = []
    notify_resolved: bool = True
    mode: Literal["live", "shadow"] = "live"  # shadow: evaluated and logged, never sent
    labels: dict[str, str] = {}
    runbook: str | None = None
    value: str | None = None
    template: Template = Template()


class RuleFile(Model):
    rules: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Rule:
    """A rule ready to evaluate: its spec and compiled expressions."""

    spec: RuleSpec
    when: Expr
    clear: Expr | None
    value: Expr | None
    source: str  # PATH:LINE of its definition

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels(self) -> list[str]:
        """Where its alerts go: nowhere for a shadow rule."""
        return [] if self.spec.mode == "shadow" else list(self.spec.channels)

    def z_levels(self) -> tuple[float, ...]:
        """The levels ``when`` compares ``wis_z`` with (``wis_z >= 3`` gives 3), for charts."""
        return z_levels_of(self.spec.when)

    def matches(self, venue: str, symbol: str) -> bool:
        m = self.spec.match
        return fnmatch.fnmatchcase(venue, m.venue) and fnmatch.fnmatchcase(symbol, m.symbol)


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
        return (*m.wis_variants, *m.smooth)

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

    def group_members(self, group: str) -> list[tuple[str, str]]:
        return [split_member(m) for m in self.settings.groups.get(group, [])]


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (127.0.0.1); ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'"{listen}" is not HOST:PORT with a port from 1 to 65535')
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


def split_member(member: str) -> tuple[str, str]:
    venue, _, symbol = member.partition(":")
    return venue, symbol


def config_path(explicit: str | None) -> str:
    """The main file: ``-c PATH``, else ``$WIS_MONITOR_CONFIG``, else the system default."""
    return explicit or os.environ.get("WIS_MONITOR_CONFIG") or DEFAULT_PATH


def report_validation(doc: yamlsource.Document, exc: ValidationError, base: tuple[Any, ...],
                       label: str = "") -> None:
    for err in exc.errors():
        loc = tuple(str(p) if isinstance(p, str) else p for p in err["loc"])
        full = (*base, *loc)
        where = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            fields = _known_fields(exc.title, loc)
            hint = difflib.get_close_matches(key, fields, n=1)
            msg = f'unknown key "{key}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")
        elif err["type"] == "missing":
            msg = f'missing required key "{loc[-1]}"'
        elif err["type"] == "model_type":
            what = _kind(err["input"], doc.expanded.get(full))
            msg = f"{where}: should be a mapping of keys (key: value), not {what}"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{where}: {text}" if where else text
        doc.problem(full, label + msg)


def _kind(value: Any, source: str | None = None) -> str:
    """What ``value`` is, for a message; a value expanded from ``${...}`` is named by its
    ``source`` text, never quoted."""
    if source is not None:
        return f'the text from "{source[:60]}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f'the text "{value[:40]}"'
    if isinstance(value, dict):
        return "a mapping"
    return "nothing" if value is None else f"the value {value!r}"[:60]


def _known_fields(title: str, loc: tuple[Any, ...]) -> list[str]:
    model: Any = {"Settings": Settings, "RuleSpec": RuleSpec, "RuleFile": RuleFile}.get(title)
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        for arg in getattr(ann, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


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
    try:
        settings = Settings.model_validate(doc.data)
    except ValidationError as exc:
        report_validation(doc, exc, ())
        settings = _salvage(doc.data)
    named = _raw_series(doc.data)
    _check_settings(doc, settings, named)
    series_metrics = per_series_metrics(doc, settings, named, env)
    metrics = metric_names(settings)
    rules, files = _load_rules(doc, settings, metrics, env)
    if doc.problems:
        raise ConfigError(doc.problems)
    config = Config(path, settings, tuple(rules), tuple(files), frozenset(metrics),
                    series_metrics, tuple(doc.unread))
    from wis_monitor.feasibility import never_notes

    return dataclasses.replace(config, notes=(*config.notes, *never_notes(doc, config)))


def _salvage(data: dict[str, Any]) -> Settings:
    """Best-effort settings from what is valid, down to single keys of a venue or channel, so
    that the remaining checks (depth, duplicates, references) still run on the rest and every
    problem is reported at once. Venues keep their positions, for the line numbers."""
    good: dict[str, Any] = {}
    for key, value in data.items():
        if _valid(Settings, {key: value}):
            good[key] = value
        elif key == "venues" and isinstance(value, list):
            good[key] = [_valid_keys(Venue, v, {"id": f"invalid-venue-{i}", "exchange": "sim",
                                                "symbols": ["?"]})
                         for i, v in enumerate(value)]
        elif key == "channels" and isinstance(value, dict):
            good[key] = {name: _valid_keys(Channel, c, {"url": "console://"})
                         for name, c in value.items()}
        elif key in ("storage", "sampling", "metrics", "feed_stale", "http", "rules"):
            model = Settings.model_fields[key].annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                good[key] = _valid_keys(model, value, {})
    try:
        return Settings.model_validate(good)
    except ValidationError:  # valid parts that are invalid together: whole sections only
        return Settings.model_validate({k: v for k, v in data.items() if _valid(Settings, {k: v})})


def _valid(model: type[BaseModel], data: Any) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _valid_keys(model: type[BaseModel], item: Any, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` overlaid with each key of ``item`` that is valid on its own."""
    out = dict(base)
    if isinstance(item, dict):
        out.update({k: v for k, v in item.items() if _valid(model, {**base, k: v})})
    return out


def metric_names(settings: Settings) -> set[str]:
    names = set(BASE_METRICS)
    for name in (*settings.metrics.wis_variants, *settings.metrics.smooth):
        names.update((name, f"{name}_z"))
    return names


def _raw_series(data: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (venue, symbol) the file names, valid or not: cross-references are checked against
    these so that one bad venue does not also make every group that uses it an error."""
    out: set[tuple[str, str]] = set()
    venues = data.get("venues")
    for v in venues if isinstance(venues, list) else []:
        if isinstance(v, dict) and isinstance(v.get("symbols"), list):
            out.update((str(v.get("id")), str(sym.get("symbol") if isinstance(sym, dict) else sym))
                       for sym in v["symbols"])
    return out


Override = tuple[yamlsource.Document, tuple[Any, ...], dict[str, Any]]


def per_series_metrics(main: yamlsource.Document, s: Settings, named: set[tuple[str, str]],
                       env: Mapping[str, str] | None) -> dict[tuple[str, str], Metrics]:
    """The merged metric settings of every series that has overrides (docs/metrics.md):
    global < venue < series-settings files < the symbol's own, each checked where it is
    written; ``named``: the series a file may name besides the venues' (test-rules)."""
    layers: dict[tuple[str, str], list[Override]] = {}
    raw_venues = main.data.get("venues") if isinstance(main.data, dict) else None
    for i, venue in enumerate(s.venues):
        raw = raw_venues[i] if isinstance(raw_venues, list) and i < len(raw_venues) else {}
        raw_symbols = raw.get("symbols") if isinstance(raw, dict) else None
        for sym in venue.symbols:
            if venue.metrics:
                layers.setdefault((venue.id, sym), []).append(
                    (main, ("venues", i, "metrics"), venue.metrics))
        for j, entry in enumerate(raw_symbols if isinstance(raw_symbols, list) else []):
            if isinstance(entry, dict) and "metrics" in entry:
                late = (main, ("venues", i, "symbols", j, "metrics"), entry["metrics"])
                layers.setdefault((venue.id, str(entry.get("symbol"))), []).append(late)
    files = _series_files(main, s, named, env)
    for key, found in files.items():  # between the venue's and the symbol's own
        own = [o for o in layers.get(key, []) if "symbols" in o[1]]
        venue_wide = [o for o in layers.get(key, []) if "symbols" not in o[1]]
        layers[key] = [*venue_wide, *found, *own]
    base = s.metrics.model_dump()
    checked: dict[tuple[str, tuple[Any, ...]], bool] = {}  # a venue's is shared by its symbols
    out: dict[tuple[str, str], Metrics] = {}
    for key, overrides in layers.items():
        merged = base
        for doc, loc, override in overrides:
            where = (doc.path, loc)
            if where not in checked:
                checked[where] = _override_ok(doc, loc, override, s.metrics)
            if checked[where]:
                merged = _deep_merge(merged, override)
        if merged is not base:
            out[key] = Metrics.model_validate(merged)
    return out


def _series_files(main: yamlsource.Document, s: Settings, named: set[tuple[str, str]],
                  env: Mapping[str, str] | None) -> dict[tuple[str, str], list[Override]]:
    """The overrides of the files named by ``series_settings:``, in file order; ``named``:
    every series the main file names, valid or not (one bad venue is one problem)."""
    base = Path(main.path).parent
    sampled = {(v.id, sym) for v in s.venues for sym in v.symbols} | named
    out: dict[tuple[str, str], list[Override]] = {}
    for i, pattern in enumerate(s.series_settings):
        loc = ("series_settings", i)
        full = pattern if os.path.isabs(pattern) else os.path.normpath(base / pattern)
        found = sorted(f for f in glob.glob(full) if not os.path.isdir(f))
        if not found:
            main.problem(loc, f'no series-settings file matches "{pattern}"')
        for path in found:
            doc = yamlsource.load(path, env, origin=f"{main.path}:{main.line(loc)}")
            main.problems.extend(doc.problems)
            doc.problems = main.problems
            if doc.data is None:
                continue
            try:
                parsed = SeriesFile.model_validate(doc.data if isinstance(doc.data, dict) else {})
            except ValidationError as exc:
                report_validation(doc, exc, ())
                continue
            if not isinstance(doc.data, dict) or "series" not in doc.data:
                doc.problem((), 'a series-settings file needs a top-level "series:" list')
            for j, entry in enumerate(parsed.series):
                key = (entry.venue, entry.symbol)
                if key not in sampled:
                    doc.problem(("series", j), f'"{entry.venue}:{entry.symbol}" is not a series '
                                "the configuration samples")
                    continue
                out.setdefault(key, []).append((doc, ("series", j, "metrics"), entry.metrics))
    return out


def _override_ok(doc: yamlsource.Document, loc: tuple[Any, ...], override: Any,
                 base: Metrics) -> bool:
    """Report what is wrong with one override (over the global settings); True when valid."""
    if not isinstance(override, dict):
        doc.problem(loc, f"metrics: should be a mapping of keys (key: value), not "
                    f"{_kind(override)}")
        return False
    ok = True
    for kind, known in (("wis_variants", base.wis_variants), ("smooth", base.smooth)):
        named = override.get(kind)
        for name in named if isinstance(named, dict) else ():
            if name not in known:
                doc.problem((*loc, kind, name), f'"{name}" is not under metrics.{kind}: a '
                            "per-series override changes parameters, it adds no metric")
                ok = False
    if not ok:
        return False
    problems = len(doc.problems)
    try:
        merged = Metrics.model_validate(_deep_merge(base.model_dump(), override))
    except ValidationError as exc:
        report_validation(doc, exc, loc)
        return False
    _check_smooth(doc, merged, loc, names=set(override.get("smooth") or ()))
    return len(doc.problems) == problems


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        out[key] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(
            value, dict) else value
    return out


def _check_settings(doc: yamlsource.Document, s: Settings,
                    named_series: set[tuple[str, str]]) -> None:
    for name in s.metrics.wis_variants:
        where = ("metrics", "wis_variants", name)
        if not METRIC_NAME.fullmatch(name):
            doc.problem(where, f'variant name "{name}" must be lower-case letters, digits and _')
        elif name in BASE_METRICS or name.endswith("_z"):
            doc.problem(where, f'variant name "{name}" clashes with a built-in metric')
    _check_smooth(doc, s.metrics)
    seen: dict[str, int] = {}
    known_series: set[tuple[str, str]] = set()
    jitter_reported = False
    for i, venue in enumerate(s.venues):
        loc: tuple[Any, ...] = ("venues", i)
        if venue.id in seen:
            doc.problem((*loc, "id"), f'duplicate venue id "{venue.id}"')
        seen[venue.id] = i
        for j, symbol in enumerate(venue.symbols):
            if (venue.id, symbol) in known_series:
                doc.problem((*loc, "symbols", j), f'duplicate symbol "{symbol}"')
            elif venue.exchange not in ("sim", "replay") and symbol_problem(symbol):
                doc.problem((*loc, "symbols", j), f'venue "{venue.id}": {symbol_problem(symbol)}')
            known_series.add((venue.id, symbol))
        if venue.exchange not in ("sim", "replay") and venue.exchange not in _ccxt_exchanges():
            hint = difflib.get_close_matches(venue.exchange, _ccxt_exchanges(), n=1)
            doc.problem(
                (*loc, "exchange"),
                f'unknown exchange "{venue.exchange}": not a ccxt exchange id, "sim" or "replay"'
                + (f' (did you mean "{hint[0]}"?)' if hint else ""),
            )
        if venue.exchange == "replay" and not venue.books:
            doc.problem(loc, 'a venue with exchange "replay" needs "books: PATH"')
        elif venue.exchange == "replay" and not os.path.isfile(venue.books or ""):
            doc.problem((*loc, "books"), f'no recording at "{venue.books}"')
        if venue.depth is not None:
            bad = depth_problem(venue.exchange, venue.depth, venue.symbols)
            if bad:
                doc.problem((*loc, "depth"), f'venue "{venue.id}": {bad}')
        interval = venue.interval or s.sampling.interval
        if interval < timedelta(milliseconds=100):
            doc.problem((*loc, "interval"), "interval must be at least 100ms")
        elif s.sampling.jitter >= interval and not jitter_reported:
            doc.problem(("sampling", "jitter"), f'jitter must be shorter than the interval of '
                        f'venue "{venue.id}" ({format_duration(ms(interval))})')
            jitter_reported = True
    if s.metrics.zscore.window <= timedelta(0):
        doc.problem(("metrics", "zscore", "window"), "the z-score window must be longer than 0s")
    zscore = s.metrics.zscore
    if zscore.min_history is not None and zscore.min_history > zscore.window:
        doc.problem(("metrics", "zscore", "min_history"),
                    f"min_history ({format_duration(ms(zscore.min_history))}) must not be longer "
                    f"than the z-score window ({format_duration(ms(zscore.window))})")
    if s.http.listen is not None:
        try:
            split_listen(s.http.listen)
        except ValueError as exc:
            doc.problem(("http", "listen"), str(exc))
    for group, members in s.groups.items():
        if not re.fullmatch(NAME, group):
            doc.problem(("groups", group), f"bad group name {group!r}: letters, digits, _ . -")
        for j, member in enumerate(members):
            venue_id, symbol = split_member(member)
            if not symbol:
                doc.problem(("groups", group, j), f'group member "{member}" must be venue:symbol')
            elif (venue_id, symbol) not in known_series | named_series:
                doc.problem(
                    ("groups", group, j),
                    f'group "{group}": "{member}" is not a configured venue and symbol',
                )
    for name, channel in s.channels.items():
        if not re.fullmatch(NAME, name):
            doc.problem(("channels", name), f"bad channel name {name!r}: letters, digits, _ . -")
        from wis_monitor.channel import url_problem  # apprise loads only for channels

        bad = url_problem(doc.unresolved.get(("channels", name, "url"), channel.url))
        if bad:
            doc.problem(("channels", name, "url"), f'channel "{name}": {bad}')
    if s.feed_stale.channels:
        for j, ch in enumerate(s.feed_stale.channels):
            if ch not in s.channels:
                doc.problem(("feed_stale", "channels", j), _unknown("channel", ch, s.channels))


def _check_smooth(doc: yamlsource.Document, m: Metrics, loc: tuple[Any, ...] = ("metrics",),
                  names: set[str] | None = None) -> None:
    sources = set(BASE_METRICS) | {n for v in m.wis_variants for n in (v, f"{v}_z")}
    for name, spec in m.smooth.items():
        if names is not None and name not in names:
            continue
        where = (*loc, "smooth", name)
        if not METRIC_NAME.fullmatch(name):
            doc.problem(where, f'smoothed metric "{name}" must be lower-case letters, digits and _')
        elif name in sources or name.endswith("_z"):
            doc.problem(where, f'smoothed metric "{name}" clashes with a metric of that name')
        if spec.of not in sources:
            what = ("another smoothed metric" if spec.of in m.smooth
                    else "not a metric" + _hint(spec.of, sources))
            doc.problem((*where, "of"), f'smoothed metric "{name}": "{spec.of}" is {what}')


def _hint(name: str, known: set[str]) -> str:
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    return f' (did you mean "{hint[0]}"?)' if hint else ""


@functools.cache
def _ccxt_exchanges() -> list[str]:
    """ccxt's exchange ids, read from its package (importing ccxt takes most of a second)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "async_support"
    return sorted(f.stem for f in folder.glob("*.py") if not f.name.startswith("_"))


def _unknown(kind: str, name: str, known: Mapping[str, Any] | list[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f'unknown {kind} "{name}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")


def _load_rules(
    main: yamlsource.Document, s: Settings, metrics: set[str], env: Mapping[str, str] | None
) -> tuple[list[Rule], list[str]]:
    base = Path(main.path).parent
    origins: dict[str, str] = {}  # rule file -> PATH:LINE of the include that names it
    for i, pattern in enumerate(s.rules.include):
        loc = ("rules", "include", i)
        full = pattern if os.path.isabs(pattern) else os.path.normpath(base / pattern)
        found = sorted(glob.glob(full))
        if not found:
            main.problem(loc, f'no rule file matches "{pattern}"')
        for f in found:
            if os.path.isdir(f):
                shown = f if os.path.isabs(pattern) else os.path.relpath(f, base)
                main.problem(loc, f'rules.include: "{shown}" is a directory (include its '
                             f'files, e.g. "{shown}/*.yaml")')
            else:
                origins.setdefault(f, f"{main.path}:{main.line(loc)}")
    rules: list[Rule] = []
    names: dict[str, str] = {}
    for path, origin in origins.items():
        rules.extend(load_rule_file(path, s, metrics, names, main.problems, env, origin=origin))
    return rules, list(origins)


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


def channels_named_in(files: Sequence[str]) -> set[str]:
    """The channel names the rules of these files refer to (unreadable files are skipped:
    loading them reports why)."""
    found: set[str] = set()
    for path in files:
        data = yamlsource.load(path, {}, secrets=False).data
        for rule in (data or {}).get("rules", []) if isinstance(data, dict) else []:
            if isinstance(rule, dict) and isinstance(rule.get("channels"), list):
                found.update(str(c) for c in rule["channels"])
    return found


def load_rule_file(
    path: str,
    s: Settings,
    metrics: set[str],
    names: dict[str, str],
    problems: list[Problem],
    env: Mapping[str, str] | None = None,
    *,
    origin: str | None = None,
) -> list[Rule]:
    """Parse one rule file, appending its problems; ``names`` tracks duplicates across files.
    ``origin`` is the ``PATH:LINE`` that included it, named if the file cannot be read."""
    doc = yamlsource.load(path, env, origin=origin)
    problems.extend(doc.problems)
    doc.problems = problems
    if doc.data is None:
        return []
    try:
        rule_file = RuleFile.model_validate(doc.data if isinstance(doc.data, dict) else {})
    except ValidationError as exc:
        report_validation(doc, exc, ())
        return []
    if not isinstance(doc.data, dict) or "rules" not in doc.data:
        doc.problem((), 'a rule file needs a top-level "rules:" list')
    out: list[Rule] = []
    for i, raw in enumerate(rule_file.rules):
        loc = ("rules", i)
        label = f'rule "{raw.get("name")}": ' if isinstance(raw.get("name"), str) else ""
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            report_validation(doc, exc, loc, label)
            _check_expressions(doc, loc, label, raw, metrics)
            if isinstance(raw.get("name"), str):
                _check_name(doc, loc, label, raw["name"], names, f"{path}:{doc.line(loc)}")
            continue
        where = f"{path}:{doc.line(loc)}"
        _check_name(doc, loc, label, spec.name, names, where)
        rule = _compile_rule(doc, loc, label, spec, s, metrics, where)
        if rule is not None:
            out.append(rule)
    return out


def _check_name(doc: yamlsource.Document, loc: tuple[Any, ...], label: str, name: str,
                names: dict[str, str], where: str) -> None:
    if name == FEED_STALE:
        doc.problem((*loc, "name"), f'{label}"{FEED_STALE}" is the built-in feed rule; '
                    "configure it under feed_stale: or choose another name")
    elif name in names:
        doc.problem((*loc, "name"),
                    f"{label}duplicate rule name (first defined at {names[name]})")
    names.setdefault(name, where)


def _check_expressions(doc: yamlsource.Document, loc: tuple[Any, ...], label: str,
                       raw: dict[str, Any], metrics: set[str]) -> None:
    """Report expression errors of a rule whose other keys are invalid, so all show at once."""
    group = raw.get("scope") == "group"
    for key, want in (("when", "bool"), ("clear", "bool"), ("value", "number")):
        text = raw.get(key)
        if isinstance(text, str):
            try:
                compile_expr(text, metrics, group=group, want=want)  # type: ignore[arg-type]
            except ExprError as exc:
                doc.problem((*loc, key), f"{label}{key}: {exc}")


def _compile_rule(
    doc: yamlsource.Document,
    loc: tuple[Any, ...],
    label: str,
    spec: RuleSpec,
    s: Settings,
    metrics: set[str],
    where: str,
) -> Rule | None:
    ok = True
    group = spec.scope == "group"
    if group and not spec.group:
        doc.problem((*loc, "scope"), f'{label}scope "group" needs "group: NAME"')
        ok = False
    elif group and spec.group not in s.groups:
        doc.problem((*loc, "group"), label + _unknown("group", spec.group or "", s.groups))
        ok = False
    elif not group and spec.group:
        doc.problem((*loc, "group"), f'{label}"group" needs "scope: group"')
        ok = False
    for j, channel in enumerate(spec.channels):
        if channel not in s.channels:
            doc.problem((*loc, "channels", j), label + _unknown("channel", channel, s.channels))
            ok = False
    compiled: dict[str, Expr | None] = {}
    for key, text, want in (
        ("when", spec.when, "bool"),
        ("clear", spec.clear, "bool"),
        ("value", spec.value, "number"),
    ):
        if text is None:
            compiled[key] = None
            continue
        try:
            compiled[key] = compile_expr(str(text), metrics, group=group, want=want)  # type: ignore[arg-type]
        except ExprError as exc:
            doc.problem((*loc, key), f"{label}{key}: {exc}")
            ok = False
    for key, problem in template_problems(spec, s, metrics).items():
        doc.problem((*loc, "template", key), f"{label}template {key}: {problem}")
        ok = False
    when = compiled.get("when")
    if not ok or when is None:
        return None
    return Rule(spec, when, compiled.get("clear"), compiled.get("value"), where)
