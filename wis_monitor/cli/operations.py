"""``status``, ``top``, ``silence`` and ``notify-test``: the operator's commands."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wis_monitor.cli.app import (
    MissingInput,
    cli,
    config_option,
    existing_db,
    fail_config,
    load_config_or_exit,
    now_ms,
    store_at,
)
from wis_monitor.config import Config
from wis_monitor.errors import ConfigError, Problem, StoreError

if TYPE_CHECKING:
    from wis_monitor.store import Silence, Store

db_option = click.option("--db", "db", default=None, metavar="DB",
                         help="Database (default: the config's).")


def _config(config: str | None, db: str | None) -> Config | None:
    """The config, none when only --db is given."""
    return load_config_or_exit(config, secrets=False) if config or db is None else None


def _database(cfg: Config | None, db: str | None) -> str:
    """The database: --db, else the config's; it must exist."""
    if db is None and cfg is not None:
        return existing_db(cfg)
    if db is None or not Path(db).exists():
        raise MissingInput(f"no database at {db}")
    return db


def _store(cfg: Config | None, db: str, *, readonly: bool) -> Store:
    return store_at(db, variants=cfg.column_metrics if cfg else (), readonly=readonly)


@cli.command()
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config: str | None, db: str | None, as_json: bool) -> None:
    """Per venue/symbol: last good sample age, latest WIS and z, firing alerts, outbox backlog.

    Reads the database only, so it works while the daemon runs.

    Example: wis-monitor status -c /etc/wis-monitor/config.yaml
    """
    from wis_monitor.cli.recordings import default_replay_config
    from wis_monitor.tools.status import collect, render

    cfg = _config(config, db)
    db = _database(cfg, db)
    store = _store(cfg, db, readonly=True)
    try:
        report = collect(cfg or default_replay_config(), store, now_ms())
    finally:
        store.close()
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))


@cli.command()
@config_option
@db_option
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
    cfg = _config(config, db)
    db = _database(cfg, db)
    series = [(v.id, s) for v in cfg.settings.venues for s in v.symbols] if cfg else []
    stale = {v.id: cfg.stale_after_ms(v) for v in cfg.settings.venues} if cfg else {}
    store = store_at(db)
    try:
        def read() -> view.View:
            return view.read_view(store, now_ms(), series, stale)

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


@cli.group()
def silence() -> None:
    """Silence alerts: matching events are recorded as `silenced` deliveries, not sent."""


@silence.command("add")
@config_option
@db_option
@click.option("--rule", default="*", show_default=True, help="Rule name (glob).")
@click.option("--match", "matchers", multiple=True, metavar="KEY=GLOB",
              help="venue=, symbol=, key=, severity= or a label of the silenced rules; "
              "repeatable (all must match).")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long, e.g. 2h.")
@click.option("--reason", required=True, help="Why (shown in `silence list`).")
@click.option("--by", "by", default=None, help="Who (default: $USER).")
def silence_add(config: str | None, db: str | None, rule: str, matchers: tuple[str, ...],
                for_: str, reason: str, by: str | None) -> None:
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
    cfg = _config(config, db)
    if cfg is not None:
        _check_silenced_rule(cfg, rule)
        _check_matcher_keys(cfg, rule, parsed)
        _check_matcher_values(cfg, parsed)
    db = _database(cfg, db)
    store = _store(cfg, db, readonly=False)
    now = now_ms()
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

    from wis_monitor.rulefile import FEED_STALE

    names = [r.name for r in cfg.rules] + [FEED_STALE]
    if any(fnmatch.fnmatchcase(n, rule) for n in names):
        return
    hint = difflib.get_close_matches(rule, names, n=1)
    raise click.BadParameter(
        f'no configured rule matches "{rule}"' + (f' (did you mean "{hint[0]}"?)' if hint else ""),
        param_hint="--rule")


@silence.command("list")
@config_option
@db_option
@click.option("--all", "show_all", is_flag=True, help="Include expired silences (marked).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (keys: docs/cli.md#silence).")
def silence_list(config: str | None, db: str | None, show_all: bool, as_json: bool) -> None:
    """List active silences.

    Example: wis-monitor silence list
    """
    cfg = _config(config, db)
    db = _database(cfg, db)
    store = _store(cfg, db, readonly=False)
    now = now_ms()
    try:
        rows = store.silences(None if show_all else now)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([_silence_json(r, now) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no active silences" if not show_all else "no silences")
        return
    for r in rows:
        until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r.expires_ms / 1000))
        state = "expired" if r.expires_ms <= now else "until"
        matchers = json.dumps(r.matchers, sort_keys=True)
        click.echo(f"{r.id:>4}  rule={r.rule}  {matchers}  {state} {until}  "
                   f"by {r.created_by or '?'}: {r.reason}")


def _silence_json(row: Silence, now_ms: int) -> dict[str, Any]:
    """One silence for ``silence list --json``: the keys documented in docs/cli.md."""
    def utc(ts: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts / 1000))

    return {"id": row.id, "rule": row.rule, "matchers": row.matchers,
            "created": utc(row.created_ms), "expires": utc(row.expires_ms),
            "expired": row.expires_ms <= now_ms, "by": row.created_by or None,
            "reason": row.reason}


@silence.command("expire")
@config_option
@db_option
@click.argument("silence_id", type=int)
def silence_expire(config: str | None, db: str | None, silence_id: int) -> None:
    """Expire a silence now.

    Example: wis-monitor silence expire 3
    """
    cfg = _config(config, db)
    db = _database(cfg, db)
    store = _store(cfg, db, readonly=False)
    try:
        ok = store.expire_silence(silence_id, now_ms())
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

    cfg = load_config_or_exit(config, secrets=False)
    if channel not in cfg.settings.channels:
        known = ", ".join(sorted(cfg.settings.channels)) or "none configured"
        raise MissingInput(f'unknown channel "{channel}" (channels: {known})')
    ok, detail = asyncio.run(send_test(
        channel, _channel_url(cfg, channel),
        cfg.settings.channels[channel].timeout.total_seconds()))
    click.echo(f"{channel}: {'sent' if ok else 'FAILED'}{': ' + detail if detail else ''}")
    sys.exit(0 if ok else 1)


def _channel_url(cfg: Config, channel: str) -> str:
    """The channel's URL with its secrets read: only this channel's are needed (another's may
    be unreadable here). Exit 2 naming a secret of it that cannot be read."""
    from wis_monitor import yamlsource
    from wis_monitor.channel import url_problem

    doc = yamlsource.load(cfg.path)
    loc = ("channels", channel, "url")
    unread = [p for p in doc.problems if p.line == doc.line(loc)]
    if unread:
        fail_config(ConfigError(unread))
    url = str(doc.data["channels"][channel]["url"])
    bad = url_problem(url)  # checked with the secrets it was checked without
    if bad:
        fail_config(ConfigError([Problem(doc.path, doc.line(loc),
                                         doc.redact(f'channel "{channel}": {bad}'))]))
    return url
