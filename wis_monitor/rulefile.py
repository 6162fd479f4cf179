"""Rule files (SPEC §6): the rule schema, loading and compiling rules against the settings.

Every problem is collected with ``PATH:LINE``; a rule is compiled only when all of it is valid.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wis_monitor import yamlsource
from wis_monitor.errors import Problem
from wis_monitor.expr import Expr, ExprError, compile_expr
from wis_monitor.message import template_problems
from wis_monitor.settings import NAME, Duration, Settings, unknown_name

_Z_LEVEL = re.compile(r"\bwis_z\s*[<>]=?\s*(-?\d+(?:\.\d+)?)")
#: The built-in rule of SPEC §6 that watches every series' feed.
FEED_STALE = "feed-stale"


def z_levels_of(when: str) -> tuple[float, ...]:
    """The levels a ``when`` expression compares ``wis_z`` with, highest first."""
    return tuple(sorted({float(m.group(1)) for m in _Z_LEVEL.finditer(when)}, reverse=True))


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
