"""Streamed books against polled ones (docs/streaming.md): the age of the book at each sample,
the daemon's CPU per 100 symbols and its memory over a long stream.

A real daemon (``python -m wis_monitor run``) samples N binance symbols of the local fake
streaming venue (tests/fakestream.py, an event every 100 ms per symbol) at 1 s, once with
``mode: stream``, once with ``mode: poll`` within ccxt's rate limit and once without it, into
a SQLite file. ``WIS_BENCH_STREAM_S`` sets how long each runs (default 30 s; 3600 for the
one-hour memory figure), ``WIS_BENCH_STREAM_RUNS`` which of them run (``stream``,
``poll``, ``poll_unthrottled``; default all).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fakestream import FakeStreamVenueThread

WARMUP_S = 15.0
#: Before a long (memory) run: past the first minute that fills the z-score windows.
LONG_WARMUP_S = 90.0
RSS_EVERY_S = 10.0


def _run(tmp: Path, fv: Any, symbols: list[str], mode: str, seconds: float,
         throttled: bool = True) -> dict[str, float]:
    name = mode if throttled else f"{mode}-unthrottled"
    db = tmp / f"{name}.db"
    cfg = tmp / f"{name}.yaml"
    venue = {"id": "fake", "exchange": "binance", "symbols": symbols, "depth": 100,
             "mode": mode, "ccxt": {**fv.ccxt_config("binance"), "enableRateLimit": throttled}}
    # z-scores over a minute: their windows are full after the warm-up, so the memory
    # measured after it is the steady state's (an hour's window grows for its first hour).
    cfg.write_text(json.dumps({"storage": {"path": str(db)},
                               "sampling": {"interval": "1s", "timeout": "900ms"},
                               "metrics": {"zscore": {"window": "1m", "min_samples": 30}},
                               "feed_stale": {"enabled": False}, "venues": [venue]}))
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(LONG_WARMUP_S if seconds >= 600 else WARMUP_S)
        cpu0, rss0, t0 = _cpu_s(proc.pid), _rss_mib(proc.pid), time.time()
        rss = [rss0]
        while time.time() < t0 + seconds:
            time.sleep(min(RSS_EVERY_S, max(0.0, t0 + seconds - time.time())))
            rss.append(_rss_mib(proc.pid))
        cpu1, rss1, t1 = _cpu_s(proc.pid), rss[-1], time.time()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT quality, book_age_ms, latency_ms FROM samples WHERE ts >= ?"
                        " AND ts < ?", (int(t0 * 1000), int(t1 * 1000))).fetchall()
    conn.close()
    good = [r for r in rows if r[0] in ("", "thin")]
    # A streamed book's age is the time since its last update; a polled one is as old as the
    # round trip that fetched it (at most).
    ages = np.array([r[1] if mode == "stream" else r[2] for r in good
                     if (r[1] if mode == "stream" else r[2]) is not None], dtype=float)
    share = (cpu1 - cpu0) / (t1 - t0)
    return {"samples_per_s": len(rows) / (t1 - t0), "good_share": len(good) / max(1, len(rows)),
            "age_p50_ms": float(np.percentile(ages, 50)) if ages.size else float("nan"),
            "age_p99_ms": float(np.percentile(ages, 99)) if ages.size else float("nan"),
            "cpu_per_100_symbols": share * 100 / len(symbols),
            "rss_start_mib": rss0, "rss_max_mib": max(rss),
            "rss_growth_pct": (rss1 - rss0) / rss0 * 100}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_streaming(quick: bool) -> dict[str, float]:
    n = 20 if quick else 100
    seconds = float(os.environ.get("WIS_BENCH_STREAM_S", "10" if quick else "30"))
    symbols = [f"S{i}/USDT" for i in range(n)]
    out: dict[str, float] = {"symbols": float(n), "seconds": seconds}
    with tempfile.TemporaryDirectory() as d, \
            FakeStreamVenueThread({"binance": symbols}, tick_s=0.1, history=2_000) as fv:
        # Polling within binance's budget (ccxt's throttle: 20 requests a second) cannot keep
        # 100 symbols at 1 s; without the throttle it shows the age a poll's book has.
        runs = (("stream", "stream", True), ("poll", "poll", True),
                ("poll_unthrottled", "poll", False))
        only = os.environ.get("WIS_BENCH_STREAM_RUNS")  # e.g. "stream" for the hour of memory
        for name, mode, throttled in runs:
            if only and name not in only.split(","):
                continue
            for k, v in _run(Path(d), fv, symbols, mode, seconds, throttled).items():
                out[f"{name}_{k}"] = v
    return out
