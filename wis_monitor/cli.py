"""The ``wis-monitor`` command line (SPEC §9).

Bad input never shows a traceback: configuration problems print as ``PATH:LINE: message`` on
stderr and exit 2; other expected failures become a one-line error and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import click

from wis_monitor import log
from wis_monitor.config import Config, config_path, load_config
from wis_monitor.errors import ConfigError, Problem, StoreError, WisMonitorError

EXIT_INVALID = 2


def _fail_config(exc: ConfigError) -> None:
    for p in exc.problems:
        click.echo(str(p), err=True)
    n = len(exc.problems)
    click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
    sys.exit(EXIT_INVALID)


def _load(path: str | None) -> Config:
    try:
        return load_config(config_path(path))
    except ConfigError as exc:
        _fail_config(exc)
        raise  # unreachable


config_option = click.option(
    "-c", "--config", "config", metavar="PATH",
    help="Main config file (default: $WIS_MONITOR_CONFIG, else /etc/wis-monitor/config.yaml).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]))
@click.version_option(package_name="wis-monitor")
def cli(log_level: str, log_format: str) -> None:
    """Order-book imbalance monitor: WIS, z-scores, YAML rules and alerts."""
    log.setup(log_level, log_format)


@cli.command()
@config_option
def check(config: str | None) -> None:
    """Validate the config and its rules; exit 0 if valid, 2 with PATH:LINE errors if not.

    Example: wis-monitor check -c /etc/wis-monitor/config.yaml
    """
    cfg = _load(config)
    click.echo(
        f"{cfg.path}: OK ({len(cfg.settings.venues)} venue(s), "
        f"{sum(len(v.symbols) for v in cfg.settings.venues)} series, {len(cfg.rules)} rule(s) "
        f"from {len(cfg.rule_files)} file(s), {len(cfg.settings.channels)} channel(s))"
    )


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
            click.echo(f"{_hms(s.ts_ms)} {s.venue:<8} {s.symbol:<10} [{','.join(sorted(s.flags))}]"
                       f" {s.error or ''}")
            return
        click.echo(
            f"{_hms(s.ts_ms)} {s.venue:<8} {s.symbol:<10} mid {_num(v.get('mid'), 10, 2)}"
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


@cli.command()
@config_option
@click.option("--books", "books", multiple=True, metavar="FILE",
              help="Book recording (JSON Lines, .gz ok); repeatable.")
@click.option("--db", "db_in", default=None, metavar="DB", help="Replay books recorded in a DB.")
@click.option("--out", "--db-out", "out", default=None, metavar="DB",
              help="Write samples and alerts here (default: a temporary in-memory DB).")
@click.option("--notify", is_flag=True, help="Actually send the alerts (default: send nothing).")
def replay(config: str | None, books: tuple[str, ...], db_in: str | None, out: str | None,
           notify: bool) -> None:
    """Run the pipeline over recorded books on their own clock, as fast as possible.

    Example: wis-monitor replay -c config.yaml --books btc.jsonl.gz --out replay.db
    """
    from wis_monitor.replay import ReplayReport, replay_observations, observations_from

    if not books and not db_in:
        raise click.UsageError("give --books FILE or --db DB")
    cfg = _load(config) if config else _default_replay_config()
    problems: list[Problem] = []
    try:
        report: ReplayReport = replay_observations(
            cfg, observations_from(books, db_in, problems), out or ":memory:", notify=notify,
            progress=_progress,
        )
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for p in problems[:20]:
        click.echo(f"{p}", err=True)
    if len(problems) > 20:
        click.echo(f"... and {len(problems) - 20} more bad lines", err=True)
    click.echo(report.render())


def _default_replay_config() -> Config:
    return load_config(str(Path(str(resources.files("wis_monitor") / "default" / "replay.yaml"))))


def _progress(items: Any, label: str) -> Iterator[Any]:
    """A progress bar on a terminal; nothing elsewhere."""
    if not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar


def main() -> None:
    try:
        cli(standalone_mode=True)
    except WisMonitorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


__all__ = ["cli", "main", "json"]
