"""Instruments by selection: a venue's ``select:`` resolved from the markets the venue lists
(through ccxt, against the fake venue's deribit and okx chains), refreshed as expiries pass,
within the venue's rate limit; groups over a venue's selected series."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_harness import DaemonProcess, SteppedDaemon, rows, wait_until
from fakevenue import FakeVenue, FakeVenueThread, default_book
from testclock import NOW, Clock

from wis_monitor.config import load_config
from wis_monitor.errors import ConfigError
from wis_monitor.selection import Selection, budget_problem, choose

DAY_MS = 86_400_000
EXPIRY_A = NOW + DAY_MS  # the near expiry, which passes during the test
EXPIRY_B = NOW + 8 * DAY_MS
EXPIRY_C = NOW + 15 * DAY_MS  # listed when A expires; beyond 14 days at first
STRIKES = (45_000, 50_000, 55_000, 60_000, 65_000, 70_000, 75_000)
SELECT = {"type": "option", "base": "BTC", "expiry_within": "14d", "moneyness_within": "10%",
          "max": 12}


def write_config(tmp_path: Path, fv: FakeVenue, select: dict[str, Any], *,
                 interval: str = "1s", extra: dict[str, Any] | None = None,
                 rate_limited: bool = False) -> Path:
    ccxt = fv.ccxt_config("deribit")
    if not rate_limited:
        ccxt["enableRateLimit"] = False
    doc: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "wis.db")},
        "sampling": {"interval": interval, "timeout": "2s"},
        "venues": [{"id": "deribit", "exchange": "deribit", "depth": 10, "ccxt": ccxt,
                    "select": select}],
        **(extra or {}),
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def chain(fv: FakeVenue, expiry_ms: int, strikes: tuple[int, ...] = STRIKES,
          listed_ms: int | None = None) -> None:
    fv.list_chain("deribit", "BTC", expiry_ms, strikes, listed_ms=listed_ms)


async def refreshed(d: SteppedDaemon) -> None:
    """One cycle (its housekeeping starts the selection's refresh when due), then the refresh
    run to its end."""
    await d.cycle()
    await asyncio.gather(*list(d.daemon._tasks))


def sampled(db: Path) -> set[str]:
    return {r["symbol"] for r in rows(db, "SELECT DISTINCT symbol FROM samples "
                                          "WHERE quality = ''")}


def opt(expiry_ms: int, strike: int, kind: str) -> str:
    yymmdd = {EXPIRY_A: "231115", EXPIRY_B: "231122", EXPIRY_C: "231129"}[expiry_ms]
    return f"BTC/USD:BTC-{yymmdd}-{strike}-{kind}"


def near(expiry_ms: int) -> set[str]:
    """The options within 10% of 60000 (the perpetual's mid): strikes 55000 to 65000."""
    return {opt(expiry_ms, k, c) for k in (55_000, 60_000, 65_000) for c in "CP"}


def test_an_option_chain_is_selected_sampled_and_rolls_over_an_expiry(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Near-the-money BTC options within 14 days are sampled; when the near expiry passes on
    the venue's clock, its strikes are dropped (their firing alerts resolved, saying why) and
    the expiry listed meanwhile is added and sampled; a group ranges over the selection."""
    clock = Clock(NOW)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n"
                     "  - {name: quoted, match: {venue: deribit, symbol: '*-C'},\n"
                     "     when: spread_bps > 0}\n"
                     "  - {name: chain-wide, scope: group, group: btc-options,\n"
                     "     when: count(spread_bps > 0) >= 1}\n")
    with FakeVenueThread({"deribit": ["BTC/USD:BTC"]}, clock=clock) as fv:
        chain(fv, EXPIRY_A)
        chain(fv, EXPIRY_B, (60_000,))
        chain(fv, EXPIRY_C, (60_000,), listed_ms=EXPIRY_A - 3_600_000)
        cfg = write_config(tmp_path, fv, SELECT, extra={
            "groups": {"btc-options": {"select": "deribit"}},
            "rules": {"include": [str(rules)]}})
        db = tmp_path / "wis.db"
        first = near(EXPIRY_A) | {opt(EXPIRY_B, 60_000, c) for c in "CP"}

        async def main() -> None:
            async with SteppedDaemon(cfg, clock, interval_s=1.0) as d:
                assert set(d.daemon._rt().config.settings.venues[0].symbols) == first
                assert await d.until(lambda: sampled(db) == first, cycles=5)
                firing = {r["key"] for r in rows(db, "SELECT key FROM alerts WHERE "
                                                     "event = 'firing' AND rule = 'quoted'")}
                assert firing == {f"deribit:{s}" for s in first if s.endswith("-C")}
                assert len(d.daemon._rt().config.group_members("btc-options")) == 8
                clock.ms = EXPIRY_A - 60_000  # the hourly refresh is due: nothing changes
                await refreshed(d)
                assert "unchanged (8 series)" in caplog.text
                clock.ms = EXPIRY_A + 1_000
                await refreshed(d)
                later = {opt(e, 60_000, c) for e in (EXPIRY_B, EXPIRY_C) for c in "CP"}
                assert set(d.daemon._rt().config.settings.venues[0].symbols) == later
                await d.cycle(2)

        with caplog.at_level(logging.INFO):
            asyncio.run(main())
    assert sampled(db) >= first | {opt(EXPIRY_C, 60_000, "C"), opt(EXPIRY_C, 60_000, "P")}
    resolved = rows(db, "SELECT key, summary FROM alerts WHERE event = 'resolved' "
                        "AND rule = 'quoted'")
    assert {r["key"] for r in resolved} == {f"deribit:{s}" for s in near(EXPIRY_A)
                                            if s.endswith("-C")}
    assert all("left the venue's selection" in r["summary"] for r in resolved), resolved
    still = {r["key"] for r in rows(db, "SELECT key FROM alerts WHERE rule = 'quoted' AND "
                                        "event = 'firing'")} - {r["key"] for r in resolved}
    assert f"deribit:{opt(EXPIRY_C, 60_000, 'C')}" in still
    assert rows(db, "SELECT 1 FROM alerts WHERE rule = 'chain-wide' AND event = 'firing'")
    log = caplog.text
    assert "selection resolved to 8 series (underlying at 60000)" in log
    assert "selection refreshed (underlying at 60000): added " in log
    dropped = log.split("dropped ")[-1].splitlines()[0]
    assert set(dropped.split(", ")) == near(EXPIRY_A)


def test_a_selection_is_sampled_within_the_venues_rate_limit(tmp_path: Path) -> None:
    """Twice as many strikes as deribit's rate limit lets one second fetch: the daemon says
    so, samples the nearest-the-money ones that fit, and the venue never sees more requests
    in a second than ccxt's rateLimit allows."""
    with FakeVenueThread({"deribit": ["BTC/USD:BTC"]}) as fv:
        now = fv.clock.now_ms()
        fv.list_chain("deribit", "BTC", now + DAY_MS, range(40_000, 80_000, 1_000),
                      listed_ms=now - DAY_MS)
        fv.set_book("deribit", "BTC/USD:BTC", *default_book(60_200.0))
        cfg = write_config(tmp_path, fv, {"type": "option", "base": "BTC"}, rate_limited=True)
        proc = DaemonProcess(cfg)
        try:
            db = tmp_path / "wis.db"
            assert wait_until(lambda: len(sampled(db)) >= 16, timeout=30), proc.log()
            start = len(fv.requests("deribit"))
            wait_until(lambda: len(fv.requests("deribit")) >= start + 60, timeout=20)
        finally:
            assert proc.stop() == 0, proc.log()
        books = [r for r in fv.requests("deribit") if r.book][start:]
    assert "its rate limit (50 ms per request) lets 1s sample only 16: sampling the first " \
           "16" in proc.log()
    assert sampled(db) == {f"BTC/USD:BTC-{_yymmdd(now + DAY_MS)}-{k}-{c}"
                           for k in range(57_000, 65_000, 1_000) for c in "CP"}
    per_second = Counter(r.ts_ms // 1000 for r in books)
    assert books and max(per_second.values()) <= 20, per_second  # 1000 ms / 50 ms


def _yymmdd(ts_ms: int) -> str:
    import time

    return time.strftime("%y%m%d", time.gmtime(ts_ms / 1000))


@pytest.mark.parametrize(("select", "key", "message"), [
    ({**SELECT, "max": 40}, "max", 'venue "deribit": 40 series every 1s need 40 requests; the '
     "rate limit of deribit (one request per 50 ms, 80% of it for sampling) allows 16: lower "
     "max or raise the interval"),
    ({"type": "future", "base": "BTC", "moneyness_within": "10%"}, "moneyness_within",
     'venue "deribit": moneyness is for options (type: option)'),
    ({"type": "swap", "base": "BTC", "expiry_within": "7d"}, "expiry_within",
     'venue "deribit": a swap has no expiry: expiry_within is for options and futures'),
    ({"type": "option", "base": "BTC", "moneyness_within": 0.1}, "moneyness_within",
     'write a percentage, like "10%", not 0.1'),
    ({"type": "options", "base": "BTC"}, "type", "type"),
])
def test_a_bad_selection_is_refused_where_it_is_written(
        tmp_path: Path, select: dict[str, Any], key: str, message: str) -> None:
    fv = FakeVenue({"deribit": ["BTC/USD:BTC"]})
    cfg = write_config(tmp_path, fv, select)
    lines = cfg.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if text.strip() == "select:")
    line = next(i + 1 for i, text in enumerate(lines) if i > start
                and text.strip().startswith(f"{key}:"))
    with pytest.raises(ConfigError) as exc:
        load_config(str(cfg))
    text = [str(p) for p in exc.value.problems]
    assert any(t.startswith(f"{cfg}:{line}: ") and message in t for t in text), (
        text, cfg.read_text())


def test_a_group_selects_only_a_configured_venue_and_a_venue_needs_something_to_sample(
        tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("venues:\n"
                   "  - {id: s, exchange: sim, symbols: [BTC/USDT],\n"
                   "     select: {type: option, base: BTC}}\n"
                   "  - {id: t, exchange: sim}\n"
                   "groups:\n"
                   "  all: {select: nowhere}\n")
    odd = tmp_path / "odd.yaml"
    odd.write_text("venues: [{id: s, exchange: sim, symbols: [BTC/USDT]}]\n"
                   "groups: {odd: {select: [s]}}\n")
    problems = []
    for path in (cfg, odd):
        with pytest.raises(ConfigError) as exc:
            load_config(str(path))
        problems += [str(p) for p in exc.value.problems]
    assert f'{cfg}:3: venue "s": select needs a ccxt exchange, not "sim"' in problems
    assert f'{cfg}:4: venues.1: "symbols" should have at least 1 item (or give "select:")' \
        in problems
    assert f'{cfg}:6: group "all": no venue "nowhere" to select from' in problems
    assert f'{odd}:2: groups.odd: a group is a list of venue:symbol, or "select: VENUE" (all ' \
        "the series of a venue)" in problems


def test_check_online_shows_what_a_selection_resolves_to(tmp_path: Path) -> None:
    with FakeVenueThread({"deribit": ["BTC/USD:BTC"]}) as fv:
        now = fv.clock.now_ms()
        fv.list_chain("deribit", "BTC", now + DAY_MS, (50_000, 60_000), listed_ms=now - DAY_MS)
        cfg = write_config(tmp_path, fv, {**SELECT, "max": 2})
        out = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "--online", "-c",
                              str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    day = _yymmdd(now + DAY_MS)
    assert (f"venue deribit: select resolves to 2 series (underlying at 60000): "
            f"BTC/USD:BTC-{day}-60000-C, BTC/USD:BTC-{day}-60000-P") in out.stderr


def test_max_keeps_the_options_nearest_the_money_and_the_budget_counts_request_weight(
        ) -> None:
    markets = {f"O-{k}-{c}": {"symbol": f"O-{k}-{c}", "type": "option", "base": "BTC",
                              "expiry": NOW + DAY_MS, "strike": k, "active": True}
               for k in (50_000, 58_000, 61_000, 70_000) for c in "CP"}
    markets["expired"] = {**markets["O-61000-C"], "symbol": "expired", "expiry": NOW}
    pick = choose(markets, Selection(type="option", base="BTC", max=3), NOW, 60_000.0)
    assert pick == ["O-61000-C", "O-61000-P", "O-58000-C"]
    assert budget_problem(16, 1000, 50, "deribit", 100) is None
    assert budget_problem(17, 1000, 50, "deribit", 100) is not None
    assert "of weight 5" in (budget_problem(4, 1000, 50, "binance", 100) or "")


def test_the_fake_venue_lists_dated_markets_as_deribit_and_okx_do_until_they_expire() -> None:
    """ccxt parses the fake venue's chains of both venues: strike, option type, expiry,
    contract size, inverse (settled in the base); an expired market is no longer listed."""
    from wis_monitor.sources.ccxt import load_markets

    clock = Clock(NOW)
    with FakeVenueThread({"deribit": ["BTC/USD:BTC"], "okx": ["BTC/USDT"]}, clock=clock) as fv:
        for venue in ("deribit", "okx"):
            fv.list_chain(venue, "BTC", EXPIRY_A, (60_000,))
        before = {v: asyncio.run(load_markets(v, fv.ccxt_config(v))) for v in ("deribit", "okx")}
        clock.ms = EXPIRY_A
        after = asyncio.run(load_markets("deribit", fv.ccxt_config("deribit")))
    for venue, size, future_size in (("deribit", 1.0, 10.0), ("okx", 0.01, 100.0)):
        call = before[venue][opt(EXPIRY_A, 60_000, "C")]
        assert (call["type"], call["strike"], call["optionType"], call["expiry"],
                call["contractSize"], call["inverse"]) == ("option", 60_000, "call", EXPIRY_A,
                                                           size, True), venue
        assert before[venue]["BTC/USD:BTC-231115"]["contractSize"] == future_size
    assert opt(EXPIRY_A, 60_000, "C") not in after and "BTC/USD:BTC" in after
