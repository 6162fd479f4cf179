"""The optional HTTP endpoint on localhost: ``/metrics`` (Prometheus) and ``/healthz``.

A tiny asyncio server on the daemon's own loop: if the loop wedges, ``/healthz`` stops
answering too, which is what a health check should see.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wis_monitor.config import split_listen
from wis_monitor.engine import Sample
from wis_monitor.store import Store

log = logging.getLogger("wis_monitor.http")
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """Prometheus metrics of one daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter("wis_samples", "Samples logged, by quality ('' = good).",
                               ["venue", "symbol", "quality"], registry=r)
        self.dropped = Counter("wis_samples_dropped",
                               "Samples dropped unprocessed, by reason (out_of_order: not newer "
                               "than the series' last one).",
                               ["venue", "symbol", "reason"], registry=r)
        self.errors = Counter("wis_fetch_errors", "Failed fetches by error class.",
                              ["venue", "error_class"], registry=r)
        self.cycles_skipped = Counter(
            "wis_cycles_skipped", "Sampling cycles skipped because the previous one still ran.",
            ["venue"], registry=r)
        self.latency = Histogram("wis_fetch_latency_seconds", "Order-book fetch round trip.",
                                 ["venue"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.wis = Gauge("wis_score", "Latest Weighted Imbalance Score.",
                         ["venue", "symbol", "metric"], registry=r)
        self.wis_z = Gauge("wis_zscore", "Latest z-score of a WIS metric.",
                           ["venue", "symbol", "metric"], registry=r)
        self.firing = Gauge("wis_alerts_firing", "Alerts firing, by rule.", ["rule"], registry=r)
        self.deliveries = Gauge("wis_deliveries", "Deliveries in the outbox, by status.",
                                ["channel", "status"], registry=r)
        self.backlog = Gauge("wis_outbox_backlog", "Pending deliveries.", ["channel"], registry=r)
        self.venue_up = Gauge("wis_venue_up", "1 when the venue's last cycle had a good fetch.",
                              ["venue"], registry=r)
        self.store_ok = Gauge("wis_store_writable", "1 when the last database write succeeded.",
                              registry=r)
        self.store_ok.set(1)

    def observe(self, samples: Iterable[Sample], metrics: Iterable[str]) -> None:
        names = tuple(metrics)
        for s in samples:
            quality = ",".join(sorted(s.flags))
            self.samples.labels(s.venue, s.symbol, quality).inc()
            latency = s.values.get("latency_ms")
            if latency is not None:
                self.latency.labels(s.venue).observe(latency / 1000.0)
            if s.error:
                self.errors.labels(s.venue, s.error.split(":", 1)[0]).inc()
            if s.good:
                for m in names:
                    v = s.values.get(m)
                    if v is not None:
                        self.wis.labels(s.venue, s.symbol, m).set(v)
                    z = s.values.get(f"{m}_z")
                    if z is not None:
                        self.wis_z.labels(s.venue, s.symbol, m).set(z)

    def refresh(self, firing: dict[str, int], store: Store | None) -> None:
        self.firing.clear()
        for rule, n in firing.items():
            self.firing.labels(rule).set(n)
        if store is None:
            return
        self.deliveries.clear()
        self.backlog.clear()
        for row in store.query(
            "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY channel, status"
        ):
            self.deliveries.labels(row["channel"], row["status"]).set(row["n"])
            if row["status"] == "pending":
                self.backlog.labels(row["channel"]).set(row["n"])

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HttpEndpoint:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port``."""

    def __init__(self, listen: str, metrics: Callable[[], bytes],
                 health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.host, self.port = split_listen(listen)
        self._metrics = metrics
        self._health = health
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        log.info("http endpoint on http://%s:%d (/metrics, /healthz)", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)).strip():
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            if path.startswith("/metrics"):
                self._reply(writer, 200, CONTENT_TYPE_LATEST, self._metrics())
            elif path.startswith("/healthz"):
                ok, detail = self._health()
                body = json.dumps({"ok": ok, **detail}).encode()
                self._reply(writer, 200 if ok else 503, "application/json", body)
            else:
                self._reply(writer, 404, "text/plain", b"not found: try /metrics or /healthz\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes) -> None:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + body)
