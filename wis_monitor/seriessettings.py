"""Per-series metric settings: the overrides of a venue, of series-settings files (what
``calibrate --write`` makes) and of a symbol, merged over the global ``metrics`` in that
order, each checked where it is written (docs/metrics.md)."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from wis_monitor import yamlsource
from wis_monitor.settings import Metrics, Model, Settings, check_smooth


class SeriesEntry(Model):
    venue: str
    symbol: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class SeriesFile(Model):
    """A series-settings file: per-series metric overrides (what ``calibrate --write`` makes)."""

    series: list[SeriesEntry] = Field(default_factory=list)


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
                yamlsource.report_validation(doc, exc, ())
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
                    f"{yamlsource.kind_of(override)}")
        return False
    ok = True
    impact = override.get("impact")
    sizes = impact.get("sizes") if isinstance(impact, dict) else None
    for kind, named, known in (("wis_variants", override.get("wis_variants"), base.wis_variants),
                               ("smooth", override.get("smooth"), base.smooth),
                               ("impact.sizes", sizes, base.impact.sizes)):
        for name in named if isinstance(named, dict) else ():
            if name not in known:
                doc.problem((*loc, *kind.split("."), name), f'"{name}" is not under '
                            f"metrics.{kind}: a per-series override changes parameters, it "
                            "adds no metric")
                ok = False
    if not ok:
        return False
    problems = len(doc.problems)
    try:
        merged = Metrics.model_validate(_deep_merge(base.model_dump(), override))
    except ValidationError as exc:
        yamlsource.report_validation(doc, exc, loc)
        return False
    check_smooth(doc, merged, loc, names=set(override.get("smooth") or ()))
    return len(doc.problems) == problems


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        out[key] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(
            value, dict) else value
    return out
