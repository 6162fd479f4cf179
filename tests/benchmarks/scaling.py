"""Several instances on one PostgreSQL store (docs/scaling.md): how long a venue goes unsampled
when its instance is killed, and what one instance spends per series sampled at 1 s.

Both run real daemons (``python -m wis_monitor run``) on simulated venues against a throwaway
local server (tests/pgserver.py) started for the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pgserver

from wis_monitor.store.postgres import PostgresStore


def _config(path: Path, url: str, venues: int, symbols: int, ttl_s: int) -> Path:
    syms = ", ".join(f"S{i}/USDT" for i in range(symbols))
    lines = [f'storage: {{url: "{url}"}}', "sampling: {interval: 1s}",
             f"instance: {{lease_ttl: {ttl_s}s}}", "feed_stale: {enabled: false}", "venues:"]
    lines += [f"  - {{id: v{i}, exchange: sim, symbols: [{syms}], sim: {{seed: {i}}}}}"
              for i in range(venues)]
    cfg = path / f"scaling-{venues}x{symbols}-{ttl_s}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _daemon(cfg: Path, instance: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WIS_INSTANCE_ID": instance}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def failover_s(server: pgserver.Server, tmp: Path, ttl_s: int) -> float:
    """Two instances, six venues at 1 s: kill -9 of one, to the first sample the other writes
    of a venue the dead one held."""
    url = server.new_database()
    cfg = _config(tmp, url, venues=6, symbols=1, ttl_s=ttl_s)
    store = PostgresStore(url)
    procs = {n: _daemon(cfg, n, tmp / f"failover-{n}.log") for n in ("a", "b")}
    try:
        def spread() -> bool:
            held = [r.owner for r in store.leases()]
            return len(held) == 6 and held.count("a") == 3 and held.count("b") == 3
        if not _wait(spread, 60):
            raise RuntimeError("the instances did not share the venues")
        moved = [r.name.removeprefix("venue:") for r in store.leases() if r.owner == "a"]
        procs["a"].kill()
        procs["a"].wait()
        killed_ms = int(time.time() * 1000)

        def first_sample() -> int | None:
            rows = store.query("SELECT min(ts) AS first FROM samples WHERE ts > %s AND venue"
                               " = ANY(%s) GROUP BY venue", [killed_ms, moved])
            return max(int(r["first"]) for r in rows) if len(rows) == len(moved) else None
        if not _wait(lambda: first_sample() is not None, 4 * ttl_s + 30):
            raise RuntimeError("the venues were not taken over")
        first = first_sample()
        assert first is not None
        return (first - killed_ms) / 1000
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        store.close()


def instance_load(server: pgserver.Server, tmp: Path, series: int, seconds: float
                  ) -> dict[str, float]:
    """One instance sampling ``series`` simulated series at 1 s: its CPU time per second and
    per series sampled (the pipeline and the PostgreSQL writes; a venue's network and JSON
    parsing come on top, see the `cycle` benchmark)."""
    url = server.new_database()
    venues = max(1, series // 10)
    cfg = _config(tmp, url, venues=venues, symbols=series // venues, ttl_s=15)
    store = PostgresStore(url)
    proc = _daemon(cfg, "solo", tmp / "load.log")
    try:
        if not _wait(lambda: store.query("SELECT count(*) AS n FROM samples")[0]["n"] > series * 3,
                     60):
            raise RuntimeError("the instance did not sample")
        cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
        n0 = store.query("SELECT count(*) AS n FROM samples")[0]["n"]
        time.sleep(seconds)
        cpu1, t1 = _cpu_s(proc.pid), time.monotonic()
        n1 = store.query("SELECT count(*) AS n FROM samples")[0]["n"]
    finally:
        proc.terminate()
        proc.wait(30)
        store.close()
    per_sample_ms = (cpu1 - cpu0) / max(1, n1 - n0) * 1000
    return {"series": float(series), "samples_per_s": (n1 - n0) / (t1 - t0),
            "cpu_share": (cpu1 - cpu0) / (t1 - t0), "cpu_ms_per_sample": per_sample_ms,
            "series_per_core_at_1s": 1000 / per_sample_ms}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_scaling(quick: bool) -> dict[str, float]:
    server, _ = pgserver.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            out = {"failover_s_ttl_3s": failover_s(server, tmp, 3)}
            if not quick:
                out["failover_s_ttl_15s"] = failover_s(server, tmp, 15)
            for n in (10, 100) if quick else (10, 100, 300):
                load = instance_load(server, tmp, n, 10.0 if quick else 20.0)
                out[f"cpu_share_{n}_series"] = load["cpu_share"]
                out[f"series_per_core_{n}"] = load["series_per_core_at_1s"]
            return out
    finally:
        server.stop()
