"""Per-venue and per-symbol metric settings: merged over the global ones in a fixed order,
checked like the rest of the config (PATH:LINE, all at once), and used where metrics are made."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import reference as ref
from test_orderflow import walk

from wis_monitor.config import load_config

MAIN = """\
metrics:
  wis: {half_life_bps: 10, band_bps: 50}
  wis_variants:
    wis_fast: {half_life_bps: 2}
  smooth:
    wis_s: {of: wis, half_life: 15s}
venues:
  - id: spot
    exchange: sim
    metrics:
      wis: {half_life_bps: 1}
      ofi: {levels: 2}
    symbols:
      - BTC/USDT
      - symbol: ETH/USDT
        metrics: {wis: {kernel: linear}, smooth: {wis_s: {half_life: 5s}}}
      - SOL/USDT
  - {id: perp, exchange: sim, symbols: [BTC/USDT]}
series_settings: [tuned/*.yaml]
"""
TUNED = """\
# made by calibrate
series:
  - venue: spot
    symbol: ETH/USDT
    metrics:
      wis: {kernel: flat, band_bps: 20}
  - venue: spot
    symbol: SOL/USDT
    metrics:
      wis_variants: {wis_fast: {kernel: levels}}
"""


def write(tmp_path: Path, main: str = MAIN, tuned: str = TUNED) -> Path:
    (tmp_path / "tuned").mkdir(exist_ok=True)
    (tmp_path / "tuned" / "a.yaml").write_text(tuned)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(main)
    return cfg


def check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)


def test_overrides_merge_key_by_key_in_order(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path)))
    assert cfg.settings.venues[0].symbols == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = cfg.metrics_for("spot", "BTC/USDT")  # the venue's over the global
    assert (btc.wis.kernel, btc.wis.half_life_bps, btc.wis.band_bps) == ("exponential", 1, 50)
    assert btc.ofi.levels == 2 and btc.ofi.window.total_seconds() == 10
    eth = cfg.metrics_for("spot", "ETH/USDT")  # venue < file < the symbol's own
    assert (eth.wis.kernel, eth.wis.half_life_bps, eth.wis.band_bps) == ("linear", 1, 20)
    assert eth.smooth["wis_s"].half_life.total_seconds() == 5 and eth.smooth["wis_s"].of == "wis"
    sol = cfg.metrics_for("spot", "SOL/USDT")
    assert sol.wis_variants["wis_fast"].kernel == "levels"
    assert sol.wis_variants["wis_fast"].half_life_bps == 2
    assert cfg.metrics_for("perp", "BTC/USDT") == cfg.settings.metrics
    assert check(cfg.path and Path(cfg.path)).returncode == 0


def test_check_reports_every_override_problem_where_it_is_written(tmp_path: Path) -> None:
    main = MAIN.replace("      ofi: {levels: 2}\n", "      ofi: {levels: 0}\n").replace(
        "smooth: {wis_s: {half_life: 5s}}", "smooth: {wis_new: {of: wis, half_life: 5s}}")
    main = main.replace("      - SOL/USDT\n", "      - {symbol: SOL/USDT, metric: {}}\n")
    tuned = TUNED + (
        "  - venue: spot\n"
        "    symbol: DOGE/USDT\n"
        "    metrics: {wis: {half_life_bps: 1}}\n"
        "  - venue: perp\n"
        "    symbol: BTC/USDT\n"
        "    metrics: {wis: {half_lif_bps: 1}, zscore: {min_samples: 1}}\n")
    cfg = write(tmp_path, main, tuned)
    r = check(cfg)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    tuned_path = tmp_path / "tuned" / "a.yaml"
    want = [
        (f"{cfg}:12:", "ofi.levels"),
        (f"{cfg}:16:", '"wis_new" is not under metrics.smooth'),
        (f"{cfg}:17:", 'unknown key "metric" in a symbol'),
        (f"{tuned_path}:11:", '"spot:DOGE/USDT" is not a series the configuration samples'),
        (f"{tuned_path}:16:", 'unknown key "half_lif_bps"'),
        (f"{tuned_path}:16:", "min_samples"),
    ]
    assert len(lines) == len(want) + 1, lines  # and "6 problems found"
    for where, what in want:
        assert any(x.startswith(where) and what in x for x in lines), (where, what, lines)


def test_check_refuses_a_series_settings_pattern_that_matches_nothing(tmp_path: Path) -> None:
    cfg = write(tmp_path, MAIN.replace("tuned/*.yaml", "nowhere/*.yaml"))
    r = check(cfg)
    assert r.returncode == 2
    assert f'{cfg}:19: no series-settings file matches "nowhere/*.yaml"' in r.stderr, r.stderr


def test_replay_computes_each_series_with_its_own_kernel(tmp_path: Path) -> None:
    cfg = write(tmp_path)
    books = walk(5)
    rec = tmp_path / "rec.jsonl"
    with rec.open("w") as fh:
        for i, (bids, asks) in enumerate(books):
            for venue, symbol in (("spot", "BTC/USDT"), ("spot", "ETH/USDT"),
                                  ("perp", "BTC/USDT")):
                fh.write(json.dumps({"ts": 1000 * (i + 1), "venue": venue, "symbol": symbol,
                                     "bids": bids, "asks": asks}) + "\n")
    out = tmp_path / "out.db"
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "replay", "-c", str(cfg),
                        "--books", str(rec), "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(out) as db:
        got = db.execute("SELECT venue, symbol, ts, wis, wis_fast, wis_s FROM samples"
                         " ORDER BY ts").fetchall()
    kernels = {("spot", "BTC/USDT"): {"half_life_bps": 1.0},
               ("spot", "ETH/USDT"): {"kernel": "linear", "half_life_bps": 1.0, "band_bps": 20.0},
               ("perp", "BTC/USDT"): {}}
    assert len(got) == 15
    for venue, symbol, ts, wis, wis_fast, wis_s in got:
        bids, asks = books[ts // 1000 - 1]
        params = dict(kernels[(venue, symbol)])
        kernel = str(params.pop("kernel", "exponential"))
        assert ref.close(wis, ref.wis(bids, asks, kernel, **params)), (venue, symbol)
        fast = ref.wis(bids, asks, half_life_bps=2.0)
        assert ref.close(wis_fast, fast)
        assert wis_s is not None


def test_reload_drops_only_the_windows_of_the_series_whose_settings_changed(
        tmp_path: Path) -> None:
    from wis_monitor.book import make_book
    from wis_monitor.engine import Engine
    from wis_monitor.sources import Observation

    cfg = write(tmp_path)
    old = Engine(load_config(str(cfg)))
    book, flags = make_book(*walk(1)[0])
    old.process([Observation(v, s, 1000, book, flags, 1.0) for v, s in
                 (("spot", "BTC/USDT"), ("spot", "ETH/USDT"), ("perp", "BTC/USDT"))])
    cfg.write_text(MAIN.replace("{wis: {kernel: linear}", "{wis: {kernel: linear, band_bps: 30}"))
    new = Engine(load_config(str(cfg)))
    assert new.adopt(old) == ["wis", "wis_s"]  # wis_s averages wis
    kept = {key: new.series[key].stats.scorers["wis"] is old.series[key].stats.scorers["wis"]
            for key in old.series}
    assert kept == {("spot", "BTC/USDT"): True, ("spot", "ETH/USDT"): False,
                    ("perp", "BTC/USDT"): True}
    assert new.series[("spot", "ETH/USDT")].kernels["wis"].band_bps == 30  # its own wins


def test_check_refuses_smoothed_metrics_that_clash_or_smooth_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("metrics:\n"
                   "  ofi: {window: 0s}\n"
                   "  smooth:\n"
                   "    ofi: {of: wis, half_life: 5s}\n"
                   "    a_s: {of: wiz, half_life: 5s}\n"
                   "    b_s: {of: a_s, half_life: 5s}\n"
                   "venues: [{id: v, exchange: sim, symbols: [X/Y]}]\n")
    r = check(cfg)
    assert r.returncode == 2, r.stderr
    for line in (f"{cfg}:2: metrics.ofi.window: must be longer than 0s",
                 f'{cfg}:4: smoothed metric "ofi" clashes',
                 f'{cfg}:5: smoothed metric "a_s": "wiz" is not a metric (did you mean',
                 f'{cfg}:6: smoothed metric "b_s": "a_s" is another smoothed metric\n'):
        assert line in r.stderr, (line, r.stderr)


def test_test_rules_computes_book_series_with_their_own_settings(tmp_path: Path) -> None:
    # Bids heavier near the touch, asks heavier further out: a fast kernel reads buying
    # pressure, the default one hardly any.
    bids = [[100.0 - 0.01 * i, 9.0 if i == 0 else 1.0] for i in range(60)]
    asks = [[100.01 + 0.01 * i, 1.0 if i < 5 else 3.0] for i in range(60)]
    rec = tmp_path / "book.jsonl"
    rec.write_text("".join(json.dumps({"ts": 1000 * i, "venue": "x", "symbol": "A/B",
                                       "bids": bids, "asks": asks}) + "\n" for i in range(3)))
    fast = ref.wis(bids, asks, half_life_bps=1.0)
    slow = ref.wis(bids, asks)
    assert fast is not None and slow is not None and fast > 0.5 > slow
    (tmp_path / "r.yaml").write_text("rules:\n  - {name: tilt, when: wis > 0.5}\n")
    (tmp_path / "tuned.yaml").write_text(
        "series:\n  - {venue: v, symbol: FAST/B, metrics: {wis: {half_life_bps: 1}}}\n")
    (tmp_path / "t.yaml").write_text(
        "rule_files: [r.yaml]\nseries_settings: [tuned.yaml]\ntests:\n"
        "  - name: per series\n    input_series:\n"
        "      - {series: v:FAST/B, books: book.jsonl}\n"
        "      - {series: v:SLOW/B, books: book.jsonl}\n"
        "    expected:\n      - {at: 0s, rule: tilt, key: v:FAST/B, event: firing}\n")
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "test-rules",
                        str(tmp_path / "t.yaml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
