"""No secret text leaves the process: a real daemon run with secrets in channel URLs, in a
venue's ccxt URLs and in the errors they cause, then every output is searched for them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, rows, wait_until
from test_operations import free_port
from webhook import Receiver

pytestmark = pytest.mark.slow

#: name -> value; env variables and credential files alike.
ENV_SECRETS = {"HOOK_PASS": "envHookPass-4f1c9a", "PROXY_PASS": "envProxyPass-b83e2d",
               "DEAD_PASS": "envDeadPass-70aa1f"}
CREDENTIALS = {"hook-token": "credHookToken-19c4e7", "venue-key": "credVenueKey-5d2b60",
               "dead-token": "credDeadToken-e3f812", "wiki-token": "credWikiToken-0b7d44"}
SECRETS = [*ENV_SECRETS.values(), *CREDENTIALS.values()]




def setup(tmp_path: Path, receiver: Receiver) -> tuple[Path, Path, int, dict[str, str]]:
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name, value in CREDENTIALS.items():
        (creds / name).write_text(value + "\n")
    db, port = tmp_path / "wis.db", free_port()
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: always\n    when: mid > 0\n    channels: [hook]\n"
        "    runbook: 'https://wiki.example/wis?token=${credential:wiki-token}'\n")
    cfg = tmp_path / "config.yaml"
    # okx at a closed port: every fetch fails with an error quoting the URL, userinfo included.
    cfg.write_text(f"""\
storage: {{path: {db}}}
sampling: {{interval: 300ms, timeout: 2s, stale_after: 1s}}
venues:
  - {{id: simex, exchange: sim, symbols: [BTC/USDT]}}
  - id: okx
    exchange: okx
    symbols: [BTC/USDT]
    ccxt:
      urls: {{api: {{rest: "http://proxyuser:${{PROXY_PASS}}@127.0.0.1:9/${{credential:venue-key}}"}}}}
      options: {{fetchMarkets: {{types: [spot]}}}}
channels:
  hook: {{url: "json://hookuser:${{HOOK_PASS}}@127.0.0.1:{receiver.port}/h/${{credential:hook-token}}",
         group_by: []}}
  dead: {{url: "json://deaduser:${{DEAD_PASS}}@127.0.0.1:9/d/${{credential:dead-token}}",
          timeout: 1s, group_by: []}}
http: {{listen: "127.0.0.1:{port}"}}
rules: {{include: [rules.yaml]}}
""")
    env = {**ENV_SECRETS, "CREDENTIALS_DIRECTORY": str(creds)}
    return cfg, db, port, env


def cli(env: dict[str, str], *args: str) -> str:
    """stdout and stderr of one CLI command."""
    done = subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})
    return done.stdout + done.stderr


def http_get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as exc:  # /healthz may well say 503
        return str(exc.read().decode())


def database_dump(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def test_no_secret_in_any_output(tmp_path: Path, receiver: Receiver) -> None:
    cfg, db, port, env = setup(tmp_path, receiver)
    d = DaemonProcess(cfg, env=env, options=("--log-format", "json"))
    try:
        # The feed-stale alert, whose body quotes the venue's last error, and a rule's alert
        # with its runbook reach the hook; the dead channel has failed at least once.
        assert wait_until(lambda: any("feed-stale" in b for b in receiver.bodies)
                          and any("Runbook" in b for b in receiver.bodies), 15), d.log()
        assert wait_until(lambda: rows(db, "SELECT 1 FROM deliveries WHERE channel = 'dead'"
                                           " AND last_error IS NOT NULL"), 10), d.log()
        served = {path: http_get(port, path) for path in ("/healthz", "/metrics")}
    finally:
        assert d.stop() == 0, d.log()
    outputs = {
        "daemon log (json)": d.log(),
        "database": database_dump(db),
        "status (from a shell without the secrets)": cli({}, "status", "-c", str(cfg)),
        "notify-test hook": cli(env, "notify-test", "-c", str(cfg), "hook"),
        "notify-test dead (and its text log)": cli(env, "notify-test", "-c", str(cfg), "dead"),
        **served,
        **{f"message {i}": body for i, body in enumerate(receiver.bodies)},
    }
    # What is searched holds what it should: the error, the alert, the delivery failure.
    assert "ExchangeNotAvailable" in outputs["database"] and "feed-stale" in outputs["database"]
    assert outputs["daemon log (json)"].startswith("{")
    assert "last_error" in outputs["/healthz"] and "wis_venue_up" in outputs["/metrics"]
    assert any("Last error" in b for b in receiver.bodies), receiver.bodies
    leaks = [(where, secret) for where, text in outputs.items() for secret in SECRETS
             if secret in text]
    assert not leaks, leaks
    for f in tmp_path.glob("wis.db*"):  # not even in a freed page or the WAL
        assert not [s for s in SECRETS if s.encode() in f.read_bytes()], f
