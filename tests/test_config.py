"""Config and rule loading: every problem at once as PATH:LINE, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wis_monitor.config import load_config
from wis_monitor.errors import ConfigError

GOOD = """\
storage: {path: wis.db}
sampling: {interval: 2s}
venues:
  - id: sim1
    exchange: sim
    symbols: [BTC/USDT]
  - id: sim2
    exchange: sim
    symbols: [BTC/USDT]
groups:
  btc: [sim1:BTC/USDT, sim2:BTC/USDT]
channels:
  console: {url: "console://"}
rules:
  include: [rules/*.yaml]
"""

RULES = """\
rules:
  - name: bid-pressure
    when: wis_z >= 3 and depth > 1000
    for: 30s
    channels: [console]
  - name: consensus
    scope: group
    group: btc
    when: count(wis_z >= 3) >= 2
"""


def write(tmp_path: Path, main: str, rules: str = RULES) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(rules)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(main)
    return cfg


def check(cfg: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wis_monitor", "check", "-c", str(cfg)],
        capture_output=True, text=True, env=env, timeout=60,
    )


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path, GOOD)))
    assert [r.name for r in cfg.rules] == ["bid-pressure", "consensus"]
    assert cfg.interval_ms(cfg.settings.venues[0]) == 2000
    assert cfg.stale_after_ms(cfg.settings.venues[0]) == 30_000  # 3 x 2s, at least 30s
    result = check(cfg.path and Path(cfg.path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "2 rule(s)" in result.stdout


def test_five_mistakes_five_lines(tmp_path: Path) -> None:
    main = GOOD.replace("interval: 2s", "interval: 2 seconds").replace(
        "    symbols: [BTC/USDT]\n  - id: sim2",
        "    symbols: [BTC/USDT]\n    depht: 5\n  - id: sim2",
    ).replace("btc: [sim1:BTC/USDT, sim2:BTC/USDT]", "btc: [sim1:BTC/USDT, sim3:BTC/USDT]")
    rules = RULES.replace("channels: [console]", "channels: [consol]").replace(
        "when: wis_z >= 3 and depth > 1000", "when: wis_zz >= 3 and depth > 1000"
    )
    result = check(write(tmp_path, main, rules))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ":" in ln and "problem" not in ln]
    assert len(lines) == 5, result.stderr
    cfg, rls = str(tmp_path / "config.yaml"), str(tmp_path / "rules" / "r.yaml")
    expected = {
        f"{cfg}:2:": "bad duration",
        f"{cfg}:7:": 'unknown key "depht" (did you mean "depth"?)',
        f"{cfg}:12:": '"sim3:BTC/USDT" is not a configured venue',
        f"{rls}:3:": 'unknown metric "wis_zz"',
        f"{rls}:5:": 'unknown channel "consol" (did you mean "console"?)',
    }
    for prefix, text in expected.items():
        assert any(ln.startswith(prefix) and text in ln for ln in lines), (prefix, lines)


@pytest.mark.parametrize(
    ("main", "message"),
    [
        ("venues: [\n", "invalid YAML"),
        ("sampling: {interval: 5s}\nsampling: {timeout: 1s}\n", 'duplicate key "sampling"'),
        ("channels:\n  slack: {url: '${NO_SUCH_VAR_X}'}\n",
         'environment variable "NO_SUCH_VAR_X" is not set'),
        ("channels:\n  slack: {url: '${credential:hook}'}\n", 'credential "hook"'),
        ("venues:\n  - {id: a, exchange: binanceusdm, symbols: [X/Y], depth: 7}\n",
         "allowed: 5, 10, 20, 50, 100, 500, 1000"),
        ("venues:\n  - {id: a, exchange: binanse, symbols: [X/Y]}\n",
         'did you mean "binance"'),
        ("rules: {include: [nothing/*.yaml]}\n", 'no rule file matches "nothing/*.yaml"'),
        ("http: {listen: 'localhost:abc'}\n", "is not HOST:PORT"),
        ("channels:\n  a: {url: 'slak://T0/B0/sekrit'}\n", "apprise cannot use this slak:// URL"),
        ("metrics: {zscore: {window: 0s}}\n", "window must be longer than 0s"),
        ("venues:\n  - {id: r, exchange: replay, books: /no/such.jsonl, symbols: [X/Y]}\n",
         'no recording at "/no/such.jsonl"'),
        ("venues:\n  - {id: s, exchange: sim, mode: stream, symbols: [X/Y]}\n",
         ':2: venue "s": exchange "sim" has no order-book stream in ccxt.pro'),
        ("venues:\n  - {id: b, exchange: binance, mode: websocket, symbols: [X/Y]}\n",
         "'poll' or 'stream'"),
        ("venues:\n  - {id: b, exchange: binance, mode: stream, symbols: [X/Y],\n"
         "     stream: {stale_after: 0s, drift_bps: -1}}\n", "must be longer than 0s"),
    ],
)
def test_single_mistakes(tmp_path: Path, main: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(main)
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={})
    text = str(info.value)
    assert message in text, text
    assert text.startswith(f"{cfg}:")


def test_secret_values_never_in_messages(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("channels:\n  s: {url: '${HOOK}', bogus: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={"HOOK": "slack://T000/B000/sekrit-token-123"})
    assert "sekrit-token-123" not in str(info.value)
    assert 'unknown key "bogus"' in str(info.value)


def test_rule_errors_name_rule_and_line(tmp_path: Path) -> None:
    rules = textwrap.dedent("""\
        rules:
          - name: a
            when: wis > 0.5
          - name: a
            when: count(wis > 1) > 1
          - name: c
            when: wis_z >
            treshold: 3
    """)
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, GOOD, rules)))
    text = str(info.value)
    assert 'r.yaml:4: rule "a": duplicate rule name' in text
    assert 'r.yaml:5: rule "a": when:' in text and "group" in text
    assert 'r.yaml:8: rule "c": unknown key "treshold"' in text


def test_check_without_config_file(tmp_path: Path) -> None:
    result = check(tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert "cannot read file" in result.stderr and "Traceback" not in result.stderr


def test_reserved_name_template_syntax_and_errors_behind_a_bad_key(tmp_path: Path) -> None:
    rules = textwrap.dedent("""\
        rules:
          - name: feed-stale
            when: wis > 0.5
          - name: t
            when: wis > 0.5
            template: {body: "WIS {{ values.wis"}
          - name: t
            when: wis > 0.5
            severity: dire
    """)
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, GOOD, rules)))
    text = str(info.value)
    assert 'r.yaml:2: rule "feed-stale": "feed-stale" is the built-in feed rule' in text
    assert 'r.yaml:6: rule "t": template body:' in text
    # The invalid severity does not hide the duplicate name of the same rule.
    assert 'r.yaml:9: rule "t": severity' in text
    assert 'r.yaml:7: rule "t": duplicate rule name' in text


def test_a_bad_key_does_not_hide_the_other_problems_of_its_section(tmp_path: Path) -> None:
    main = textwrap.dedent("""\
        venues:
          - {id: a, exchange: binanceusdm, symbols: [BTC/USDT:USDT], depth: 7}
          - {id: b, exchange: okx, symbols: [BTC/USDT], colour: red}
          - {id: b, exchange: binanse, symbols: BTC/USDT}
        channels:
          c1: {url: "console://", per_minute: 0}
        rules: [a.yaml]
    """)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(main)
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={})
    lines = str(info.value).splitlines()
    for line, text in [(2, "depth 7 is not supported"), (3, 'unknown key "colour"'),
                       (4, 'duplicate venue id "b"'), (4, 'did you mean "binance"'),
                       (4, "symbols: Input should be a valid list"), (6, "per_minute"),
                       (7, "rules: should be a mapping")]:
        assert any(ln.startswith(f"{cfg}:{line}:") and text in ln for ln in lines), (line, text,
                                                                                     lines)


def test_check_notes_what_is_valid_but_probably_not_meant(tmp_path: Path) -> None:
    rules = "rules:\n  - {name: quiet, when: wis > 0.5, match: {symbol: 'ETH/*'}}\n"
    result = check(write(tmp_path, GOOD, rules))
    assert result.returncode == 0, result.stderr
    assert 'r.yaml:2: note: rule "quiet" has no channels' in result.stderr
    assert 'r.yaml:2: note: rule "quiet" matches no configured venue and symbol' in result.stderr


def test_rule_z_levels_feed_the_chart_threshold_lines(tmp_path: Path) -> None:
    rules = "rules:\n  - {name: p, when: wis_z >= 2.5 or wis_z <= -2.5 and depth > 3}\n"
    cfg = load_config(str(write(tmp_path, GOOD, rules)))
    assert cfg.rules[0].z_levels() == (2.5, -2.5)
