"""The ``wis-monitor`` command line (SPEC §9).

Bad input never shows a traceback: configuration problems print as ``PATH:LINE: message`` on
stderr and exit 2; other expected failures become a one-line error and exit 1. Exit codes
(docs/cli.md): 0 ok, 1 runtime failure, 2 bad input or usage (including a missing database or
file), 3 unhealthy (``run --once``).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from wis_monitor import log
from wis_monitor.cli_markets import list_exchanges, list_markets, new_config
from wis_monitor.config import Config, config_path, load_config
from wis_monitor.errors import ConfigError, Problem, StoreError, WisMonitorError

if TYPE_CHECKING:
    from wis_monitor.signals import Kernel
    from wis_monitor.sources import Observation
    from wis_monitor.sources.recordings import ImportOptions
    from wis_monitor.store import Store
    from wis_monitor.tools.calibrate import CalibrationResult, Threshold
    from wis_monitor.tools.calibrate import Table as CalibrationTable

EXIT_INVALID = 2
T = TypeVar("T")


class MissingInput(click.ClickException):
    """A database, file or name the command was given does not exist: bad input, exit 2."""

    exit_code = 2


def _fail_config(exc: ConfigError) -> NoReturn:
    for p in exc.problems:
        click.echo(str(p), err=True)
    n = len(exc.problems)
    click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
    sys.exit(EXIT_INVALID)


def _load(path: str | None, *, secrets: bool = True) -> Config:
    """The config; ``secrets=False`` for commands that send nothing (no credentials needed)."""
    try:
        return load_config(config_path(path), secrets=secrets)
    except ConfigError as exc:
        _fail_config(exc)


def _existing_db(cfg: Config) -> str:
    """The config's database, which must exist: only the daemon creates it (a tool that
    did would leave a stray database the daemon never reads, e.g. after a wrong -c)."""
    path = cfg.db_path()
    if not Path(path).exists():
        raise MissingInput(
            f"no database at {path} (is storage.path right? has the daemon run yet?)")
    return path


config_option = click.option(
    "-c", "--config", "config", metavar="PATH",
    help="Main config file (default: $WIS_MONITOR_CONFIG, else /etc/wis-monitor/config.yaml).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="text", show_default=True,
              type=click.Choice(["text", "json"]))
@click.version_option(package_name="wis-monitor")
def cli(log_level: str, log_format: str) -> None:
    """Order-book imbalance monitor: WIS, z-scores, YAML rules and alerts."""
    log.setup(log_level, log_format)


@cli.command()
@config_option
@click.option("--online", is_flag=True,
              help="Also load each ccxt venue's markets and check its symbols and their types.")
@click.option("--strict", is_flag=True,
              help="A credential or environment variable that cannot be read is a problem "
              "(default: a note; `run` needs them).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output on stdout (keys: docs/cli.md#check).")
def check(config: str | None, online: bool, strict: bool, as_json: bool) -> None:
    """Validate the config and its rules; exit 0 if valid, 2 with PATH:LINE errors if not.

    Example: wis-monitor check -c /etc/wis-monitor/config.yaml
    """
    if as_json:
        _check_json(config, strict)
    cfg = _load(config, secrets=strict)
    if online:
        _check_online(cfg)
    for note in [*map(str, cfg.notes), *_notes(cfg)]:
        click.echo(note, err=True)
    click.echo(
        f"{cfg.path}: OK ({len(cfg.settings.venues)} venue(s), "
        f"{sum(len(v.symbols) for v in cfg.settings.venues)} series, {len(cfg.rules)} rule(s) "
        f"from {len(cfg.rule_files)} file(s), {len(cfg.settings.channels)} channel(s))"
    )


def _check_online(cfg: Config) -> None:
    from wis_monitor import yamlsource
    from wis_monitor.tools.markets import online_problems

    doc = yamlsource.load(cfg.path, secrets=False)
    problems, notes = online_problems(cfg, doc.line)
    for note in notes:
        click.echo(note, err=True)
    if problems:
        _fail_config(ConfigError(problems))


def _check_json(config: str | None, strict: bool) -> NoReturn:
    """``check --json``: ok, config, problems and notes as {path, line, message}, counts."""
    path = config_path(config)
    try:
        cfg = load_config(path, secrets=strict)
    except ConfigError as exc:
        click.echo(json.dumps({"ok": False, "config": path,
                               "problems": [_located(p) for p in exc.problems], "notes": [],
                               "counts": None}, indent=2))
        sys.exit(EXIT_INVALID)
    counts = {"venues": len(cfg.settings.venues),
              "series": sum(len(v.symbols) for v in cfg.settings.venues),
              "rules": len(cfg.rules), "rule_files": len(cfg.rule_files),
              "channels": len(cfg.settings.channels)}
    notes = [*(_located(Problem(n.path, n.line, n.message.removeprefix("note: ")))
               for n in cfg.notes), *(_located(_note_problem(n)) for n in _notes(cfg))]
    click.echo(json.dumps({"ok": True, "config": cfg.path, "problems": [], "notes": notes,
                           "counts": counts}, indent=2))
    sys.exit(0)


def _located(p: Problem) -> dict[str, object]:
    return {"path": p.path, "line": p.line, "message": p.message}


def _note_problem(note: str) -> Problem:
    """A ``PATH[:LINE]: note: message`` line as its parts."""
    where, _, message = note.partition(": note: ")
    path, _, line = where.rpartition(":")
    if path and line.isdigit():
        return Problem(path, int(line), message)
    return Problem(where, None, message)


def _notes(cfg: Config) -> list[str]:
    """What is valid but probably not meant: alerts sent nowhere, rules that match nothing."""
    series = [(v.id, sym) for v in cfg.settings.venues for sym in v.symbols]
    notes = [] if series else [f"{cfg.path}: note: no venues: `run` refuses this config"]
    for rule in cfg.rules:
        if rule.spec.mode == "shadow":
            notes.append(f'{rule.source}: note: rule "{rule.name}" is in shadow mode: its alerts '
                         "are recorded but sent nowhere"
                         + (f" (its channels {', '.join(rule.spec.channels)} receive nothing "
                            "until `mode: live`)" if rule.spec.channels else ""))
        elif not rule.spec.channels:
            notes.append(f'{rule.source}: note: rule "{rule.name}" has no channels: its alerts '
                         "are recorded but sent nowhere")
        if rule.spec.scope == "series" and series and \
                not any(rule.matches(v, sym) for v, sym in series):
            notes.append(f'{rule.source}: note: rule "{rule.name}" matches no configured venue '
                         f"and symbol (match: {rule.spec.match.venue} {rule.spec.match.symbol})")
    return notes


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="One cycle of every venue, deliver, exit.")
def run(config: str | None, once: bool) -> None:
    """Run the monitor until SIGTERM (or one cycle with --once).

    Example: wis-monitor run -c /etc/wis-monitor/config.yaml
    """
    from wis_monitor.daemon import Daemon

    daemon = Daemon(config_path(config), once=once)
    sys.exit(asyncio.run(daemon.run()))


@cli.command()
@click.option("--duration", default=None, metavar="DURATION",
              help="Stop after this long (e.g. 30s); default: until Ctrl-C.")
@click.option("--config", "-c", "config", default=None, metavar="PATH",
              help="Use this config instead of the embedded demo.")
@click.option("--quiet", is_flag=True, help="Do not print every sample.")
def demo(duration: str | None, config: str | None, quiet: bool) -> None:
    """Run the real daemon on simulated venues, console alerts, SQLite under ./var/.

    Example: wis-monitor demo --duration 30s
    """
    from wis_monitor.daemon import Daemon
    from wis_monitor.duration import parse_duration
    from wis_monitor.engine import Sample

    seconds = None
    if duration:
        try:
            seconds = parse_duration(duration).total_seconds()
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--duration") from None
    path = config or str(_demo_config())
    Path("var").mkdir(exist_ok=True)

    def show(s: Sample) -> None:
        v = s.values
        if not s.good:
            click.echo(f"{_hms(s.ts_ms)} {s.venue:<8} {s.symbol:<13} [{','.join(sorted(s.flags))}]"
                       f" {s.error or ''}")
            return
        click.echo(
            f"{_hms(s.ts_ms)} {s.venue:<8} {s.symbol:<13} mid {_num(v.get('mid'), 10, 2)}"
            f"  spread {_num(v.get('spread_bps'), 5, 2)}bp  wis {_num(v.get('wis'), 6, 3)}"
            f"  z {_num(v.get('wis_z'), 6, 2)}  depth {_num(v.get('depth'), 10, 0)}"
        )

    daemon = Daemon(path, duration_s=seconds, on_sample=None if quiet else show)
    sys.exit(asyncio.run(daemon.run()))


def _demo_config() -> Path:
    return Path(str(resources.files("wis_monitor") / "default" / "demo.yaml"))


def _hms(ts_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts_ms / 1000))


def _num(x: float | None, width: int, digits: int) -> str:
    return f"{x:>{width}.{digits}f}" if x is not None else "-".rjust(width)


def recording_options(command: Callable[..., None]) -> Callable[..., None]:
    """--format, --venue, --symbol and --every, passed to the command as ``reading``."""
    from functools import wraps

    from wis_monitor.sources.recordings import FORMATS, ImportOptions

    @wraps(command)
    def wrapper(*args: object, fmt: str | None, venue: str | None, symbol: str | None,
                every: str | None, **kwargs: object) -> None:
        from wis_monitor.duration import ms, parse_duration

        try:
            every_ms = ms(parse_duration(every)) if every else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
        if every_ms is not None and every_ms <= 0:
            raise click.BadParameter("give a duration above 0s, e.g. 1s", param_hint="--every")
        command(*args, reading=ImportOptions(fmt, venue, symbol, every_ms), **kwargs)

    for option in reversed((
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Format of the --books files (default: by suffix and header)."),
        click.option("--venue", "venue", default=None, metavar="VENUE",
                     help="Venue of every book read from --books (e.g. binance)."),
        click.option("--symbol", "symbol", default=None, metavar="SYMBOL",
                     help="Symbol of every book read from --books (e.g. BTC/USDT)."),
        click.option("--every", "every", default=None, metavar="DURATION",
                     help="Sample books rebuilt from updates on this grid (default 1s)."),
    )):
        wrapper = option(wrapper)
    return wrapper


def expand_books(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """``--books`` arguments with their globs expanded (sorted, each file once); a pattern
    that matches no file is exit 2, every one said. A plain path is kept as given."""
    import glob

    files: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found or (not glob.has_magic(pattern) and not os.path.exists(pattern)):
            unmatched.append(pattern)
            continue
        files.extend(f for f in found if f not in files)
    for pattern in unmatched:
        click.echo(f"{pattern}: " + ("no file matches this --books pattern"
                                     if glob.has_magic(pattern) else "no such file"), err=True)
    if unmatched:
        sys.exit(EXIT_INVALID)
    return tuple(files)


def _recorded(books: tuple[str, ...], db: str | None, problems: list[Problem],
              reading: ImportOptions, label: str) -> Iterator[Observation]:
    """The books to replay or calibrate on; unreadable files are exit 2, every one said."""
    from wis_monitor.sources.recordings import UnreadableRecording, check
    from wis_monitor.sources.recordings_parquet import MissingExtra
    from wis_monitor.tools.replay import observations_from

    books = expand_books(books)
    try:
        check(books, reading)
    except MissingExtra as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    except UnreadableRecording as exc:
        for p in exc.problems:
            click.echo(str(p), err=True)
        sys.exit(EXIT_INVALID)
    return _reading(books, db, observations_from(books, db, problems, reading), label, reading)


@cli.command()
@config_option
@click.option("--books", "books", multiple=True, metavar="GLOB",
              help="Book recordings (a file or a glob): JSON Lines, Parquet, Tardis CSV or "
              "hftbacktest (.gz ok); repeatable.")
@click.option("--db", "db_in", default=None, metavar="DB", help="Replay books recorded in a DB.")
@click.option("--out", "--db-out", "out", default=None, metavar="DB",
              help="Write samples and alerts here (default: a temporary in-memory DB).")
@click.option("--rules", "rule_globs", multiple=True, metavar="GLOB",
              help="Evaluate the rules of these files instead of the config's; repeatable.")
@click.option("--notify", is_flag=True, help="Actually send the alerts (default: send nothing).")
@recording_options
def replay(config: str | None, books: tuple[str, ...], db_in: str | None, out: str | None,
           rule_globs: tuple[str, ...], notify: bool, reading: ImportOptions) -> None:
    """Run the pipeline over recorded books on their own clock, as fast as possible.

    Example: wis-monitor replay -c config.yaml --books btc.jsonl.gz --out replay.db
    """
    from wis_monitor.config import with_rule_files
    from wis_monitor.tools.replay import ReplayReport, replay_observations

    if not books and not db_in:
        raise click.UsageError("give --books FILE or --db DB")
    if db_in and not Path(db_in).exists():
        raise MissingInput(f"no database at {db_in}")
    cfg = _load(config, secrets=notify) if config else _default_replay_config()
    if rule_globs and not config:
        _no_group_rules(rule_globs)
    if rule_globs:
        try:
            cfg = with_rule_files(cfg, rule_globs, stub_channels=not notify)
        except ConfigError as exc:
            _fail_config(exc)
    problems: list[Problem] = []
    try:
        report: ReplayReport = replay_observations(
            cfg, _recorded(books, db_in, problems, reading, "replaying"), out or ":memory:",
            notify=notify)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    _report_bad_lines(problems)
    click.echo(report.render())


def _no_group_rules(rule_globs: tuple[str, ...]) -> None:
    """Exit 2 naming every group rule of these files: without -c there are no groups."""
    import glob

    from wis_monitor.tools.rulecheck import group_rules

    found = group_rules(sorted({f for g in rule_globs for f in glob.glob(g)}))
    if found:
        _fail_config(ConfigError(found))


def _report_bad_lines(problems: list[Problem]) -> None:
    """Every skipped line of the recordings as ``PATH:LINE: reason``, then how many."""
    from wis_monitor.sources.replay import skipped

    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        click.echo(skipped(problems), err=True)


def _default_replay_config() -> Config:
    return load_config(str(Path(str(resources.files("wis_monitor") / "default" / "replay.yaml"))))


def _bars() -> bool:
    """Progress bars go to a terminal only, never into a pipe or a log."""
    return sys.stderr.isatty()


def _progress(items: Iterable[T], label: str, length: int | None = None) -> Iterator[T]:
    """A progress bar on stderr over ``items`` (``length`` of them when known)."""
    with click.progressbar(items, length=length, label=label, file=sys.stderr) as bar:
        yield from bar


def _reading(books: tuple[str, ...], db: str | None, observations: Iterator[Observation],
             label: str, reading: ImportOptions | None = None) -> Iterator[Observation]:
    """``observations`` with a bar on a terminal, its length the books to read."""
    from wis_monitor.tools.replay import count_books

    if not _bars():
        return observations
    return _progress(observations, label, count_books(books, db, options=reading))


@cli.command("check-rules")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check_rules(config: str | None, files: tuple[str, ...]) -> None:
    """Validate rule files on their own: exit 0 if valid, 2 with PATH:LINE errors if not.

    Without -c, group and channel names are not checked and a metric that is not built in is
    assumed to be one a config defines (a note). With -c, they are checked against it.

    Example: wis-monitor check-rules rules/*.yaml
    """
    from wis_monitor.tools.rulecheck import check_rule_files

    cfg = _load(config, secrets=False) if config else None
    found = check_rule_files(files, cfg)
    for note in found.notes:
        click.echo(str(note), err=True)
    if found.problems:
        _fail_config(ConfigError(found.problems))
    for path, rules in found.rules.items():
        click.echo(f"{path}: OK ({len(rules)} rule(s))")


@cli.command("test-rules")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def test_rules(files: tuple[str, ...]) -> None:
    """Run rule unit tests: exit 0 if all pass, 1 if any fails (with a diff), 2 if invalid.

    Example: wis-monitor test-rules rules/tests/*.yaml
    """
    from wis_monitor.tools.ruletest import run_file

    passed = failed = 0
    invalid: list[Problem] = []
    for path in files:
        try:
            outcomes = run_file(path)
        except ConfigError as exc:
            invalid.extend(exc.problems)
            continue
        for outcome in outcomes:
            if outcome.passed:
                passed += 1
            else:
                failed += 1
                click.echo(outcome.diff())
    if invalid:
        _fail_config(ConfigError(invalid))
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def _store(cfg: Config, *, readonly: bool = False) -> Store:
    from wis_monitor.store import SqliteStore

    try:
        return SqliteStore(cfg.db_path(), variants=cfg.column_metrics, readonly=readonly)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config: str | None, as_json: bool) -> None:
    """Per venue/symbol: last good sample age, latest WIS and z, firing alerts, outbox backlog.

    Reads the database only, so it works while the daemon runs.

    Example: wis-monitor status -c /etc/wis-monitor/config.yaml
    """
    from wis_monitor.tools.status import collect, render

    cfg = _load(config, secrets=False)
    _existing_db(cfg)
    store = _store(cfg, readonly=True)
    try:
        report = collect(cfg, store, _now_ms())
    finally:
        store.close()
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))


@cli.command()
@config_option
@click.option("--db", "db", default=None, metavar="DB", help="Database (default: the config's).")
@click.option("--interval", default="1s", show_default=True, metavar="DURATION",
              help="Time between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit (scripts, tests).")
def top(config: str | None, db: str | None, interval: str, once: bool) -> None:
    """A live view of every series, firing alerts, outbox and venue health; q quits.

    Reads the database only (read-only), so it works while the daemon runs.

    Example: wis-monitor top -c /etc/wis-monitor/config.yaml
    """
    from wis_monitor.duration import parse_duration
    from wis_monitor.tools import top as view

    try:
        interval_s = parse_duration(interval).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    if interval_s < 0.1:
        raise click.BadParameter("must be at least 100ms", param_hint="--interval")
    cfg = _load(config, secrets=False) if config or db is None else None
    if db is None and cfg is not None:
        db = _existing_db(cfg)
    elif db is not None and not Path(db).exists():
        raise MissingInput(f"no database at {db}")
    series = [(v.id, s) for v in cfg.settings.venues for s in v.symbols] if cfg else []
    stale = {v.id: cfg.stale_after_ms(v) for v in cfg.settings.venues} if cfg else {}
    store = _store_at(str(db))
    try:
        def read() -> view.View:
            return view.read_view(store, _now_ms(), series, stale)

        if once:
            click.echo("\n".join(view.frame(read())))
        elif sys.stdout.isatty():
            view.live(read, interval_s)
        else:
            with contextlib.suppress(KeyboardInterrupt):
                view.stream(read, interval_s)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _store_at(path: str) -> Store:
    from wis_monitor.store import SqliteStore

    try:
        return SqliteStore(path, readonly=True)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@cli.group()
def silence() -> None:
    """Silence alerts: matching events are recorded as `silenced` deliveries, not sent."""


@silence.command("add")
@config_option
@click.option("--rule", default="*", show_default=True, help="Rule name (glob).")
@click.option("--match", "matchers", multiple=True, metavar="KEY=GLOB",
              help="venue=, symbol=, key=, severity= or a label of the silenced rules; "
              "repeatable (all must match).")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long, e.g. 2h.")
@click.option("--reason", required=True, help="Why (shown in `silence list`).")
@click.option("--by", "by", default=None, help="Who (default: $USER).")
def silence_add(config: str | None, rule: str, matchers: tuple[str, ...], for_: str,
                reason: str, by: str | None) -> None:
    """Add a silence.

    Example: wis-monitor silence add --rule extreme-bid-pressure --match venue=okx --for 2h
    --reason "okx maintenance"
    """
    from wis_monitor.duration import ms, parse_duration

    try:
        duration = ms(parse_duration(for_))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    if duration <= 0:
        raise click.BadParameter("must be longer than 0s", param_hint="--for")
    parsed = _parse_matchers(matchers)
    cfg = _load(config, secrets=False)
    _check_silenced_rule(cfg, rule)
    _check_matcher_keys(cfg, rule, parsed)
    _check_matcher_values(cfg, parsed)
    _existing_db(cfg)
    store = _store(cfg)
    now = _now_ms()
    try:
        sid = store.add_silence(rule, parsed, now, now + duration, reason,
                                by or os.environ.get("USER", ""))
    finally:
        store.close()
    until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime((now + duration) / 1000))
    click.echo(f"silence {sid} added until {until}")


def _parse_matchers(matchers: tuple[str, ...]) -> dict[str, str]:
    """``KEY=GLOB`` matchers; a key given twice could never match both, so it is refused."""
    parsed: dict[str, str] = {}
    for m in matchers:
        key, sep, value = m.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise click.BadParameter(f'"{m}" is not KEY=GLOB', param_hint="--match")
        if key in parsed:
            raise click.BadParameter(
                f'"{key}" given twice: a silence matches all its matchers at once; add one '
                "silence per value, or use a glob", param_hint="--match")
        parsed[key] = value
    return parsed


def _check_matcher_keys(cfg: Config, rule: str, matchers: dict[str, str]) -> None:
    """Keys the silence matcher knows: an alert's venue, symbol, key, severity and the labels
    of the rules silenced; any other key would silently match nothing."""
    import fnmatch

    fields = ["venue", "symbol", "key", "severity"]
    labels = sorted({k for r in cfg.rules if fnmatch.fnmatchcase(r.name, rule)
                     for k in r.spec.labels} - set(fields))
    for key in matchers:
        if key not in fields + labels:
            hint = difflib.get_close_matches(key, fields + labels, n=1)
            raise click.BadParameter(
                f'unknown key "{key}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")
                + f": a silence matches {', '.join(fields)} or a label of the rules "
                f'"{rule}" selects ({", ".join(labels) or "they have none"})',
                param_hint="--match")


def _check_matcher_values(cfg: Config, matchers: dict[str, str]) -> None:
    """A venue or symbol glob that matches none of the config's would silence nothing."""
    import fnmatch

    known = {"venue": sorted({v.id for v in cfg.settings.venues}),
             "symbol": sorted({s for v in cfg.settings.venues for s in v.symbols})}
    for key, names in known.items():
        glob = matchers.get(key)
        if glob is None or not names or any(fnmatch.fnmatchcase(n, glob) for n in names):
            continue
        hint = difflib.get_close_matches(glob, names, n=1)
        raise click.BadParameter(
            f'{key}={glob} matches no configured {key}'
            + (f' (did you mean "{hint[0]}"?)' if hint else "") + f"; {key}s: {', '.join(names)}",
            param_hint="--match")


def _check_silenced_rule(cfg: Config, rule: str) -> None:
    """A rule name that matches nothing would silence nothing: say so."""
    import fnmatch

    from wis_monitor.config import FEED_STALE

    names = [r.name for r in cfg.rules] + [FEED_STALE]
    if any(fnmatch.fnmatchcase(n, rule) for n in names):
        return
    hint = difflib.get_close_matches(rule, names, n=1)
    raise click.BadParameter(
        f'no configured rule matches "{rule}"' + (f' (did you mean "{hint[0]}"?)' if hint else ""),
        param_hint="--rule")


@silence.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Include expired silences (marked).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (keys: docs/cli.md#silence).")
def silence_list(config: str | None, show_all: bool, as_json: bool) -> None:
    """List active silences.

    Example: wis-monitor silence list
    """
    cfg = _load(config, secrets=False)
    _existing_db(cfg)
    store = _store(cfg)
    now = _now_ms()
    try:
        rows = store.query(
            "SELECT * FROM silences" + ("" if show_all else " WHERE expires_ts > ?")
            + " ORDER BY id", [] if show_all else [now])
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([_silence_json(r, now) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no active silences" if not show_all else "no silences")
        return
    for r in rows:
        until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r["expires_ts"] / 1000))
        state = "expired" if r["expires_ts"] <= now else "until"
        click.echo(f"{r['id']:>4}  rule={r['rule']}  {r['matchers']}  {state} {until}  "
                   f"by {r['created_by'] or '?'}: {r['reason']}")


def _silence_json(row: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """One silence for ``silence list --json``: the keys documented in docs/cli.md."""
    def utc(ts: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000))

    return {"id": row["id"], "rule": row["rule"], "matchers": json.loads(row["matchers"]),
            "created": utc(row["created_ts"]), "expires": utc(row["expires_ts"]),
            "expired": row["expires_ts"] <= now_ms, "by": row["created_by"] or None,
            "reason": row["reason"]}


@silence.command("expire")
@config_option
@click.argument("silence_id", type=int)
def silence_expire(config: str | None, silence_id: int) -> None:
    """Expire a silence now.

    Example: wis-monitor silence expire 3
    """
    cfg = _load(config, secrets=False)
    _existing_db(cfg)
    store = _store(cfg)
    try:
        ok = store.expire_silence(silence_id, _now_ms())
    finally:
        store.close()
    if not ok:
        raise MissingInput(f"no active silence {silence_id}")
    click.echo(f"silence {silence_id} expired")


@cli.command("notify-test")
@config_option
@click.argument("channel")
def notify_test(config: str | None, channel: str) -> None:
    """Send a test message to a channel and report the outcome.

    Example: wis-monitor notify-test risk-slack
    """
    from wis_monitor.channel import send_test

    cfg = _load(config)
    if channel not in cfg.settings.channels:
        known = ", ".join(sorted(cfg.settings.channels)) or "none configured"
        raise MissingInput(f'unknown channel "{channel}" (channels: {known})')
    ok, detail = asyncio.run(send_test(
        channel, cfg.settings.channels[channel].url,
        cfg.settings.channels[channel].timeout.total_seconds()))
    click.echo(f"{channel}: {'sent' if ok else 'FAILED'}{': ' + detail if detail else ''}")
    sys.exit(0 if ok else 1)


@cli.command("export-books")
@click.option("--db", "db", required=True, metavar="DB", help="Database with recorded books.")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Recording to write (.jsonl, .jsonl.gz to compress, or .parquet).")
@click.option("--venue", default=None, help="Only this venue.")
@click.option("--symbol", default=None, help="Only this symbol.")
def export_books(db: str, output: str, venue: str | None, symbol: str | None) -> None:
    """Write books recorded with storage.record_books in the book-recording format.

    Example: wis-monitor export-books --db /var/lib/wis-monitor/wis.db -o books.jsonl.gz
    """
    from wis_monitor.tools.replay import export_books as export

    if not Path(db).exists():
        raise MissingInput(f"no database at {db}")
    _parquet_output(output)
    _check_recorded_books(db, venue, symbol)
    try:
        n = export(db, output, venue=venue, symbol=symbol,
                   progress=_progress if _bars() else None)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {n} books to {output}")


def _check_recorded_books(db: str, venue: str | None, symbol: str | None) -> None:
    """Exit 2 (writing nothing) when the database holds no books to export, saying why."""
    from wis_monitor.tools.replay import count_books

    n = count_books((), db, venue, symbol)
    if n is None or n:  # None: unreadable, which the export itself reports
        return
    if (venue is None and symbol is None) or not count_books((), db):
        raise MissingInput(f"{db} holds no recorded books: the daemon records them only with "
                           "storage.record_books on")
    store = _store_at(db)
    try:
        have = ", ".join(f"{r['venue']} {r['symbol']}" for r in store.query(
            "SELECT DISTINCT venue, symbol FROM books ORDER BY venue, symbol"))
    finally:
        store.close()
    what = " ".join(f"--{k} {x}" for k, x in (("venue", venue), ("symbol", symbol)) if x)
    raise MissingInput(f"{db} holds no recorded books of {what}; it has: {have}")


def _parquet_output(output: str) -> None:
    """A Parquet output needs the analysis extra: exit 2 with the hint when it is missing."""
    from wis_monitor.sources.recordings_parquet import MissingExtra, pyarrow

    if output.endswith(".parquet"):
        try:
            pyarrow()
        except MissingExtra as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)


@cli.command("convert-books")
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Recording to write (.jsonl, .jsonl.gz to compress, or .parquet).")
@recording_options
def convert_books(files: tuple[str, ...], output: str, reading: ImportOptions) -> None:
    """Convert recordings of any format read by replay (merged by time) into one recording.

    Example: wis-monitor convert-books book_snapshot_25.csv.gz --symbol BTC/USDT -o btc.parquet
    """
    from wis_monitor.tools.replay import write_recording

    _parquet_output(output)
    problems: list[Problem] = []
    try:
        n = write_recording(_recorded(files, None, problems, reading, "converting"), output)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    _report_bad_lines(problems)
    click.echo(f"wrote {n} books to {output}")


@cli.command()
@config_option
@click.option("--books", "books", multiple=True, metavar="GLOB",
              help="Book recordings (a file or a glob); repeatable.")
@click.option("--db", "db_in", default=None, metavar="DB", help="Books recorded in a DB.")
@click.option("--horizon", default="1s,5s,10s", show_default=True, metavar="LIST",
              help="Comma-separated horizons of the mid move to predict; the recommendation "
              "is made at the longest.")
@click.option("--kernels", default="exponential,linear,flat,levels", show_default=True,
              metavar="LIST", help="Comma-separated kernel families to score.")
@click.option("--band", default=50.0, show_default=True, help="Band of every kernel (bps).")
@click.option("--seed", default=12, show_default=True, help="Seed of the bootstrap.")
@click.option("--replicates", default=500, show_default=True,
              type=click.IntRange(min=50, max=100_000), help="Bootstrap replicates.")
@click.option("--pooled", is_flag=True, help="Also score all series together.")
@click.option("--target", default=None, metavar="VENUE:SYMBOL",
              help="Score every series against this series' future moves (cross-venue).")
@click.option("--write", "write", default=None, metavar="FILE",
              help="Write the recommended per-series settings (a series_settings file).")
@click.option("--alert-rate", "alert_rate", default=None, metavar="N/PERIOD",
              help="Instead of scoring kernels: the thresholds of --metric that fire at this "
              "rate on the recording, e.g. 2/h.")
@click.option("--metric", default="wis_z", show_default=True,
              help="The metric of --alert-rate (any metric the replay pipeline computes).")
@click.option("--for", "for_", default="0s", show_default=True, metavar="DURATION",
              help="With --alert-rate: an episode must hold this long (a rule's `for`).")
@recording_options
def calibrate(config: str | None, books: tuple[str, ...], db_in: str | None, horizon: str,
              kernels: str, band: float, seed: int, replicates: int, pooled: bool,
              target: str | None, write: str | None, alert_rate: str | None, metric: str,
              for_: str, reading: ImportOptions) -> None:
    """Score WIS kernels as predictors of the mid move, with intervals, effective N and
    baselines; recommend per series only what beats the current setting.

    Example: wis-monitor calibrate --books btc.jsonl.gz --horizon 1s,10s --write tuned.yaml
    """
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.signals import KERNELS
    from wis_monitor.tools.calibrate import calibrate as run_calibration
    from wis_monitor.tools.calibrate import default_grid

    if not books and not db_in:
        raise click.UsageError("give --books FILE or --db DB")
    if db_in and not Path(db_in).exists():
        raise MissingInput(f"no database at {db_in}")
    cfg = _load(config, secrets=False) if config else None
    problems: list[Problem] = []
    observations = _recorded(books, db_in, problems, reading, "reading books")
    if alert_rate is not None:
        if target or write or pooled:
            raise click.UsageError("--alert-rate does not go with --target, --write, --pooled")
        _alert_rates(cfg or _default_replay_config(), observations, alert_rate, metric, for_)
        _report_bad_lines(problems)
        return
    try:
        horizons = [ms(parse_duration(h)) for h in horizon.split(",") if h.strip()]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--horizon") from None
    if not horizons or min(horizons) <= 0:
        raise click.BadParameter("give horizons longer than 0s, e.g. 1s,5s",
                                 param_hint="--horizon")
    families = [k.strip() for k in kernels.split(",") if k.strip()]
    unknown = sorted(set(families) - set(KERNELS))
    if unknown or not families:
        raise click.BadParameter(f"unknown kernel {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(KERNELS)}", param_hint="--kernels")
    if target is not None and ":" not in target:
        raise click.BadParameter(f'"{target}" is not VENUE:SYMBOL', param_hint="--target")
    if target and write:
        raise click.UsageError("--write recommends per series from their own moves: "
                               "not with --target")
    grid = [(label, k) for label, k in default_grid(band) if k.kernel in families]
    try:
        result = run_calibration(observations, horizons, grid, band_bps=band,
                                 current=_current_kernels(cfg), replicates=replicates,
                                 seed=seed, pooled=pooled, target=target,
                                 progress=_progress if _bars() else None)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except LookupError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--target") from None
    _report_bad_lines(problems)
    click.echo(_calibration_report(result))
    if write:
        _write_settings(write, result, books, db_in)


def _current_kernels(cfg: Config | None) -> Callable[[str, str], Kernel]:
    """A series' configured kernel: the config's settings for it, else the built-in one."""
    from wis_monitor.signals import Kernel

    if cfg is None:
        return lambda venue, symbol: Kernel()
    default = cfg.settings.metrics.wis.to_kernel()
    per_series = getattr(cfg, "metrics_for", None)  # per-series settings, where supported
    configured = {(v.id, str(getattr(sym, "symbol", sym))) for v in cfg.settings.venues
                  for sym in v.symbols}

    def current(venue: str, symbol: str) -> Kernel:
        if per_series is None or (venue, symbol) not in configured:
            return default
        kernel: Kernel = per_series(venue, symbol).wis.to_kernel()
        return kernel

    return current


def _calibration_report(result: CalibrationResult) -> str:
    from wis_monitor.tools.calibrate import REACH_TOLERANCE, describe

    lines = [f"{result.books} books, {len(result.coverage)} series; 95% intervals from a "
             f"moving-block bootstrap ({result.replicates} replicates, seed {result.seed}, "
             "blocks as long as the horizon); n_eff = n × min(1, interval / horizon)", ""]
    for name, cov in result.coverage.items():
        if cov.warn:
            lines.append(
                f"WARNING: {name}: {cov.short_share:.0%} of books reach less than "
                f"{cov.band_bps * REACH_TOLERANCE:g} bps on one side (median reach "
                f"{cov.median_reach_bps:.1f} bps): WIS over the band leans to the deeper side")
    for table in result.tables:
        lines += ["", table.name + (f"  (current: {describe(table.current)})"
                                    if table.current is not None else "")]
        for h in result.horizons_ms:
            lines += _horizon_rows(table, h)
    if result.target is None:
        h = max(result.horizons_ms)
        lines += ["", f"recommendations at {h / 1000:g}s (a kernel only where the paired "
                  "bootstrap of its AUC difference with the current setting and with the "
                  "touch imbalance stays above 0):"]
        for r in result.recommendations(h):
            what = (f"use {describe(r.kernel)}" if r.kernel is not None
                    else "keep the current setting")
            lines.append(f"  {r.venue}:{r.symbol}: {what} ({r.reason})")
    return "\n".join(lines) + "\n"


def _horizon_rows(table: CalibrationTable, h: int) -> list[str]:
    from wis_monitor.tools.calibrate import BASELINES

    scores = sorted(table.at(h), key=lambda s: -(s.auc if s.auc is not None else -1.0))
    best = table.best(h)
    rows = [f"  horizon {h / 1000:g}s",
            f"    {'predictor':<24} {'n':>6} {'n_eff':>7} {'AUC':>6} {'95% interval':>15} "
            f"{'IC':>7} {'95% interval':>16}"]
    for s in scores:
        label = s.label + (" (baseline)" if s.label in BASELINES else "")
        mark = ("  <- best" if s is best else "") + (
            "  <- current" if s.kernel is not None and s.kernel == table.current else "")
        rows.append(f"    {label:<24} {s.n:>6} {s.n_eff:>7.1f} {_f3(s.auc):>6} "
                    f"{_ci(s.auc_ci):>15} {_f3(s.ic):>7} {_ci(s.ic_ci):>16}{mark}")
    return rows


def _f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _write_settings(path: str, result: CalibrationResult, books: tuple[str, ...],
                    db: str | None) -> None:
    from datetime import UTC, datetime

    from wis_monitor.tools.calibrate import series_settings_yaml

    h = max(result.horizons_ms)
    recs = result.recommendations(h)
    header = [
        f"made by: wis-monitor {' '.join(sys.argv[1:])}",
        f"made at: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        f"recordings: {', '.join([*books, *([db] if db else [])])}",
        f"horizon: {h / 1000:g}s; data: {result.span()}",
        f"intervals: 95% moving-block bootstrap, {result.replicates} replicates, seed "
        f"{result.seed}; a series is listed only where the lower bound of the paired AUC "
        "difference with its current kernel and with the touch imbalance is above 0",
    ]
    for r in recs:
        header.append(f"{r.venue}:{r.symbol}: " + (r.reason if r.kernel is not None
                                                   else f"kept: {r.reason}"))
    try:
        Path(path).write_text(series_settings_yaml(recs, header))
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    chosen = sum(r.kernel is not None for r in recs)
    click.echo(f"wrote {path}: {chosen} of {len(recs)} series with a recommendation")


def _alert_rates(cfg: Config, observations: Iterable[Observation], rate: str, metric: str,
                 for_: str) -> None:
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.tools.calibrate import iter_thresholds, metric_series

    per_h = _rate_per_hour(rate)
    try:
        for_ms = ms(parse_duration(for_))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    try:
        series, names = metric_series(cfg, observations, metric)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if metric not in names:
        raise click.BadParameter(f'the pipeline computes no "{metric}"; it computes '
                                 f"{', '.join(sorted(names)) or 'nothing (no good books)'}",
                                 param_hint="--metric")
    click.echo(f"thresholds of {metric} that fire {per_h:g}/h on the recording (episodes: a "
               f"crossing held {for_}, not samples; the replay pipeline's values)")
    click.echo(f"  {'series':<28} {'hours':>6}  {'above':<34} {'below':<34} either sign")
    short = False
    for s, (up, down, both) in iter_thresholds(series, per_h, for_ms):
        cells = [_threshold(metric, t) for t in (up, down, both)]
        click.echo(f"  {s.venue + ':' + s.symbol:<28} {s.hours:>6.2f}  "
                   + " ".join(f"{c:<34}" for c in cells).rstrip())
        short = short or per_h * s.hours < 1
    if short:
        click.echo(f"note: a recording shorter than {60 / per_h:g} min cannot show {per_h:g}/h: "
                   "at least one episode is counted, so the rates above are higher; record "
                   "longer to calibrate rare alerts")


def _threshold(metric: str, t: Threshold) -> str:
    if t.threshold is None:
        return "never"
    op = {"above": f"{metric} >= ", "below": f"{metric} <= ", "abs": f"|{metric}| >= "}[t.side]
    return f"{op}{t.threshold:g} ({t.episodes}, {t.rate_per_h:.1f}/h)"


def _rate_per_hour(text: str) -> float:
    """``N/PERIOD`` (``2/h``, ``10/d``, ``1/30m``) as alerts per hour."""
    from wis_monitor.duration import ms, parse_duration

    count, sep, period = text.partition("/")
    try:
        n = float(count)
        per = ms(parse_duration(period if period[:1].isdigit() else "1" + period))
    except ValueError:
        n, per = -1.0, 0
    if not sep or not n > 0 or per <= 0 or not math.isfinite(n):
        raise click.BadParameter(f'"{text}" is not a rate like 2/h, 10/d or 1/30m',
                                 param_hint="--alert-rate")
    return n * 3_600_000 / per


@cli.command()
@config_option
@click.option("--db", "db", default=None, metavar="DB", help="Database (default: the config's).")
@click.option("--since", default="1h", show_default=True, metavar="DURATION",
              help="Start this long before the end.")
@click.option("--until", "until", default=None, metavar="DURATION",
              help="End this long ago (default: now, or the newest sample if older).")
@click.option("--from", "start", default=None, metavar="TIME",
              help="Start at this UTC time (2024-08-08T23:54:00Z, or a date: its start).")
@click.option("--to", "end", default=None, metavar="TIME",
              help="End at this UTC time (or a date: its end).")
@click.option("--venue", default=None, metavar="VENUE", help="Only this venue's series.")
@click.option("--symbol", default=None, metavar="SYMBOL",
              help="Only this symbol's series (ccxt form, e.g. BTC/USDT).")
@click.option("--threshold", "thresholds", multiple=True, type=float, metavar="Z",
              help="Draw z-score lines at +Z and -Z; repeatable (default: the levels of the "
              "rules that fired in the period, else those the rules compare wis_z with, else 3).")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="The chart; its suffix chooses the format: .png, .svg or .pdf.")
def report(config: str | None, db: str | None, since: str, until: str | None,
           start: str | None, end: str | None, venue: str | None, symbol: str | None,
           thresholds: tuple[float, ...], output: str) -> None:
    """Chart mid, WIS, z-score and alert markers over a period (PNG, SVG or PDF).

    Example: wis-monitor report -c config.yaml --since 1h --venue binance -o report.png
    """
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.store import SqliteStore
    from wis_monitor.tools.chart import FORMATS, render_report, series_names

    try:
        since_ms = ms(parse_duration(since))
        until_ago = ms(parse_duration(until)) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if since_ms <= 0:
        raise click.BadParameter("must be longer than 0s", param_hint="--since")
    fmt = Path(output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise click.BadParameter(f'"{output}": the suffix must be one of '
                                 f"{', '.join('.' + f for f in FORMATS)}", param_hint="-o")
    from_ms, to_ms = _utc_ms(start, "--from"), _utc_ms(end, "--to", end_of_day=True)
    cfg = _load(config, secrets=False) if config or not db else None
    if db is None and cfg is not None:
        path = _existing_db(cfg)
    elif db is not None and Path(db).exists():
        path = db
    else:
        raise MissingInput(f"no database at {db}")
    fallback = (_rule_thresholds(cfg) if cfg else ()) or (3.0, -3.0)
    try:
        store = SqliteStore(path, readonly=True)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _check_series(series_names(store), venue, symbol)
        from_ms, to_ms = _window(store, since_ms, until_ago, from_ms, to_ms)
        chart = render_report(store, from_ms, to_ms, venue, symbol, _both_signs(thresholds),
                              fallback, fmt)
    finally:
        store.close()
    Path(output).write_bytes(chart.data)
    click.echo(f"wrote {output}: {_utc(from_ms)} to {_utc(to_ms)} UTC, z lines at "
               f"{', '.join(f'{z:+g}' for z in chart.thresholds)} ({len(chart.data):,} bytes)")


def _check_series(names: list[tuple[str, str]], venue: str | None, symbol: str | None) -> None:
    """Exit 2 when --venue/--symbol select no series of the database, naming those it has."""
    if any((venue is None or v == venue) and (symbol is None or s == symbol) for v, s in names):
        return
    if not names:
        raise click.UsageError("the database has no samples")
    what = " ".join(f"--{k} {x}" for k, x in (("venue", venue), ("symbol", symbol)) if x)
    have = ", ".join(f"{v} {s}" for v, s in names)
    raise click.UsageError(f"no series matches {what}; the database has: {have}")


def _window(store: Store, since_ms: int, until_ago: int | None, from_ms: int | None,
            to_ms: int | None) -> tuple[int, int]:
    """The period to chart: ``--from``/``--to`` where given; else it ends now (or
    ``--until`` ago), or at the newest sample of a database older than the window (a replay
    of old books), and starts ``--since`` before, or at the first sample if that is later."""
    if to_ms is None:
        now = _now_ms()
        newest = store.query("SELECT max(ts) AS ts FROM samples")[0]["ts"]
        if until_ago is not None:
            to_ms = now - until_ago
        elif newest is not None and newest < now - since_ms:
            to_ms = int(newest)
        else:
            to_ms = now
    if from_ms is None:
        from_ms = to_ms - since_ms
        first = store.query("SELECT min(ts) AS ts FROM samples WHERE ts >= ? AND ts < ?",
                            [from_ms, to_ms])[0]["ts"]
        from_ms = int(first) if first is not None else from_ms
    if from_ms >= to_ms:
        raise click.BadParameter("the start must be before the end", param_hint="--from")
    return from_ms, to_ms


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000))


def _both_signs(levels: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(sorted({s * abs(z) for z in levels for s in (1.0, -1.0)}, reverse=True))


def _rule_thresholds(cfg: Config) -> tuple[float, ...]:
    """The z-score levels the rules compare ``wis_z`` with."""
    return tuple(sorted({z for r in cfg.rules for z in r.z_levels()}, reverse=True))


def _utc_ms(text: str | None, option: str, *, end_of_day: bool = False) -> int | None:
    """Milliseconds of an ISO-8601 time (UTC unless it says otherwise), or None; a date
    alone is its start, or with ``end_of_day`` its end (the next day's start)."""
    if text is None:
        return None
    from datetime import UTC, date, datetime, timedelta

    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    try:
        when = (datetime(day.year, day.month, day.day) + timedelta(days=end_of_day) if day
                else datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise click.BadParameter(f'"{text}" is not a time like 2024-08-08T23:54:00Z',
                                 param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


for _command in (list_exchanges, list_markets, new_config):
    cli.add_command(_command)


GLOBAL_OPTIONS = ("--log-level", "--log-format")


def hoist_global_options(args: list[str]) -> list[str]:
    """The arguments with the group's options moved before the subcommand, so that
    ``wis-monitor run --log-format json`` works like ``wis-monitor --log-format json run``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        name = a.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            take = 1 if "=" in a or i + 1 == len(args) else 2
            front.extend(args[i:i + take])
            i += take
            continue
        rest.append(a)
        i += 1
    return front + rest


def main() -> None:
    try:
        cli(args=hoist_global_options(sys.argv[1:]), standalone_mode=True)
    except WisMonitorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

