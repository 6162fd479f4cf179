"""`wis-monitor replay` over the real Binance recordings logs exactly the formulas' numbers."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import reference as ref

FILES = ["binance-BTCUSDT-20240808.jsonl.gz", "binance-ETHUSDT-20240808.jsonl.gz",
         "binanceusdm-BTCUSDT-USDT-20240808.jsonl.gz", "binancecoinm-BTCUSD-BTC-20240808.jsonl.gz"]


@pytest.mark.parametrize("name", FILES)
def test_replay_matches_reference(name: str, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "books" / name
    cfg = tmp_path / "c.yaml"
    cfg.write_text("metrics:\n  zscore: {window: 1m, min_samples: 10, min_history: 0s}\n")
    out = tmp_path / "out.db"
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "replay", "-c", str(cfg), "--books",
                        str(path), "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with gzip.open(path, "rt") as fh:
        books = [json.loads(line) for line in fh]
    assert f"replayed {len(books)} books of 1 series" in r.stdout
    conn = sqlite3.connect(out)
    conn.row_factory = sqlite3.Row
    rows = [dict(x) for x in conn.execute("SELECT * FROM samples ORDER BY rowid")]
    conn.close()
    assert len(rows) == len(books)
    series = []
    for row, b in zip(rows, books, strict=True):
        cs, inverse = b.get("contract_size", 1.0), b.get("inverse", False)
        want = ref.companions(b["bids"], b["asks"], 50.0, cs, inverse)
        want["wis"] = ref.wis(b["bids"], b["asks"], "exponential", cs, inverse)
        assert row["ts"] == b["ts"] and row["quality"] in ("", "thin")
        for key, value in want.items():
            assert ref.close(row[key], value), (key, row[key], value)
        series.append((b["ts"], want["wis"]))
    zs = ref.zscores(series, 60_000, 10)
    for row, z in zip(rows, zs, strict=True):
        assert ref.close(row["wis_z"], z, rel=1e-9, abs_=1e-9), (row["wis_z"], z)
    assert sum(z is not None for z in zs) > len(zs) // 2
