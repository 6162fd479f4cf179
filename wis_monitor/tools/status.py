"""What ``wis-monitor status`` shows, read from the database alone."""

from __future__ import annotations

import time
from typing import Any

from wis_monitor.config import Config
from wis_monitor.redact import redact
from wis_monitor.store import Store

DAY_MS = 86_400_000


def collect(config: Config, store: Store, now_ms: int) -> dict[str, Any]:
    """Per series the latest sample and the last good one, firing alerts (shadow ones marked),
    firings per rule over the last day and week, outbox backlog."""
    series: list[dict[str, Any]] = []
    configured = [(v.id, s) for v in config.settings.venues for s in v.symbols]
    seen = {(r["venue"], r["symbol"]) for r in store.query(
        "SELECT DISTINCT venue, symbol FROM samples")}
    for venue, symbol in configured + sorted(seen - set(configured)):
        last = store.query(
            "SELECT ts, quality, error FROM samples WHERE venue = ? AND symbol = ?"
            " ORDER BY ts DESC LIMIT 1", [venue, symbol])
        good = store.query(
            "SELECT ts, wis, wis_z, mid, spread_bps FROM samples WHERE venue = ? AND symbol = ?"
            " AND quality IN ('', 'thin') ORDER BY ts DESC LIMIT 1", [venue, symbol])
        row: dict[str, Any] = {"venue": venue, "symbol": symbol}
        if last:
            error = last[0]["error"]  # masked again: rows written by older versions
            row.update(last_ts=last[0]["ts"], last_quality=last[0]["quality"],
                       last_error=redact(error) if error else error)
        if good:
            g = good[0]
            row.update(good_age_s=(now_ms - g["ts"]) / 1000.0, wis=g["wis"], wis_z=g["wis_z"],
                       mid=g["mid"], spread_bps=g["spread_bps"])
        series.append(row)
    firing = store.query(
        "SELECT rule, key, since, (SELECT json_extract(a.details, '$.mode') FROM alerts a"
        " WHERE a.rule = s.rule AND a.key = s.key AND a.event = 'firing' ORDER BY a.id DESC"
        " LIMIT 1) AS mode FROM alert_state s WHERE state = 'firing' ORDER BY rule, key")
    fired = store.query(
        "SELECT rule, coalesce(json_extract(details, '$.mode'), 'live') AS mode,"
        " sum(ts >= ?) AS day, count(*) AS week FROM alerts WHERE event = 'firing' AND ts >= ?"
        " GROUP BY rule, mode ORDER BY rule, mode", [now_ms - DAY_MS, now_ms - 7 * DAY_MS])
    backlog = store.query(
        "SELECT channel, count(*) AS n, min(created_ts) AS oldest FROM deliveries"
        " WHERE status = 'pending' GROUP BY channel ORDER BY channel")
    failed = store.query(
        "SELECT channel, count(*) AS n FROM deliveries WHERE status = 'failed'"
        " GROUP BY channel ORDER BY channel")
    return {
        "database": store.path,
        "now_ms": now_ms,
        "series": series,
        "firing": [{"rule": f["rule"], "key": f["key"], "since": f["since"],
                    "mode": f["mode"] or "live"} for f in firing],
        "fired": [{"rule": f["rule"], "mode": f["mode"], "last_24h": f["day"],
                   "last_7d": f["week"]} for f in fired],
        "outbox": {b["channel"]: {"pending": b["n"], "oldest_ts": b["oldest"]} for b in backlog},
        "failed": {f["channel"]: f["n"] for f in failed},
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _f(x: float | None, fmt: str) -> str:
    return format(x, fmt) if x is not None else "-"


def render(report: dict[str, Any]) -> str:
    now = report["now_ms"]
    lines = [f"database {report['database']} at "
             f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(now / 1000))}", ""]
    lines.append(f"{'venue':<12} {'symbol':<16} {'good age':>9} {'wis':>7} {'wis_z':>7} "
                 f"{'mid':>12}  last sample")
    for s in report["series"]:
        last = s.get("last_quality")
        if "last_ts" not in s:
            state = "no samples"
        elif last in ("", "thin"):
            state = "good"
        else:
            state = f"[{last}] {s.get('last_error') or ''}"
        lines.append(
            f"{s['venue']:<12} {s['symbol']:<16} {_age(s.get('good_age_s')):>9} "
            f"{_f(s.get('wis'), '.3f'):>7} {_f(s.get('wis_z'), '.2f'):>7} "
            f"{_f(s.get('mid'), '.2f'):>12}  {state.strip()}"
        )
    lines.append("")
    if report["firing"]:
        lines.append("firing:")
        for f in report["firing"]:
            since = (now - f["since"]) / 1000 if f["since"] else None
            shadow = ", shadow: not sent" if f["mode"] == "shadow" else ""
            lines.append(f"  {f['rule']} {f['key']} (active for {_age(since)}{shadow})")
    else:
        lines.append("firing: none")
    if report["fired"]:
        lines.append("fired (firing events) in the last 24h / 7d:")
        width = max(len(f["rule"]) for f in report["fired"])
        for f in report["fired"]:
            shadow = "  shadow: not sent" if f["mode"] == "shadow" else ""
            lines.append(f"  {f['rule']:<{width}} {f['last_24h']:>5} / {f['last_7d']:<5}{shadow}")
    if report["outbox"]:
        lines.append("outbox backlog:")
        for ch, b in report["outbox"].items():
            oldest = _age((now - b["oldest_ts"]) / 1000)
            lines.append(f"  {ch}: {b['pending']} pending, oldest {oldest}")
    else:
        lines.append("outbox backlog: none")
    for ch, n in report["failed"].items():
        lines.append(f"  {ch}: {n} failed deliveries (see the deliveries table)")
    return "\n".join(lines)
