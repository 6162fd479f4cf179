"""``check``, ``run`` and ``demo``: the configuration and the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from wis_monitor.cli.app import EXIT_INVALID, cli, config_option, fail_config, load_config_or_exit
from wis_monitor.config import Config, config_path, load_config
from wis_monitor.errors import ConfigError, Problem, StoreError

if TYPE_CHECKING:
    pass

@cli.command()
@config_option
@click.option("--online", is_flag=True,
              help="Also load each ccxt venue's markets and check its symbols and their types, "
              "and connect to storage.url.")
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
    cfg = load_config_or_exit(config, secrets=strict)
    problems, notes = _check_online(cfg) if online else ([], [])
    recorded, unsure = _recording_problems(cfg)
    problems += recorded
    notes += [*map(str, cfg.notes), *unsure, *_notes(cfg)]
    if problems:
        fail_config(ConfigError(problems), notes)
    for note in notes:
        click.echo(note, err=True)
    click.echo(
        f"{cfg.path}: OK ({len(cfg.settings.venues)} venue(s), "
        f"{sum(len(v.symbols) for v in cfg.settings.venues)} series, {len(cfg.rules)} rule(s) "
        f"from {len(cfg.rule_files)} file(s), {len(cfg.settings.channels)} channel(s))"
    )


def _check_online(cfg: Config) -> tuple[list[Problem], list[str]]:
    """The problems and notes of loading every ccxt venue's markets and of storage.url."""
    from wis_monitor import yamlsource
    from wis_monitor.tools.markets import online_problems

    doc = yamlsource.load(cfg.path, secrets=False)
    problems, notes = online_problems(cfg, doc.line)
    url = cfg.settings.storage.url
    if url:
        from wis_monitor.store.open import probe

        try:
            unread = re.findall(r"\$\{[^}]*\}", url)  # left as written: not readable
            if unread:
                raise StoreError(f"not connected: {', '.join(unread)} could not be read")
            notes.append(f"storage.url: {probe(url)}")
        except StoreError as exc:
            problems.append(Problem(cfg.path, doc.line(("storage", "url")),
                                    f"storage.url: {exc}"))
    return problems, notes


def _recording_problems(cfg: Config) -> tuple[list[Problem], list[str]]:
    """Each replay venue's symbols against its recording: a symbol it does not hold is a
    problem, or a note when only the start of the recording was read."""
    from wis_monitor import yamlsource
    from wis_monitor.errors import WisMonitorError
    from wis_monitor.sources.recordings import SYMBOLS_READ, holding, recorded_symbols

    doc = yamlsource.load(cfg.path, secrets=False)
    problems: list[Problem] = []
    notes: list[str] = []
    for i, venue in enumerate(cfg.settings.venues):
        if venue.exchange != "replay" or not venue.books:
            continue
        try:
            held, partial = recorded_symbols(venue.books)
        except (WisMonitorError, OSError) as exc:
            problems.append(Problem(cfg.path, doc.line(("venues", i, "books")),
                                    f'venue "{venue.id}": cannot replay {venue.books}: '
                                    + str(exc).replace("\n", "; ")))
            continue
        for j, symbol in enumerate(venue.symbols):
            if symbol in held:
                continue
            line = doc.line(("venues", i, "symbols", j))
            if partial:
                notes.append(str(Problem(
                    cfg.path, line, f'note: venue "{venue.id}": "{symbol}" is not in the first '
                    f"{SYMBOLS_READ:,} books of {venue.books} (the rest was not read), which "
                    f"hold: {holding(held)}")))
            else:
                problems.append(Problem(
                    cfg.path, line, f'venue "{venue.id}": "{symbol}" is not in {venue.books}, '
                    f"the recording holds: {holding(held)}"))
    return problems, notes


def _check_json(config: str | None, strict: bool) -> NoReturn:
    """``check --json``: ok, config, problems and notes as {path, line, message}, counts."""
    path = config_path(config)
    try:
        cfg = load_config(path, secrets=strict)
    except ConfigError as exc:
        click.echo(json.dumps({"ok": False, "config": path,
                               "problems": [_located(p) for p in exc.problems],
                               "notes": [_located(_unnoted(n)) for n in exc.notes],
                               "counts": None}, indent=2))
        sys.exit(EXIT_INVALID)
    counts = {"venues": len(cfg.settings.venues),
              "series": sum(len(v.symbols) for v in cfg.settings.venues),
              "rules": len(cfg.rules), "rule_files": len(cfg.rule_files),
              "channels": len(cfg.settings.channels)}
    problems, unsure = _recording_problems(cfg)
    notes = [*(_located(_unnoted(n)) for n in cfg.notes),
             *(_located(_note_problem(n)) for n in [*unsure, *_notes(cfg)])]
    click.echo(json.dumps({"ok": not problems, "config": cfg.path,
                           "problems": [_located(p) for p in problems], "notes": notes,
                           "counts": None if problems else counts}, indent=2))
    sys.exit(EXIT_INVALID if problems else 0)


def _located(p: Problem) -> dict[str, object]:
    return {"path": p.path, "line": p.line, "message": p.message}


def _unnoted(note: Problem) -> Problem:
    """A note without the ``note: `` its message starts with (JSON says it is a note)."""
    return Problem(note.path, note.line, note.message.removeprefix("note: "))


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
    selecting = any(v.select is not None for v in cfg.settings.venues)
    notes = [] if series or selecting else [
        f"{cfg.path}: note: no venues: `run` refuses this config"]
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
@click.option("--instance", metavar="ID", envvar="WIS_INSTANCE_ID",
              help="This instance's name on a shared store (default: instance.id, else the "
                   "host name).")
def run(config: str | None, once: bool, instance: str | None) -> None:
    """Run the monitor until SIGTERM (or one cycle with --once).

    Example: wis-monitor run -c /etc/wis-monitor/config.yaml
    """
    from wis_monitor.daemon import Daemon

    if instance:
        os.environ["WIS_INSTANCE_ID"] = instance
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
