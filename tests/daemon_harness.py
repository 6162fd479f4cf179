"""Run the real daemon in a subprocess, with an emulated NOTIFY_SOCKET and real signals."""

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
