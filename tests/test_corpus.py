"""The corpus of bad configs and rule files: each is refused with ``PATH[:LINE]: message``, exit
2, no traceback, quickly and in bounded memory; a SIGHUP with each leaves the daemon running on
its old config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from corpus_cases import (
    CREDENTIAL,
    SECRETS,
    Case,
    apply,
    cases,
    env,
    prepare,
    restore,
)
from daemon_harness import DaemonProcess, rows, wait_until

TESTS = Path(__file__).resolve().parent
LOCATED = re.compile(r"^/\S*?(:\d+)?: ")
SECRET_TEXTS = [*SECRETS.values(), CREDENTIAL.split(b"\xff")[0].decode(), "T0SECRE"]


def test_the_corpus_is_large_and_every_case_is_listed() -> None:
    listed = {c.file for c in cases()}
    on_disk = {p.name for p in (TESTS / "corpus" / "bad").glob("*.yaml")}
    assert listed == on_disk
    assert len(listed) >= 90


def assert_refused(case: Case, workdir: Path, code: int, stdout: str, stderr: str) -> None:
    """Exit 2, every line located, the expected one among them, no traceback, no secret."""
    assert code == 2, (case, stdout, stderr)
    assert "Traceback" not in stderr, (case, stderr)
    lines = stderr.splitlines()
    assert lines and re.fullmatch(r"\d+ problems? found", lines[-1]), (case, stderr)
    assert all(LOCATED.match(ln) for ln in lines[:-1]), (case, stderr)
    relative = [ln.replace(f"{workdir}/", "") for ln in lines]
    assert any(ln.startswith(f"{case.where}: ") and case.fragment in ln for ln in relative), (
        case, stderr)
    for secret in SECRET_TEXTS:
        assert secret not in stdout + stderr, (case, secret)


def test_every_case_is_refused_by_check_within_10s_and_1gib(tmp_path: Path) -> None:
    """One process, limited to 1 GiB of address space, runs ``check`` on every case."""
    result = subprocess.run(
        [sys.executable, str(TESTS / "corpus_cases.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = {o["file"]: o for o in map(json.loads, result.stdout.splitlines())}
    for case in cases():
        got = outcomes[case.file]
        assert got["seconds"] < 10, case
        assert_refused(case, tmp_path, got["code"], got["stdout"], got["stderr"])


@pytest.mark.parametrize("name", ["c-duration-overflow-days.yaml", "r-labels-recursive-alias.yaml",
                                  "c-alias-bomb.yaml", "c-include-dev-zero.yaml"])
def test_real_check_command(tmp_path: Path, name: str) -> None:
    case = next(c for c in cases() if c.file == name)
    config = prepare(tmp_path)
    apply(case, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "wis_monitor", "check", "-c", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env(tmp_path)})
    assert_refused(case, tmp_path, result.returncode, result.stdout, result.stderr)


@pytest.mark.parametrize("name", ["c-duration-overflow-seconds.yaml", "c-deep-nesting.yaml",
                                  "c-comments-only.yaml"])
def test_run_refuses_to_start_with_exit_2(tmp_path: Path, name: str) -> None:
    case = next(c for c in cases() if c.file == name)
    config = prepare(tmp_path)
    apply(case, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "wis_monitor", "run", "-c", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, **env(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert case.fragment in result.stderr.replace(f"{tmp_path}/", "")
    assert not (tmp_path / "wis.db").exists()


@pytest.mark.slow
def test_sighup_with_every_case_keeps_the_old_config_running(tmp_path: Path) -> None:
    config = prepare(tmp_path)
    db = tmp_path / "wis.db"
    d = DaemonProcess(config, env=env(tmp_path))

    def samples() -> int:
        got = rows(db, "SELECT count(*) AS n FROM samples")
        return int(got[0]["n"]) if got else 0

    try:
        assert wait_until(lambda: samples() >= 3), d.log()
        kept = "the previous configuration keeps running"  # the last line of a rejection
        for i, case in enumerate(cases()):
            apply(case, tmp_path)
            seen = len(d.log())
            d.signal(signal.SIGHUP)
            assert wait_until(lambda n=seen: kept in d.log()[n:], 10, every=0.02), (
                case, d.log()[-3000:])
            assert d.proc.poll() is None, (case, d.log()[-3000:])
            rejection = d.log()[seen:].replace(f"{tmp_path}/", "")
            assert f"{case.where}: " in rejection and case.fragment in rejection, (
                case, rejection)
            if i % 25 == 0:  # still sampling, on the old config
                before = samples()
                assert wait_until(lambda n=before: samples() > n, 10, every=0.05), case
        restore(tmp_path)
        before = samples()
        d.signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded " in d.log(), 10), d.log()[-3000:]
        assert wait_until(lambda: samples() > before + 2, 10)
    finally:
        code = d.stop()
    log = d.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert {r["venue"] for r in rows(db, "SELECT DISTINCT venue FROM samples")} == {"simex"}
    for secret in SECRET_TEXTS:
        assert secret not in log, secret
