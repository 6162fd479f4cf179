"""The ``wis-monitor`` command group and what its commands share: loading the config,
exit codes, opening the database."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from wis_monitor import log
from wis_monitor.clock import SYSTEM
from wis_monitor.config import Config, config_path, load_config
from wis_monitor.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from wis_monitor.store import Store

EXIT_INVALID = 2
T = TypeVar("T")


class MissingInput(click.ClickException):
    """A database, file or name the command was given does not exist: bad input, exit 2."""

    exit_code = 2


def refuse(path: str, what: str) -> NoReturn:
    """Bad input about one file: ``PATH: what is wrong`` on stderr, exit 2."""
    click.echo(f"{path}: {what}", err=True)
    sys.exit(EXIT_INVALID)


def output_path(path: str) -> Path:
    """A file a command is to write, its missing directories made; a directory is no output."""
    p = Path(path)
    if p.is_dir():
        refuse(path, "is a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        refuse(path, f"cannot make its directory: {exc.strerror or exc}")
    return p


def expand_globs(patterns: Sequence[str]) -> tuple[str, ...]:
    """File arguments with their globs expanded (sorted, each file once), so that a quoted
    glob works as the shell's would; one that matches no file is exit 2, every one named."""
    import glob

    files: list[str] = []
    unmatched = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            unmatched.append(pattern)
        files.extend(f for f in found if f not in files)
    for pattern in unmatched:
        click.echo(f"{pattern}: no file matches this pattern", err=True)
    if unmatched:
        sys.exit(EXIT_INVALID)
    return tuple(files)


def fail_config(exc: ConfigError, notes: Sequence[str] = ()) -> NoReturn:
    """The problems, then the notes (the error's and ``notes``), then their count; exit 2."""
    for line in (*map(str, exc.problems), *map(str, exc.notes), *notes):
        click.echo(line, err=True)
    n = len(exc.problems)
    click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
    sys.exit(EXIT_INVALID)


def load_config_or_exit(path: str | None, *, secrets: bool = True) -> Config:
    """The config; ``secrets=False`` for commands that send nothing (no credentials needed)."""
    try:
        return load_config(config_path(path), secrets=secrets)
    except ConfigError as exc:
        fail_config(exc)


def existing_db(cfg: Config) -> str:
    """The config's database, which must exist: only the daemon creates it (a tool that
    did would leave a stray database the daemon never reads, e.g. after a wrong -c). A
    PostgreSQL URL is returned as it is (opening it says whether the daemon has run)."""
    from wis_monitor.store.open import is_url

    location = cfg.store_location()
    if not is_url(location) and not Path(location).exists():
        raise MissingInput(
            f"no database at {location} (is storage.path right? has the daemon run yet?)")
    return location


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


def store_at(location: str, *, variants: Sequence[str] = (), readonly: bool = True) -> Store:
    """The store at a SQLite path or a PostgreSQL URL (read-only unless asked)."""
    from wis_monitor.store.open import open_store as opener

    try:
        return opener(location, variants=variants, readonly=readonly)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def now_ms() -> int:
    return SYSTEM.now_ms()
