"""Run the real daemon in a subprocess, with an emulated NOTIFY_SOCKET and real signals, or in
this process on a fake clock, cycle by cycle."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testclock import NOW

from wis_monitor.clock import FakeClock
from wis_monitor.daemon import Daemon


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                break
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))
        return [m for _, m in self.messages]

    def wait_for(self, text: str, timeout: float = 20.0, after: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m.startswith(text) for m in self.drain()[after:]):
                return True
        return False

    def close(self) -> None:
        self.sock.close()


class DaemonProcess:
    """``wis-monitor [OPTIONS] run -c CONFIG [ARGS]`` in a subprocess."""

    def __init__(self, config: Path, *, notify: NotifySocket | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 options: tuple[str, ...] = ()) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
        full_env.update(env or {})
        if notify is not None:
            full_env["NOTIFY_SOCKET"] = str(notify.path)
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wis_monitor", *options, "run", "-c", str(config), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    return check()


class SteppedDaemon:
    """The daemon in this process on a clock the test moves, driven cycle by cycle.

    One ``cycle()`` samples every venue, runs the housekeeping and sends what is due (what the
    scheduler's jobs and the dispatch loop do), then moves the clock on by the interval.
    ``crash()`` leaves the database as a kill -9 would (every cycle's writes are committed when
    the cycle ends); ``stop()`` stops as at SIGTERM. Process and signal behaviour (sd_notify,
    SIGHUP, SIGTERM, kill -9) is tested on the real process (DaemonProcess)."""

    def __init__(self, config: Path, clock: FakeClock | None = None,
                 interval_s: float = 0.2) -> None:
        self.clock = clock or FakeClock(NOW)
        self.daemon = Daemon(str(config), clock=self.clock)
        self.interval_s = interval_s

    async def __aenter__(self) -> SteppedDaemon:
        status = await self.daemon.open()
        assert status == 0, f"the daemon did not start: exit status {status}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.daemon.rt is not None:
            await self.stop()

    async def cycle(self, n: int = 1) -> None:
        for _ in range(n):
            await self.daemon.sample_all()
            await self.daemon.housekeeping()
            if self.daemon.dispatcher is not None:
                await self.daemon.dispatcher.run_once(self.clock.now_ms(), grace_s=10.0)
            self.clock.advance(self.interval_s)

    async def until(self, check: Callable[[], Any], cycles: int = 200) -> Any:
        """Cycle until ``check()`` holds (at most ``cycles``); its last result."""
        for _ in range(cycles):
            result = check()
            if result:
                return result
            await self.cycle()
        return check()

    async def reload(self) -> bool:
        return await self.daemon.reload()

    async def crash(self) -> None:
        await self.daemon.close()
        self.daemon.rt = None

    async def stop(self) -> None:
        await self.daemon.shutdown()
        self.daemon.rt = None
