"""Logging for an SRE reading the journal: one line per event on stderr, secrets masked.

Under systemd (``$JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority prefix
that journald understands; elsewhere with the level name. ``--log-format json`` gives one JSON
object per line instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from wis_monitor.redact import redact

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}

class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        message = redact(message)
        if self.fmt == "json":
            return json.dumps({
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": message,
            })
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{message}"
        return f"{record.levelname:<7} {message}"


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "ccxt", "asyncio", "apprise", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
