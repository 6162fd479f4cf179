"""Rule files on their own (``check-rules``, ``replay --rules`` without a config).

Without a config, a metric name that is not built in may still be one the config defines (a
WIS variant, a smoothed metric, or their ``_z``): it is noted, not refused, and the rules are
checked with it assumed. Group and channel names are checked only against a config.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wis_monitor import yamlsource
from wis_monitor.config import Config
from wis_monitor.errors import Problem
from wis_monitor.expr import ExprError, compile_expr
from wis_monitor.rulefile import Rule, channels_named_in, load_rule_file
from wis_monitor.settings import BASE_METRICS, METRIC_NAME, Channel, Settings

_UNKNOWN_METRIC = re.compile(r'unknown metric "([^"]+)"')
_IMPACT_METRIC = re.compile(r"(?:split_)?(?:buy|sell)_impact_[a-z0-9_]+")
_EXPRESSIONS = (("when", "bool"), ("clear", "bool"), ("value", "number"))


@dataclass
class RuleCheck:
    """What checking some rule files found: rules by file, problems and notes."""

    rules: dict[str, list[Rule]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)


def check_rule_files(files: Sequence[str], config: Config | None) -> RuleCheck:
    """Check ``files`` against ``config``'s metrics, groups and channels, or alone."""
    out = RuleCheck()
    if config is not None:
        settings, metrics = config.settings, set(config.metrics)
    else:
        settings = _stub_settings(files)
        metrics = set(BASE_METRICS)
        for path in files:
            out.notes.extend(_assume_metrics(path, metrics))
    names: dict[str, str] = {}
    for path in files:
        out.rules[path] = load_rule_file(path, settings, metrics, names, out.problems)
    return out


def group_rules(files: Sequence[str]) -> list[Problem]:
    """A problem for each group rule of ``files``: replaying it needs a config's groups."""
    found: list[Problem] = []
    for path, doc, i, rule in _raw_rules(files):
        if rule.get("scope") == "group":
            found.append(Problem(path, doc.line(("rules", i)), f'rule "{rule.get("name")}": a '
                                 "group rule needs the groups of a config: give -c CONFIG"))
    return found


def _stub_settings(files: Sequence[str]) -> Settings:
    """Settings with every group and channel the files name, so that only the rules' own
    problems are reported."""
    named = {str(rule["group"]) for _, _, _, rule in _raw_rules(files) if rule.get("group")}
    groups: dict[str, list[str]] = {g: [] for g in named}
    channels = {c: Channel(url="console://") for c in channels_named_in(files)}
    return Settings(groups=groups, channels=channels)


def _assume_metrics(path: str, metrics: set[str]) -> list[Problem]:
    """Add to ``metrics`` every name the expressions of ``path`` use as a metric that could be
    defined by a config; a note for each, where it is first used."""
    notes: list[Problem] = []
    for _, doc, i, rule in _raw_rules([path]):
        for key, want in _EXPRESSIONS:
            text = rule.get(key)
            while isinstance(text, str):
                try:
                    compile_expr(text, metrics, group=rule.get("scope") == "group",
                                 want=want)  # type: ignore[arg-type]
                    break
                except ExprError as exc:
                    m = _UNKNOWN_METRIC.match(exc.message)
                    if m is None or not METRIC_NAME.fullmatch(m.group(1)):
                        break
                    name = m.group(1)
                    metrics.add(name)
                    notes.append(Problem(path, doc.line(("rules", i, key)),
                                         f"note: {_assumed(name)}; check-rules -c CONFIG "
                                         "checks it"))
    return notes


def _assumed(name: str) -> str:
    """What a metric that is not built in is taken for: an impact metric of a size the config
    configures, else one the config defines, with the closest built-in metric as a hint (never
    another name merely assumed)."""
    import difflib

    if _IMPACT_METRIC.fullmatch(name):
        return (f'"{name}" is an impact metric: assumed to be of a size configured under '
                "metrics.impact.sizes (impact metrics exist only for those)")
    close = difflib.get_close_matches(name, BASE_METRICS, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return (f'"{name}" is not a built-in metric{hint}: assumed to be one the config defines '
            "(a WIS variant, a smoothed metric or its _z)")


def _raw_rules(files: Sequence[str]
               ) -> list[tuple[str, yamlsource.Document, int, dict[str, Any]]]:
    """Every rule mapping of ``files`` as written (unreadable files are skipped: loading them
    reports why)."""
    out: list[tuple[str, yamlsource.Document, int, dict[str, Any]]] = []
    for path in files:
        doc = yamlsource.load(path, {}, secrets=False)
        rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                out.append((path, doc, i, rule))
    return out
