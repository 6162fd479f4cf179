"""Charts of what happened: mid, WIS, z-score with thresholds and alert markers (PNG).

matplotlib's object API with the Agg canvas: no global pyplot state, no display needed. The
same function feeds ``wis-monitor report`` and the email attachment.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from wis_monitor.store import Store

WIDTH_PX, HEIGHT_PX, DPI = 1400, 900, 100
EVENT_COLOURS = {"firing": "#d62728", "repeat": "#ff7f0e", "resolved": "#2ca02c"}


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def _series(store: Store, since_ms: int, until_ms: int, venue: str | None, symbol: str | None
            ) -> dict[tuple[str, str], list[dict[str, Any]]]:
    where = ["ts >= ?", "ts <= ?", "quality IN ('', 'thin')"]
    params: list[Any] = [since_ms, until_ms]
    for col, value in (("venue", venue), ("symbol", symbol)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in store.query(f"SELECT ts, venue, symbol, mid, wis, wis_z FROM samples WHERE "
                         f"{' AND '.join(where)} ORDER BY ts", params):
        out.setdefault((r["venue"], r["symbol"]), []).append(r)
    return out


def _alerts(store: Store, since_ms: int, until_ms: int, venue: str | None, symbol: str | None
            ) -> list[dict[str, Any]]:
    where = ["ts >= ?", "ts <= ?"]
    params: list[Any] = [since_ms, until_ms]
    for col, value in (("venue", venue), ("symbol", symbol)):
        if value is not None:
            where.append(f"({col} = ? OR {col} IS NULL)")
            params.append(value)
    return store.query("SELECT ts, rule, key, event, coalesce(json_extract(details, '$.mode'),"
                       f" 'live') AS mode FROM alerts WHERE {' AND '.join(where)} ORDER BY ts",
                       params)


def render(series: dict[tuple[str, str], list[dict[str, Any]]], alerts: Sequence[dict[str, Any]],
           since_ms: int, until_ms: int, title: str, thresholds: Sequence[float]) -> bytes:
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_mid, ax_wis, ax_z = fig.subplots(3, 1, sharex=True, height_ratios=[1.2, 1, 1])
    relative = len(series) > 1  # series at different prices: compare their moves in bps
    for (venue, symbol), rows in sorted(series.items()):
        t = [_dt(r["ts"]) for r in rows]
        label = f"{venue} {symbol}"
        first = rows[0]["mid"]
        mids = [(r["mid"] / first - 1.0) * 1e4 if relative else r["mid"] for r in rows]
        ax_mid.plot(t, mids, lw=1.0, label=label)
        ax_wis.plot(t, [r["wis"] for r in rows], lw=0.9, label=label)
        ax_z.plot(t, [r["wis_z"] if r["wis_z"] is not None else float("nan") for r in rows],
                  lw=0.9, label=label)
    for th in thresholds:
        ax_z.axhline(th, color="#d62728", ls="--", lw=0.8)
    ax_wis.axhline(0.0, color="grey", lw=0.6)
    ax_wis.set_ylim(-1.05, 1.05)
    ax_mid.set_ylabel("mid, bps from first sample" if relative else "mid")
    ax_wis.set_ylabel("WIS")
    ax_z.set_ylabel("WIS z-score")
    shown: set[tuple[str, str]] = set()
    for a in alerts:
        colour = EVENT_COLOURS.get(a["event"], "black")
        shadow = a.get("mode") == "shadow"  # a shadow rule's: dotted, named "(shadow)"
        for ax in (ax_mid, ax_wis, ax_z):
            ax.axvline(_dt(a["ts"]), color=colour, lw=1.0, alpha=0.7, ls=":" if shadow else "-")
        if a["event"] == "firing" and (a["rule"], a["key"]) not in shown:
            shown.add((a["rule"], a["key"]))
            ax_mid.annotate(a["rule"] + (" (shadow)" if shadow else ""), (_dt(a["ts"]), 1.0),
                            xycoords=("data", "axes fraction"), rotation=90, va="top",
                            ha="right", fontsize=8, color=colour)
    ax_z.set_xlim(_dt(since_ms), _dt(until_ms))
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax_z.xaxis.set_major_locator(locator)
    ax_z.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax_z.set_xlabel("time (UTC)")
    for ax in (ax_mid, ax_wis, ax_z):
        ax.grid(True, alpha=0.3)
    if series:
        ax_mid.legend(loc="upper left", fontsize=8, ncols=min(len(series), 4))
    else:
        ax_mid.text(0.5, 0.5, "no good samples in this period", transform=ax_mid.transAxes,
                    ha="center")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def render_report(store: Store, since_ms: int, until_ms: int, venue: str | None = None,
                  symbol: str | None = None, thresholds: Sequence[float] = (3.0, -3.0)) -> bytes:
    """The ``report`` chart: every matching series and alert between the two times."""
    span = f"{_dt(since_ms):%Y-%m-%d %H:%M} – {_dt(until_ms):%Y-%m-%d %H:%M} UTC"
    what = " ".join(x for x in (venue, symbol) if x) or "all series"
    return render(_series(store, since_ms, until_ms, venue, symbol),
                  _alerts(store, since_ms, until_ms, venue, symbol), since_ms, until_ms,
                  f"wis-monitor: {what}, {span}", thresholds)


def chart_data(store: Store, venue: str, symbol: str, since_ms: int, until_ms: int
               ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[dict[str, Any]]]:
    """What the email attachment draws: one series and its alerts between the two times."""
    return (_series(store, since_ms, until_ms, venue, symbol),
            _alerts(store, since_ms, until_ms, venue, symbol))
