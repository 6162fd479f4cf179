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
