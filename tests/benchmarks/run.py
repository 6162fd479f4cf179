"""Benchmarks of SPEC §13, each figure against its floor measured in the same run.

    python tests/benchmarks/run.py [--quick] [--json] [--only pipeline,sqlite,...]

Not part of the test suite: timings on a shared machine are reported, not asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from wis_monitor.clock import SYSTEM  # noqa: E402
from wis_monitor.config import Config, load_config  # noqa: E402
from wis_monitor.engine import Engine  # noqa: E402
from wis_monitor.sources import Observation  # noqa: E402
from wis_monitor.sources.sim import SimVenue  # noqa: E402
from wis_monitor.store import Batch, SampleRow, SqliteStore  # noqa: E402

PIPELINE_CONFIG = """\
metrics:
  wis: {kernel: exponential, half_life_bps: 10, band_bps: 50}
  zscore: {window: 1h, min_samples: 30}
rules:
  include: [rules.yaml]
"""
PIPELINE_RULES = """\
rules:
  - {name: bid-pressure, when: wis_z >= 3 and depth > 250000, for: 30s, clear: wis_z < 2}
  - {name: ask-pressure, when: wis_z <= -3 and depth > 250000, for: 30s, clear: wis_z > -2}
"""


def best_of(fn: Callable[[], float], repeat: int) -> float:
    """The fastest of ``repeat`` runs (the least disturbed by the rest of the machine)."""
    return min(fn() for _ in range(repeat))


def pipeline_config(tmp: Path) -> Config:
    (tmp / "rules.yaml").write_text(PIPELINE_RULES)
    (tmp / "config.yaml").write_text(PIPELINE_CONFIG)
    return load_config(str(tmp / "config.yaml"))


def sim_books(n: int, levels: int, symbols: int = 1) -> list[Observation]:
    syms = [f"S{i}/USDT" if i else "BTC/USDT" for i in range(symbols)]
    sim = SimVenue("bench", syms, seed=1, levels=levels)
    return [sim.observe(syms[i % symbols], 1_700_000_000_000 + (i // symbols) * 1000)
            for i in range(n)]


def bare_kernel(obs: list[Observation], half_life: float = 10.0, band: float = 50.0) -> float:
    """The floor: a plain numpy WIS over the same arrays, nothing else."""
    t0 = time.perf_counter()
    for o in obs:
        b = o.book
        assert b is not None
        mid = (b.bid_px[0] + b.ask_px[0]) / 2.0
        db = (mid - b.bid_px) / mid * 1e4
        da = (b.ask_px - mid) / mid * 1e4
        sb = float(np.dot(np.exp2(-db / half_life) * (db <= band), b.bid_px * b.bid_qty))
        sa = float(np.dot(np.exp2(-da / half_life) * (da <= band), b.ask_px * b.ask_qty))
        _ = (sb - sa) / (sb + sa)
    return time.perf_counter() - t0


def run_pipeline(config: Config, obs: list[Observation]) -> float:
    engine = Engine(config)
    t0 = time.perf_counter()
    for o in obs:
        engine.process((o,), o.ts_ms)
    return time.perf_counter() - t0


def bench_pipeline(tmp: Path, quick: bool, levels: int = 1000, symbols: int = 1
                   ) -> dict[str, float]:
    n = 2_000 if quick else 20_000
    obs = sim_books(n, levels, symbols)
    config = pipeline_config(tmp)
    run_pipeline(config, obs[:500])  # warm caches
    kernel = best_of(lambda: bare_kernel(obs), 3)
    pipe = best_of(lambda: run_pipeline(config, obs), 3)
    return {"books": n, "levels": levels, "symbols": symbols,
            "pipeline_books_per_s": n / pipe, "kernel_books_per_s": n / kernel,
            "pipeline_vs_kernel": pipe / kernel}


def bench_sqlite(tmp: Path, quick: bool) -> dict[str, float]:
    n = 20_000 if quick else 200_000
    config = pipeline_config(tmp)
    engine = Engine(config)
    rows: list[SampleRow] = []
    obs = sim_books(2_000, 200)
    for i in range(n):
        o = obs[i % len(obs)]
        o = Observation(o.venue, f"S{i % 50}", o.ts_ms + i, o.book, o.flags, 1.0)
        batch, _ = engine.process((o,), o.ts_ms)
        rows.extend(batch.samples)
    batches = [rows[i:i + 1000] for i in range(0, len(rows), 1000)]

    def ours() -> float:
        path = tmp / f"ours-{time.monotonic_ns()}.db"
        store = SqliteStore(str(path))
        t0 = time.perf_counter()
        for chunk in batches:
            store.write(Batch(samples=chunk))
        dt = time.perf_counter() - t0
        store.close()
        return dt

    def raw() -> float:
        path = tmp / f"raw-{time.monotonic_ns()}.db"
        store = SqliteStore(str(path))  # same schema, indexes and pragmas
        cols, values = store.columns, store.value_columns
        store.close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        sql = f"INSERT INTO samples ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        t0 = time.perf_counter()
        for chunk in batches:  # the same samples, laid out as the columns' tuples
            conn.execute("BEGIN")
            conn.executemany(sql, [(r.ts_ms, r.venue, r.symbol, r.quality, r.error,
                                    *map(r.values.get, values)) for r in chunk])
            conn.execute("COMMIT")
        dt = time.perf_counter() - t0
        conn.close()
        return dt

    t_raw = best_of(raw, 3)
    t_ours = best_of(ours, 3)
    return {"rows": n, "sqlite_rows_per_s": n / t_ours, "raw_rows_per_s": n / t_raw,
            "sqlite_vs_raw": t_ours / t_raw}


def bench_stream(tmp: Path, quick: bool) -> dict[str, float]:
    """Streamed against polled books on the fake streaming venue (streaming.py): book age at
    each sample, CPU per 100 symbols, RSS growth (``WIS_BENCH_STREAM_S=3600`` for an hour)."""
    from streaming import bench_streaming

    return bench_streaming(quick)


def bench_instances(tmp: Path, quick: bool) -> dict[str, float]:
    """Several instances on PostgreSQL (scaling.py): failover time after kill -9, and one
    instance's CPU per series sampled at 1 s; needs psycopg and the server binaries."""
    from scaling import bench_scaling

    return bench_scaling(quick)


def bench_postgres(tmp: Path, quick: bool) -> dict[str, float]:
    """PostgresStore.write against raw psycopg executemany and COPY (pgwrites.py);
    needs psycopg and the PostgreSQL server binaries."""
    from pgwrites import bench_postgres_writes

    n = 20_000 if quick else 100_000
    engine = Engine(pipeline_config(tmp))
    made = [s for o in sim_books(1_000, 200) for s in engine.process((o,), o.ts_ms)[0].samples]
    rows = [SampleRow(t.ts_ms + i, t.venue, f"S{i % 50}/USDT", t.values, t.quality, t.error)
            for i, t in ((i, made[i % len(made)]) for i in range(n))]
    return bench_postgres_writes(rows, best_of)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_replay(tmp: Path, quick: bool) -> dict[str, float]:
    from wis_monitor.tools.replay import replay_observations

    n = 100_000 if quick else 1_000_000
    config = pipeline_config(tmp)
    pool = sim_books(2_000, 200, symbols=4)
    marks: dict[str, float] = {}

    def stream() -> Any:
        for i in range(n):
            o = pool[i % len(pool)]
            if i == 1000:
                gc.collect()
                marks["start"] = rss_mb()
            elif i == n // 2:
                marks["middle"] = rss_mb()
            yield Observation(o.venue, o.symbol, 1_700_000_000_000 + i * 250, o.book, o.flags)
        marks["end"] = rss_mb()

    out = tmp / "replay.db"
    t0 = time.perf_counter()
    replay_observations(config, stream(), str(out))
    dt = time.perf_counter() - t0
    return {"books": n, "replay_books_per_s": n / dt, "rss_start_mb": marks["start"],
            "rss_middle_mb": marks["middle"], "rss_end_mb": marks["end"],
            "replay_rss_growth_pct": (marks["end"] / marks["start"] - 1.0) * 100.0}


SHARED_BOOKS = ROOT.parent / "shared" / "data" / "books" / "binance-BTCUSDT-20240808.jsonl.gz"


def bench_recordings(tmp: Path, quick: bool) -> dict[str, float]:
    """Reading and replaying the same 1000-level books from JSON Lines and from Parquet: the
    simulator's (full-precision prices) and, when present, the shared Binance recording.
    Floors: pyarrow's decoding alone for reading; for replaying, the same replay of the books
    already in memory (the pipeline and the SQLite writes without reading)."""
    from wis_monitor.sources.recordings_parquet import write_parquet
    from wis_monitor.sources.replay import book_record, read_recording

    n = 2_000 if quick else 20_000
    obs = sim_books(n, 1000)
    js, pq = tmp / "books.jsonl", tmp / "books.parquet"
    with open(js, "w") as fh:
        for o in obs:
            fh.write(json.dumps(book_record(o), separators=(",", ":")) + "\n")
    write_parquet(obs, pq)
    del obs
    out = {"books": n, "levels": 1000, **_json_vs_parquet(tmp, js, pq, quick)}
    if SHARED_BOOKS.exists():
        shared_pq = tmp / "shared.parquet"
        books = write_parquet(read_recording(SHARED_BOOKS), shared_pq)
        shared = _json_vs_parquet(tmp, SHARED_BOOKS, shared_pq, quick)
        out.update({"shared_books": books, **{f"shared_{k}": v for k, v in shared.items()}})
    return out


def _json_vs_parquet(tmp: Path, js: Path, pq: Path, quick: bool) -> dict[str, float]:
    from wis_monitor.sources.recordings_parquet import read_parquet
    from wis_monitor.sources.replay import read_recording
    from wis_monitor.tools.replay import replay_observations

    config = pipeline_config(tmp)
    counted: dict[str, int] = {}

    def read(reader: Callable[[Path], Any], path: Path) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            counted[str(path)] = sum(1 for _ in reader(path))
            return time.perf_counter() - t0
        return run

    def replay(reader: Callable[[Path], Any], path: Path) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            replay_observations(config, reader(path), ":memory:")
            return time.perf_counter() - t0
        return run

    def decode(path: Path) -> Callable[[], float]:  # the floor: pyarrow's decoding alone
        import pyarrow.parquet

        from wis_monitor.sources.recordings_parquet import BATCH_ROWS

        def run() -> float:
            t0 = time.perf_counter()
            for _ in pyarrow.parquet.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS,
                                                                        use_threads=False):
                pass
            return time.perf_counter() - t0
        return run

    def replay_parsed(path: Path) -> Callable[[], float]:  # the pipeline without reading
        books = list(read_parquet(path))

        def run() -> float:
            t0 = time.perf_counter()
            replay_observations(config, iter(books), ":memory:")
            return time.perf_counter() - t0
        return run

    repeat = 3 if quick else 5
    parsed_replay = best_of(replay_parsed(pq), repeat)
    pq_decode = best_of(decode(pq), repeat)
    json_read = best_of(read(read_recording, js), repeat)
    pq_read = best_of(read(read_parquet, pq), repeat)
    json_replay = best_of(replay(read_recording, js), repeat)
    pq_replay = best_of(replay(read_parquet, pq), repeat)
    n = counted[str(pq)]
    assert counted[str(js)] == n
    return {"json_mb": js.stat().st_size / 2**20, "parquet_mb": pq.stat().st_size / 2**20,
            "json_read_books_per_s": n / json_read, "parquet_read_books_per_s": n / pq_read,
            "parquet_decode_books_per_s": n / pq_decode,
            "parquet_read_vs_decode": pq_read / pq_decode,
            "parquet_vs_json_read": json_read / pq_read,
            "json_replay_books_per_s": n / json_replay,
            "parquet_replay_books_per_s": n / pq_replay,
            "parquet_vs_json_replay": json_replay / pq_replay,
            "parsed_replay_books_per_s": n / parsed_replay,
            "parquet_replay_vs_parsed": pq_replay / parsed_replay}


def bench_cycle(tmp: Path, quick: bool, venues: int = 10, symbols: int = 20
                ) -> dict[str, float]:
    """One sampling cycle of the daemon vs bare concurrent ccxt calls for the same books."""
    import asyncio

    import ccxt.async_support as ccxt_async
    import yaml
    from fakevenue import FakeVenue

    from wis_monitor.daemon import Daemon

    names = [f"S{i}/USDT" for i in range(symbols)]
    rounds = 5 if quick else 20
    # The fake venue runs in its own process, so only the client side is measured here.
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakevenue.py"), "--port",
                               str(port), "--symbols", str(symbols), "--levels", "1000"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("serving on"):
                break
        ccxt_cfg = {**FakeVenue({"binance": names}, port=port).ccxt_config("binance"),
                    "enableRateLimit": False}
        doc = {"storage": {"path": str(tmp / "cycle.db")},
               "venues": [{"id": f"v{i}", "exchange": "binance", "symbols": names,
                           "depth": 1000, "ccxt": ccxt_cfg} for i in range(venues)]}
        (tmp / "cycle.yaml").write_text(yaml.safe_dump(doc))

        async def both() -> tuple[float, float, float, float]:
            d = Daemon(str(tmp / "cycle.yaml"))
            assert await d.open() == 0
            exs = [ccxt_async.binance(ccxt_cfg) for _ in range(venues)]
            await asyncio.gather(*(e.load_markets() for e in exs))

            async def bare_venue(e: Any) -> None:
                await asyncio.gather(*(e.fetch_order_book(s, 1000) for s in names))

            async def bare_cycle() -> None:  # the same shape of concurrency as the daemon's
                await asyncio.gather(*(bare_venue(e) for e in exs))

            await d.sample_all()  # warm both: connections, caches
            await bare_cycle()
            timings: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}
            for _ in range(rounds):  # interleaved, so both see the same machine
                for name, fn in (("ours", d.sample_all), ("bare", bare_cycle)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    await fn()
                    timings[name].append((time.perf_counter() - t0, time.process_time() - c0))
            await asyncio.gather(*(e.close() for e in exs))
            await d.close()
            bw, bc = min(timings["bare"])
            ow, oc = min(timings["ours"])
            return bw, bc, ow, oc

        b_wall, b_cpu, o_wall, o_cpu = asyncio.run(both())
    finally:
        server.terminate()
        server.wait(10)
    return {"venues": venues, "symbols": symbols, "cycle_wall_ms": o_wall * 1e3,
            "cycle_cpu_ms": o_cpu * 1e3, "bare_wall_ms": b_wall * 1e3, "bare_cpu_ms": b_cpu * 1e3,
            "cycle_vs_bare_ccxt": o_wall / b_wall}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_latency(tmp: Path, quick: bool) -> dict[str, float]:
    """Sample-to-delivery: from the observation entering the engine to the receiver."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from aiosmtpd.controller import Controller

    arrivals: list[float] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrivals.append(time.perf_counter())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Mail:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            arrivals.append(time.perf_counter())
            return "250 OK"

    http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    smtp = Controller(Mail(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    urls = {"webhook": f"json://127.0.0.1:{http.server_address[1]}/hook",
            "smtp": f"mailto://127.0.0.1:{smtp_port}?from=a@example.com&to=b@example.com"}
    n = 100 if quick else 400
    out: dict[str, float] = {}
    for name, url in urls.items():
        d = tmp / f"lat-{name}"
        d.mkdir()
        (d / "rules.yaml").write_text(
            "rules:\n  - {name: flip, when: latency_ms > 0.5, channels: [ch]}\n")
        (d / "c.yaml").write_text(
            f"storage: {{path: {d / 'wis.db'}}}\nchannels:\n  ch: {{url: '{url}', "
            f"per_minute: 100000}}\nrules: {{include: [rules.yaml]}}\n")
        lat = sorted(asyncio.run(_deliveries(load_config(str(d / "c.yaml")), n, arrivals)))
        out[f"latency_p50_ms_{name}"] = lat[len(lat) // 2]
        out[f"latency_p99_ms_{name}"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        out[f"deliveries_{name}"] = len(lat)
    http.shutdown()
    smtp.stop()
    return out


async def _deliveries(config: Config, n: int, arrivals: list[float]) -> list[float]:
    """Per event: milliseconds from the observation entering the engine to the receiver."""
    from wis_monitor.outbox import Dispatcher

    store = SqliteStore(config.db_path())
    engine = Engine(config, store)
    dispatcher = Dispatcher(config, store, clock=SYSTEM)
    lat: list[float] = []
    for i, b in enumerate(sim_books(n, 200)):
        # latency_ms alternates, so the rule fires and resolves: one event per sample.
        o = Observation("v", "BTC/USDT", b.ts_ms, b.book, b.flags, 1.0 if i % 2 == 0 else 0.0)
        arrivals.clear()
        t0 = time.perf_counter()
        batch, _ = engine.process((o,), o.ts_ms)
        store.write(batch)
        await dispatcher.run_once(o.ts_ms)
        if arrivals:
            lat.append((arrivals[0] - t0) * 1e3)
    store.close()
    return lat


SECTIONS: dict[str, Callable[[Path, bool], dict[str, float]]] = {
    "replay": bench_replay,  # first: its RSS is measured from a fresh process
    "pipeline": bench_pipeline,
    "recordings": bench_recordings,
    "cycle": bench_cycle,
    "latency": bench_latency,
    "sqlite": bench_sqlite,
    "postgres": bench_postgres,
    "instances": bench_instances,
    "streaming": bench_stream,
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--scaling", action="store_true",
                        help="also pipeline at 1/10/100 symbols and 100/1000/5000 levels")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.only.split(","):
            t0 = time.perf_counter()
            results[name] = SECTIONS[name](tmp, args.quick)
            results[name]["seconds"] = time.perf_counter() - t0
            if not args.json:
                print(f"{name}: " + ", ".join(f"{k}={v:,.3f}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in results[name].items()),
                      flush=True)
        if args.scaling:
            results["scaling"] = [
                bench_pipeline(tmp, True, levels, symbols)
                for levels, symbols in ((1000, 1), (1000, 10), (1000, 100), (100, 1), (5000, 1))
            ]
    flat = {k: v for section in results.values() if isinstance(section, dict)
            for k, v in section.items() if k in KEYS}
    results.update(flat)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n" + "\n".join(f"{k:<24} {v:,.3f}" for k, v in flat.items()))


KEYS = ("pipeline_books_per_s", "pipeline_vs_kernel", "cycle_vs_bare_ccxt", "sqlite_vs_raw",
        "postgres_vs_raw", "failover_s_ttl_3s", "failover_s_ttl_15s",
        "stream_age_p99_ms", "poll_unthrottled_age_p99_ms", "stream_cpu_per_100_symbols",
        "stream_rss_growth_pct",
        "latency_p99_ms_smtp", "latency_p99_ms_webhook", "replay_books_per_s",
        "replay_rss_growth_pct", "parquet_read_books_per_s", "parquet_read_vs_decode",
        "parquet_vs_json_read",
        "parquet_replay_books_per_s", "parquet_vs_json_replay", "parquet_replay_vs_parsed")

if __name__ == "__main__":
    main()
