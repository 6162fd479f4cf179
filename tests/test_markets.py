"""Symbols in ccxt's unified form, markets checked online, and the market-listing commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakevenue import FakeVenueThread
from wis_monitor.symbols import market_type, suggest


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
    assert f'{cfg}:2: venues.0.symbols.0: "BTCUSDT" is not a ccxt unified symbol' in err[0]
    assert err[0].endswith('(did you mean "BTC/USDT"?)')
    assert f"{cfg}:3:" in err[1] and '(did you mean "ETH/USDT:USDT"?)' in err[1]
    assert f"{cfg}:5:" in err[2] and '(did you mean "BTC/USD:BTC"?)' in err[2]
    assert err[3] == "3 problems found"
