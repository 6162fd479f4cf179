"""Alert messages a risk manager can act on: title, text, HTML and Slack markup.

Per-rule templates (``template: {title, body}``) render in jinja2's sandbox, within a time,
output and memory budget (:mod:`wis_monitor.template`); a template that fails or breaks its
budget falls back to the default message, which says so. ``check`` renders every template
against sample alerts of its rule (:func:`wis_monitor.rulefile.template_problems`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wis_monitor.across import amount_text
from wis_monitor.duration import format_duration
from wis_monitor.template import TemplateRenderError
from wis_monitor.template import render as render_template


@dataclass(frozen=True)
class Message:
    title: str
    text: str
    html: str
    markdown: str
    #: Why the rule's template was not used (the default message was), or None.
    template_error: str | None = None
    #: How the channel should style it: ``info``, ``warning``, ``critical`` (the severity of a
    #: firing alert) or ``resolved``.
    level: str = "info"


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


def _amount(x: Any) -> str:
    """An amount of the book: 5,452 and 12.5 as they are, 0.0042 with its digits."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return "-"
    return format(x, ",.4g") if abs(x) < 1000 else format(x, ",.0f")


def _depth_label(symbol: str | None, band_bps: Any) -> str:
    """``Depth (USDT within 50 bps)``: the notional's currency and the band it is summed over."""
    quote = (symbol or "").partition("/")[2].partition(":")[0]
    band = f"within {band_bps:.3g} bps" if isinstance(band_bps, int | float) else "within the band"
    return f"Depth ({quote + ' ' if quote else ''}{band})"


def _position(p: dict[str, Any]) -> str:
    """``-500 (50,000 USD); unwinding it now costs 3.10 bps``."""
    worth = f" ({_num(p.get('notional'), ',.0f')} {p.get('currency') or ''}".rstrip() + ")"
    unwind = p.get("unwind_bps")
    cost = (f"unwinding it now costs {_num(unwind, '.2f')} bps" if unwind is not None
            else "the book cannot fill its unwinding")
    h = p.get("hedge") or {}
    where = "" if h.get("cheapest") is None else (
        f"; cheapest to hedge: {h['cheapest']}, {_num(h.get('cheapest_bps'), '.2f')} bps"
        + (f"; split across {len(h['split_over'])} venues: {_num(h['split_bps'], '.2f')} bps"
           if h.get("split_bps") is not None else ""))
    return f"{_num(p.get('size'), '+,g')}{worth}; {cost}{where}"


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
        name = d.get("value_of")
        out.append(("Value", f"{name} = {_value(alert['value'])}" if name
                    else _value(alert["value"])))
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
        out.append((_depth_label(alert.get("symbol"), v.get("coverage_bps")
                                 if v.get("coverage_bps") is not None else d.get("depth_band_bps")),
                    f"bids {_num(v.get('bid_depth'), ',.0f')} / asks "
                    f"{_num(v.get('ask_depth'), ',.0f')}"))
    if d.get("position"):
        out.append(("Position", _position(d["position"])))
    if v.get("ofi") is not None:
        out.append(("OFI", f"{_num(v.get('ofi'), '.3f')}, z {_num(v.get('ofi_z'), '.2f')}"))
    for side in ("bids", "asks"):
        levels = sorted(d.get(f"top_{side}") or [], key=lambda lv: lv[0],
                        reverse=side == "bids")  # book order: the best price first
        if levels:
            out.append((f"Top {side} (price × amount)", ", ".join(
                f"{_num(p, ',.2f')} × {_amount(q)}" for p, q in levels)))
    members = d.get("members") or v.get("members") or {}
    for name, mv in members.items():
        out.append((name, f"wis {_num(mv.get('wis'), '.3f')}, z {_num(mv.get('wis_z'), '.2f')}"))
    out.extend(_across(metric, a) for metric, a in (v.get("across") or {}).items())
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


def _across(metric: str, a: dict[str, Any]) -> tuple[str, str]:
    """``Sell 1M``: ``cheapest okx BTC/USDT, 4.1 bps; split across 3 venues: 2.7 bps``."""
    cheapest = (f"cheapest {str(a['cheapest']).replace(':', ' ', 1)}, "
                f"{_num(a.get('cheapest_bps'), '.1f')} bps" if a.get("cheapest")
                else "no venue can fill it alone")
    split = (f"{_num(a['split_bps'], '.1f')} bps" if a.get("split_bps") is not None
             else "cannot be filled")
    return (f"{metric.partition('_')[0].capitalize()} {amount_text(float(a['size']))}",
            f"{cheapest}; split across {len(a.get('split_over') or [])} venues: {split}")


def render(alert: dict[str, Any], template: dict[str, str | None] | None = None) -> Message:
    """The message of one alert event (blocks while a template renders: at most its budget)."""
    title = title_of(alert)
    facts = lines_of(alert)
    problem = None
    if template and (template.get("title") or template.get("body")):
        try:
            custom = render_templates(alert, template)
        except TemplateRenderError as exc:
            problem = str(exc)
        else:
            title = custom.get("title", title)
            if "body" in custom:
                facts = [("", custom["body"]), *facts]
    text = "\n".join(f"{k}: {val}" if k else val for k, val in facts)
    markdown = "\n".join(f"**{k}:** {val}" if k else val for k, val in facts)
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(val)}</td></tr>" if k
        else f"<tr><td colspan='2'>{html.escape(val)}</td></tr>" for k, val in facts)
    body_html = f"<h3>{html.escape(title)}</h3><table>{rows}</table>"
    if problem:
        note = f"(the rule's template failed: {problem}; default message shown)"
        text += "\n" + note
        markdown += "\n_" + note + "_"
        body_html += f"<p><i>{html.escape(note)}</i></p>"
    level = "resolved" if alert["event"] == "resolved" else str(alert["severity"])
    return Message(title, text, body_html, markdown, problem, level)


def render_templates(alert: dict[str, Any], template: dict[str, str | None]) -> dict[str, str]:
    """The rendered title and body (those the template has); TemplateRenderError names which
    one failed."""
    details = alert.get("details") or {}
    context = {**alert, "details": details, "values": details.get("values") or {},
               "position": details.get("position")}
    out = {}
    for key in ("title", "body"):
        source = template.get(key)
        if not source:
            continue
        try:
            out[key] = render_template(str(source), context).strip()
        except TemplateRenderError as exc:
            raise TemplateRenderError(f"{key}: {exc}") from None
    return out


def render_group(alerts: Sequence[dict[str, Any]]) -> Message:
    """One message for a group of alerts (see a channel's ``group_by``): a line per series —
    its title, value and time — in the default format (rules' templates render one alert).

    Each series is shown as it is when the message is sent: its latest firing (or repeat)
    unless a resolution came after it, and its latest resolution. A series that fired and
    resolved while the group waited is listed as resolved only, after those firing."""
    firing, resolved = _current(alerts)
    shown = firing + resolved
    head = firing or resolved
    level = _gravest(shown)
    rules = sorted({str(a["rule"]) for a in head})
    what = rules[0] if len(rules) == 1 else f"{len(rules)} rules"
    suffix = " (repeat)" if {str(a["event"]) for a in head} == {"repeat"} else ""
    keys = {str(a["key"]) for a in head}
    first = head[0]
    where = f"on {len(keys)} series" if len(keys) > 1 else \
        " ".join(x for x in (first.get("venue"), first.get("symbol")) if x) or first["key"]
    # A resolved line also tells of its firing; count the alerts when the lines miss some.
    fired_here = {_series(a) for a in alerts if a["event"] != "resolved"}
    told = len(shown) + sum(_series(a) in fired_here for a in resolved)
    notes = [f"{len(alerts)} alerts"] if len(alerts) > told else []
    notes += [f"+{len(resolved)} resolved"] if firing and resolved else []
    note = f" ({', '.join(notes)})" if notes else ""
    title = f"[{level.upper()}] {what} {where}{suffix}{note}"
    items = []
    for a in shown:
        facts = dict(lines_of(a))
        extra = [facts[k] for k in ("Resolved", "Value", "Why") if k in facts]
        items.append("; ".join([title_of(a), *extra, _utc(a.get("ts"))]))
    runbooks = {str((a.get("details") or {}).get("runbook") or "") for a in shown} - {""}
    footer = [f"Runbook: {r}" for r in sorted(runbooks)]
    text = "\n".join(items + footer)
    markdown = "\n".join([f"• {i}" for i in items] + footer)
    body_html = f"<h3>{html.escape(title)}</h3><ul>" + "".join(
        f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" + "".join(
        f"<p>{html.escape(f)}</p>" for f in footer)
    return Message(title, text, body_html, markdown, level=level)


def _series(alert: dict[str, Any]) -> tuple[str, str]:
    return str(alert["rule"]), str(alert["key"])


def _current(alerts: Sequence[dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The alerts to list as firing and as resolved: per series, its latest firing-kind event
    if no resolution followed it, and its latest resolution (in the order series came)."""
    fired: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    ended: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    order = sorted(range(len(alerts)), key=lambda i: (alerts[i].get("ts") or 0, i))
    for rank, i in enumerate(order):
        a = alerts[i]
        (ended if a["event"] == "resolved" else fired)[_series(a)] = (rank, a)
    still = [a for key, (rank, a) in fired.items() if rank > ended.get(key, (-1, None))[0]]
    return still, [a for _rank, a in ended.values()]


def render_summary(alerts: Sequence[dict[str, Any]], channel: str, limit: int) -> Message:
    """One message folding alerts that exceeded the channel's flood limit."""
    title = f"[SUMMARY] {len(alerts)} more alert(s) on {channel} (flood limit {limit}/min)"
    items = [f"{_utc(a.get('ts'))} {title_of(a)}" for a in alerts]
    text = "\n".join(items)
    body_html = f"<h3>{html.escape(title)}</h3><ul>" + "".join(
        f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    markdown = "\n".join(f"• {i}" for i in items)
    return Message(title, text, body_html, markdown, level=_gravest(alerts))


def _gravest(alerts: Sequence[dict[str, Any]]) -> str:
    """The level of a summary: the severity of its gravest firing alert, else ``resolved``."""
    firing = {str(a["severity"]) for a in alerts if a["event"] != "resolved"}
    return next((s for s in ("critical", "warning", "info") if s in firing), "resolved")
