"""Instruments by selection: a venue's ``select:`` (docs/deployment.md, "Option chains").

Which of a venue's markets a selection takes, from ccxt's unified market structures (what
``load_markets`` returns), the time and the underlying's price, all given by the caller: this
module reads no clock and does no I/O. Also what a venue's rate limit lets one interval sample.

The underlying's price is the mid of the selection's ``reference`` market (default: the venue's
perpetual swap of the same base, quoted in a dollar, see :func:`reference_symbol`); moneyness is
``|strike / price - 1|``. ``max`` keeps the options nearest the money (then the nearest expiry),
the futures and swaps of the nearest expiries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from wis_monitor import yamlsource
from wis_monitor.depths import DEFAULT_DEPTH, RATE_LIMIT_MS, request_weight
from wis_monitor.duration import format_duration, ms, parse_duration

#: The share of a venue's rate limit the sampling may plan to use; the rest is for market
#: loads, the reference price and retries.
BUDGET_SHARE = 0.8
#: Dollar quotes a default reference market may have, in order of preference.
DOLLARS = ("USD", "USDT", "USDC")
Market = Mapping[str, Any]


def _percent(value: Any) -> Any:
    """``10%`` -> 0.1; a bare number is refused (is 0.1 a tenth or a tenth of a percent?)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            pass
    raise ValueError(f'write a percentage, like "10%", not {value!r}')


def _duration(value: Any) -> Any:
    td = parse_duration(value)
    if td <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return td


class Selection(BaseModel):
    """``venues[].select``: the venue's markets to sample, resolved at start and refreshed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: Literal["option", "future", "swap", "spot"]
    base: str
    quote: str | None = None
    settle: str | None = None
    expiry_within: Annotated[timedelta, BeforeValidator(_duration)] | None = None
    moneyness_within: Annotated[float, BeforeValidator(_percent), Field(gt=0)] | None = None
    max: int | None = Field(None, ge=1)
    reference: str | None = None
    refresh: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(hours=1)


class SelectingVenue(Protocol):
    """What :func:`check` reads of a venue (settings.Venue)."""

    @property
    def id(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def symbols(self) -> list[str]: ...
    @property
    def select(self) -> Selection | None: ...
    @property
    def ccxt(self) -> dict[str, Any]: ...
    @property
    def depth(self) -> int | None: ...


def group_select(entry: Any) -> Any:
    """A group ``{select: VENUE}``: every series of the venue, as it samples them now; written
    ``VENUE:*`` in the settings."""
    if not isinstance(entry, dict):
        return entry
    if set(entry) != {"select"} or not isinstance(entry["select"], str):
        raise ValueError('a group is a list of venue:symbol, or "select: VENUE" (all the '
                         "series of a venue)")
    return [f"{entry['select']}:*"]


def check(doc: yamlsource.Document, loc: tuple[Any, ...], venue: SelectingVenue,
          interval_ms: int) -> None:
    """A venue's selection: consistent, on a ccxt venue, and (with ``max``) within the
    venue's rate limit at its interval."""
    if venue.select is None:
        return
    where = (*loc, "select")
    if venue.exchange in ("sim", "replay"):
        doc.problem(where, f'venue "{venue.id}": select needs a ccxt exchange, not '
                    f'"{venue.exchange}"')
    for key, message in problems(venue.select):
        doc.problem((*where, *key), f'venue "{venue.id}": {message}')
    rate = venue.ccxt.get("rateLimit") or RATE_LIMIT_MS.get(venue.exchange)
    if venue.select.max and isinstance(rate, int | float) and rate > 0:
        bad = budget_problem(len(venue.symbols) + venue.select.max, interval_ms, float(rate),
                             venue.exchange, venue.depth or DEFAULT_DEPTH)
        if bad:
            doc.problem((*where, "max"), f'venue "{venue.id}": {bad}')


def problems(select: Selection) -> list[tuple[tuple[str, ...], str]]:
    """What is inconsistent in a selection: (key under ``select``, message)."""
    out: list[tuple[tuple[str, ...], str]] = []
    if select.expiry_within is not None and select.type in ("swap", "spot"):
        out.append((("expiry_within",), f"a {select.type} has no expiry: expiry_within is for "
                    "options and futures"))
    if select.moneyness_within is not None and select.type != "option":
        out.append((("moneyness_within",), "moneyness is for options (type: option)"))
    if select.refresh < timedelta(minutes=1):
        out.append((("refresh",), "refresh must be at least 1m (each one loads every market "
                    "of the venue)"))
    return out


def capacity(interval_ms: int, rate_limit_ms: float, weight: int) -> int:
    """How many books the venue's rate limit lets one interval fetch (``BUDGET_SHARE`` of it):
    ccxt spaces requests ``rateLimit`` ms apart per unit of weight."""
    return math.floor(interval_ms * BUDGET_SHARE / (rate_limit_ms * weight))


def budget_problem(count: int, interval_ms: int, rate_limit_ms: float, exchange: str,
                   depth: int) -> str | None:
    """Why ``count`` series of one venue cannot all be sampled every interval; None if they can."""
    weight = request_weight(exchange, depth)
    fits = capacity(interval_ms, rate_limit_ms, weight)
    if count <= fits:
        return None
    per = f" of weight {weight}" if weight > 1 else ""
    return (f"{count} series every {format_duration(interval_ms)} need {count} requests{per}; "
            f"the rate limit of {exchange} (one request{per and ' unit'} per "
            f"{rate_limit_ms:g} ms, {BUDGET_SHARE:.0%} of it for sampling) allows {fits}: "
            "lower max or raise the interval")


def reference_symbol(markets: Mapping[str, Market], select: Selection) -> str | None:
    """The market whose mid is the underlying's price: ``select.reference``, else the venue's
    active perpetual swap of the base quoted in a dollar (USD, then USDT, then USDC)."""
    if select.reference is not None:
        return select.reference if select.reference in markets else None
    swaps = [m for m in markets.values() if m.get("swap") and m.get("base") == select.base
             and m.get("quote") in DOLLARS and m.get("active") is not False]
    swaps.sort(key=lambda m: (DOLLARS.index(m["quote"]), str(m.get("symbol"))))
    return str(swaps[0]["symbol"]) if swaps else None


def matching(markets: Mapping[str, Market], select: Selection, now_ms: int) -> list[Market]:
    """The active markets of the selection's type, base, quote and settle that have not expired
    and expire within ``expiry_within``."""
    horizon = now_ms + ms(select.expiry_within) if select.expiry_within is not None else None
    out = []
    for m in markets.values():
        if m.get("type") != select.type or m.get("base") != select.base:
            continue
        if m.get("active") is False:
            continue
        if select.quote is not None and m.get("quote") != select.quote:
            continue
        if select.settle is not None and m.get("settle") != select.settle:
            continue
        expiry = m.get("expiry")
        if select.type in ("option", "future"):
            if not isinstance(expiry, int | float) or expiry <= now_ms:
                continue
            if horizon is not None and expiry > horizon:
                continue
        out.append(m)
    return out


def choose(markets: Mapping[str, Market], select: Selection, now_ms: int,
           price: float | None) -> list[str]:
    """The symbols the selection takes now, nearest the money (options) or the nearest expiry
    first, at most ``max``; ValueError if options are to be ranked or filtered by moneyness
    and there is no price of the underlying."""
    found = matching(markets, select, now_ms)
    ranked = price is not None or select.moneyness_within is not None or select.max
    if select.type == "option" and ranked:
        if price is None or price <= 0:
            raise ValueError("no price of the underlying to measure moneyness against")
        found = [m for m in found if isinstance(m.get("strike"), int | float)]
        if select.moneyness_within is not None:
            found = [m for m in found if _moneyness(m, price) <= select.moneyness_within + 1e-12]
        found.sort(key=lambda m: (_moneyness(m, price), m["expiry"], str(m["symbol"])))
    else:
        found.sort(key=lambda m: (m.get("expiry") or 0, str(m["symbol"])))
    chosen = [str(m["symbol"]) for m in found]
    return chosen[:select.max] if select.max else chosen


def _moneyness(market: Market, price: float) -> float:
    return abs(float(market["strike"]) / price - 1.0)


def next_expiry(markets: Mapping[str, Market], symbols: list[str]) -> int | None:
    """The earliest expiry among ``symbols`` (when the selection must be refreshed at the
    latest), None if none of them expires."""
    expiries = [int(e) for s in symbols if isinstance(e := markets.get(s, {}).get("expiry"),
                                                      int | float)]
    return min(expiries) if expiries else None
