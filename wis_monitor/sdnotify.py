"""A small sd_notify client (no libsystemd): READY, RELOADING, STOPPING, WATCHDOG, STATUS.

A no-op when ``$NOTIFY_SOCKET`` is unset. Sending never raises: a monitor must not die because
the notification socket went away.
"""

from __future__ import annotations

import logging
import os
import socket

from wis_monitor.clock import SYSTEM, Clock

log = logging.getLogger("wis_monitor.sdnotify")


class Notifier:
    """Sends datagrams to systemd's notification socket."""

    def __init__(self, address: str | None, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, clock: Clock = SYSTEM) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"), clock)

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                log.debug("sd_notify to %s failed: %s", self.address, exc)
                self._warned = True
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        usec = round(self.clock.monotonic() * 1_000_000)  # CLOCK_MONOTONIC, as systemd's
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """``$WATCHDOG_USEC`` in seconds, when it is meant for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec:
            return None
        if pid and pid.isdigit() and int(pid) != os.getpid():
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 1e6 if value > 0 else None
