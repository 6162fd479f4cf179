"""``replay``, ``export-books`` and ``convert-books``: recorded books."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wis_monitor.cli.app import (
    EXIT_INVALID,
    MissingInput,
    T,
    cli,
    config_option,
    fail_config,
    load_config_or_exit,
    output_path,
    refuse,
    store_at,
)
from wis_monitor.config import Config, load_config
from wis_monitor.errors import ConfigError, Problem, StoreError

if TYPE_CHECKING:
    from wis_monitor.sources import Observation
    from wis_monitor.sources.recordings import ImportOptions

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


def recorded(books: tuple[str, ...], db: str | None, problems: list[Problem],
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
@click.option("--positions", "positions", default=None, metavar="FILE",
              help="The desk's positions (YAML or CSV) instead of the config's, for unwind_bps.")
@recording_options
def replay(config: str | None, books: tuple[str, ...], db_in: str | None, out: str | None,
           rule_globs: tuple[str, ...], notify: bool, positions: str | None,
           reading: ImportOptions) -> None:
    """Run the pipeline over recorded books on their own clock, as fast as possible.

    Example: wis-monitor replay -c config.yaml --books btc.jsonl.gz --out replay.db
    """
    from wis_monitor.config import with_rule_files
    from wis_monitor.tools.replay import ReplayReport, replay_observations

    if not books and not db_in:
        raise click.UsageError("give --books FILE or --db DB")
    if db_in and not Path(db_in).exists():
        raise MissingInput(f"no database at {db_in}")
    cfg = load_config_or_exit(config, secrets=notify) if config else default_replay_config()
    if rule_globs and not config:
        _no_group_rules(rule_globs)
    if rule_globs:
        try:
            cfg = with_rule_files(cfg, rule_globs, stub_channels=not notify)
        except ConfigError as exc:
            fail_config(exc)
    if positions:
        cfg = _with_positions(cfg, positions, checked=config is not None)
    if out:
        output_path(out)
    problems: list[Problem] = []
    try:
        report: ReplayReport = replay_observations(
            cfg, recorded(books, db_in, problems, reading, "replaying"), out or ":memory:",
            notify=notify)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    report_bad_lines(problems)
    click.echo(report.render())


def _with_positions(cfg: Config, path: str, *, checked: bool) -> Config:
    """``cfg`` with the positions of ``path``; ``checked``: only on the config's series
    (without a config, a position may name any series of the recordings)."""
    import dataclasses

    from wis_monitor.positions import load_positions

    series = {(v.id, s) for v in cfg.settings.venues for s in v.symbols} if checked else None
    try:
        return dataclasses.replace(cfg, positions=load_positions(path, series))
    except ConfigError as exc:
        fail_config(exc)


def _no_group_rules(rule_globs: tuple[str, ...]) -> None:
    """Exit 2 naming every group rule of these files: without -c there are no groups."""
    import glob

    from wis_monitor.tools.rulecheck import group_rules

    found = group_rules(sorted({f for g in rule_globs for f in glob.glob(g)}))
    if found:
        fail_config(ConfigError(found))


def report_bad_lines(problems: list[Problem]) -> None:
    """Every skipped line of the recordings as ``PATH:LINE: reason``, then how many."""
    from wis_monitor.sources.replay import skipped

    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        click.echo(skipped(problems), err=True)


def default_replay_config() -> Config:
    return load_config(str(Path(str(resources.files("wis_monitor") / "default" / "replay.yaml"))))


def progress_bars() -> bool:
    """Progress bars go to a terminal only, never into a pipe or a log."""
    return sys.stderr.isatty()


def progress(items: Iterable[T], label: str, length: int | None = None) -> Iterator[T]:
    """A progress bar on stderr over ``items`` (``length`` of them when known)."""
    with click.progressbar(items, length=length, label=label, file=sys.stderr) as bar:
        yield from bar


def _reading(books: tuple[str, ...], db: str | None, observations: Iterator[Observation],
             label: str, reading: ImportOptions | None = None) -> Iterator[Observation]:
    """``observations`` with a bar on a terminal, its length the books to read."""
    from wis_monitor.tools.replay import count_books

    if not progress_bars():
        return observations
    return progress(observations, label, count_books(books, db, options=reading))


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
    _check_recorded_books(db, venue, symbol)
    _recording_output(output)
    try:
        n = export(db, output, venue=venue, symbol=symbol,
                   progress=progress if progress_bars() else None)
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
    store = store_at(db)
    try:
        have = ", ".join(f"{v} {s}" for v, s in store.book_series())
    finally:
        store.close()
    what = " ".join(f"--{k} {x}" for k, x in (("venue", venue), ("symbol", symbol)) if x)
    raise MissingInput(f"{db} holds no recorded books of {what}; it has: {have}")


#: The suffixes of the recordings export-books and convert-books write.
RECORDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def _recording_output(output: str) -> None:
    """The format of an output recording is its suffix: another suffix is exit 2, and so is a
    Parquet output without the analysis extra (with the hint)."""
    from wis_monitor.sources.recordings_parquet import MissingExtra, pyarrow

    if not output.endswith(RECORDING_SUFFIXES):
        refuse(output, f"the suffix must be one of {', '.join(RECORDING_SUFFIXES)}")
    if output.endswith(".parquet"):
        try:
            pyarrow()
        except MissingExtra as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    output_path(output)


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

    _recording_output(output)
    problems: list[Problem] = []
    try:
        n = write_recording(recorded(files, None, problems, reading, "converting"), output)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    report_bad_lines(problems)
    click.echo(f"wrote {n} books to {output}")
