"""The desk's positions: the file (YAML or CSV) read with the config and refused like one,
``unwind_bps`` exact against the independent walk of tests/reference.py on real books (an
inverse COIN-M series among them), and alerts that name the exposure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref

from wis_monitor.book import Book
from wis_monitor.config import load_config
from wis_monitor.engine import Engine
from wis_monitor.errors import ConfigError
from wis_monitor.impact import position_notional, unwind_bps
from wis_monitor.message import render
from wis_monitor.sources import Observation
from wis_monitor.sources.replay import read_recording

CONFIG = """\
storage: {path: wis.db}
positions: POSITIONS
venues:
  - {id: binancecoinm, exchange: sim, symbols: ["BTC/USD:BTC"]}
  - {id: binanceusdm, exchange: sim, symbols: ["ETH/USDT:USDT", "BTC/USDT:USDT"]}
"""
YAML = """\
# the desk's book, 08:00
- {venue: binancecoinm, symbol: "BTC/USD:BTC", size: -3000}
- venue: binanceusdm
  symbol: ETH/USDT:USDT
  size: 1.5e2
"""
CSV = """\
venue,symbol,size
# the desk's book, 08:00
binancecoinm,BTC/USD:BTC,-3000

binanceusdm,ETH/USDT:USDT,150
"""
WANT = {("binancecoinm", "BTC/USD:BTC"): -3000.0, ("binanceusdm", "ETH/USDT:USDT"): 150.0}


def write_config(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.replace("POSITIONS", name))
    return cfg


@pytest.mark.parametrize(("name", "text"), [("positions.yaml", YAML), ("desk.CSV", CSV)])
def test_a_yaml_or_csv_file_gives_each_series_its_signed_size(tmp_path: Path, name: str,
                                                              text: str) -> None:
    config = load_config(str(write_config(tmp_path, name, text)))
    assert dict(config.positions.sizes) == WANT
    assert config.positions.path == str(tmp_path / name)  # relative to the config file
    assert config.positions.size("binanceusdm", "BTC/USDT:USDT") is None
    assert config.positions.changed() is None  # as read


def test_an_empty_file_is_a_flat_desk(tmp_path: Path) -> None:
    for name, text in (("p.yaml", ""), ("p.yaml", "[]\n"), ("p.csv", "venue,symbol,size\n")):
        assert dict(load_config(str(write_config(tmp_path, name, text))).positions.sizes) == {}


BAD_YAML = """\
- {venue: binancecoinm, symbol: "BTC/USD:BTC", size: -3000}
- {venue: binancecoinm, symbol: "BTC/USD:BTC", size: 10}
- {venue: okx, symbol: BTC/USDT, size: 1}
- {venue: binanceusdm, symbol: ETH/USDT:USDT}
- {venue: binanceusdm, symbol: BTC/USDT:USDT, size: lots, qty: 3}
- {venue: binanceusdm, symbol: BTC/USDT:USDT, size: .inf}
- {venue: 7, symbol: BTC/USDT:USDT, size: true}
- just a line
"""
BAD_CSV = """\
venue,symbol,size
binancecoinm,BTC/USD:BTC,-3000
binancecoinm,BTC/USD:BTC,10
okx,BTC/USDT,1
binanceusdm,ETH/USDT:USDT,
binanceusdm,BTC/USDT:USDT,1,5
binanceusdm,BTC/USDT:USDT,nan
binanceusdm,BTC/USDT:USDT,1.5.2
"""


def problems_of(tmp_path: Path, name: str, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(str(write_config(tmp_path, name, text)))
    return [str(p).replace(str(tmp_path) + "/", "") for p in exc.value.problems]


def test_every_problem_of_a_yaml_file_is_named_with_its_line(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "p.yaml", BAD_YAML) == [
        'p.yaml:2: "binancecoinm:BTC/USD:BTC" has a position already (line 1): one row per '
        "series",
        'p.yaml:3: "okx:BTC/USDT" is not a series the configuration samples',
        'p.yaml:4: a position needs "size"',
        'p.yaml:5: unknown key "qty": a position has venue, symbol and size',
        'p.yaml:5: size "lots" is not a number',
        'p.yaml:6: size "inf" is not a finite number',
        "p.yaml:7: venue should be a name, not the value 7",
        "p.yaml:7: size should be a number, not the value True",
        'p.yaml:8: a position is a mapping {venue, symbol, size}, not the text "just a line"',
    ]


def test_every_problem_of_a_csv_file_is_named_with_its_line(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "p.csv", BAD_CSV) == [
        'p.csv:3: "binancecoinm:BTC/USD:BTC" has a position already (line 2): one row per '
        "series",
        'p.csv:4: "okx:BTC/USDT" is not a series the configuration samples',
        'p.csv:5: a position needs "size"',
        "p.csv:6: 4 fields, the header has 3: venue,symbol,size",
        'p.csv:7: size "nan" is not a finite number',
        'p.csv:8: size "1.5.2" is not a number',
    ]


@pytest.mark.parametrize(("name", "text", "want"), [
    ("p.csv", "symbol,size\nx,1\n", "p.csv:1: the first line must name the columns "
     "venue,symbol,size, not symbol,size"),
    ("p.yaml", "{venue: binancecoinm}\n", "p.yaml:1: a positions file is a list of {venue, "
     "symbol, size} (or a CSV file named *.csv)"),
    ("p.yaml", "- [unclosed\n", "p.yaml:2: invalid YAML: expected ',' or ']', but got '<stream "
     "end>'"),
    ("p.csv", "\xff", "p.csv: file is not UTF-8 text (included from config.yaml:2)"),
])
def test_a_file_that_is_not_a_positions_file_says_why(tmp_path: Path, name: str, text: str,
                                                      want: str) -> None:
    (tmp_path / name).write_bytes(text.encode("latin-1"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.replace("POSITIONS", name))
    with pytest.raises(ConfigError) as exc:
        load_config(str(cfg))
    assert [str(p).replace(str(tmp_path) + "/", "") for p in exc.value.problems] == [want]


def test_check_refuses_a_bad_positions_file_with_the_configs_problems(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "p.csv", BAD_CSV)
    cfg.write_text(cfg.read_text() + "sampling: {interval: fast}\n")
    run = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    out = run.stdout + run.stderr
    assert "config.yaml:6: sampling.interval" in out  # the config's own problem too
    for line in problems_of(tmp_path, "p.csv", BAD_CSV):
        assert f"{tmp_path}/{line}" in out
    missing = write_config(tmp_path, "gone.csv", "")
    (tmp_path / "gone.csv").unlink()
    run = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c", str(missing)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (f"{tmp_path}/config.yaml:2: positions: cannot read {tmp_path}/gone.csv: No such "
            "file or directory") in run.stderr


# -- unwind_bps, exact ---------------------------------------------------------------------


def reference_unwind(book: Book, size: float) -> float | None:
    """The cost of closing ``size`` by the independent walk: the position's notional (contracts
    times their USD value for inverse ones, else base amount times the mid) taken from the
    other side."""
    bids = np.column_stack((book.bid_px, book.bid_qty)).tolist()
    asks = np.column_stack((book.ask_px, book.ask_qty)).tolist()
    m = ref.mid(bids, asks)
    amount = abs(size) * book.contract_size
    notional = amount if book.inverse else amount * m
    return ref.impact_bps(bids, asks, notional, size < 0, book.contract_size, book.inverse)


RECORDINGS = ("binancecoinm-BTCUSD-BTC", "binanceusdm-ETHUSDT-USDT", "binance-ETHUSDT")
#: Sizes in each recording's amount unit: COIN-M contracts of 100 USD, ETH.
SIZES = {"binancecoinm-BTCUSD-BTC": (-3000.0, 250.0, 4e6),
         "binanceusdm-ETHUSDT-USDT": (150.0, -40.0, 1e7), "binance-ETHUSDT": (-80.0, 12.0, 1e7)}


@pytest.mark.parametrize("name", RECORDINGS)
def test_unwind_bps_equals_the_reference_walk_on_real_books(shared_data: Path,
                                                            name: str) -> None:
    path = shared_data / "books-full" / f"{name}-20240808-1000ms.jsonl.gz"
    books = [o.book for o in read_recording(path, []) if o.book is not None][::12]
    assert len(books) >= 25
    compared = short = 0
    for book in books:
        for size in SIZES[name]:
            got, want = unwind_bps(book, size), reference_unwind(book, size)
            if want is None:
                assert got is None
                short += 1
                continue
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
            assert got > 0
            compared += 1
    assert compared >= 2 * len(books) and short >= 1  # the huge size outgrows the book
    inverse = books[0].inverse
    assert inverse == name.startswith("binancecoinm")
    notional = position_notional(books[0], -3000.0)
    if inverse:
        assert notional == 300_000.0  # 3,000 contracts of 100 USD


def test_no_position_or_a_flat_one_has_no_unwind_cost() -> None:
    two = np.array([2.0])
    book = Book(np.array([99.0]), two, np.array([101.0]), two)
    assert unwind_bps(book, 0.0) is None
    # 1 unit is 100 of notional at the mid: sold at 99, bought at 101
    assert unwind_bps(book, 1.0) == pytest.approx(100.0)
    assert unwind_bps(book, -1.0) == pytest.approx(100.0)
    assert unwind_bps(book, 2.5) is None  # 250 of notional: more than the bids hold


# -- through the engine: the sample, the rule, the message ---------------------------------


def test_a_rule_on_unwind_bps_fires_and_its_message_names_the_position(
        tmp_path: Path, shared_data: Path) -> None:
    cfg = write_config(tmp_path, "p.yaml", YAML)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: unwind-cost, when: unwind_bps > 2.5, severity: critical}\n")
    cfg.write_text(cfg.read_text() + "rules: {include: [rules.yaml]}\n")
    engine = Engine(load_config(str(cfg)))
    path = shared_data / "books-full" / "binancecoinm-BTCUSD-BTC-20240808-1000ms.jsonl.gz"
    observations = [Observation("binancecoinm", "BTC/USD:BTC", o.ts_ms, o.book, o.flags)
                    for o in read_recording(path, [])]
    batch, samples = engine.process(observations)
    for obs, sample in zip(observations, samples, strict=True):
        assert obs.book is not None
        want = reference_unwind(obs.book, -3000.0)
        assert sample.values["unwind_bps"] == pytest.approx(want, rel=1e-9)
    firing = [a for a in batch.alerts if a.event == "firing"]
    assert firing, "the rule never fired on the recording"
    for a in firing:
        assert a.details["position"] == {"size": -3000.0, "notional": 300_000.0,
                                         "currency": "USD", "unwind_bps": a.value}
        assert a.summary.endswith(f"position -3,000 (300,000 USD), unwind {a.value:.2f} bps")
    alert = {"rule": firing[0].rule, "key": firing[0].key, "venue": firing[0].venue,
             "symbol": firing[0].symbol, "event": "firing", "severity": "critical",
             "value": firing[0].value, "ts": firing[0].ts_ms, "labels": {},
             "details": json.loads(json.dumps(firing[0].details))}
    text = render(alert).text
    assert (f"Position: -3,000 (300,000 USD); unwinding it now costs {firing[0].value:.2f} bps"
            in text)
    templated = render(alert, {"title": "{{ rule }}: {{ '%+g' % position.size }} "
                                        "{{ position.currency }}, {{ '%.1f' % "
                                        "position.unwind_bps }} bps to unwind"})
    assert templated.title == f"unwind-cost: -3000 USD, {firing[0].value:.1f} bps to unwind"


def test_a_series_without_a_position_has_a_null_unwind_bps_and_plain_alerts(
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "p.yaml", YAML)
    (tmp_path / "rules.yaml").write_text("rules:\n  - {name: any, when: mid > 0}\n")
    cfg.write_text(cfg.read_text() + "rules: {include: [rules.yaml]}\n")
    engine = Engine(load_config(str(cfg)))
    one = np.array([1.0])
    book = Book(np.array([99.0]), one, np.array([101.0]), one)
    batch, (sample,) = engine.process([Observation("binanceusdm", "BTC/USDT:USDT", 1000, book)])
    assert "unwind_bps" in sample.values and sample.values["unwind_bps"] is None
    (alert,) = batch.alerts
    assert "position" not in alert.details and "position" not in alert.summary


def test_the_alert_of_a_position_says_where_it_is_cheapest_to_hedge(tmp_path: Path) -> None:
    """A long of 2 BTC on venue a, grouped with venue b: selling 200 USDT costs 150.7 bps on
    a's thin bids, 50 bps on b's, and 50 bps split over both (b's touch fills it all)."""
    (tmp_path / "pos.yaml").write_text("- {venue: a, symbol: BTC/USDT, size: 2}\n")
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: unwind-cost, when: unwind_bps > 100, severity: critical}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("venues:\n  - {id: a, exchange: sim, symbols: [BTC/USDT]}\n"
                   "  - {id: b, exchange: sim, symbols: [BTC/USDT]}\n"
                   'groups: {btc: ["a:BTC/USDT", "b:BTC/USDT"]}\n'
                   "positions: pos.yaml\nrules: {include: [rules.yaml]}\n")
    engine = Engine(load_config(str(cfg)))
    a_bids, a_asks = [[99.0, 1.0], [98.0, 5.0]], [[101.0, 10.0]]
    b_bids, b_asks = [[99.5, 10.0]], [[100.5, 10.0]]

    def book(bids: list[list[float]], asks: list[list[float]]) -> Book:
        b, a = np.array(bids), np.array(asks)
        return Book(b[:, 0].copy(), b[:, 1].copy(), a[:, 0].copy(), a[:, 1].copy())

    engine.process([Observation("b", "BTC/USDT", 1000, book(b_bids, b_asks))])
    batch, _ = engine.process([Observation("a", "BTC/USDT", 1000, book(a_bids, a_asks))])
    (alert,) = batch.alerts
    own = ref.impact_bps(a_bids, a_asks, 200.0, buy=False)
    there = ref.impact_bps(b_bids, b_asks, 200.0, buy=False)
    assert own == pytest.approx(150.75, abs=0.01) and there == pytest.approx(50.0)
    assert alert.value == pytest.approx(own)
    hedge = alert.details["position"]["hedge"]
    assert hedge["cheapest"] == "b:BTC/USDT" and hedge["cheapest_bps"] == pytest.approx(there)
    assert hedge["split_bps"] == pytest.approx(50.0)  # b's touch fills the whole order
    assert hedge["split_over"] == ["a:BTC/USDT", "b:BTC/USDT"]
    assert alert.summary.endswith(
        f"position +2 (200 USDT), unwind {own:.2f} bps; cheapest to hedge b:BTC/USDT "
        "50.00 bps, split across 2 venues 50.00 bps")
    text = render({"rule": alert.rule, "key": alert.key, "venue": "a", "symbol": "BTC/USDT",
                   "event": "firing", "severity": "critical", "value": alert.value,
                   "ts": 1000, "labels": {},
                   "details": json.loads(json.dumps(alert.details))}).text
    assert ("Position: +2 (200 USDT); unwinding it now costs 150.75 bps; cheapest to hedge: "
            "b:BTC/USDT, 50.00 bps; split across 2 venues: 50.00 bps") in text
