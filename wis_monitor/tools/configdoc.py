"""The configuration reference, docs/config.md, generated from the models of settings.py and
rulefile.py.

``python -m wis_monitor.tools.configdoc > docs/config.md`` (or ``make docs``) rewrites it; a test
checks that the file is what this prints, so it cannot fall behind the models. Every field
needs a description: ``Field(description=...)`` on the model, else a line in
:data:`DESCRIPTIONS` (keyed ``Model.field``); a field with neither stops the generator.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from wis_monitor import rulefile, seriessettings, settings
from wis_monitor.duration import format_duration, ms

#: One line per model field: what the key does.
DESCRIPTIONS: dict[str, str] = {
    "Settings.storage": "Where samples, alerts and recorded books are kept.",
    "Settings.sampling": "How often and how patiently every venue is sampled.",
    "Settings.metrics": "The metrics computed from each book; venues and series may override.",
    "Settings.venues": "The venues sampled, each with its symbols (the series).",
    "Settings.groups": "Named lists of `venue:symbol` members, for rules with `scope: group`; "
                       "or `{select: VENUE}`: every series the venue samples now.",
    "Settings.channels": "Where alerts are sent, by channel name (rules name them).",
    "Settings.rules": "The rule files.",
    "Settings.feed_stale": "The built-in `feed-stale` rule: a series without a good book.",
    "Settings.http": "The HTTP endpoint for `/metrics` and `/healthz`.",
    "Settings.instance": "This instance, among several sharing a PostgreSQL store "
                         "(docs/scaling.md).",
    "Instance.id": "The instance's name in leases and `status`; default: the host name "
                   "(`run --instance` and `$WIS_INSTANCE_ID` override it).",
    "Instance.lease_ttl": "A venue or group whose holder stops renewing its lease is taken "
                          "over after this long (at least 3s).",
    "Storage.url": "A PostgreSQL store shared by several instances, `postgresql://USER@HOST/DB`"
                   " (password via `${credential:NAME}`); instead of `path`.",
    "Venue.prefer": "On a shared store: the instances that sample this venue while one of "
                    "them is up.",
    "Settings.series_settings": "Files of per-series metric settings (what `calibrate "
                                "--write` makes), relative to this file.",
    "Settings.positions": "The desk's positions (YAML or CSV: venue, symbol, signed size), "
                          "relative to this file: `unwind_bps` and alert messages; re-read "
                          "when it changes.",
    "Storage.path": "The SQLite database; default `$STATE_DIRECTORY/wis.db` under systemd, "
                    "else `wis.db` in the working directory.",
    "Storage.retention": "Samples, alerts and books older than this are deleted.",
    "Storage.record_books": "Also keep every book (for `export-books`, `replay`, `calibrate`).",
    "Storage.record_levels_bps": "Recorded books keep the levels within this many bps of the "
                                 "mid.",
    "Sampling.interval": "One book per series every interval (at least 100ms).",
    "Sampling.timeout": "A fetch slower than this is an error sample.",
    "Sampling.jitter": "A random delay up to this before each fetch; shorter than the "
                       "interval.",
    "Sampling.stale_after": "`feed-stale` fires after this long without a good book; "
                            "default max(3 x interval, 30s).",
    "Metrics.wis": "The kernel of `wis` (weighted imbalance score).",
    "Metrics.wis_variants": "More WIS metrics, each with its own kernel and `<name>_z`.",
    "Metrics.zscore": "How `wis_z`, `ofi_z` and every `<name>_z` are computed.",
    "Metrics.ofi": "Order-flow imbalance (`ofi`, `ofi_z`).",
    "Metrics.smooth": "Exponentially smoothed metrics, by name, each with its `<name>_z`.",
    "Metrics.impact": "The price impact of orders of the desk's sizes (docs/metrics.md).",
    "Impact.sizes": "Order sizes by label, in quote-currency notional (`100k`, `1M`, `2B` or a "
                    "number > 0): each gives `buy_impact_<label>`, `sell_impact_<label>` and "
                    "their `_z`; a venue or series may change an amount, not add a label.",
    "Impact.equal_quotes": "Quote currencies counted as one when a group's books are merged "
                           "for `split_<side>_impact_<label>` (the global setting is used).",
    "WisKernel.kernel": "How a level's weight falls with its distance from the mid.",
    "WisKernel.half_life_bps": "Distance at which an exponential kernel weighs half.",
    "WisKernel.band_bps": "Levels farther than this from the mid weigh nothing.",
    "WisKernel.half_life_levels": "Level count at which the `levels` kernel weighs half.",
    "WisKernel.symmetric": "Cut both sides at the band both books reach (see metrics.md).",
    "ZScore.window": "The history a z-score is computed over (`rolling`, `robust`).",
    "ZScore.min_samples": "Samples needed before a z-score is reported.",
    "ZScore.method": "Rolling mean/stddev, EWMA, or median/MAD.",
    "ZScore.half_life": "The half-life of the `ewma` method.",
    "ZScore.min_history": "Time a series must have been sampled before its z-score is "
                          "reported; default half the window, at most the window.",
    "Ofi.levels": "Book levels per side the order flow is measured over.",
    "Ofi.window": "The order flow is summed over this window.",
    "Smooth.of": "The metric smoothed (a built-in metric, a WIS variant or an impact metric).",
    "Smooth.half_life": "The half-life of the exponential smoothing.",
    "Sim.seed": "Seed of the simulation; none: a different run each time.",
    "Sim.price": "Starting mid price (other bases are scaled from it).",
    "Sim.tick": "Price grid step.",
    "Sim.levels": "Levels per side of each simulated book.",
    "Sim.calm": "Mean time between imbalance episodes.",
    "Venue.id": "The venue's name in series, groups, rules and silences.",
    "Venue.exchange": "A ccxt exchange id (`wis-monitor list-exchanges`), `sim` (simulated) or "
                      "`replay` (a recording).",
    "Venue.symbols": "ccxt unified symbols (`BTC/USDT`, `BTC/USDT:USDT`), or `{symbol: S, "
                     "metrics: {...}}` with the series' own metric settings.",
    "Venue.select": "More symbols, chosen from the venue's markets and refreshed as they "
                    "expire (docs/deployment.md, option chains); with or instead of `symbols`.",
    "Venue.metrics": "Overrides of `metrics` for this venue's series.",
    "Selection.type": "The markets' type.",
    "Selection.base": "The base currency (`BTC`).",
    "Selection.quote": "Only markets quoted in this currency.",
    "Selection.settle": "Only markets settled in this currency.",
    "Selection.expiry_within": "Options and futures that expire within this time from now.",
    "Selection.moneyness_within": "Options whose strike is within this percentage (`10%`) of "
                                  "the underlying's price (the mid of `reference`).",
    "Selection.max": "At most this many: the options nearest the money, the nearest expiries; "
                     "refused if more than the rate limit allows at the interval.",
    "Selection.reference": "The market whose mid is the underlying's price; default: the "
                           "venue's perpetual swap of the base quoted in USD, USDT or USDC.",
    "Selection.refresh": "How often the selection is resolved again (and at the latest when "
                         "one of its markets expires).",
    "Venue.depth": "Levels requested per book; default: 100, doubled while the book stops "
                   "short of the band. Checked against the exchange's limits.",
    "Venue.mode": "`poll`: one REST request per book and interval; `stream`: books kept "
                  "from the venue's websocket (ccxt.pro) and sampled at the interval "
                  "(docs/streaming.md).",
    "Venue.stream": "How a `mode: stream` venue's books are watched, verified and replaced "
                    "by polling when they cannot be trusted (docs/streaming.md).",
    "Stream.stale_after": "A book without an update this long (or whose own time lags the "
                          "clock this much) is flagged `stale` and resubscribed.",
    "Stream.verify_every": "How often each streamed book is compared with a REST snapshot "
                           "(`drift_bps`).",
    "Stream.verify_levels": "Levels per side compared with the REST snapshot.",
    "Stream.drift_bps": "A `drift_bps` above this flags the series `stale` and resyncs it.",
    "Stream.symbols_per_connection": "Symbols watched over one websocket connection.",
    "Stream.fallback_after": "This many resyncs or drifts of a venue within "
                             "`fallback_window` switch it to polling.",
    "Stream.fallback_window": "The window `fallback_after` counts in.",
    "Stream.quiet": "A venue switched to polling streams again after this long.",
    "Venue.interval": "Overrides `sampling.interval` for this venue.",
    "Venue.timeout": "Overrides `sampling.timeout` for this venue.",
    "Venue.stale_after": "Overrides `sampling.stale_after` for this venue.",
    "Venue.ccxt": "Merged into the ccxt exchange's constructor options (`urls`, `options`, "
                  "`timeout`, `enableRateLimit`, ...).",
    "Venue.sim": "Options of a simulated venue (`exchange: sim`).",
    "Venue.books": "The recording an `exchange: replay` venue plays (any format "
                   "`replay --books` reads).",
    "Channel.url": "An apprise URL; secrets as `${credential:NAME}` or `${ENV_VAR}`.",
    "Channel.tags": "Free labels for the operator; not used in sending.",
    "Channel.attach_chart": "Attach a PNG chart of the series to each message.",
    "Channel.timeout": "A send slower than this fails and is retried.",
    "Channel.per_minute": "At most this many messages a minute; the rest become one summary.",
    "Channel.max_age": "A message not delivered after this long is given up (`failed`).",
    "Channel.group_by": "Labels that put alerts in one message (`rule`, `severity`, `venue`, "
                        "`symbol`, `group` or a rule label); `[]` sends each alert at once.",
    "Channel.group_wait": "How long a new group waits for more alerts before its first message.",
    "Channel.group_interval": "How long after a group's message new alerts of it wait.",
    "RulesBlock.include": "Rule files (globs), relative to this file.",
    "FeedStale.enabled": "Whether the built-in `feed-stale` rule runs.",
    "FeedStale.severity": "Its severity.",
    "FeedStale.channels": "Its channels; default: none (recorded, sent nowhere).",
    "Http.listen": "`HOST:PORT` (or `:PORT`) to serve `/metrics` and `/healthz`; none: off.",
    "SeriesFile.series": "One entry per series.",
    "SeriesEntry.venue": "A configured venue id.",
    "SeriesEntry.symbol": "One of its symbols.",
    "SeriesEntry.metrics": "Overrides of `metrics` for this series.",
    "RuleSpec.name": "Unique over all rule files.",
    "RuleSpec.description": "Shown in messages.",
    "RuleSpec.match": "The series the rule watches (globs).",
    "RuleSpec.scope": "`series`: one alert per series; `group`: one per group.",
    "RuleSpec.group": "The group of a `scope: group` rule.",
    "RuleSpec.when": "The firing condition (an expression, see rules.md).",
    "RuleSpec.for_": "`when` must hold this long before firing.",
    "RuleSpec.clear": "The resolving condition; default: `when` stops holding.",
    "RuleSpec.keep_firing_for": "`clear` must hold this long before resolving.",
    "RuleSpec.repeat": "Re-notify this often while firing; 0s: never.",
    "RuleSpec.cooldown": "After resolving, no new firing of the same key for this long.",
    "RuleSpec.severity": "Shown in messages; chooses the apprise notification type.",
    "RuleSpec.channels": "Where its alerts are sent.",
    "RuleSpec.notify_resolved": "Also send a message when it resolves.",
    "RuleSpec.mode": "`shadow`: evaluated and recorded, never sent.",
    "RuleSpec.labels": "Extra labels, shown in messages and usable in templates.",
    "RuleSpec.runbook": "A link shown in messages.",
    "RuleSpec.value": "The number shown in messages (an expression).",
    "RuleSpec.template": "Custom message title and body.",
    "Match.venue": "Venue ids (a glob).",
    "Match.symbol": "Symbols (a glob).",
    "Template.title": "Message title template.",
    "Template.body": "Message body template.",
}

#: The documented files: (title, key prefix, root model, introduction).
FILES: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    ("The main file", "", settings.Settings,
     "`/etc/wis-monitor/config.yaml` (or `-c PATH`, or `$WIS_MONITOR_CONFIG`)."),
    ("Series-settings files", "", seriessettings.SeriesFile,
     "Named by `series_settings:`; `calibrate --write` makes them."),
    ("Rule files", "rules[].", rulefile.RuleSpec,
     "Named by `rules.include`; the expressions are described in [rules.md](rules.md)."),
)

HEADER = """\
# Configuration reference

Generated from the models of `wis_monitor/settings.py` and `wis_monitor/rulefile.py` by
`python -m wis_monitor.tools.configdoc` (`make docs`); do not edit by hand. Durations are
texts such as `500ms`, `5s`, `10m`, `1h`, `30d`. A starter config:
`wis-monitor new-config -o config.yaml`; a full example:
[examples/config.yaml](examples/config.yaml).
"""


def render() -> str:
    out = [HEADER]
    for title, prefix, model, intro in FILES:
        out.append(f"## {title}\n\n{intro}\n")
        for path, sub in _sections(prefix, model):
            out.append(f"### `{path or '(top level)'}`\n" if path else "")
            out.append(_table(path, sub))
    return "\n".join(part for part in out if part)


def _sections(path: str, model: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    """This model and every model nested in it, depth first, with their key paths."""
    yield path.removesuffix("."), model
    for name, info in model.model_fields.items():
        key = info.alias or name
        for suffix, sub in _nested(info.annotation):
            yield from _sections(f"{path}{key}{suffix}.", sub)


def _nested(ann: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        yield "", ann
        return
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is list:
        yield from ((f"[]{s}", m) for s, m in _nested(args[0]))
    elif origin is dict:
        yield from ((f".NAME{s}", m) for s, m in _nested(args[1]))
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg)


def _table(path: str, model: type[BaseModel]) -> str:
    rows = ["| Key | Type | Default | Constraint | Description |",
            "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        description = info.description or DESCRIPTIONS[f"{model.__name__}.{name}"]
        key = f"{path}.{info.alias or name}" if path else (info.alias or name)
        rows.append(f"| `{key}` | {_type(info.annotation)} | {_default(info)} | "
                    f"{_constraint(info)} | {description} |")
    return "\n".join(rows) + "\n"


def _type(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping of names to {_type(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "mapping"
    names = {timedelta: "duration", str: "text", int: "integer", float: "number",
             bool: "boolean", type(None): "none"}
    return names.get(ann, "any")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, timedelta):
        return f"`{format_duration(ms(value))}`"
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _constraint(info: FieldInfo) -> str:
    found: list[str] = []
    for meta in _metadata(info):
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(meta, attr, None) is not None:
                found.append(f"{sign} {getattr(meta, attr)}")
        if getattr(meta, "min_length", None):
            found.append(f"at least {meta.min_length} item(s)")
        if getattr(meta, "pattern", None):
            found.append("letters, digits, `_ . -`; starts with a letter or digit")
        if getattr(meta, "func", None) is settings.positive:
            found.append("> 0s")
    return ", ".join(found)


def _metadata(info: FieldInfo) -> list[Any]:
    """The field's own constraints and those of an optional annotated type."""
    found = list(info.metadata)
    for arg in typing.get_args(info.annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found.extend(typing.get_args(arg)[1:])
    return found


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
