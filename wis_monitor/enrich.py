"""What an alert event tells beyond its rule's verdict: its summary line and the details its
message shows (:func:`wis_monitor.message.lines_of` reads them) — the sample's values, the
rule's description and runbook, the z-score's baseline, the best levels of the book, the
group peers, the desk's position on the series and what unwinding it would cost. Computed
once for each event the engine emits; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wis_monitor.across import split_impact_bps
from wis_monitor.alerting import Event
from wis_monitor.book import Book, FloatArray
from wis_monitor.impact import impact_bps, position_notional
from wis_monitor.stats import Baseline

if TYPE_CHECKING:
    from wis_monitor.rulefile import RuleSpec

#: The best levels of each side of the book an alert of a series rule shows.
TOP_LEVELS = 3
#: Ends the summary of a shadow rule's alert (also marked ``details.mode = "shadow"``).
SHADOW_MARK = " (shadow: not sent)"
#: The metrics of the other members of a series' groups an alert shows.
PEER_METRICS = ("wis", "wis_z", "mid")


@dataclass(frozen=True)
class Context:
    """What is known around an alert when it is emitted.

    ``values``: the sample's numbers (a series rule), the members' (a group rule) or the
    feed's age, quality and error (feed-stale). The rest only for a series rule: the metric its
    value is (without a ``value`` expression), the depth band, the other members of its groups,
    the WIS z-score's baseline, the latest good book and the desk's position (signed, in the
    book's amount unit).
    """

    values: Mapping[str, Any]
    value_of: str | None = None
    band_bps: float | None = None
    peers: dict[str, dict[str, float | None]] | None = None
    baseline: Baseline | None = None
    book: Book | None = None
    position: float | None = None
    #: The latest good books of the other members of the series' groups quoted alike, where
    #: the position could be hedged instead (by ``venue:symbol``).
    hedges: Mapping[str, Book] | None = None


def where(venue: str | None, symbol: str | None, key: str) -> str:
    """``okx BTC/USDT``, or the key (a group's name) for an alert of no series."""
    return " ".join(x for x in (venue, symbol) if x) or key


def describe(event: Event, severity: str, name: str, at: str, spec: RuleSpec | None,
             ctx: Context) -> tuple[str, dict[str, Any]]:
    """The summary and the details of an alert event of rule ``spec`` (None: feed-stale) on
    ``at`` (see :func:`where`)."""
    shown = f" value={event.value:.4g}" if event.value is not None else ""
    summary = f"[{severity.upper()}] {name} {at} {event.kind}{shown}"
    d: dict[str, Any] = {"values": ctx.values}
    if spec is not None:
        d.update(description=spec.description, runbook=spec.runbook, when=spec.when,
                 depth_band_bps=ctx.band_bps, value_of=spec.value or ctx.value_of)
    if ctx.peers is not None:
        d["group_peers"] = ctx.peers
    if ctx.baseline is not None:
        b = ctx.baseline
        d["baseline"] = {"n": b.n, "mean": b.center, "std": b.scale}
    if ctx.book is not None:  # the best levels, in book order
        d["top_bids"] = _levels(ctx.book.bid_px, ctx.book.bid_qty)
        d["top_asks"] = _levels(ctx.book.ask_px, ctx.book.ask_qty)
    if event.kind == "resolved" and event.fired_at_ms is not None:
        d["fired_for_ms"] = event.ts_ms - event.fired_at_ms
    if spec is not None and ctx.position and ctx.book is not None:
        d["position"] = exposure(ctx.position, ctx.book, ctx.values.get("unwind_bps"), at)
        if ctx.hedges:
            d["position"]["hedge"] = hedge(d["position"], ctx.book, ctx.hedges, at)
        summary += " " + exposure_text(d["position"])
    if spec is not None and spec.mode == "shadow":
        summary, d["mode"] = summary + SHADOW_MARK, "shadow"
    return summary, d


def exposure(size: float, book: Book, unwind: float | None, at: str) -> dict[str, Any]:
    """The desk's position on the series at ``at``: its size, its notional in the quote
    currency (USD for inverse contracts) and the cost of unwinding it now (None: the book
    cannot fill it)."""
    symbol = at.rpartition(" ")[2]
    currency = symbol.partition("/")[2].partition(":")[0] or None
    return {"size": size, "notional": position_notional(book, size), "currency": currency,
            "unwind_bps": unwind}


def hedge(p: Mapping[str, Any], own: Book, others: Mapping[str, Book], at: str
          ) -> dict[str, Any] | None:
    """Where unwinding the position's notional costs least: this series' book or one of
    ``others`` (the venue and its impact), and what splitting it over all of them costs."""
    notional = p.get("notional")
    if not notional:
        return None
    buy = p["size"] < 0  # a short is closed by buying
    books = {at.replace(" ", ":", 1): own, **others}
    costs = {m: impact_bps(b, notional, buy=buy) for m, b in books.items()}
    priced = {m: c for m, c in costs.items() if c is not None}
    cheapest = min(priced, key=priced.__getitem__) if priced else None
    return {"cheapest": cheapest, "cheapest_bps": priced.get(cheapest or ""),
            "split_bps": split_impact_bps(list(books.values()), notional, buy=buy),
            "split_over": sorted(books)}


def exposure_text(p: Mapping[str, Any]) -> str:
    """``position -500 (50,000 USD), unwind 3.10 bps; cheapest to hedge okx:BTC/USDT 1.20 bps,
    split across 3 venues 0.80 bps``."""
    notional = p.get("notional")
    worth = f" ({notional:,.0f}{' ' + p['currency'] if p.get('currency') else ''})" \
        if notional is not None else ""
    unwind = p.get("unwind_bps")
    cost = f"unwind {unwind:.2f} bps" if unwind is not None else \
        "unwind: the book cannot fill it"
    return f"position {p['size']:+,g}{worth}, {cost}{hedge_text(p.get('hedge'))}"


def hedge_text(h: Mapping[str, Any] | None) -> str:
    """``; cheapest to hedge okx:BTC/USDT 1.20 bps, split across 3 venues 0.80 bps``."""
    if not h or h.get("cheapest") is None:
        return ""
    split = h.get("split_bps")
    spread = f", split across {len(h['split_over'])} venues {split:.2f} bps" \
        if split is not None else ""
    return f"; cheapest to hedge {h['cheapest']} {h['cheapest_bps']:.2f} bps{spread}"


def retired(severity: str, name: str, at: str, reason: str, fired_for_ms: int | None,
            shadow: bool) -> tuple[str, dict[str, Any]]:
    """The summary and the details of the `resolved` event of an alert the configuration no
    longer covers, saying why."""
    summary = f"[{severity.upper()}] {name} {at} resolved ({reason})"
    d: dict[str, Any] = {"reason": reason}
    if fired_for_ms is not None:
        d["fired_for_ms"] = fired_for_ms
    if shadow:
        summary, d["mode"] = summary + SHADOW_MARK, "shadow"
    return summary, d


def peers(me: str, groups: Iterable[Collection[str]],
          last_values: Callable[[str], Mapping[str, float | None] | None]
          ) -> dict[str, dict[str, float | None]]:
    """The latest good values of the other members of the groups of series ``me``."""
    out: dict[str, dict[str, float | None]] = {}
    for members in groups:
        if me not in members:
            continue
        for m in members:
            values = last_values(m) if m != me else None
            if values:
                out[m] = {k: values.get(k) for k in PEER_METRICS}
    return out


def public(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values an alert shows: those that are not null."""
    return {k: v for k, v in values.items() if v is not None}


def _levels(px: FloatArray, qty: FloatArray) -> list[tuple[float, float]]:
    """The first (price, amount) levels of one side of a book."""
    return [(float(p), float(q)) for p, q in zip(px[:TOP_LEVELS], qty[:TOP_LEVELS], strict=True)]
