"""Alert messages a risk manager can act on: title, text, HTML and Slack markup (pure).

Per-rule templates (``template: {title, body}``) render in jinja2's sandbox; a template that
fails falls back to the default message and says so.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wis_monitor.config import TEMPLATES
from wis_monitor.duration import format_duration


@dataclass(frozen=True)
class Message:
    title: str
    text: str
    html: str
    markdown: str


def _utc(ms: int | None) -> str:
    if ms is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _num(x: Any, fmt: str = ".4g") -> str:
    return format(x, fmt) if isinstance(x, int | float) and not isinstance(x, bool) else "-"


def _value(x: Any) -> str:
    """A rule's value readably: 61234.5 stays 61234.5, 3.41234 is 3.412, 0.000123 is 0.000123."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return "-"
    if x != 0 and abs(x) < 0.01:
        return format(x, ".3g")
    return f"{x:,.{max(0, 4 - len(str(int(abs(x)))))}f}" if abs(x) < 1e15 else format(x, ".4g")


def title_of(alert: dict[str, Any]) -> str:
    where = " ".join(x for x in (alert.get("venue"), alert.get("symbol")) if x) or alert["key"]
    suffix = "" if alert["event"] == "firing" else f" ({alert['event']})"
    return f"[{str(alert['severity']).upper()}] {alert['rule']} {where}{suffix}"


def lines_of(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts of an alert as (label, value) pairs, in reading order."""
    d: dict[str, Any] = alert.get("details") or {}
    v: dict[str, Any] = d.get("values") or {}
    out: list[tuple[str, str]] = []
    if alert["event"] == "resolved" and d.get("fired_for_ms") is not None:
        fired = int(d["fired_for_ms"])
        fired = round(fired / 1000) * 1000 if fired >= 1000 else fired  # whole seconds
        out.append(("Resolved", f"after {format_duration(fired)} firing"))
    if d.get("reason"):
        out.append(("Why", str(d["reason"])))
    if d.get("description"):
        out.append(("What", str(d["description"])))
    if d.get("when"):
        out.append(("Rule", str(d["when"])))
    if alert.get("value") is not None:
        out.append(("Value", _value(alert["value"])))
    if "wis" in v or "wis_z" in v:
        base = d.get("baseline")
        extra = (f" (window mean {_num(base['mean'], '.3f')}, std {_num(base['std'], '.3f')},"
                 f" n={base['n']})") if base else ""
        out.append(("WIS", f"{_num(v.get('wis'), '.3f')}, z {_num(v.get('wis_z'), '.2f')}"
                    + extra))
    if "mid" in v:
        out.append(("Mid", f"{_num(v.get('mid'), ',.2f')}, spread "
                    f"{_num(v.get('spread_bps'), '.2f')} bps"))
    if "bid_depth" in v:
        out.append(("Depth", f"bids {_num(v.get('bid_depth'), ',.0f')} / asks "
                    f"{_num(v.get('ask_depth'), ',.0f')}"))
    for side in ("bids", "asks"):
        levels = d.get(f"top_{side}") or []
        if levels:
            out.append((f"Top {side}", ", ".join(
                f"{_num(p, ',.2f')} ({_num(w, ',.0f')})" for p, w in levels)))
    members = d.get("members") or v.get("members") or {}
    for name, mv in members.items():
        out.append((name, f"wis {_num(mv.get('wis'), '.3f')}, z {_num(mv.get('wis_z'), '.2f')}"))
    peers = d.get("group_peers") or {}
    for name, pv in peers.items():
        out.append((f"Also {name}",
                    f"wis {_num(pv.get('wis'), '.3f')}, z {_num(pv.get('wis_z'), '.2f')}"))
    if "age_s" in v and alert["rule"] == "feed-stale":
        out.append(("No good sample for", f"{_num(v.get('age_s'), '.0f')} s"))
    if v.get("error"):
        out.append(("Last error", str(v["error"])))
    out.append(("Time", _utc(alert.get("ts"))))
    if d.get("runbook"):
        out.append(("Runbook", str(d["runbook"])))
    return out


def render(alert: dict[str, Any], template: dict[str, str | None] | None = None) -> Message:
    """The message of one alert event."""
    title = title_of(alert)
    facts = lines_of(alert)
    note = ""
    if template and (template.get("title") or template.get("body")):
        context = {**alert, "details": alert.get("details") or {},
                   "values": (alert.get("details") or {}).get("values") or {}}
        try:
            if template.get("title"):
                title = TEMPLATES.from_string(str(template["title"])).render(context).strip()
            if template.get("body"):
                body = TEMPLATES.from_string(str(template["body"])).render(context).strip()
                facts = [("", body), *facts]
        except Exception as exc:  # TemplateError, or the Python error of a filter on a null
            title, facts = title_of(alert), lines_of(alert)
            note = (f"(the rule's template failed: {type(exc).__name__}: {exc}; "
                    "default message shown)")
    text = "\n".join(f"{k}: {val}" if k else val for k, val in facts)
    markdown = "\n".join(f"**{k}:** {val}" if k else val for k, val in facts)
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(val)}</td></tr>" if k
        else f"<tr><td colspan='2'>{html.escape(val)}</td></tr>" for k, val in facts)
    body_html = f"<h3>{html.escape(title)}</h3><table>{rows}</table>"
    if note:
        text += "\n" + note
        markdown += "\n_" + note + "_"
        body_html += f"<p><i>{html.escape(note)}</i></p>"
    return Message(title, text, body_html, markdown)


def render_summary(alerts: Sequence[dict[str, Any]], channel: str, limit: int) -> Message:
    """One message folding alerts that exceeded the channel's flood limit."""
    title = f"[SUMMARY] {len(alerts)} more alert(s) on {channel} (flood limit {limit}/min)"
    items = [f"{_utc(a.get('ts'))} {title_of(a)}" for a in alerts]
    text = "\n".join(items)
    body_html = f"<h3>{html.escape(title)}</h3><ul>" + "".join(
        f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    markdown = "\n".join(f"• {i}" for i in items)
    return Message(title, text, body_html, markdown)
