"""Hostile and clumsy configs: whatever is in the files, loading ends in a located ConfigError,
quickly and in bounded memory, and never quotes a secret."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wis_monitor.config import load_config
from wis_monitor.duration import parse_duration
from wis_monitor.errors import ConfigError
from wis_monitor.expr import ExprError, compile_expr

VENUE = "venues:\n  - {id: s, exchange: sim, symbols: [BTC/USDT]}\n"
CHANNEL = "channels:\n  c: {url: 'console://'}\n"


def problems(cfg: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env=env or {})
    return str(info.value).splitlines()


def located(lines: list[str], where: str, text: str) -> bool:
    return any(ln.startswith(f"{where}: ") and text in ln for ln in lines)


def main_with_rules(tmp_path: Path, rules: str | bytes, extra: str = "") -> Path:
    rule_file = tmp_path / "r.yaml"
    if isinstance(rules, bytes):
        rule_file.write_bytes(rules)
    else:
        rule_file.write_text(rules)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + CHANNEL + extra + "rules:\n  include: [r.yaml]\n")
    return cfg


@pytest.mark.parametrize("text", ["99999999999999999999s", "99999999999d", "1e400s",
                                  "9" * 5000 + "ms"])
def test_huge_durations_are_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"too long|bad duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["\u0661\u0660s", "\uff15s", "5\u00a0s", "\u00a05s", "5s\u00a0"])
def test_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_huge_cooldown_in_a_rule_is_located(tmp_path: Path) -> None:
    cfg = main_with_rules(
        tmp_path, "rules:\n  - name: a\n    when: wis > 0\n    cooldown: 99999999999999999999s\n")
    assert located(problems(cfg), f"{tmp_path / 'r.yaml'}:4", "too long")


def test_recursive_alias_is_located(tmp_path: Path) -> None:
    cfg = main_with_rules(
        tmp_path, "rules:\n  - name: a\n    when: wis > 0\n    labels: &a [*a]\n")
    assert located(problems(cfg), f"{tmp_path / 'r.yaml'}:4", "nested")


def test_merge_keys_of_merge_keys_stay_small(tmp_path: Path) -> None:
    lines = ["a: &a {" + ", ".join(f"k{i}: 1" for i in range(10)) + "}"]
    for level in "bcdefgh":
        prev = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} {{<<: [" + ", ".join([f"*{prev}"] * 10) + "]}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "\n".join(lines) + "\n")
    start = time.monotonic()
    found = problems(cfg)
    assert time.monotonic() - start < 2
    assert located(found, f"{cfg}:10", 'unknown key "h"'), found


def test_deep_nesting_is_located(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "storage: " + "[" * 5000 + "]" * 5000 + "\n")
    assert located(problems(cfg), f"{cfg}:3", "nested more than")


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    lines = ["a: &a [" + ",".join(["x"] * 10) + "]"]
    for level in "bcdefgh":
        prev = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{prev}"] * 10) + "]")
    cfg = main_with_rules(tmp_path, "rules: []\n" + "\n".join(lines) + "\n")
    start = time.monotonic()
    found = problems(cfg)
    assert time.monotonic() - start < 2
    assert any(ln.startswith(f"{tmp_path / 'r.yaml'}:") and "values" in ln for ln in found), found


def test_alias_bomb_as_a_mapping_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "x: &x [1, 2]\n? *x\n: 1\n")
    assert any(ln.startswith(f"{cfg}:") and "keys must be plain scalars" in ln
               for ln in problems(cfg))


def test_huge_integer_literal_is_located(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "channels:\n  c: {url: 'console://', per_minute: " + "9" * 5000 + "}\n")
    assert any(ln.startswith(f"{cfg}:4: ") for ln in problems(cfg))


def test_big_and_special_files_are_refused_and_name_the_including_line(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("rules: []\n" + "#" * (2 << 20) + "\n")
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "latin1.yaml").write_bytes("rules: []\n# caf\xe9\n".encode("latin-1"))
    (tmp_path / "utf16.yaml").write_bytes("rules: []\n".encode("utf-16"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "rules:\n  include:\n    - big.yaml\n    - adir\n    - fifo.yaml\n"
                   "    - /dev/zero\n    - latin1.yaml\n    - utf16.yaml\n")
    found = problems(cfg)
    assert located(found, f"{cfg}:6", '"adir" is a directory'), found
    for name, line, text in [("big.yaml", 5, "larger than"), ("fifo.yaml", 7, "not a regular"),
                             ("latin1.yaml:2", 9, "not UTF-8"), ("utf16.yaml", 10, "UTF-16")]:
        assert located(found, str(tmp_path / name), text), (name, found)
        assert any(f"(included from {cfg}:{line})" in ln for ln in found if name in ln), found
    assert located(found, "/dev/zero", "not a regular file"), found


@pytest.mark.parametrize("path", ["/dev/zero", "DIR"])
def test_config_path_that_is_not_a_file(tmp_path: Path, path: str) -> None:
    target = str(tmp_path) if path == "DIR" else path
    found = problems(Path(target))
    assert found[0].startswith(f"{target}: ") and "file" in found[0], found


def test_string_channel_from_a_secret_is_not_quoted(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + 'channels:\n  c: "${SLACK_URL}"\n'
                   "venues2: {exchange: '${SLACK_URL}'}\n")
    secret = "https://hooks.slack.com/services/T0SECRET/B0/xyz"
    text = "\n".join(problems(cfg, {"SLACK_URL": secret}))
    assert "T0SECRE" not in text and "hooks.slack" not in text, text
    assert located(text.splitlines(), f"{cfg}:4", "${SLACK_URL}"), text


def test_secret_quoted_by_a_check_is_not_echoed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("venues:\n  - {id: s, exchange: '${EX}', symbols: [X/Y]}\n"
                   "http: {listen: '${LISTEN}'}\n")
    text = "\n".join(problems(cfg, {"EX": "sekrit-exchange-name", "LISTEN": "sekrit-listen"}))
    assert "sekrit" not in text, text


@pytest.mark.parametrize("name", ["../etc/hostname", "/etc/hostname", "", "..", "a/b", "."])
def test_credential_names_are_plain_file_names(tmp_path: Path, name: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (tmp_path / "hostname").write_text("leaked-contents")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "channels:\n  c: {url: '${credential:" + name + "}'}\n")
    found = problems(cfg, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert located(found, f"{cfg}:4", "plain file name"), found
    assert "leaked" not in "\n".join(found)


def test_a_binary_credential_is_located_and_not_echoed(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "bin").write_bytes(b"sekrit\xff\xfe")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "channels:\n  c: {url: '${credential:bin}'}\n")
    found = problems(cfg, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert located(found, f"{cfg}:4", 'credential "bin"'), found
    assert "sekrit" not in "\n".join(found)


@pytest.mark.parametrize("text", ["", "# only a comment\n\n# another\n", "---\n"])
def test_empty_config_is_refused(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert any(ln.startswith(f"{cfg}") and "empty" in ln for ln in problems(cfg))


@pytest.mark.parametrize(("section", "line_no", "message"), [
    ("sampling: {timeout: 0s}\n", 3, "longer than 0s"),
    ("sampling: {stale_after: 0s}\n", 3, "longer than 0s"),
    ("storage: {retention: 0s}\n", 3, "longer than 0s"),
    ("sampling: {interval: 1s, jitter: 1s}\n", 3, "jitter"),
    ("metrics: {wis: {band_bps: .inf}}\n", 3, "finite"),
    ("metrics: {wis: {half_life_bps: .nan}}\n", 3, "finite"),
    ("metrics: {wis: {half_life_levels: .inf}}\n", 3, "finite"),
    ("storage: {record_levels_bps: .inf}\n", 3, "finite"),
])
def test_settings_that_cannot_work(tmp_path: Path, section: str, line_no: int,
                                   message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + section)
    assert located(problems(cfg), f"{cfg}:{line_no}", message)


@pytest.mark.parametrize(("venue", "message"), [
    ("{id: s, exchange: sim, symbols: [BTC/USDT], timeout: 0s}", "longer than 0s"),
    ("{id: s, exchange: sim, symbols: [BTC/USDT], stale_after: 0s}", "longer than 0s"),
    ("{id: s, exchange: sim, symbols: [BTC/USDT], interval: 1s}\nsampling: {jitter: 2s}",
     "jitter"),
    ("{id: s, exchange: sim, symbols: [BTC/USDT], sim: {price: .inf}}", "finite"),
    ("{id: s, exchange: sim, symbols: [BTC/USDT], sim: {tick: .nan}}", "finite"),
    ("{id: s, exchange: sim, symbols: ['']}", "symbol"),
    ('{id: s, exchange: sim, symbols: ["BTC/\\nUSDT"]}', "symbol"),
    ('{id: s, exchange: sim, symbols: ["BTC\\u0007"]}', "symbol"),
    ('{id: "s\\n", exchange: sim, symbols: [BTC/USDT]}', "id"),
])
def test_venue_settings_that_cannot_work(tmp_path: Path, venue: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"venues:\n  - {venue}\n")
    found = problems(cfg)
    assert any(ln.startswith(f"{cfg}:") and message in ln for ln in found), found


def test_names_with_control_characters(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + 'channels:\n  "c\\n": {url: "console://"}\n'
                   'groups:\n  "g\\n": ["s:BTC/USDT"]\n')
    found = problems(cfg)
    assert located(found, f"{cfg}:4", "channel name"), found
    assert located(found, f"{cfg}:6", "group name"), found


@pytest.mark.parametrize("text", ["wis_z >= \u0663", "wis_z >= \uff13", "wis_z >=\u00a03",
                                  "wis_z >= 3\u00a0", "\u00a0wis_z >= 3"])
def test_expressions_take_ascii_only(text: str) -> None:
    with pytest.raises(ExprError, match="non-ASCII"):
        compile_expr(text, {"wis_z"}, want="bool")


def test_check_exits_2_without_traceback_on_overflow(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(VENUE + "sampling: {interval: 99999999999d}\n")
    result = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{cfg}:3: "), result.stderr


def test_run_exits_2_on_an_empty_config_and_creates_no_database(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("# nothing here\n")
    result = subprocess.run([sys.executable, "-m", "wis_monitor", "run", "--once", "-c", str(cfg)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "wis.db").exists()
