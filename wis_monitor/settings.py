"""The settings: the main config file's schema (pydantic models), frozen and typed, and the
checks across its sections (SPEC §5). Rules are loaded apart, by :mod:`wis_monitor.rulefile`.

Every problem is collected and reported at once as ``PATH:LINE: message``; nothing here raises
anything else for bad input.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
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
    model_validator,
)

from wis_monitor import selection, yamlsource
from wis_monitor.depths import depth_problem
from wis_monitor.duration import format_duration, ms, parse_duration
from wis_monitor.impact import impact_metrics, parse_amount, size_label
from wis_monitor.signals import Kernel
from wis_monitor.stats import ZScoreSpec
from wis_monitor.symbols import symbol_problem


def positive(td: timedelta) -> timedelta:
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


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(positive)]


Symbol = Annotated[str, AfterValidator(_symbol)]


SymbolEntry = Annotated[str, BeforeValidator(_symbol_entry), AfterValidator(_symbol)]


NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


#: Metrics every sample has (SPEC §3); configured WIS variants and ``<name>_z`` are added.
BASE_METRICS = (
    "wis", "wis_z", "imbalance", "mid", "spread_bps", "microprice", "bid_depth", "ask_depth",
    "depth", "mid_change_bps", "age_s", "latency_ms", "coverage_bps", "ofi", "ofi_z",
    "unwind_bps", "book_age_ms", "drift_bps",
)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Storage(Model):
    path: str | None = None
    url: str | None = None  # postgresql://... (a store shared by several instances)
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


class Impact(Model):
    sizes: dict[Annotated[str, AfterValidator(size_label)],
                Annotated[float, BeforeValidator(parse_amount)]] = {}
    equal_quotes: list[list[str]] = [["USD", "USDT", "USDC"]]  # merged in a group's split


class Metrics(Model):
    wis: WisKernel = WisKernel()
    wis_variants: dict[str, WisKernel] = {}
    zscore: ZScore = ZScore()
    ofi: Ofi = Ofi()
    smooth: dict[str, Smooth] = {}
    impact: Impact = Impact()

    def kernels(self) -> dict[str, Kernel]:
        out = {"wis": self.wis.to_kernel()}
        out.update({name: k.to_kernel() for name, k in self.wis_variants.items()})
        return out

    def scored(self) -> tuple[str, ...]:
        """The metrics that have a z-score (``<name>_z``), in their column order."""
        return ("wis", *self.wis_variants, "ofi", *self.impact_metrics(), *self.smooth)

    def impact_metrics(self) -> tuple[str, ...]:
        return impact_metrics(self.impact.sizes)


class Sim(Model):
    seed: int | None = None
    price: float = Field(60_000.0, gt=0)
    tick: float = Field(0.1, gt=0)
    levels: int = Field(200, ge=1, le=20_000)
    calm: Duration = timedelta(seconds=90)  # mean time between imbalance episodes


class Stream(Model):
    stale_after: PositiveDuration = timedelta(seconds=5)
    verify_every: PositiveDuration = timedelta(seconds=60)
    verify_levels: int = Field(10, ge=1, le=400)
    drift_bps: float = Field(5.0, gt=0)
    symbols_per_connection: int = Field(10, ge=1, le=200)
    fallback_after: int = Field(5, ge=1)  # resyncs or drifts within fallback_window
    fallback_window: PositiveDuration = timedelta(minutes=10)
    quiet: PositiveDuration = timedelta(minutes=5)  # polling, before streaming again


class Venue(Model):
    id: Annotated[str, Field(pattern=NAME)]
    exchange: str
    mode: Literal["poll", "stream"] = "poll"
    stream: Stream = Stream()
    symbols: list[SymbolEntry] = []
    select: selection.Selection | None = None  # more symbols, from the venue's markets
    metrics: dict[str, Any] = {}  # overrides of the global metrics, checked on their own
    depth: int | None = Field(None, ge=1)
    interval: PositiveDuration | None = None
    timeout: PositiveDuration | None = None
    stale_after: PositiveDuration | None = None
    ccxt: dict[str, Any] = {}
    sim: Sim = Sim()
    books: str | None = None  # exchange: replay
    prefer: list[Annotated[str, Field(pattern=NAME)]] = []  # instances, on a shared store

    @model_validator(mode="after")
    def _samples_something(self) -> Venue:
        if not self.symbols and self.select is None:
            raise ValueError('"symbols" should have at least 1 item (or give "select:")')
        return self


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


class Instance(Model):
    id: Annotated[str, Field(pattern=NAME)] | None = None  # default: the host name
    lease_ttl: PositiveDuration = timedelta(seconds=15)


class Settings(Model):
    storage: Storage = Storage()
    sampling: Sampling = Sampling()
    metrics: Metrics = Metrics()
    venues: list[Venue] = []
    groups: dict[str, Annotated[list[str], BeforeValidator(selection.group_select)]] = {}
    channels: dict[str, Channel] = {}
    rules: RulesBlock = RulesBlock()
    feed_stale: FeedStale = FeedStale()
    http: Http = Http()
    instance: Instance = Instance()
    series_settings: list[str] = []
    positions: str | None = None  # the desk's positions file (docs/metrics.md)


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


def salvage(data: dict[str, Any]) -> Settings:
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
        elif key in ("storage", "sampling", "metrics", "feed_stale", "http", "rules",
                     "instance"):
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
    m = settings.metrics
    for name in (*m.wis_variants, *m.impact_metrics(), *m.smooth):
        names.update((name, f"{name}_z"))
    return names | {f"split_{n}" for n in m.impact_metrics()}  # of groups (across.py)


def raw_series(data: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (venue, symbol) the file names, valid or not: cross-references are checked against
    these so that one bad venue does not also make every group that uses it an error."""
    out: set[tuple[str, str]] = set()
    venues = data.get("venues")
    for v in venues if isinstance(venues, list) else []:
        if isinstance(v, dict) and isinstance(v.get("symbols"), list):
            out.update((str(v.get("id")), str(sym.get("symbol") if isinstance(sym, dict) else sym))
                       for sym in v["symbols"])
    return out


def check_settings(doc: yamlsource.Document, s: Settings, named_series: set[tuple[str, str]],
                   url_problem: Callable[[str], str | None]) -> None:
    """The checks across sections; ``url_problem`` says why a channel URL is unusable."""
    for name in s.metrics.wis_variants:
        where = ("metrics", "wis_variants", name)
        if not METRIC_NAME.fullmatch(name):
            doc.problem(where, f'variant name "{name}" must be lower-case letters, digits and _')
        elif name in (*BASE_METRICS, *s.metrics.impact_metrics()) or name.endswith("_z"):
            doc.problem(where, f'variant name "{name}" clashes with a built-in metric')
    check_smooth(doc, s.metrics)
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
        if venue.exchange not in ("sim", "replay") and venue.exchange not in ccxt_exchanges():
            hint = difflib.get_close_matches(venue.exchange, ccxt_exchanges(), n=1)
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
        if venue.mode == "stream" and not stream_exchange(venue.exchange):
            doc.problem((*loc, "mode"), f'venue "{venue.id}": exchange "{venue.exchange}" has '
                        "no order-book stream in ccxt.pro (use mode: poll)")
        interval = venue.interval or s.sampling.interval
        if venue.select is not None:
            selection.check(doc, loc, venue, ms(interval))
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
    _check_shared(doc, s)
    for group, members in s.groups.items():
        if not re.fullmatch(NAME, group):
            doc.problem(("groups", group), f"bad group name {group!r}: letters, digits, _ . -")
        for j, member in enumerate(members):
            venue_id, symbol = split_member(member)
            if symbol == "*" and venue_id not in seen:
                doc.problem(("groups", group), f'group "{group}": no venue "{venue_id}" to '
                            "select from")
            elif symbol == "*":
                continue
            elif not symbol:
                doc.problem(("groups", group, j), f'group member "{member}" must be venue:symbol')
            elif (venue_id, symbol) not in known_series | named_series:
                doc.problem(
                    ("groups", group, j),
                    f'group "{group}": "{member}" is not a configured venue and symbol',
                )
    for name, channel in s.channels.items():
        if not re.fullmatch(NAME, name):
            doc.problem(("channels", name), f"bad channel name {name!r}: letters, digits, _ . -")
        bad = url_problem(doc.unresolved.get(("channels", name, "url"), channel.url))
        if bad:
            doc.problem(("channels", name, "url"), f'channel "{name}": {bad}')
    if s.feed_stale.channels:
        for j, ch in enumerate(s.feed_stale.channels):
            if ch not in s.channels:
                doc.problem(("feed_stale", "channels", j), unknown_name("channel", ch, s.channels))


def _check_shared(doc: yamlsource.Document, s: Settings) -> None:
    """A PostgreSQL store: its URL (not connected to here) and the lease settings."""
    url = s.storage.url
    if url is not None:
        if s.storage.path is not None:
            doc.problem(("storage", "url"), "give storage.path (SQLite) or storage.url "
                        "(PostgreSQL), not both")
        shown = doc.unresolved.get(("storage", "url"), url)
        bad = postgres_url_problem(shown)
        if bad:
            doc.problem(("storage", "url"), bad)
    if s.instance.lease_ttl < timedelta(seconds=3):
        doc.problem(("instance", "lease_ttl"), "lease_ttl must be at least 3s (a lease is "
                    "renewed every second)")


def postgres_url_problem(url: str) -> str | None:
    """Why ``url`` is not a PostgreSQL URL wis-monitor can use (None: it looks usable)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"not a PostgreSQL URL: {exc}"
    if parts.scheme not in ("postgresql", "postgres"):
        return (f'storage.url must start with postgresql:// (not "{parts.scheme}://"); '
                "a SQLite file goes in storage.path")
    if not parts.path.strip("/") and not parts.hostname:
        return "storage.url names no host and no database (postgresql://USER@HOST/DB)"
    return None


def check_smooth(doc: yamlsource.Document, m: Metrics, loc: tuple[Any, ...] = ("metrics",),
                  names: set[str] | None = None) -> None:
    sources = set(BASE_METRICS) | {n for v in (*m.wis_variants, *m.impact_metrics())
                                   for n in (v, f"{v}_z")}
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
def ccxt_exchanges() -> list[str]:
    """ccxt's exchange ids, read from its package (importing ccxt takes most of a second)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "async_support"
    return sorted(f.stem for f in folder.glob("*.py") if not f.name.startswith("_"))


def stream_exchange(exchange: str) -> bool:
    """Whether ccxt.pro streams this exchange's order books (read from its package)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return False
    return (Path(next(iter(spec.submodule_search_locations))) / "pro" / f"{exchange}.py").is_file()


def unknown_name(kind: str, name: str, known: Mapping[str, Any] | list[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f'unknown {kind} "{name}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")
