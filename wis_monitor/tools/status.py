"""What ``wis-monitor status`` shows, read from the database alone."""

from __future__ import annotations

import time
from typing import Any

from wis_monitor.config import Config
from wis_monitor.redact import redact
from wis_monitor.store import Store, is_good

DAY_MS = 86_400_000


def collect(config: Config, store: Store, now_ms: int) -> dict[str, Any]:
    """Per series the latest sample and the last good one, firing alerts (shadow ones marked),
    firings per rule over the last day and week, outbox backlog."""
    series: list[dict[str, Any]] = []
    configured = [(v.id, s) for v in config.settings.venues for s in v.symbols]
    seen = set(store.series_names())
    for venue, symbol in configured + sorted(seen - set(configured)):
        row: dict[str, Any] = {"venue": venue, "symbol": symbol}
        last = store.latest_sample(venue, symbol)
        if last is not None:
            error = last.error  # masked again: rows written by older versions
            row.update(last_ts=last.ts_ms, last_quality=last.quality,
                       last_error=redact(error) if error else error)
        good = store.latest_good(venue, symbol, ("wis", "wis_z", "mid", "spread_bps"))
        if good is not None:
            row.update(good_age_s=(now_ms - good.ts_ms) / 1000.0, **good.values)
        series.append(row)
    backlog = store.outbox_backlog()
    return {
        "database": store.path,
        "now_ms": now_ms,
        "series": series,
        "firing": [{"rule": f.rule, "key": f.key, "since": f.since_ms, "mode": f.mode}
                   for f in store.firing_states()],
        "fired": [{"rule": f.rule, "mode": f.mode, "last_24h": f.last_day,
                   "last_7d": f.last_week}
                  for f in store.firing_counts(now_ms - DAY_MS, now_ms - 7 * DAY_MS)],
        "outbox": {b.channel: {"pending": b.pending, "oldest_ts": b.oldest_pending_ms}
                   for b in backlog if b.pending},
        "failed": {b.channel: b.failed for b in backlog if b.failed},
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
        elif is_good(last):
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
