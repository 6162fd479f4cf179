"""Rule templates render within a budget of time, output and memory: a template that loops,
builds a huge number or string, or eats memory falls back to the default message within about
a second; ordinary templates render as jinja2 renders them; `check` renders every template
against sample alerts of its rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from wis_monitor.message import Message, render
from wis_monitor.template import BUDGET_S, MEMORY_BYTES, RENDERER

ROW: dict[str, Any] = {
    "rule": "r", "key": "binance:BTC/USDT", "venue": "binance", "symbol": "BTC/USDT",
    "event": "firing", "severity": "warning", "value": 3.2, "ts": 1_700_000_000_000,
    "labels": {"desk": "spot"},
    "details": {"values": {"wis": 0.61, "wis_z": 3.2, "mid": 61234.5},
                "top_bids": [[61230.0, 250000.0], [61229.5, 1000.0]]}}
DEFAULT_TITLE = "[WARNING] r binance BTC/USDT"
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"

HOSTILE = {
    "nested-loop": LOOP,
    "huge-power": "{{ 9**99999999 }}",
    "huge-repetition": "{{ 'x' * 100000000 }}",
    "huge-percent-format": "{{ '%0999999999d' % 1 }}",
    "huge-str-format": "{{ '{:0999999999}'.format(1) }}",
    "doubling-string": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "output-flood": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
                    "{% endfor %}",
}


def timed_render(template: dict[str, str | None]) -> tuple[Message, float]:
    render(ROW, {"title": "warm", "body": None})  # a rendering process is up: not timed
    start = time.monotonic()
    msg = render(ROW, template)
    return msg, time.monotonic() - start


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_template_breaking_its_budget_falls_back_within_it(body: str) -> None:
    msg, took = timed_render({"title": "{{ rule }} custom", "body": body})
    assert took < BUDGET_S + 0.5, took
    assert msg.title == DEFAULT_TITLE
    assert (msg.template_error or "").startswith("body: ")
    assert "template failed" in msg.text and "Value: 3.200" in msg.text
    assert len(msg.text) < 2000


def test_ordinary_templates_render_as_jinja_renders_them() -> None:
    plain = SandboxedEnvironment(autoescape=False)
    context = {**ROW, "values": ROW["details"]["values"]}
    for source in (
            "{{ rule }} on {{ venue }}: z={{ '%.1f' % values.wis_z }}",
            "{% for p, w in details.top_bids %}{{ p }} ({{ '{:,.0f}'.format(w) }}) {% endfor %}",
            "{{ labels.desk | upper }} {{ (values.mid * 2) | round(1) }} {{ 2 ** 10 }}"
            " {{ '-' * 20 }} {{ values | dictsort | map('first') | join(',') }}",
            "{% if values.wis_z > 3 %}high{% else %}low{% endif %} {{ range(5) | sum }}"):
        msg = render(ROW, {"title": source, "body": source})
        expected = plain.from_string(source).render(context).strip()
        assert msg.title == expected and msg.text.startswith(expected + "\n")
        assert msg.template_error is None


def test_a_template_that_overran_is_not_run_again() -> None:
    first, took = timed_render({"title": LOOP + "{{ rule }}", "body": None})
    assert took >= BUDGET_S
    assert first.template_error == f"title: did not finish within {BUDGET_S:g}s"
    start = time.monotonic()
    again = render(ROW, {"title": LOOP + "{{ rule }}", "body": None})
    assert time.monotonic() - start < 0.2
    assert again.template_error == first.template_error
    assert render(ROW, {"title": "{{ venue }}", "body": None}).title == "binance"


def test_a_rendering_process_that_died_is_replaced() -> None:
    render(ROW, {"title": "warm", "body": None})
    pid = RENDERER.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert render(ROW, {"title": "{{ symbol }}", "body": None}).title == "BTC/USDT"
    assert RENDERER.pid not in (None, pid)


def test_the_rendering_process_has_no_secret_and_a_memory_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    RENDERER.close()
    monkeypatch.setenv("WIS_TEST_SECRET", "s3cret-in-the-environment")
    assert render(ROW, {"title": "{{ rule }}", "body": None}).title == "r"
    pid = RENDERER.pid
    assert b"s3cret" not in Path(f"/proc/{pid}/environ").read_bytes()
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert f"Max address space         {MEMORY_BYTES}" in limits


GOOD = """\
storage: {path: %(db)s}
venues:
  - {id: simex, exchange: sim, symbols: [BTC/USDT, ETH/USDT], sim: {seed: 1}}
groups: {majors: ["simex:BTC/USDT", "simex:ETH/USDT"]}
rules: {include: [r.yaml]}
"""


def test_check_renders_every_template_against_sample_alerts(tmp_path: Path) -> None:
    rules = {name: f"{{body: {json.dumps(body)}}}" for name, body in HOSTILE.items()}
    rules.update({
        "null-metric": "{title: '{{ values.nothing | round(2) }}'}",
        "resolved-fails": "{body: '{{ 1 / (1 if event == \"firing\" else 0) }}'}",
        "fine": "{title: '{{ rule }} {{ venue }} {{ symbol }} {{ labels.desk }}',"
                " body: '{{ \"%.1f\" % values.wis_z }} {{ values.mid | round(1) }}"
                " {{ details.fired_for_ms }} {{ attempts + 1 }} {{ channel }}'}",
        "fine-group": "{body: '{% for m, v in values.members | dictsort %}{{ m }}={{ v.wis_z }}"
                      " {% endfor %}'}",
        # The sample alert is on the first series the rule matches: simex BTC/USDT.
        "loops-on-eth-only": f"{{body: '{{% if symbol == \"ETH/USDT\" %}}{LOOP}{{% endif %}}'}}",
    })
    text, line_of = "rules:\n", {}
    for name, template in rules.items():
        group = "count(wis_z >= 3) >= 2" if name == "fine-group" else ""
        text += (f"  - name: {name}\n    when: {group or 'wis_z >= 3'}\n"
                 + ("    scope: group\n    group: majors\n" if group else "")
                 + "    labels: {desk: spot}\n")
        line_of[name] = text.count("\n") + 1
        text += f"    template: {template}\n"
    (tmp_path / "r.yaml").write_text(text)
    (tmp_path / "c.yaml").write_text(GOOD % {"db": tmp_path / "wis.db"})
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c",
                          str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    reported = {}
    for line in out.stderr.splitlines():
        if line.startswith(f"{tmp_path / 'r.yaml'}:"):
            _path, number, rest = line.split(":", 2)
            name = rest.split('"')[1]
            reported[name] = rest
            assert int(number) == line_of[name], line
            assert rest.startswith(f' rule "{name}": template '), line
    assert set(reported) == {*HOSTILE, "null-metric", "resolved-fails"}, out.stderr
    assert "title: rendering a sample firing alert: TypeError" in reported["null-metric"]
    assert "body: rendering a sample resolved alert: ZeroDivisionError" in \
        reported["resolved-fails"]
    assert f"did not finish within {BUDGET_S:g}s" in reported["nested-loop"]
    assert "more than 10000 characters of output" in reported["output-flood"]
    assert "MemoryError" in reported["doubling-string"]
    assert took < 10, took


def test_the_rendering_process_ends_with_its_parent() -> None:
    """A parent killed mid-render cannot kill its rendering process: that one stops itself."""
    script = textwrap.dedent(f"""\
        import sys, threading
        from wis_monitor.template import Renderer
        r = Renderer(budget_s=60)
        r.render("warm", {{}})
        print(r.pid, flush=True)
        r.render({LOOP!r}, {{}})
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    stat = Path(f"/proc/{pid}/stat")

    def state() -> str:
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return "gone"

    deadline = time.monotonic() + 10
    while state() != "R" and time.monotonic() < deadline:  # rendering the loop
        time.sleep(0.05)
    assert state() == "R"
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while state() not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() in ("gone", "Z")
