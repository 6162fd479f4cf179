"""Symbols in ccxt's unified form, markets checked online, and the market-listing commands."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakevenue import FakeVenue, FakeVenueThread

from wis_monitor.sources.ccxt import load_markets
from wis_monitor.symbols import market_type, suggest, symbol_problem
from wis_monitor.tools.markets import listing


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("symbol", "kind"), [
    ("BTC/USDT", "spot"), ("BTC/USDT:USDT", "swap"), ("BTC/USD:BTC-261225", "future"),
    ("BTC/USD:BTC-261225-100000-C", "option"), ("ETH/USD:ETH-261225-3500.5-P", "option"),
    ("BTCUSDT", None), ("ETH-USDT-SWAP", None), ("BTC-PERPETUAL", None), ("BTC/", None),
])
def test_unified_symbols_and_their_market_types(symbol: str, kind: str | None) -> None:
    assert market_type(symbol) == kind


@pytest.mark.parametrize(("native", "unified"), [
    ("BTCUSDT", "BTC/USDT"), ("ETH-USDT-SWAP", "ETH/USDT:USDT"), ("BTC-USD-SWAP", "BTC/USD:BTC"),
    ("BTC-PERPETUAL", "BTC/USD:BTC"), ("ETH-BTC", "ETH/BTC"), ("BTCUSD_PERP", "BTC/USD:BTC"),
])
def test_exchange_native_spellings_get_the_unified_symbol_as_a_hint(native: str,
                                                                   unified: str) -> None:
    assert suggest(native) == unified


def test_check_rejects_native_symbols_on_ccxt_venues_only(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "venues:\n"
        "  - {id: b, exchange: binance, symbols: [BTCUSDT, BTC/USDT]}\n"
        "  - {id: o, exchange: okx, symbols: [ETH-USDT-SWAP]}\n"
        "  - {id: d, exchange: deribit,\n"
        "     symbols: [BTC-PERPETUAL]}\n"
        "  - {id: s, exchange: sim, symbols: [ANYTHING]}\n"
    )
    out = cli("check", "-c", str(cfg))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    err = out.stderr.splitlines()
    assert err[0] == (f'{cfg}:2: venue "b": "BTCUSDT" is not a ccxt unified symbol '
                      '(did you mean "BTC/USDT"?)')
    assert f"{cfg}:3:" in err[1] and '(did you mean "ETH/USDT:USDT"?)' in err[1]
    assert f"{cfg}:5:" in err[2] and '(did you mean "BTC/USD:BTC"?)' in err[2]
    assert err[3] == "3 problems found"


def test_a_symbol_without_a_likely_meaning_is_told_the_unified_forms() -> None:
    assert symbol_problem("BTC") == (
        '"BTC" is not a ccxt unified symbol: BASE/QUOTE (spot), BASE/QUOTE:SETTLE (swap), '
        "BASE/QUOTE:SETTLE-YYMMDD (future) or BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P (option)")


def fake_venues(tmp_path: Path, fv: FakeVenue, venues: list[dict[str, object]]) -> Path:
    for v in venues:
        v["ccxt"] = {**fv.ccxt_config(str(v["exchange"])), "enableRateLimit": False}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "wis.db")},
                                   "venues": venues}, sort_keys=False))
    return cfg


def test_check_online_finds_every_symbol_the_venues_do_not_list(tmp_path: Path) -> None:
    with FakeVenueThread({"binance": ["BTC/USDT", "ETH/BTC"], "deribit": ["BTC/USD:BTC"]}) as fv:
        good = fake_venues(tmp_path, fv, [
            {"id": "b", "exchange": "binance", "symbols": ["BTC/USDT", "ETH/BTC"]},
            {"id": "d", "exchange": "deribit", "symbols": ["BTC/USD:BTC"], "depth": 20}])
        ok = cli("check", "--online", "-c", str(good))
        bad = fake_venues(tmp_path, fv, [
            {"id": "b", "exchange": "binance",
             "symbols": ["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"]},
            {"id": "d", "exchange": "deribit", "symbols": ["BTC/USD:BTC"], "depth": 20}])
        wrong = cli("check", "--online", "-c", str(bad))
    assert ok.returncode == 0, ok.stderr
    assert "venue b: binance lists 2 market(s); sampled: BTC/USDT spot, ETH/BTC spot" in ok.stderr
    assert "venue d: deribit lists 2 market(s); sampled: BTC/USD:BTC swap" in ok.stderr
    assert wrong.returncode == 2, wrong.stderr
    problems = [line for line in wrong.stderr.splitlines() if line.startswith(str(bad))]
    assert problems == [
        f'{bad}:8: venue "b": binance has no market "ETH/USDT" (did you mean "BTC/USDT"?)',
        f'{bad}:9: venue "b": binance has no market "BTC/USDT:USDT" (the markets loaded are '
        "spot; no swap markets: see the venue's ccxt options) (did you mean \"BTC/USDT\"?)",
    ]
    assert wrong.stderr.splitlines()[-1] == "2 problems found"


def test_check_online_names_a_venue_whose_markets_cannot_be_loaded(tmp_path: Path) -> None:
    with FakeVenueThread({"okx": ["BTC/USDT"]}) as fv:
        cfg = fake_venues(tmp_path, fv, [{"id": "o", "exchange": "okx", "symbols": ["BTC/USDT"]}])
        doc = yaml.safe_load(cfg.read_text())
    doc["venues"][0]["ccxt"]["urls"]["api"]["rest"] = "http://127.0.0.1:9/okx"  # closed
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = cli("check", "--online", "-c", str(cfg))
    assert out.returncode == 2
    assert f'{cfg}:5: venue "o": cannot load the markets of okx: ' in out.stderr
    assert "Traceback" not in out.stderr


def test_list_markets_of_a_configured_venue_filtered_by_type_base_and_quote(
        tmp_path: Path) -> None:
    with FakeVenueThread({"binance": ["BTC/USDT", "ETH/BTC", "ETH/USDT"]}) as fv:
        cfg = fake_venues(tmp_path, fv, [
            {"id": "b", "exchange": "binance", "symbols": ["BTC/USDT"]}])
        eth = cli("list-markets", "b", "-c", str(cfg), "--type", "spot", "--base", "eth",
                  "--quote", "USDT")
        markets = asyncio.run(load_markets("binance", fv.ccxt_config("binance")))
    assert eth.returncode == 0, eth.stderr
    assert eth.stdout.splitlines() == ["ETH/USDT  spot    ETHUSDT"]
    assert eth.stderr == "1 of 3 markets of binance\n"
    assert [m.symbol for m in listing(markets)] == ["BTC/USDT", "ETH/BTC", "ETH/USDT"]
    assert [m.id for m in listing(markets, quote="btc")] == ["ETHBTC"]
    assert listing(markets, kind="swap") == []


def test_list_markets_and_exchanges_name_what_exists() -> None:
    names = cli("list-exchanges")
    assert names.returncode == 0
    listed = names.stdout.splitlines()
    assert listed[:2] == ["sim", "replay"] and {"binance", "okx", "deribit"} <= set(listed)
    typo = cli("list-markets", "binanse")
    assert typo.returncode == 2
    assert typo.stderr == ('"binanse" is not a ccxt exchange id (did you mean "binance"?): '
                           "see `wis-monitor list-exchanges`\n")


def test_new_config_writes_a_commented_config_that_checks_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    written = cli("new-config", "-o", str(path))
    assert written.returncode == 0, written.stderr
    text = path.read_text()
    for section in ("storage:", "sampling:", "metrics:", "venues:", "groups:", "channels:",
                    "feed_stale:", "http:", "rules:", "exchange: binance", "exchange: okx",
                    "exchange: deribit", "${credential:slack-webhook}"):
        assert section in text
    again = cli("new-config", "-o", str(path))
    assert again.returncode == 2 and "exists" in again.stderr
    assert cli("check", "-c", str(path)).returncode == 0
    # storage.path is relative: run it where the database may be written.
    once = subprocess.run([sys.executable, "-m", "wis_monitor", "run", "--once", "-c", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert once.returncode == 0, once.stderr
    assert (tmp_path / "wis.db").exists()


def test_the_offline_rate_limits_are_ccxts() -> None:
    """The request budget is checked offline against these: they must be ccxt's own."""
    import ccxt

    from wis_monitor.depths import RATE_LIMIT_MS

    assert {ex: getattr(ccxt, ex)().rateLimit for ex in RATE_LIMIT_MS} == RATE_LIMIT_MS
