"""The HTTP endpoint under hostile clients, and what /healthz and `run --once` call healthy.

Every client here connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_harness import DaemonProcess, SteppedDaemon, wait_until
from fakevenue import FakeVenue, FakeVenueThread
from testclock import NOW

from wis_monitor.clock import FakeClock
from wis_monitor.telemetry import Throttled

DEADLINE_S = 5.0  # the endpoint's whole-request deadline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sim_config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "storage": {"path": str(tmp_path / "wis.db")},
        "sampling": {"interval": "500ms"},
        "venues": [{"id": "simex", "exchange": "sim", "symbols": ["BTC/USDT"]}],
        "http": {"listen": f"127.0.0.1:{port}"},
    }))
    return cfg


def ccxt_config(tmp_path: Path, venues: dict[str, dict[str, Any]], port: int | None = None
                ) -> Path:
    """Binance-protocol venues, each with its ccxt settings (urls of a fake or closed port)."""
    doc: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "wis.db")},
        "sampling": {"interval": "500ms", "timeout": "1500ms"},
        "venues": [{"id": vid, "exchange": "binance", "symbols": ["BTC/USDT"], "depth": 100,
                    "ccxt": {**cc, "enableRateLimit": False}} for vid, cc in venues.items()],
    }
    if port is not None:
        doc["http"] = {"listen": f"127.0.0.1:{port}"}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout)
        return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        status, body = get(port, "/healthz")
    except OSError:
        return None
    return status, json.loads(body)


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes; a reset counts as a close."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


def http_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "http" in line.lower() or "socket" in line.lower() or "Traceback" in line]


def started(port: int) -> bool:
    answer = healthz(port)
    return answer is not None and answer[0] == 200


# -- item: a hostile or clumsy client cannot break the endpoint ---------------------------------


def test_oversize_request_line_and_headers_are_refused_without_a_traceback(
        tmp_path: Path) -> None:
    port = free_port()
    d = DaemonProcess(sim_config(tmp_path, port))
    try:
        assert wait_until(lambda: started(port), 20), d.log()
        long_line = raw_request(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        long_header = raw_request(port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 70_000
                                  + b"\r\n\r\n")
        many_headers = raw_request(port, b"GET /healthz HTTP/1.1\r\n"
                                   + b"X-Many: c\r\n" * 10_000 + b"\r\n")
        assert started(port), d.log()
    finally:
        assert d.stop() == 0, d.log()
    assert long_line.startswith(b"HTTP/1.1 414 ") or long_line == b"", long_line[:100]
    assert long_header.startswith(b"HTTP/1.1 431 ") or long_header == b"", long_header[:100]
    assert many_headers.startswith(b"HTTP/1.1 431 ") or many_headers == b"", many_headers[:100]
    assert "Traceback" not in d.log() and "Unhandled exception" not in d.log(), d.log()


def test_a_slow_client_is_cut_off_at_the_deadline_while_healthz_answers(
        tmp_path: Path) -> None:
    """The request line at once, then one byte a second (a header line every 4 s): closed
    within the deadline."""
    port = free_port()
    d = DaemonProcess(sim_config(tmp_path, port))
    try:
        assert wait_until(lambda: started(port), 20), d.log()
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        payload = b"a:\r\n" * 100
        begun = time.monotonic()
        closed_after = None
        healthy_meanwhile = 0
        try:
            for byte in payload:
                slow.sendall(bytes([byte]))
                slow.settimeout(1.0)
                try:
                    if slow.recv(1024) == b"":
                        closed_after = time.monotonic() - begun
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed_after = time.monotonic() - begun
                    break
                healthy_meanwhile += started(port)
                if time.monotonic() - begun > DEADLINE_S + 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - begun
        finally:
            slow.close()
    finally:
        assert d.stop() == 0, d.log()
    assert closed_after is not None and closed_after <= DEADLINE_S + 2.0, closed_after
    assert healthy_meanwhile >= 3
    assert "Traceback" not in d.log(), d.log()


def test_client_trouble_is_logged_once_a_minute_per_kind_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1_000_000)
    said = Throttled(logging.getLogger("wis_monitor.http"), clock=clock)
    with caplog.at_level(logging.WARNING, "wis_monitor.http"):
        for _ in range(500):
            said.warning("deadline", "http: slow client")
            said.warning("refused", "http: refused")
            clock.advance(0.1)
        clock.advance(60.0)
        said.warning("deadline", "http: slow client")
    assert caplog.messages == ["http: slow client", "http: refused",
                               "http: slow client (499 more like it since the last such line)"]


def idle_connections(port: int, n: int) -> list[socket.socket]:
    """Open ``n`` connections that never send anything (non-blocking connects: none waits)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_connections_beyond_the_fd_limit_leave_healthz_reachable(tmp_path: Path) -> None:
    """More idle connections than the daemon may open files: /healthz still answers at once,
    every idle connection is closed at the deadline, and the log says so in a few lines."""
    port = free_port()

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    cfg = sim_config(tmp_path, port)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg)],
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_fd_limit)
        socks: list[socket.socket] = []
        try:
            assert wait_until(lambda: started(port), 20), log_path.read_text()
            before = len(http_lines(log_path.read_text()))
            idle = open_files(proc.pid)
            socks = idle_connections(port, 300)
            begun = time.monotonic()
            assert wait_until(lambda: started(port), 10, every=0.05), log_path.read_text()
            reachable_after = time.monotonic() - begun
            socks += idle_connections(port, 300)
            assert wait_until(lambda: started(port), 10, every=0.05), log_path.read_text()
            most_files = open_files(proc.pid)
            # Every idle connection meets its deadline while the clients still hold theirs.
            assert wait_until(lambda: open_files(proc.pid) <= idle, DEADLINE_S + 3)
            assert started(port)
        finally:
            for s in socks:
                s.close()
            proc.terminate()
            assert proc.wait(30) == 0
    text = log_path.read_text()
    assert reachable_after < 3.0, (reachable_after, text[-3000:])
    assert most_files <= idle + 256 // 8 + 2, (idle, most_files)  # the cap, and a probe
    assert "Traceback" not in text, text[-3000:]
    assert len(http_lines(text)) - before <= 10, text[-3000:]


def test_out_of_files_the_endpoint_neither_spins_nor_floods_the_log(tmp_path: Path) -> None:
    """When accept() fails for want of files, the endpoint closes its oldest connection to make
    room, or waits a little if it has none; it answers again once files are free."""
    port = free_port()
    d = DaemonProcess(sim_config(tmp_path, port))
    pid = d.proc.pid
    socks: list[socket.socket] = []
    probe: socket.socket | None = None
    try:
        assert wait_until(lambda: started(port), 20), d.log()
        idle = open_files(pid)
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (idle + 2, hard))  # two files to spare
        socks = idle_connections(port, 300)
        assert wait_until(lambda: started(port), 10, every=0.05), d.log()
        for s in socks:
            s.close()
        assert wait_until(lambda: open_files(pid) <= idle, 10)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_files(pid), hard))  # none to spare
        cpu_before = cpu_seconds(pid)
        probe = socket.create_connection(("127.0.0.1", port), timeout=10)
        probe.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        time.sleep(3.0)  # a window to measure: the endpoint must not spin meanwhile
        busy = cpu_seconds(pid) - cpu_before
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, hard))
        answer = probe.recv(100)
    finally:
        if probe is not None:
            probe.close()
        assert d.stop() == 0, d.log()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert busy < 0.5, busy
    assert "Traceback" not in d.log(), d.log()
    assert len(http_lines(d.log())) <= 6, d.log()


def test_idle_connections_beyond_the_cap_in_a_roomy_process(tmp_path: Path) -> None:
    """With files to spare, the cap bounds what idle connections hold: /healthz answers at
    once and the daemon's open files stay few."""
    port = free_port()
    d = DaemonProcess(sim_config(tmp_path, port))
    socks: list[socket.socket] = []
    try:
        assert wait_until(lambda: started(port), 20), d.log()
        idle = open_files(d.proc.pid)
        socks = idle_connections(port, 300)
        begun = time.monotonic()
        assert wait_until(lambda: started(port), 5, every=0.05), d.log()
        assert time.monotonic() - begun < 3.0
        assert open_files(d.proc.pid) <= idle + 64 + 2  # the cap, and a probe
    finally:
        for s in socks:
            s.close()
        assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log()


# -- item: what healthy means ---------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    return free_port()


def test_run_once_exits_non_zero_when_every_venue_failed(tmp_path: Path) -> None:
    nowhere = FakeVenue({"binance": ["BTC/USDT"]}, port=closed_port()).ccxt_config("binance")
    cfg = ccxt_config(tmp_path, {"binance": nowhere})
    r = subprocess.run([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "no venue up" in r.stderr and "binance" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_run_once_names_the_failed_venues_and_exits_0_when_some_answered(
        tmp_path: Path) -> None:
    with FakeVenueThread({"binance": ["BTC/USDT"]}) as fv:
        nowhere = FakeVenue({"binance": ["BTC/USDT"]}, port=closed_port()).ccxt_config("binance")
        cfg = ccxt_config(tmp_path, {"good": fv.ccxt_config("binance"), "gone": nowhere})
        r = subprocess.run([sys.executable, "-m", "wis_monitor", "run", "-c", str(cfg),
                            "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "1/2 venues up; down: gone" in r.stderr, r.stderr


def test_healthz_is_503_while_the_only_venue_is_down_and_200_once_it_is_up(
        tmp_path: Path) -> None:
    port = free_port()
    clock = FakeClock(NOW)
    with FakeVenueThread({"binance": ["BTC/USDT"]}, clock=clock) as fv:
        fv.set_fault("binance", "http500")
        cfg = ccxt_config(tmp_path, {"binance": fv.ccxt_config("binance")}, port)

        async def main() -> None:
            async with SteppedDaemon(cfg, clock, interval_s=0.5) as d:
                await d.daemon.start_http()
                await d.cycle()
                down = await asyncio.to_thread(healthz, port)
                assert down is not None
                status, body = down
                assert status == 503 and body["ok"] is False, body
                assert body["venues"]["binance"]["up"] is False
                assert body["problems"] == ["no venue up"]
                assert "0/1 venues up" in body["status"]
                fv.set_fault("binance", None)
                await d.cycle()
                up = await asyncio.to_thread(healthz, port)
                assert up and up[0] == 200, up
                assert up[1]["ok"] is True and up[1]["venues"]["binance"]["up"]
                assert up[1]["problems"] == [] and "1/1 venues up" in up[1]["status"]

        asyncio.run(main())
