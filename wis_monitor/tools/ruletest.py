"""``wis-monitor test-rules``: unit tests for rules, in the spirit of ``promtool test rules``.

A test file names rule files, gives input series per ``venue:symbol`` — metric values on a
fixed interval in a compact notation, or a book recording — and lists every alert event
expected, with its time. The real engine runs over the inputs; the events it produces must match
the expectation exactly, else an ``expected:`` / ``got:`` diff is printed.

Value notation (space separated): ``1.5`` a value; ``AxN`` A repeated N times; ``A+BxN`` or
``A-BxN`` N values from A in steps of B; ``null`` a good sample where this metric is null;
``_`` no good sample at that step (a failed fetch), ``_xN`` N of them. The desk's position
on a series of books is its ``position`` (``unwind_bps`` is computed from the books); a series
of values gives ``unwind_bps`` itself.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wis_monitor import yamlsource
from wis_monitor.config import Config
from wis_monitor.duration import format_duration, ms
from wis_monitor.engine import Engine, Sample
from wis_monitor.errors import ConfigError, Problem
from wis_monitor.positions import Positions
from wis_monitor.rulefile import FEED_STALE, channels_named_in, load_rule_file
from wis_monitor.seriessettings import per_series_metrics
from wis_monitor.settings import (
    Channel,
    Duration,
    Metrics,
    Settings,
    metric_names,
    split_member,
)
from wis_monitor.sources.replay import read_recording
from wis_monitor.store import Batch

_TOKEN = re.compile(r"^(-?[0-9.eE+-]+?)(?:([+-])([0-9.eE+-]+))?x(\d+)$")
MISSING = object()


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSeries(Model):
    series: str
    values: dict[str, str] = {}
    books: str | None = None
    position: float | None = None  # with books: the desk's, for unwind_bps


class Expected(Model):
    at: Duration
    rule: str
    key: str
    event: str = Field(pattern="^(firing|repeat|resolved)$")


class Case(Model):
    name: str
    interval: Duration | None = None
    input_series: list[InputSeries] = Field(min_length=1)
    expected: list[Expected] = []


class TestFile(Model):
    rule_files: list[str] = Field(min_length=1)
    evaluation_interval: Duration = timedelta(seconds=1)
    groups: dict[str, list[str]] = {}
    metrics: Metrics = Metrics()
    series_settings: list[str] = []
    stale_after: Duration | None = None
    tests: list[Case] = Field(min_length=1)


def parse_values(text: str) -> list[float | object | None]:
    """Expand the compact notation; raise ValueError naming the bad token."""
    out: list[float | object | None] = []
    for token in str(text).split():
        if token == "_":
            out.append(MISSING)
        elif token.startswith("_x") and token[2:].isdigit():
            out.extend([MISSING] * int(token[2:]))
        elif token == "null":
            out.append(None)
        elif token.startswith("nullx") and token[5:].isdigit():
            out.extend([None] * int(token[5:]))
        elif "x" in token:
            m = _TOKEN.match(token)
            if not m:
                raise ValueError(f'bad token "{token}": use A, AxN or A+BxN')
            start, sign, step, n = float(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            delta = float(step) * (-1 if sign == "-" else 1) if sign else 0.0
            out.extend(start + i * delta for i in range(n))
        else:
            try:
                out.append(float(token))
            except ValueError:
                raise ValueError(f'bad token "{token}": use A, AxN or A+BxN, null or _') from None
    return out


@dataclass
class Outcome:
    name: str
    where: str
    expected: list[str]
    got: list[str]
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and self.expected == self.got

    def diff(self) -> str:
        lines = [f"{self.where}: test \"{self.name}\" FAILED"]
        lines.extend(f"  {e}" for e in self.errors)
        if self.expected != self.got:
            lines.append("  expected:")
            lines.extend(f"    {e}" for e in self.expected or ["(no events)"])
            lines.append("  got:")
            lines.extend(f"    {g}" for g in self.got or ["(no events)"])
            lines.append("  diff:")
            lines.extend(
                f"    {d}" for d in difflib.unified_diff(self.expected, self.got, "expected",
                                                        "got", lineterm="", n=0)
                if not d.startswith(("---", "+++", "@@"))
            )
        return "\n".join(lines)


def _event_line(at_ms: int, rule: str, key: str, event: str) -> str:
    return f"{format_duration(at_ms):>8} {rule} {key} {event}"


def run_file(path: str) -> list[Outcome]:
    """Run every test of one file; raise ConfigError when the file itself is invalid."""
    doc = yamlsource.load(path)
    if doc.data is None:
        raise ConfigError(doc.problems)
    try:
        spec = TestFile.model_validate(doc.data)
    except ValidationError as exc:
        yamlsource.report_validation(doc, exc, ())
        raise ConfigError(doc.problems) from None
    base = Path(path).parent
    channels = channels_named_in([str(base / rf) for rf in spec.rule_files])
    settings = Settings(
        metrics=spec.metrics,
        groups=spec.groups,
        channels={c: Channel(url="console://") for c in channels},
        series_settings=spec.series_settings,
    )
    named = {split_member(inp.series) for case in spec.tests for inp in case.input_series}
    overrides = per_series_metrics(doc, settings, named, None)
    if spec.stale_after is not None:
        settings = settings.model_copy(
            update={"sampling": settings.sampling.model_copy(
                update={"stale_after": spec.stale_after})}
        )
    metrics = metric_names(settings)
    problems: list[Problem] = list(doc.problems)
    names: dict[str, str] = {}
    rules = []
    for rf in spec.rule_files:
        rules.extend(load_rule_file(str(base / rf), settings, metrics, names, problems))
    known = {r.name for r in rules} | {FEED_STALE}
    for i, case in enumerate(spec.tests):
        for j, e in enumerate(case.expected):
            if e.rule not in known and not problems:  # a typo would only ever "fail"
                doc.problem(("tests", i, "expected", j, "rule"),
                            f'unknown rule "{e.rule}" (the rule files define: '
                            f'{", ".join(sorted(known))})')
    problems.extend(p for p in doc.problems if p not in problems)
    if problems:
        raise ConfigError(problems)
    config = Config(path, settings, tuple(rules), tuple(spec.rule_files), frozenset(metrics),
                    overrides)
    outcomes = []
    for i, case in enumerate(spec.tests):
        where = f"{path}:{doc.line(('tests', i))}"
        outcomes.append(_run_case(config, case, spec, base, where))
    return outcomes


def _run_case(config: Config, case: Case, spec: TestFile, base: Path, where: str) -> Outcome:
    interval = ms(case.interval or spec.evaluation_interval)
    engine = Engine(config)
    errors: list[str] = []
    steps: dict[int, list[Sample]] = {}
    book_series = []
    positions: dict[tuple[str, str], float] = {}
    for inp in case.input_series:
        venue, symbol = split_member(inp.series)
        if not symbol:
            errors.append(f'series "{inp.series}" must be venue:symbol')
            continue
        if inp.position is not None and not inp.books:
            errors.append(f'series "{inp.series}": position goes with books (a series of '
                          "values gives unwind_bps itself)")
        elif inp.position is not None:
            positions[(venue, symbol)] = inp.position
        if inp.books:
            book_series.append((venue, symbol, base / inp.books))
            continue
        columns: dict[str, list[Any]] = {}
        for metric, text in inp.values.items():
            if metric not in config.metrics:
                errors.append(f'series "{inp.series}": unknown metric "{metric}"')
                continue
            try:
                columns[metric] = parse_values(text)
            except ValueError as exc:
                errors.append(f'series "{inp.series}" {metric}: {exc}')
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            errors.append(
                f'series "{inp.series}": metrics have different lengths {sorted(lengths)}')
            continue
        for i in range(max(lengths, default=0)):
            ts = i * interval
            row = {m: v[i] for m, v in columns.items()}
            if any(v is MISSING for v in row.values()):
                sample = Sample(ts, venue, symbol, {}, frozenset({"error"}), "no sample")
            else:
                values: dict[str, float | None] = dict(row)
                if "depth" not in values and "bid_depth" in values and "ask_depth" in values:
                    b, a = values["bid_depth"], values["ask_depth"]
                    values["depth"] = b + a if b is not None and a is not None else None
                sample = Sample(ts, venue, symbol, values, frozenset(), None)
            steps.setdefault(ts, []).append(sample)
    engine.positions = Positions(None, positions)
    for venue, symbol, path in book_series:
        problems: list[Problem] = []
        first: int | None = None
        for obs in read_recording(path, problems):
            first = obs.ts_ms if first is None else first
            ts = obs.ts_ms - first
            obs = type(obs)(venue, symbol, ts, obs.book, obs.flags, obs.latency_ms)
            steps.setdefault(ts, []).append(engine.sample(obs))
        errors.extend(str(p) for p in problems)
    got: list[str] = []
    if not errors:
        for ts in sorted(steps):
            batch = Batch()
            for sample in steps[ts]:
                engine.ingest(sample, batch, ts)
            if engine.group_rules:
                engine.evaluate_groups(ts, batch)
            # Events of one evaluation time compare as a set: listed in a fixed order.
            got.extend(sorted(_event_line(a.ts_ms, a.rule, a.key, a.event)
                              for a in batch.alerts))
    expected = [line for _, line in sorted(
        (ms(e.at), _event_line(ms(e.at), e.rule, e.key, e.event)) for e in case.expected)]
    return Outcome(case.name, where, expected, got, errors)

