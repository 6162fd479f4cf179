"""Markets as a venue lists them: ``list-markets`` and ``check --online`` (SPEC §9).

Loading goes through :func:`wis_monitor.sources.ccxt.load_markets`, with each venue's own
``ccxt:`` options, exactly as the daemon loads them; the rest is pure.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wis_monitor.config import Config
from wis_monitor.errors import Problem, SourceError
from wis_monitor.settings import Venue
from wis_monitor.symbols import market_type

Markets = Mapping[str, Mapping[str, Any]]
MARKET_TYPES = ("spot", "swap", "future", "option")


@dataclass(frozen=True)
class Market:
    symbol: str
    type: str
    id: str
    active: bool | None


def listing(markets: Markets, *, kind: str | None = None, base: str | None = None,
            quote: str | None = None) -> list[Market]:
    """The markets of this type, base and quote (case-insensitive), sorted by symbol."""
    out = []
    for symbol, m in markets.items():
        if kind and _type(symbol, m) != kind:
            continue
        if base and str(m.get("base", "")).upper() != base.upper():
            continue
        if quote and str(m.get("quote", "")).upper() != quote.upper():
            continue
        out.append(Market(symbol, _type(symbol, m), str(m.get("id", "")), m.get("active")))
    return sorted(out, key=lambda m: m.symbol)


def _type(symbol: str, market: Mapping[str, Any]) -> str:
    kind = market.get("type")
    return str(kind) if kind in MARKET_TYPES else market_type(symbol) or str(kind)


def symbol_problems(venue: Venue, markets: Markets) -> dict[int, str]:
    """Per index into ``venue.symbols``: why that symbol cannot be sampled there."""
    by_id = {str(m.get("id")): s for s, m in markets.items()}
    kinds = sorted({_type(s, m) for s, m in markets.items()})
    out: dict[int, str] = {}
    for j, symbol in enumerate(venue.symbols):
        market = markets.get(symbol)
        if market is None:
            out[j] = _missing(venue, symbol, markets, by_id, kinds)
        elif market.get("active") is False:
            out[j] = f'venue "{venue.id}": {venue.exchange} lists "{symbol}" as inactive'
        elif market_type(symbol) not in (None, _type(symbol, market)):
            out[j] = (f'venue "{venue.id}": "{symbol}" is a {_type(symbol, market)} market on '
                      f"{venue.exchange}, not a {market_type(symbol)} market")
    return out


def _missing(venue: Venue, symbol: str, markets: Markets, by_id: Mapping[str, str],
             kinds: Sequence[str]) -> str:
    msg = f'venue "{venue.id}": {venue.exchange} has no market "{symbol}"'
    wanted = market_type(symbol)
    if wanted and wanted not in kinds:
        msg += (f" (the markets loaded are {', '.join(kinds) or 'none'}; no {wanted} markets: "
                "see the venue's ccxt options)")
    hint = by_id.get(symbol) or next(iter(difflib.get_close_matches(symbol, list(markets), 1)),
                                     None)
    return msg + (f' (did you mean "{hint}"?)' if hint else "")


def ccxt_venues(cfg: Config) -> list[tuple[int, Venue]]:
    return [(i, v) for i, v in enumerate(cfg.settings.venues)
            if v.exchange not in ("sim", "replay")]


async def load_all(venues: Sequence[Venue], timeout_ms: int) -> list[Markets | SourceError]:
    """Every venue's markets at once (or why they could not be loaded)."""
    from wis_monitor.sources.ccxt import load_markets

    async def one(v: Venue) -> Markets | SourceError:
        try:
            return await load_markets(v.exchange, v.ccxt, timeout_ms=timeout_ms)
        except SourceError as exc:
            return exc

    return list(await asyncio.gather(*(one(v) for v in venues)))


def network_hint(command: str, whose: str, how: str) -> str:
    """The hint for markets that could not be loaded because the venue's API was out of reach:
    ``command`` needs ``whose`` API; ``how`` to try it without the network."""
    return (f"hint: {command} needs the API of {whose}, over the network (is this machine "
            "online? a proxy goes in the venue's ccxt: options); to try it offline, "
            f"{how} (docs/cli.md#trying-it-offline)")


def online_problems(cfg: Config, line: Any) -> tuple[list[Problem], list[str]]:
    """Problems of every ccxt venue's symbols against the markets it lists, and one summary
    line per venue; ``line(loc)`` is the line of a location in the main file. (Depths are
    checked offline, against depths.py, with the rest of the config.)"""
    from wis_monitor.sources.ccxt import unreachable

    venues = ccxt_venues(cfg)
    loaded = asyncio.run(load_all([v for _, v in venues], 30_000))
    problems: list[Problem] = []
    notes: list[str] = []
    if any(isinstance(m, SourceError) and unreachable(m) for m in loaded):
        notes.append(network_hint("check --online", "each ccxt venue",
                                  "point the venues' ccxt: urls at a local venue"))
    for (i, venue), markets in zip(venues, loaded, strict=True):
        if isinstance(markets, SourceError):
            problems.append(Problem(cfg.path, line(("venues", i, "exchange")),
                                    f'venue "{venue.id}": cannot load the markets of '
                                    f"{venue.exchange}: {markets}"))
            continue
        for j, msg in symbol_problems(venue, markets).items():
            problems.append(Problem(cfg.path, line(("venues", i, "symbols", j)), msg))
        kinds = ", ".join(f"{s} {_type(s, markets[s])}" for s in venue.symbols if s in markets)
        notes.append(f"venue {venue.id}: {venue.exchange} lists {len(markets)} market(s); "
                     f"sampled: {kinds or 'none'}")
        if venue.select is not None:
            try:
                notes.append(selection_note(venue, cfg.timeout_ms(venue)))
            except SourceError as exc:
                problems.append(Problem(cfg.path, line(("venues", i, "select")),
                                        f'venue "{venue.id}": cannot resolve its selection: '
                                        f"{exc}"))
    return problems, notes


def selection_note(venue: Venue, timeout_ms: int) -> str:
    """What a venue's selection resolves to now; raise SourceError."""
    from wis_monitor.clock import SYSTEM
    from wis_monitor.sources.ccxt import select_markets

    assert venue.select is not None
    chosen, _, price, _ = asyncio.run(select_markets(venue, venue.select, SYSTEM.now_ms(),
                                                     timeout_ms=timeout_ms))
    at = f" (underlying at {price:g})" if price is not None else ""
    return (f"venue {venue.id}: select resolves to {len(chosen)} series{at}: "
            f"{', '.join(chosen) or 'none'}")
