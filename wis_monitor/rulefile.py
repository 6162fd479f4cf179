"""Rule files (SPEC §6): the rule schema, loading and compiling rules against the settings.

Every problem is collected with ``PATH:LINE``; a rule is compiled only when all of it is valid,
its templates included: they are rendered against sample alerts of the rule.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wis_monitor import yamlsource
from wis_monitor.errors import Problem
from wis_monitor.expr import Expr, ExprError, compile_expr
from wis_monitor.message import render_templates, title_of
from wis_monitor.settings import NAME, Duration, Settings, unknown_name
from wis_monitor.template import TemplateRenderError, syntax_problem

_Z_LEVEL = re.compile(r"\bwis_z\s*[<>]=?\s*(-?\d+(?:\.\d+)?)")
_ABS_Z_LEVEL = re.compile(r"\babs\(\s*wis_z\s*\)\s*>=?\s*(\d+(?:\.\d+)?)")
#: The built-in rule of SPEC §6 that watches every series' feed.
FEED_STALE = "feed-stale"


def z_levels_of(when: str) -> tuple[float, ...]:
    """The levels a ``when`` expression compares ``wis_z`` with, highest first;
    ``abs(wis_z) >= X`` (or ``> X``) gives both X and -X."""
    levels = {float(m.group(1)) for m in _Z_LEVEL.finditer(when)}
    levels |= {s * float(m.group(1)) for m in _ABS_Z_LEVEL.finditer(when) for s in (1, -1)}
    return tuple(sorted(levels, reverse=True))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


def load_rules(
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
        yamlsource.report_validation(doc, exc, (), model=RuleFile)
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
            yamlsource.report_validation(doc, exc, loc, label, model=RuleSpec)
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
        doc.problem((*loc, "group"), label + unknown_name("group", spec.group or "", s.groups))
        ok = False
    elif not group and spec.group:
        doc.problem((*loc, "group"), f'{label}"group" needs "scope: group"')
        ok = False
    for j, channel in enumerate(spec.channels):
        if channel not in s.channels:
            doc.problem((*loc, "channels", j), label + unknown_name("channel", channel, s.channels))
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


# -- templates: checked by rendering sample alerts of the rule -------------------------------

#: The time of the sample alerts ``check`` renders templates with (2026-11-24 12:00 UTC).
SAMPLE_TS_MS = 1_795_521_600_000
#: Plausible metric values of a sample alert; other metrics get 3.4 (``*_z``) or 0.61 (WIS).
SAMPLE_VALUES: dict[str, float] = {
    "wis": 0.61, "wis_z": 3.4, "imbalance": 0.58, "mid": 61234.5, "spread_bps": 0.3,
    "microprice": 61235.1, "bid_depth": 2.5e6, "ask_depth": 0.9e6, "depth": 3.4e6,
    "mid_change_bps": 1.2, "age_s": 0.4, "latency_ms": 85.0, "coverage_bps": 50.0, "ofi": 0.8,
    "unwind_bps": 4.2, "book_age_ms": 40.0, "drift_bps": 0.2,
}


def template_problems(spec: RuleSpec, settings: Settings, metrics: Iterable[str]
                      ) -> dict[str, str]:
    """What is wrong with a rule's templates, by key (``title``, ``body``): the syntax, or how
    rendering sample alerts of the rule fails or breaks the budget."""
    problems: dict[str, str] = {}
    samples = sample_alerts(spec, settings, metrics)
    for key in ("title", "body"):
        source = getattr(spec.template, key)
        if source is None:
            continue
        problem = syntax_problem(source)
        for alert in samples if problem is None else ():
            try:
                render_templates(alert, {key: source})
            except TemplateRenderError as exc:
                problem = f"rendering a sample {alert['event']} alert: " + \
                    str(exc).removeprefix(f"{key}: ")
                break
        if problem is not None:
            problems[key] = problem
    return problems


def sample_alerts(spec: RuleSpec, settings: Settings, metrics: Iterable[str]
                  ) -> list[dict[str, Any]]:
    """A firing (and a resolved) event of the rule with plausible values, on the first
    configured series it matches (or its group), with the fields of the outbox row the
    dispatcher hands to templates."""
    values: dict[str, Any] = {
        m: SAMPLE_VALUES.get(m, 3.4 if m.endswith("_z") else 0.61) for m in sorted(metrics)}
    details: dict[str, Any] = {"description": spec.description, "runbook": spec.runbook,
                               "when": spec.when}
    venue: str | None = None
    symbol: str | None = None
    if spec.scope == "group":
        key = spec.group or "group"
        details["values"] = {"members": {m: values for m in settings.groups.get(key, [])}}
    else:
        venue, symbol = next(
            ((v.id, sym) for v in settings.venues for sym in v.symbols
             if fnmatch.fnmatchcase(v.id, spec.match.venue)
             and fnmatch.fnmatchcase(sym, spec.match.symbol)), ("venue", "BTC/USDT"))
        key = f"{venue}:{symbol}"
        details.update(values=values, baseline={"n": 720, "mean": 0.02, "std": 0.17},
                       top_bids=[[61230.0, 250000.0]], top_asks=[[61240.0, 90000.0]],
                       group_peers={}, position={"size": -25.0, "notional": 1_530_862.5,
                                                 "currency": "USDT", "unwind_bps": 4.2})
    value = 3.4 if venue is not None or spec.value is not None else None
    firing: dict[str, Any] = {
        "delivery_id": 1, "channel": next(iter(spec.channels), ""), "attempts": 0,
        "created_ts": SAMPLE_TS_MS, "id": 1, "ts": SAMPLE_TS_MS, "rule": spec.name, "key": key,
        "venue": venue, "symbol": symbol, "event": "firing", "severity": spec.severity,
        "value": value, "labels": dict(spec.labels), "details": details}
    firing["summary"] = title_of(firing)
    if not spec.notify_resolved:
        return [firing]
    resolved = {**firing, "event": "resolved", "ts": SAMPLE_TS_MS + 252_000,
                "created_ts": SAMPLE_TS_MS + 252_000, "id": 2, "delivery_id": 2,
                "details": {**details, "fired_for_ms": 252_000}}
    resolved["summary"] = title_of(resolved)
    return [firing, resolved]
