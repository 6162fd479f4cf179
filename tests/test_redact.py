"""Secret masking: what is registered, what the masking catches without registration, and
what it must leave alone. Registered values stay registered for the whole test process, so
each test uses values of its own."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wis_monitor.config import load_config
from wis_monitor.redact import redact, redact_exposition, redact_values, register
from wis_monitor.sources import error_observation
from wis_monitor.store import SqliteStore
from wis_monitor.tools.status import collect
from wis_monitor.yamlsource import expand


def test_every_expanded_value_is_registered_with_its_escaped_forms(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("cred'Pw/&<x>\"1\n")
    text, missing = expand("u=${USER_X} p=${credential:pw}",
                           {"USER_X": "env-val-31f9", "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert not missing and text == "u=env-val-31f9 p=cred'Pw/&<x>\"1"
    for shown in ("env-val-31f9", "cred'Pw/&<x>\"1", "cred%27Pw%2F%26%3Cx%3E%221",
                  "cred&#x27;Pw/&amp;&lt;x&gt;&quot;1", 'cred\'Pw/&<x>\\"1'):
        assert redact(f"error at {shown}!") == "error at ***!", shown


def test_longest_secret_first_and_short_values_left_alone() -> None:
    register("kq7Z")
    register("kq7Zw8Y2")
    register("ab1")  # too short to mean anything: "ab1" stays readable everywhere
    assert redact("kq7Zw8Y2 kq7Z ab1") == "*** *** ab1"


def test_url_userinfo_and_secret_query_values_are_masked_unregistered() -> None:
    text = ("GET http://user:pa55@proxy.example:3128/api?symbol=BTC&apiKey=zz1&signature=9f"
            " and https://hooks.example/x?cto=10&access_token=t0k&rto=30")
    assert redact(text) == (
        "GET http://***@proxy.example:3128/api?symbol=BTC&apiKey=***&signature=***"
        " and https://hooks.example/x?cto=10&access_token=***&rto=30")


def test_structured_values_and_metrics_keep_their_shape() -> None:
    register("551177")  # a secret made of digits must not break numbers
    assert redact_values({"a": ["x551177", 551177, None], "b": {"c": "551177"}}) == \
        {"a": ["x***", 551177, None], "b": {"c": "***"}}
    body = (b'# HELP m_total A counter.\n# TYPE m_total counter\n'
            b'm_total{venue="v551177"} 551177.0\n')
    exposed = redact_exposition(body).decode()
    assert 'venue="v***"' in exposed
    sample = next(iter(text_string_to_metric_families(exposed))).samples[0]
    assert sample.value == 551177.0


def test_a_fetch_error_is_masked_before_it_is_stored() -> None:
    register("venue-secret-c81e")
    obs = error_observation("okx", "BTC/USDT", 1, ConnectionError(
        "okx GET http://u:pw@h/venue-secret-c81e/api " + "x" * 400))
    assert obs.error is not None
    assert obs.error.startswith("ConnectionError: okx GET http://***@h/***/api xxx")
    assert len(obs.error) <= 320


def test_status_masks_errors_written_unmasked_by_older_versions(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
                        "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n")
    config = load_config(str(cfg_path))
    store = SqliteStore(config.db_path())
    try:
        store.execute("INSERT INTO samples (ts, venue, symbol, quality, error) VALUES"
                      " (1, 'simex', 'BTC/USDT', 'error', ?)",
                      ["NetworkError: GET http://u:old-pw-77@h/x?token=old-tok-77"])
        report = collect(config, store, 2)
    finally:
        store.close()
    assert report.as_json()["series"][0]["last_error"] == \
        "NetworkError: GET http://***@h/x?token=***"


def test_a_long_venue_error_is_masked_before_it_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    """A secret straddling the cut of a long error must not leave its first part behind."""
    from wis_monitor.settings import Venue
    from wis_monitor.sources.ccxt import CcxtVenue

    secret = "straddling-secret-6e0c41"
    register(secret)
    url = "http://127.0.0.1:9/" + "p" * 160 + "/" + secret  # a closed port: refused at once
    venue = CcxtVenue(Venue(id="okx", exchange="okx", symbols=["BTC/USDT"],
                            ccxt={"urls": {"api": {"rest": url}}}), timeout_ms=2000)
    try:
        with caplog.at_level(logging.WARNING, logger="wis_monitor.ccxt"):
            assert not asyncio.run(venue._load_markets())
    finally:
        asyncio.run(venue.close())
    said = redact(caplog.records[0].getMessage())
    assert "cannot load markets" in said and secret[:6] not in said, said


def test_a_channel_user_name_stays_readable_its_password_does_not(tmp_path: Path) -> None:
    """``mailto://alerts:PASSWORD@...``: "alerts" is a common word in messages, not a secret."""
    from wis_monitor.channel import register_secrets

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"storage: {{path: {tmp_path / 'wis.db'}}}\n"
                        "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
                        "channels:\n  mail: {url: 'mailto://deskalerts:mail-pw-91c2@127.0.0.1:25"
                        "?from=wis@example.com&to=risk@example.com'}\n")
    register_secrets(
        ch.url for ch in load_config(str(cfg_path)).settings.channels.values())
    assert redact("deskalerts will arrive; pw mail-pw-91c2") == "deskalerts will arrive; pw ***"
