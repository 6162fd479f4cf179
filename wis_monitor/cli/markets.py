"""The ``list-exchanges``, ``list-markets`` and ``new-config`` commands (SPEC §9)."""

from __future__ import annotations

import asyncio
import difflib
import sys
from importlib import resources
from typing import Any

import click

from wis_monitor.cli.app import output_path, refuse
from wis_monitor.config import config_path, load_config
from wis_monitor.errors import ConfigError, SourceError
from wis_monitor.settings import ccxt_exchanges

EXIT_INVALID = 2


@click.command("list-exchanges")
def list_exchanges() -> None:
    """Print the ccxt exchange ids a venue's `exchange:` accepts (and sim, replay).

    Example: wis-monitor list-exchanges
    """
    for name in ["sim", "replay", *ccxt_exchanges()]:
        click.echo(name)


@click.command("list-markets")
@click.argument("name", metavar="VENUE_OR_EXCHANGE")
@click.option("-c", "--config", "config", metavar="PATH",
              help="Config whose venue NAME is listed with its own ccxt options.")
@click.option("--type", "kind", type=click.Choice(["spot", "swap", "future", "option"]),
              help="Only markets of this type.")
@click.option("--base", metavar="CODE", help="Only markets with this base currency (BTC).")
@click.option("--quote", metavar="CODE", help="Only markets with this quote currency (USDT).")
def list_markets(name: str, config: str | None, kind: str | None, base: str | None,
                 quote: str | None) -> None:
    """Load the markets of a venue (with -c) or a ccxt exchange and print their unified
    symbols, types and exchange ids.

    Example: wis-monitor list-markets binance --type spot --base BTC
    """
    from wis_monitor.sources.ccxt import load_markets, unreachable
    from wis_monitor.tools.markets import listing, network_hint

    exchange, options = _exchange_of(name, config)
    try:
        markets = asyncio.run(load_markets(exchange, options))
    except SourceError as exc:
        how = ("give -c CONFIG with a venue whose ccxt: urls point at a local venue"
               if config is None else "see that the venue its ccxt: urls point at is running")
        hint = "\n" + network_hint("list-markets", exchange, how) if unreachable(exc) else ""
        raise click.ClickException(
            f"cannot load the markets of {exchange}: {exc}{hint}") from exc
    rows = listing(markets, kind=kind, base=base, quote=quote)
    width = max([len(m.symbol) for m in rows] + [6])
    for m in rows:
        inactive = "  inactive" if m.active is False else ""
        click.echo(f"{m.symbol:<{width}}  {m.type:<6}  {m.id}{inactive}")
    click.echo(f"{len(rows)} of {len(markets)} markets of {exchange}", err=True)


def _exchange_of(name: str, config: str | None) -> tuple[str, dict[str, Any]]:
    """The exchange id and ccxt options of a venue of the config, else of an exchange id."""
    if config is not None:
        try:
            cfg = load_config(config_path(config), secrets=False)
        except ConfigError as exc:
            for p in exc.problems:
                click.echo(str(p), err=True)
            sys.exit(EXIT_INVALID)
        for venue in cfg.settings.venues:
            if venue.id == name and venue.exchange not in ("sim", "replay"):
                return venue.exchange, dict(venue.ccxt)
    if name in ccxt_exchanges():
        return name, {}
    known = ccxt_exchanges()
    hint = difflib.get_close_matches(name, known, n=1)
    what = "neither a ccxt venue of the config nor" if config is not None else "not"
    click.echo(f'"{name}" is {what} a ccxt exchange id'
               + (f' (did you mean "{hint[0]}"?)' if hint else "")
               + ": see `wis-monitor list-exchanges`", err=True)
    sys.exit(EXIT_INVALID)


@click.command("new-config")
@click.option("-o", "--output", metavar="FILE", help="Write here (default: standard output).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def new_config(output: str | None, force: bool) -> None:
    """Write a commented starter config that runs as it is (a simulated venue).

    Example: wis-monitor new-config -o config.yaml && wis-monitor check -c config.yaml
    """
    text = (resources.files("wis_monitor") / "default" / "starter.yaml").read_text()
    if output is None:
        click.echo(text, nl=False)
        return
    path = output_path(output)
    if path.exists() and not force:
        refuse(output, "exists (--force overwrites it)")
    try:
        path.write_text(text)
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}; next: wis-monitor check -c {output}", err=True)
