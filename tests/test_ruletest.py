"""``wis-monitor test-rules``: the shipped rules pass their tests; a wrong expectation fails
with a readable diff; a broken test file is exit 2 with PATH:LINE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wis_monitor.ruletest import MISSING, parse_values

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
    text = text.replace("{at: 15s, rule: spread-blowout", "{at: 20s, rule: spread-blowout")
    text = text.replace("[../book-shape.yaml]", f"[{ROOT / 'rules' / 'book-shape.yaml'}]")
    f = tmp_path / "wrong.yaml"
    f.write_text(text)
    result = test_rules(str(f))
    assert result.returncode == 1
    out = result.stdout
    assert 'test "spread blow-out after 10s, cleared under 10 bps" FAILED' in out
    assert "expected:" in out and "got:" in out
    assert "-     20s spread-blowout kraken:BTC/USD firing" in out
    assert "+     15s spread-blowout kraken:BTC/USD firing" in out
    assert out.strip().endswith("3 passed, 1 failed")


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


NULLS_AND_FAILURES = """\
rule_files: [rules.yaml]
evaluation_interval: 5s
groups:
  btc: [a:BTC/USDT, b:BTC/USDT]
tests:
  - name: a null neither resolves a firing alert nor fires it again
    input_series:
      - series: a:BTC/USDT
        values:
          wis_z: "4x2 null null null 4 1x4"
    expected:
      - {at: 5s, rule: hot, key: "a:BTC/USDT", event: firing}
      - {at: 30s, rule: hot, key: "a:BTC/USDT", event: resolved}
  - name: a group rule does not count down on members whose fetches fail
    input_series:
      - series: a:BTC/USDT
        values: {wis_z: "4 _x8 4x5"}
      - series: b:BTC/USDT
        values: {wis_z: "4 _x8 4x5"}
    expected:  # the timers kept running through the failures, so all fire on recovery
      - {at: 30s, rule: feed-stale, key: "a:BTC/USDT", event: firing}
      - {at: 30s, rule: feed-stale, key: "b:BTC/USDT", event: firing}
      - {at: 45s, rule: feed-stale, key: "a:BTC/USDT", event: resolved}
      - {at: 45s, rule: feed-stale, key: "b:BTC/USDT", event: resolved}
      - {at: 45s, rule: hot, key: "a:BTC/USDT", event: firing}
      - {at: 45s, rule: hot, key: "b:BTC/USDT", event: firing}
      - {at: 45s, rule: together, key: "btc", event: firing}
"""
NULL_RULES = """\
rules:
  - {name: hot, when: wis_z >= 3, for: 5s}
  - {name: together, scope: group, group: btc, when: count(wis_z >= 3) >= 2, for: 15s}
"""


def test_nulls_and_failed_fetches_neither_advance_nor_clear(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(NULL_RULES)
    (tmp_path / "t.yaml").write_text(NULLS_AND_FAILURES)
    result = test_rules(str(tmp_path / "t.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_rule_in_an_expectation_is_a_file_problem_and_nullxn(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(NULL_RULES)
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
