"""`check` without secrets, `check-rules` on rule files alone, `replay --rules` without a
config, and notes on configs that can never alert: the real CLI in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SECRET = "hooks-T0-B0-s3cr3tvalue"


def cli(tmp: Path, *argv: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "WIS_MONITOR_CONFIG")}
    r = subprocess.run([sys.executable, "-m", "wis_monitor", *argv], capture_output=True,
                       text=True, timeout=60, cwd=tmp, env={**base, **(env or {})})
    assert "Traceback" not in r.stderr + r.stdout
    return r


CHANNELS = """\
venues:
  - {id: simx, exchange: sim, symbols: [BTC/USDT]}
channels:
  slack: {url: "${credential:slack-webhook}"}
  mail: {url: "mailtos://alerts:${credential:smtp-password}@smtp.example.com?to=r@example.com"}
  hook: {url: "json://${HOOK_HOST}/alerts"}
"""


def test_check_without_credentials_notes_what_it_could_not_read(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CHANNELS)
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 0, r.stderr
    assert 'c.yaml:4: note: credential "slack-webhook"' in r.stderr
    assert 'c.yaml:5: note: credential "smtp-password"' in r.stderr
    assert 'c.yaml:6: note: environment variable "HOOK_HOST" is not set' in r.stderr
    assert "apprise" not in r.stderr and "not an apprise URL" not in r.stderr
    assert "c.yaml: OK" in r.stdout


def test_check_strict_makes_an_unreadable_secret_a_problem(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CHANNELS)
    r = cli(tmp_path, "check", "--strict", "-c", "c.yaml")
    assert r.returncode == 2
    assert 'c.yaml:4: credential "slack-webhook" ($CREDENTIALS_DIRECTORY is not set)' in r.stderr
    assert "not an apprise URL" not in r.stderr and "cannot use this" not in r.stderr
    assert "3 problems found" in r.stderr


def test_check_strict_with_the_credentials_passes_and_never_prints_them(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CHANNELS)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "slack-webhook").write_text(f"json://localhost/{SECRET}\n")
    (creds / "smtp-password").write_text(SECRET)
    r = cli(tmp_path, "check", "--strict", "-c", "c.yaml",
            env={"CREDENTIALS_DIRECTORY": str(creds), "HOOK_HOST": "localhost:9"})
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr


def test_check_validates_the_shape_of_a_url_around_an_unresolved_reference(
        tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "venues: [{id: simx, exchange: sim, symbols: [BTC/USDT]}]\n"
        "channels:\n"
        '  bad: {url: "nosuchscheme://u:${credential:pw}@host"}\n'
        '  noscheme: {url: "u:${credential:pw}@host"}\n')
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 2
    assert 'c.yaml:3: channel "bad": apprise cannot use this nosuchscheme:// URL' in r.stderr
    assert 'c.yaml:4: channel "noscheme": not an apprise URL' in r.stderr


def test_docs_example_config_checks_from_a_shell(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "docs" / "examples" / "config.yaml"
    r = cli(tmp_path, "check", "-c", str(example))
    assert r.returncode == 0, r.stderr
    assert 'note: credential "slack-webhook"' in r.stderr
    assert "OK (3 venue(s)" in r.stdout


NEVER = """\
sampling: {interval: 5s, timeout: 3s}
metrics:
  zscore: {window: 1h, min_samples: 30}
venues:
  - {id: binance, exchange: sim, symbols: [BTC/USDT]}
  - id: okx
    exchange: sim
    symbols: [BTC/USDT, ETH/USDT]
    timeout: 5s
    metrics:
      zscore: {window: 1m}
rules:
  include: [r.yaml]
"""

NEVER_RULES = """\
rules:
  - name: wis-extreme
    when: abs(wis_z) >= 3
    for: 2h
  - name: wide
    when: spread_bps > 50
"""


def test_check_notes_settings_that_can_never_alert(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(NEVER)
    (tmp_path / "r.yaml").write_text(NEVER_RULES)
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 0, r.stderr
    assert ('c.yaml:9: note: venue "okx": timeout 5s is not shorter than the 5s interval'
            in r.stderr)
    assert ('c.yaml:11: note: venue "okx": metrics.zscore.min_samples 30 needs 30 samples, but '
            "the 1m window holds at most 12 at a 5s interval: wis_z, ofi_z never have a value"
            in r.stderr)
    assert ('r.yaml:2: note: rule "wis-extreme" uses wis_z, which never has a value on '
            "okx:BTC/USDT, okx:ETH/USDT" in r.stderr)
    assert 'r.yaml:2: note: rule "wis-extreme": for 2h is longer than the 1h z-score' in r.stderr
    assert 'venue "binance"' not in r.stderr and "binance:" not in r.stderr
    assert 'rule "wide" uses' not in r.stderr


RULES = """\
rules:
  - name: smoothed
    when: wis_s > 0.5
    channels: [desk-slack]
  - name: btc-divergence
    scope: group
    group: btc
    when: max(wis) - min(wis) > 1
  - name: broken
    when: wis >=
  - name: typo
    when: sprd_bps > 3 and nosuchfn(wis) > 1
"""


def test_check_rules_alone_reports_every_problem_and_notes_config_metrics(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    r = cli(tmp_path, "check-rules", "r.yaml", "bad.yaml")
    assert r.returncode == 2
    assert "r.yaml:10: rule \"broken\": when:" in r.stderr
    assert 'r.yaml:12: rule "typo": when: unknown function "nosuchfn"' in r.stderr
    assert "bad.yaml:2: invalid YAML" in r.stderr
    assert 'r.yaml:3: note: "wis_s" is not a built-in metric' in r.stderr
    assert '"btc"' not in r.stderr and "desk-slack" not in r.stderr  # not checked alone


def test_check_rules_passes_a_valid_file_and_the_shipped_rules(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES.split("  - name: broken")[0])
    r = cli(tmp_path, "check-rules", "r.yaml")
    assert r.returncode == 0, r.stderr
    assert "r.yaml: OK (2 rule(s))" in r.stdout
    shipped = sorted(str(p) for p in (Path(__file__).parent.parent / "rules").glob("*.yaml"))
    r = cli(tmp_path, "check-rules", *shipped)
    assert r.returncode == 0, r.stderr
    assert 'book-shape.yaml:34: note: "depth_avg" is not a built-in metric' in r.stderr
    example = Path(__file__).parent.parent / "docs" / "examples" / "config.yaml"
    r = cli(tmp_path, "check-rules", "-c", str(example), *shipped)
    assert r.returncode == 0, r.stderr
    assert "note" not in r.stderr


def test_check_rules_against_a_config_checks_names_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES.split("  - name: broken")[0])
    (tmp_path / "c.yaml").write_text(
        "venues: [{id: v, exchange: sim, symbols: [BTC/USDT]}]\n"
        "metrics: {smooth: {wis_x: {of: wis, half_life: 15s}}}\n"
        "groups: {eth: [v:BTC/USDT]}\n")
    r = cli(tmp_path, "check-rules", "-c", "c.yaml", "r.yaml")
    assert r.returncode == 2
    assert 'r.yaml:3: rule "smoothed": when: unknown metric "wis_s"' in r.stderr
    assert 'r.yaml:4: rule "smoothed": unknown channel "desk-slack"' in r.stderr
    assert 'r.yaml:7: rule "btc-divergence": unknown group "btc"' in r.stderr


def test_replay_rules_without_a_config(tmp_path: Path) -> None:
    books = Path(__file__).parent / "fixtures" / "rebuilt_books.jsonl"
    (tmp_path / "s.yaml").write_text(
        "rules:\n  - {name: priced, when: mid > 0, channels: [desk]}\n")
    r = cli(tmp_path, "replay", "--books", str(books), "--rules", "s.yaml")
    assert r.returncode == 0, r.stderr
    assert "priced" in r.stdout
    (tmp_path / "g.yaml").write_text(RULES.split("  - name: broken")[0])
    r = cli(tmp_path, "replay", "--books", str(books), "--rules", "g.yaml")
    assert r.returncode == 2
    assert ('g.yaml:5: rule "btc-divergence": a group rule needs the groups of a config: '
            "give -c CONFIG") in r.stderr
