"""``wis-monitor test-rules``: the shipped rules pass their tests; a wrong expectation fails
with a readable diff; a broken test file is exit 2 with PATH:LINE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wis_monitor.tools.ruletest import MISSING, parse_values

ROOT = Path(__file__).resolve().parents[1]
RULE_TESTS = sorted((ROOT / "rules" / "tests").glob("*.yaml"))


def test_rules(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", "test-rules", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


test_rules.__test__ = False  # type: ignore[attr-defined]


def test_every_example_rule_is_tested() -> None:
    tested: set[str] = set()
    for f in RULE_TESTS:
        tested.update(f.read_text().split())
    for rule_file in (ROOT / "rules").glob("*.yaml"):
        for line in rule_file.read_text().splitlines():
            if line.strip().startswith("- name:"):
                name = line.split(":", 1)[1].strip()
                assert any(name in t for t in tested), f"rule {name} has no test"


def test_shipped_rule_tests_pass() -> None:
    result = test_rules(*map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(" passed, 0 failed")


def test_wrong_expectation_fails_with_diff(tmp_path: Path) -> None:
    text = (ROOT / "rules" / "tests" / "book-shape.yaml").read_text()
    text = text.replace("{at: 4s, rule: spread-blowout", "{at: 5s, rule: spread-blowout")
    text = text.replace("[../book-shape.yaml]", f"[{ROOT / 'rules' / 'book-shape.yaml'}]")
    f = tmp_path / "wrong.yaml"
    f.write_text(text)
    result = test_rules(str(f))
    assert result.returncode == 1
    out = result.stdout
    assert 'test "spread blow-out after 3s, cleared under 0.5 bps" FAILED' in out
    assert "expected:" in out and "got:" in out
    assert "-      5s spread-blowout kraken:BTC/USD firing" in out
    assert "+      4s spread-blowout kraken:BTC/USD firing" in out
    assert out.strip().endswith("5 passed, 1 failed")


def test_invalid_test_file_is_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("rule_files: [r.yaml]\ntests:\n  - name: x\n    input_series: []\n    oops: 1\n")
    (tmp_path / "r.yaml").write_text("rules:\n  - name: r\n    when: wis > 1\n")
    result = test_rules(str(f))
    assert result.returncode == 2
    assert f"{f}:5:" in result.stderr and 'unknown key "oops"' in result.stderr
    assert "Traceback" not in result.stderr


def test_book_recording_input(tmp_path: Path) -> None:
    rec = tmp_path / "books.jsonl"
    lines = []
    for i in range(10):
        bid_q = 10.0 if i >= 3 else 1.0
        lines.append(
            f'{{"ts": {1000 * i}, "venue": "v", "symbol": "BTC/USDT", '
            f'"bids": [[100.0, {bid_q}], [99.9, 1.0]], "asks": [[100.1, 1.0], [100.2, 1.0]]}}'
        )
    rec.write_text("\n".join(lines) + "\n")
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - name: heavy-bids\n    when: wis > 0.5\n    for: 2s\n")
    (tmp_path / "t.yaml").write_text(
        "rule_files: [r.yaml]\ntests:\n  - name: from books\n    input_series:\n"
        "      - {series: 'v:BTC/USDT', books: books.jsonl}\n    expected:\n"
        "      - {at: 5s, rule: heavy-bids, key: 'v:BTC/USDT', event: firing}\n")
    result = test_rules(str(tmp_path / "t.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 2.5", [1.0, 2.5]),
        ("3x3", [3.0, 3.0, 3.0]),
        ("1+0.5x3", [1.0, 1.5, 2.0]),
        ("5-2x3", [5.0, 3.0, 1.0]),
        ("-1x2 null _", [-1.0, -1.0, None, MISSING]),
        ("_x2", [MISSING, MISSING]),
    ],
)
def test_value_notation(text: str, expected: list[object]) -> None:
    assert parse_values(text) == expected


def test_bad_value_token() -> None:
    with pytest.raises(ValueError, match='bad token "3y2"'):
        parse_values("1 3y2")


def rule_tests(tmp_path: Path, rules: str, tests: str) -> subprocess.CompletedProcess[str]:
    """Run ``tests`` (the body of a test file) against ``rules`` with test-rules."""
    (tmp_path / "rules.yaml").write_text(rules)
    (tmp_path / "t.yaml").write_text("rule_files: [rules.yaml]\nevaluation_interval: 5s\n"
                                     "groups: {btc: [a:BTC/USDT, b:BTC/USDT]}\n" + tests)
    return test_rules(str(tmp_path / "t.yaml"))


def test_a_pending_run_needs_unbroken_true_observations(tmp_path: Path) -> None:
    """A null is an observation that is not true: it restarts `for`. A failed fetch is no
    observation, but no good sample for stale_after (30 s here) breaks the run."""
    result = rule_tests(tmp_path, "rules:\n  - {name: hot, when: wis_z >= 3, for: 20s}\n", """\
tests:
  - name: a null at 15s restarts the 20s
    input_series:
      - {series: a:BTC/USDT, values: {wis_z: "4x3 null 4x6"}}
    expected:
      - {at: 40s, rule: hot, key: "a:BTC/USDT", event: firing}
  - name: one failed fetch is skipped
    input_series:
      - {series: a:BTC/USDT, values: {wis_z: "4x2 _ 4x2"}}
    expected:
      - {at: 20s, rule: hot, key: "a:BTC/USDT", event: firing}
  - name: 100s of failed fetches start the run over on the first good sample
    input_series:
      - {series: a:BTC/USDT, values: {wis_z: "4 _x20 4x5"}}
    expected:
      - {at: 30s, rule: feed-stale, key: "a:BTC/USDT", event: firing}
      - {at: 1m45s, rule: feed-stale, key: "a:BTC/USDT", event: resolved}
      - {at: 2m5s, rule: hot, key: "a:BTC/USDT", event: firing}
""")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_null_while_firing_changes_nothing_with_either_clear(tmp_path: Path) -> None:
    """Default and explicit `clear` alike: a null neither resolves nor restarts
    keep_firing_for, and repeats go on."""
    rules = """\
rules:
  - {name: plain, when: wis_z >= 3, repeat: 10s, keep_firing_for: 10s}
  - {name: hyst, when: imbalance >= 3, clear: imbalance < 2, repeat: 10s, keep_firing_for: 10s}
"""
    tests = "tests:\n"
    for name, values, resolved in (("null after clear", "4 1 null 1", "15s"),
                                    ("null when keep_firing_for ends", "4 1 1 null 1", "20s")):
        tests += f"""\
  - name: {name}
    input_series:
      - {{series: a:BTC/USDT, values: {{wis_z: "{values}", imbalance: "{values}"}}}}
    expected:
"""
        for rule in ("plain", "hyst"):
            tests += f"""\
      - {{at: 0s, rule: {rule}, key: "a:BTC/USDT", event: firing}}
      - {{at: 10s, rule: {rule}, key: "a:BTC/USDT", event: repeat}}
      - {{at: {resolved}, rule: {rule}, key: "a:BTC/USDT", event: resolved}}
"""
    result = rule_tests(tmp_path, rules, tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_group_member_keeps_its_last_good_values_through_a_failed_fetch(
        tmp_path: Path) -> None:
    rules = """\
rules:
  - {name: together, scope: group, group: btc, when: count(wis_z >= 3) >= 2, for: 10s}
  - {name: pair, scope: group, group: btc, when: count(spread_bps >= 3) >= 2}
  - {name: every, scope: group, group: btc, when: all(imbalance >= 3)}
"""
    result = rule_tests(tmp_path, rules, """\
stale_after: 20s
tests:
  - name: b fails once
    input_series:
      - {series: a:BTC/USDT, values: {wis_z: "4x5", spread_bps: "4x5", imbalance: "4x5"}}
      - series: b:BTC/USDT
        values: {wis_z: "4 4 _ 4 4", spread_bps: "4 4 _ 4 4", imbalance: "1 1 _ 1 1"}
    expected:
      - {at: 0s, rule: pair, key: btc, event: firing}
      - {at: 10s, rule: together, key: btc, event: firing}
  - name: b fails for stale_after and is left out
    input_series:
      - {series: a:BTC/USDT, values: {wis_z: "4x7", spread_bps: "4x7", imbalance: "4x7"}}
      - series: b:BTC/USDT
        values: {wis_z: "4 _x6", spread_bps: "4 _x6", imbalance: "1 _x6"}
    expected:
      - {at: 0s, rule: pair, key: btc, event: firing}
      - {at: 10s, rule: together, key: btc, event: firing}
      - {at: 20s, rule: feed-stale, key: "b:BTC/USDT", event: firing}
      - {at: 20s, rule: pair, key: btc, event: resolved}
      - {at: 20s, rule: together, key: btc, event: resolved}
      - {at: 20s, rule: every, key: btc, event: firing}
""")
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_rule_in_an_expectation_is_a_file_problem_and_nullxn(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: hot, when: wis_z >= 3, for: 5s}\n")
    (tmp_path / "t.yaml").write_text("""\
rule_files: [rules.yaml]
evaluation_interval: 5s
groups: {btc: [a:BTC/USDT, b:BTC/USDT]}
tests:
  - name: nullx3 holds no firing back and brings none about
    input_series:
      - series: a:BTC/USDT
        values: {wis_z: "nullx3 4x2"}
    expected:
      - {at: 20s, rule: hott, key: "a:BTC/USDT", event: firing}
""")
    result = test_rules(str(tmp_path / "t.yaml"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert 't.yaml:10: unknown rule "hott"' in result.stderr
    (tmp_path / "t.yaml").write_text((tmp_path / "t.yaml").read_text().replace("hott", "hot"))
    result = test_rules(str(tmp_path / "t.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
