"""`report` and the email chart as an analyst reads them: the axes span the data, markers sit
on their series in its colour with a legend, the z lines are those of the rules that fired,
a filter that matches nothing says what exists, the suffix chooses the file format."""

from __future__ import annotations

import colorsys
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli_tools import START_MS, recording

from wis_monitor.rulefile import z_levels_of
from wis_monitor.store import AlertRow, Batch, SampleRow, SqliteStore
from wis_monitor.tools.chart import render

BLUE = "#1f77b4"  # the first series' colour


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wis_monitor", *args], capture_output=True,
                          text=True, timeout=120)


def replayed(tmp_path: Path, when: str) -> Path:
    """A replay database of 600 s of books with one rule ``when``."""
    (tmp_path / "r.yaml").write_text(f"rules:\n  - {{name: z, when: '{when}', channels: []}}\n")
    db = tmp_path / "o.db"
    r = cli("replay", "--books", str(recording(tmp_path, 600)), "--rules",
            str(tmp_path / "r.yaml"), "--out", str(db))
    assert r.returncode == 0, r.stderr
    assert "z " in r.stdout and "would have fired" in r.stdout, r.stdout
    return db


def image(data: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return np.asarray(mpimg.imread(io.BytesIO(data), format="png"))


def test_report_draws_the_levels_of_the_rules_that_fired(tmp_path: Path) -> None:
    db = replayed(tmp_path, "wis_z >= 1.3 or wis_z <= -1.3")
    r = cli("report", "--db", str(db), "-o", str(tmp_path / "r.png"))
    assert r.returncode == 0, r.stderr
    assert "z lines at +1.3, -1.3" in r.stdout
    # --threshold still wins.
    r = cli("report", "--db", str(db), "--threshold", "2", "-o", str(tmp_path / "r.png"))
    assert "z lines at +2, -2" in r.stdout


def test_a_rule_on_abs_wis_z_gives_lines_at_both_signs(tmp_path: Path) -> None:
    db = replayed(tmp_path, "abs(wis_z) >= 1.3")
    r = cli("report", "--db", str(db), "-o", str(tmp_path / "r.png"))
    assert r.returncode == 0, r.stderr
    assert "z lines at +1.3, -1.3" in r.stdout, r.stdout


@pytest.mark.parametrize(("when", "levels"), [
    ("abs(wis_z) >= 2.5", (2.5, -2.5)),
    ("abs( wis_z )>2.5 and depth > 3", (2.5, -2.5)),
    ("wis_z >= 2.5 or wis_z <= -2.5", (2.5, -2.5)),
    ("wis_z >= 3 or abs(wis_z) > 2", (3.0, 2.0, -2.0)),
    ("abs(wis_z) < 1", ()),  # inside a band: no firing level
    ("abs(ofi_z) >= 2", ()),
])
def test_the_z_levels_a_rule_compares_wis_z_with(when: str, levels: tuple[float, ...]) -> None:
    assert z_levels_of(when) == levels


def test_a_filter_that_matches_nothing_names_the_series_and_writes_nothing(
        tmp_path: Path) -> None:
    db = replayed(tmp_path, "wis_z <= -1.3")
    out = tmp_path / "r.png"
    for args in (["--venue", "binanse"], ["--symbol", "ETHUSDT"], ["--venue", "v", "--symbol",
                                                                   "ETH/USDT"]):
        r = cli("report", "--db", str(db), *args, "-o", str(out))
        assert r.returncode == 2, r.stderr
        assert f"no series matches {' '.join(args)}; the database has: v BTC/USDT" in r.stderr
        assert "Traceback" not in r.stderr
        assert not out.exists()
    r = cli("report", "--db", str(db), "--venue", "v", "--symbol", "BTC/USDT", "-o", str(out))
    assert r.returncode == 0, r.stderr


def test_the_suffix_chooses_the_format(tmp_path: Path) -> None:
    db = replayed(tmp_path, "wis_z <= -1.3")
    starts = {"r.svg": b"<?xml", "r.pdf": b"%PDF", "r.PNG": b"\x89PNG"}
    for name, magic in starts.items():
        r = cli("report", "--db", str(db), "-o", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / name).read_bytes().startswith(magic), name
    r = cli("report", "--db", str(db), "-o", str(tmp_path / "x.jpg"))
    assert r.returncode == 2
    assert "the suffix must be one of .png, .svg, .pdf" in r.stderr
    assert not (tmp_path / "x.jpg").exists()


def sample(ts: int, z: float) -> SampleRow:
    return SampleRow(ts, "simex", "BTC/USDT", {
        "mid": 60_000 + z, "spread_bps": 0.1, "wis": z / 4, "wis_z": z, "imbalance": 0.0,
        "bid_depth": 1e6, "ask_depth": 1e6, "latency_ms": 1.0, "coverage_bps": 50.0})


def test_twenty_seconds_of_an_hour_fill_the_width_with_markers_on_the_series(
        tmp_path: Path) -> None:
    """The email chart of an alert 20 s after start-up: the hour asked for holds 20 s of data,
    which must span the axes (not the right-most 1%); markers take the series' colour; no
    red anywhere (thresholds are grey, events are symbols)."""
    store = SqliteStore(str(tmp_path / "w.db"))
    end = START_MS + 20_000
    store.write(Batch(samples=[sample(START_MS + 1000 * i, 3 * np.sin(i / 3)) for i in range(21)],
                      alerts=[AlertRow(START_MS + 4000, "hot", "simex:BTC/USDT", "simex",
                                       "BTC/USDT", "firing", "critical", 2.9, "s"),
                              AlertRow(START_MS + 9000, "hot", "simex:BTC/USDT", "simex",
                                       "BTC/USDT", "resolved", "critical", 0.5, "s")]))
    from wis_monitor.tools.chart import chart_data

    series, alerts = chart_data(store, "simex", "BTC/USDT", end - 3_600_000, end)
    store.close()
    with_alerts = image(render(series, alerts, end - 3_600_000, end, "simex BTC/USDT", (2.5,)))
    without = image(render(series, [], end - 3_600_000, end, "simex BTC/USDT", (2.5,)))
    rgb = with_alerts[..., :3]
    target = np.array([int(BLUE[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    blue_cols = np.nonzero((np.abs(rgb - target).sum(axis=2) < 0.15).any(axis=0))[0]
    assert blue_cols.max() - blue_cols.min() > 0.8 * rgb.shape[1]
    # Every saturated pixel is the series' hue: the markers are drawn in its colour.
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in rgb.reshape(-1, 3)[::7]])
    saturated = hsv[(hsv[:, 1] > 0.4) & (hsv[:, 2] > 0.3)]
    blue_hue = colorsys.rgb_to_hsv(*target)[0]
    assert len(saturated) > 300
    assert np.all(np.abs(saturated[:, 0] - blue_hue) < 0.05)
    # The alerts added blue (markers), not just black.
    assert ((np.abs(rgb - target).sum(axis=2) < 0.15).sum()
            > (np.abs(without[..., :3] - target).sum(axis=2) < 0.15).sum() + 200)
