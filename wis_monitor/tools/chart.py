"""Charts of what happened: mid, WIS, z-score with thresholds and alert markers.

matplotlib's object API with the Agg canvas: no global pyplot state, no display needed. The
same function feeds ``wis-monitor report`` and the email attachment. The time axis spans the
data drawn (not the period asked for), and the title says how long that is.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wis_monitor.config import Config
from wis_monitor.rulefile import z_levels_of
from wis_monitor.store import Delivery, Store

WIDTH_PX, HEIGHT_PX, DPI = 1400, 900, 100
#: File formats by suffix; anything else is refused.
FORMATS = ("png", "svg", "pdf")
#: Series colours: matplotlib's tab10 without red and grey, which mean nothing here.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22")
THRESHOLD_COLOUR = "#606060"
#: Alert events as symbols drawn on their series, in the series' colour.
EVENT_MARKERS = {"firing": "^", "repeat": "D", "resolved": "o"}

Rows = list[dict[str, Any]]
SeriesRows = dict[tuple[str, str], Rows]


@dataclass(frozen=True)
class Report:
    """A drawn report: the file's bytes, the z lines drawn and the series in it."""

    data: bytes
    thresholds: tuple[float, ...]
    series: tuple[tuple[str, str], ...]


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def _series(store: Store, since_ms: int, until_ms: int, venue: str | None, symbol: str | None
            ) -> SeriesRows:
    out: SeriesRows = {}
    for r in store.good_samples(since_ms, until_ms, venue, symbol, ("mid", "wis", "wis_z")):
        out.setdefault((r.venue, r.symbol), []).append(
            {"ts": r.ts_ms, "venue": r.venue, "symbol": r.symbol, **r.values})
    return out


def _alerts(store: Store, since_ms: int, until_ms: int, venue: str | None, symbol: str | None
            ) -> Rows:
    return [{"ts": a.ts_ms, "rule": a.rule, "key": a.key, "venue": a.venue, "symbol": a.symbol,
             "event": a.event, "mode": a.mode, "rule_when": a.details.get("when")}
            for a in store.alert_events(since_ms, until_ms, venue, symbol)]


def fired_levels(alerts: Sequence[dict[str, Any]]) -> tuple[float, ...]:
    """The z levels of the rules that fired, from the ``when`` stored with each alert."""
    levels = {z for a in alerts if a.get("rule_when") for z in z_levels_of(a["rule_when"])}
    return tuple(sorted(levels, reverse=True))


def span_text(ms: int) -> str:
    """A duration for a title: ``20s``, ``12m 5s``, ``3h 10m``, ``2d 4h``."""
    s = max(0, round(ms / 1000))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{s}s"


def _extent(series: SeriesRows, alerts: Sequence[dict[str, Any]], since_ms: int,
            until_ms: int) -> tuple[int, int]:
    """First and last time drawn: the data's, or the period asked for when there is none."""
    times = [t for rows in series.values() for t in (rows[0]["ts"], rows[-1]["ts"])]
    times += [a["ts"] for a in alerts]
    if not times:
        return since_ms, until_ms
    return int(min(times)), int(max(times))


def _fit(ax: Axes, values: Sequence[float], *, floor: float = 0.0,
         bounds: tuple[float, float] | None = None) -> None:
    """Y limits around the finite values with 8% room, at least ``floor`` wide."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    pad = max((hi - lo) * 0.08, (floor - (hi - lo)) / 2, 1e-9)
    lo, hi = lo - pad, hi + pad
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    ax.set_ylim(lo, hi)


def _value_at(rows: Rows, ts: int, col: str) -> float | None:
    """The series' value at or just before ``ts`` (the sample that made the alert)."""
    best = None
    for r in rows:
        if r["ts"] > ts:
            break
        best = r
    best = best or rows[0]
    v = best[col]
    return float(v) if v is not None and math.isfinite(v) else None


def render(series: SeriesRows, alerts: Sequence[dict[str, Any]], since_ms: int, until_ms: int,
           title: str, thresholds: Sequence[float], fmt: str = "png") -> bytes:
    """Three panels (mid, WIS, WIS z) of the series with their alerts; ``title`` is followed
    by the span of the data drawn."""
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_mid, ax_wis, ax_z = fig.subplots(3, 1, sharex=True, height_ratios=[1.2, 1, 1])
    relative = len(series) > 1  # series at different prices: compare their moves in bps
    colours: dict[tuple[str, str], str] = {}
    drawn: dict[str, list[float]] = {"mid": [], "wis": [], "z": list(thresholds)}
    for i, ((venue, symbol), rows) in enumerate(sorted(series.items())):
        colour = colours[(venue, symbol)] = PALETTE[i % len(PALETTE)]
        t = [_dt(r["ts"]) for r in rows]
        first = rows[0]["mid"]
        for r in rows:
            r["shown_mid"] = (r["mid"] / first - 1.0) * 1e4 if relative else r["mid"]
        label = f"{venue} {symbol}"
        ax_mid.plot(t, [r["shown_mid"] for r in rows], lw=1.0, color=colour, label=label)
        ax_wis.plot(t, [r["wis"] for r in rows], lw=0.9, color=colour, label=label)
        z = [r["wis_z"] if r["wis_z"] is not None else float("nan") for r in rows]
        ax_z.plot(t, z, lw=0.9, color=colour, label=label)
        drawn["mid"] += [r["shown_mid"] for r in rows]
        drawn["wis"] += [r["wis"] for r in rows]
        drawn["z"] += z
    for th in thresholds:
        ax_z.axhline(th, color=THRESHOLD_COLOUR, ls="--", lw=0.9)
    ax_wis.axhline(0.0, color=THRESHOLD_COLOUR, lw=0.5)
    events = _draw_alerts(series, colours, alerts, ax_mid, ax_wis, ax_z, drawn)
    _fit(ax_mid, drawn["mid"], floor=1.0 if relative else 0.0)
    _fit(ax_wis, drawn["wis"], floor=0.1, bounds=(-1.05, 1.05))
    _fit(ax_z, drawn["z"], floor=1.0)
    ax_mid.ticklabel_format(axis="y", useOffset=False, style="plain")  # prices as they are
    ax_mid.set_ylabel("mid, bps from first sample" if relative else "mid")
    ax_wis.set_ylabel("WIS")
    ax_z.set_ylabel("WIS z-score")
    start, end = _extent(series, alerts, since_ms, until_ms)
    pad = max((end - start) * 0.01, 500)
    ax_z.set_xlim(_dt(int(start - pad)), _dt(int(end + pad)))
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax_z.xaxis.set_major_locator(locator)
    ax_z.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax_z.set_xlabel("time (UTC)")
    for ax in (ax_mid, ax_wis, ax_z):
        ax.grid(True, alpha=0.3)
    if series:
        ax_mid.legend(loc="best", fontsize=8, ncols=min(len(series), 4))
    else:
        ax_mid.text(0.5, 0.5, "no good samples in this period", transform=ax_mid.transAxes,
                    ha="center")
    _key(fig, events, thresholds)
    fig.suptitle(f"{title}, {span_text(end - start)} of data: {_dt(start):%Y-%m-%d %H:%M:%S}"
                 f" – {_dt(end):%Y-%m-%d %H:%M:%S} UTC")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI)
    return buf.getvalue()


def _draw_alerts(series: SeriesRows, colours: dict[tuple[str, str], str],
                 alerts: Sequence[dict[str, Any]], ax_mid: Axes, ax_wis: Axes, ax_z: Axes,
                 drawn: dict[str, list[float]]) -> set[str]:
    """Each alert as its event's symbol on its series' lines, in the series' colour (hollow
    for a shadow rule's); an alert of no drawn series as a dotted vertical line."""
    events: set[str] = set()
    named: set[tuple[str, str]] = set()
    for a in alerts:
        shadow = a.get("mode") == "shadow"
        rows = series.get((a.get("venue") or "", a.get("symbol") or ""))
        when = float(date2num(_dt(a["ts"])))  # type: ignore[no-untyped-call]
        if rows is None:
            for ax in (ax_mid, ax_wis, ax_z):
                ax.axvline(when, color=THRESHOLD_COLOUR, lw=0.8, ls=":")
            events.add("other")
            continue
        colour = colours[(a["venue"], a["symbol"])]
        marker = EVENT_MARKERS.get(a["event"], "x")
        events.add(a["event"])
        face = "none" if shadow or a["event"] == "resolved" else colour
        for ax, col, key in ((ax_mid, "shown_mid", "mid"), (ax_wis, "wis", "wis"),
                             (ax_z, "wis_z", "z")):
            y = _value_at(rows, a["ts"], col)
            if y is None:
                continue
            ax.plot([when], [y], marker=marker, ms=9, mfc=face, mec=colour, mew=1.6,
                    ls="none", alpha=0.6 if shadow else 1.0, zorder=5)
            drawn[key].append(y)
        if shadow:
            events.add("shadow")
        y = _value_at(rows, a["ts"], "wis_z")
        if a["event"] == "firing" and (a["rule"], a["key"]) not in named and y is not None:
            named.add((a["rule"], a["key"]))
            ax_z.annotate(a["rule"] + (" (shadow)" if shadow else ""), (when, y),
                              xytext=(4, 6), textcoords="offset points", fontsize=8,
                              color=colour)
    return events


def _key(fig: Figure, events: set[str], thresholds: Sequence[float]) -> None:
    """The legend of the symbols and lines that are not series, under the panels."""
    handles = [Line2D([], [], marker=EVENT_MARKERS[e], ls="none", color="black",
                      mfc="none" if e == "resolved" else "black", label=f"alert {e}")
               for e in EVENT_MARKERS if e in events]
    if "shadow" in events:
        handles.append(Line2D([], [], marker="^", ls="none", color="black", mfc="none",
                              alpha=0.6, label="shadow rule (faint, hollow)"))
    if "other" in events:
        handles.append(Line2D([], [], color=THRESHOLD_COLOUR, ls=":", label="alert, no series"))
    if thresholds:
        levels = ", ".join(f"{z:+g}" for z in thresholds)
        handles.append(Line2D([], [], color=THRESHOLD_COLOUR, ls="--", label=f"z {levels}"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=len(handles))


def render_report(store: Store, since_ms: int, until_ms: int, venue: str | None = None,
                  symbol: str | None = None, thresholds: Sequence[float] = (),
                  fallback: Sequence[float] = (3.0, -3.0), fmt: str = "png") -> Report:
    """The ``report`` chart: every matching series and alert between the two times. The z
    lines are ``thresholds``, else those of the rules that fired, else ``fallback``."""
    series = _series(store, since_ms, until_ms, venue, symbol)
    alerts = _alerts(store, since_ms, until_ms, venue, symbol)
    lines = tuple(thresholds) or fired_levels(alerts) or tuple(fallback)
    what = " ".join(x for x in (venue, symbol) if x) or "all series"
    data = render(series, alerts, since_ms, until_ms, f"wis-monitor: {what}", lines, fmt)
    return Report(data, lines, tuple(sorted(series)))


def chart_data(store: Store, venue: str, symbol: str, since_ms: int, until_ms: int
               ) -> tuple[SeriesRows, Rows]:
    """What the email attachment draws: one series and its alerts between the two times."""
    return (_series(store, since_ms, until_ms, venue, symbol),
            _alerts(store, since_ms, until_ms, venue, symbol))


async def alert_chart(store: Store, config: Config, delivery: Delivery) -> bytes | None:
    """The last hour of an alert's series as a PNG (``attach_chart``), drawn off the event
    loop, with the levels its rule compares ``wis_z`` with; None for a group alert or a series
    without samples."""
    alert = delivery.alert
    if not alert.venue or not alert.symbol:
        return None
    ts = alert.ts_ms
    series, alerts = chart_data(store, alert.venue, alert.symbol, ts - 3_600_000, ts)
    if not series:
        return None
    rule = next((r for r in config.rules if r.name == alert.rule), None)
    levels = (rule.z_levels() if rule is not None else ()) or (3.0, -3.0)
    return await asyncio.to_thread(render, series, alerts, ts - 3_600_000, ts,
                                   f"{alert.venue} {alert.symbol}", levels)
