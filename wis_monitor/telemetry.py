"""The optional HTTP endpoint on localhost: ``/metrics`` (Prometheus) and ``/healthz``.

A tiny asyncio server on the daemon's own loop: if the loop wedges, ``/healthz`` stops
answering too, which is what a health check should see. Whatever a client sends (nothing,
one byte a second, megabytes of headers, a thousand idle connections), the endpoint keeps
answering others, and the log gets one line per kind of trouble per minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wis_monitor.clock import SYSTEM, Clock
from wis_monitor.engine import Sample
from wis_monitor.errors import StoreError
from wis_monitor.redact import redact_exposition
from wis_monitor.settings import split_listen
from wis_monitor.store import Store

log = logging.getLogger("wis_monitor.http")
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_DEADLINE_S = 5.0  # to send the request (and again to read the answer)
MAX_CONNECTIONS = 64  # open at once; a new one closes the oldest
MAX_REQUEST_LINE = 8 * 1024  # bytes; longer: 414
MAX_HEAD = 32 * 1024  # bytes of request line and headers; more: 431
LISTEN_BACKLOG = 128
ACCEPT_PAUSE_S = 0.5  # after a failed accept when no connection can be closed to free a file
LOG_EVERY_S = 60.0  # one line per kind of client trouble per minute
REASONS = {200: "OK", 404: "Not Found", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


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
        self.venue_up = Gauge("wis_venue_up", "1 when the venue's latest cycle had a fetch "
                              "without error, less than its stale_after ago.", ["venue"],
                              registry=r)
        self.store_ok = Gauge("wis_store_writable", "1 when the last database write succeeded.",
                              registry=r)
        self.store_ok.set(1)
        # Several instances on one store (docs/scaling.md).
        self.leases = Gauge("wis_leases_held", "Leases this instance holds, by kind (venue, "
                            "group).", ["kind"], registry=r)
        self.takeovers = Counter("wis_lease_takeovers", "Leases taken over from an instance "
                                 "that stopped renewing them.", registry=r)
        self.fenced = Counter("wis_writes_fenced", "Batches the store refused because a lease "
                              "they were written under had been taken over.", registry=r)
        # Streamed venues (docs/streaming.md).
        self.resyncs = Counter("wis_stream_resyncs", "Streamed books discarded and resubscribed, "
                               "by reason (symbol '*': the whole connection).",
                               ["venue", "symbol", "reason"], registry=r)
        self.drift = Gauge("wis_stream_drift_bps", "The latest difference of a streamed book "
                           "from a REST snapshot of the same moment.", ["venue", "symbol"],
                           registry=r)
        self.fallbacks = Counter("wis_stream_fallbacks", "Times a streamed venue fell back to "
                                 "polling.", ["venue"], registry=r)
        self.streaming = Gauge("wis_venue_streaming", "1 while a mode: stream venue streams, 0 "
                               "while it polls (fallback).", ["venue"], registry=r)
        self._stream_seen: dict[tuple[object, ...], int] = {}
        self.reclaimed = Counter("wis_deliveries_reclaimed", "Deliveries taken over from an "
                                 "instance whose claim ran out before it settled them (sent "
                                 "twice if it had sent them).", registry=r)

    def observe(self, samples: Iterable[Sample], metrics: Iterable[str]) -> None:
        names = tuple(metrics)
        for s in samples:
            quality = ",".join(sorted(s.flags))
            self.samples.labels(s.venue, s.symbol, quality).inc()
            latency = s.values.get("latency_ms")
            if latency is not None:
                self.latency.labels(s.venue).observe(latency / 1000.0)
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
        for (channel, status), n in store.delivery_counts().items():
            self.deliveries.labels(channel, status).set(n)
            if status == "pending":
                self.backlog.labels(channel).set(n)

    def exposition(self) -> bytes:
        return redact_exposition(generate_latest(self.registry))

    def streams(self, sources: Mapping[str, Any]) -> None:
        """The streamed venues' resyncs, drifts and mode (their ``stats`` and ``mode``)."""
        for venue, source in sources.items():
            stats = getattr(source, "stats", None)
            if stats is None:
                continue
            for (symbol, reason), n in stats.resyncs.items():
                self._add(self.resyncs, (venue, symbol, reason), n)
            self._add(self.fallbacks, (venue,), stats.fallbacks)
            for symbol, drift in stats.drift.items():
                self.drift.labels(venue, symbol).set(drift)
            self.streaming.labels(venue).set(1 if source.mode == "stream" else 0)

    def _add(self, counter: Counter, labels: tuple[str, ...], total: int) -> None:
        """Bring ``counter`` up to ``total`` (a count kept by the source)."""
        key = (counter, *labels)
        counter.labels(*labels).inc(total - self._stream_seen.get(key, 0))
        self._stream_seen[key] = total

    def scrape(self, firing: dict[str, int], store: Store | None,
               venues_up: dict[str, bool], store_writable: bool) -> bytes:
        """The ``/metrics`` body: the gauges brought up to date, then exposed."""
        try:
            self.refresh(firing, store)
        except StoreError as exc:  # the outbox gauges stay as they were; the rest is fresh
            log.warning("/metrics: %s", exc)
        for venue, up in venues_up.items():
            self.venue_up.labels(venue).set(1 if up else 0)
        self.store_ok.set(1 if store_writable else 0)
        return self.exposition()


async def start_endpoint(listen: str, metrics: Callable[[], bytes],
                         health: Callable[[], tuple[bool, dict[str, Any]]],
                         clock: Clock = SYSTEM) -> HttpEndpoint | None:
    """The endpoint listening on ``listen``; None (said in the log) when it cannot listen:
    the monitor runs on without it."""
    endpoint = HttpEndpoint(listen, metrics, health, clock)
    try:
        await endpoint.start()
    except OSError as exc:
        log.error("http endpoint %s: %s (continuing without it)", listen, exc)
        return None
    return endpoint


class HttpEndpoint:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port``, whatever the clients do.

    Each connection gets REQUEST_DEADLINE_S to send its request line and headers (at most
    MAX_HEAD bytes) and as long again to read the answer, then it is closed. At most
    MAX_CONNECTIONS are open at once (fewer when the process may open few files): a new one
    closes the oldest, so idle connections never lock out a health check. The
    connections are accepted here rather than by asyncio's server, which logs every failed
    accept (out of files) with a traceback, up to a hundred times a second.
    """

    def __init__(self, listen: str, metrics: Callable[[], bytes],
                 health: Callable[[], tuple[bool, dict[str, Any]]],
                 clock: Clock = SYSTEM) -> None:
        self.host, self.port = split_listen(listen)
        self._metrics = metrics
        self._health = health
        self._max_connections = _connections_allowed()
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._open: dict[asyncio.Task[None], None] = {}  # in the order accepted
        self._said = Throttled(log, clock=clock)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                self._listeners.append(_listening_socket(family, kind, proto, addr))
        except OSError:
            self._close_listeners()
            raise
        self.port = int(self._listeners[0].getsockname()[1])
        self._accepting = [asyncio.create_task(self._accept(s)) for s in self._listeners]
        log.info("http endpoint on http://%s:%d (/metrics, /healthz)", self.host, self.port)

    async def stop(self) -> None:
        tasks = [*self._accepting, *self._open]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._close_listeners()

    def _close_listeners(self) -> None:
        for s in self._listeners:
            s.close()
        self._listeners.clear()

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except ConnectionError:
                continue  # the client gave up before it was accepted
            except OSError as exc:  # out of files or buffers: free one, or wait a little
                freed = await self._close_oldest()
                self._said.warning("accept", "http: cannot accept a connection: %s; %s",
                                   exc.strerror or exc, "closed the oldest open one" if freed
                                   else f"accepting again in {ACCEPT_PAUSE_S:g}s")
                if not freed:
                    await asyncio.sleep(ACCEPT_PAUSE_S)
                continue
            if len(self._open) >= self._max_connections:
                await self._close_oldest()
                self._said.warning("cap", "http: %d connections open, the most allowed: closed "
                                   "the oldest to admit a new one", self._max_connections)
            task = asyncio.create_task(self._serve(conn))
            self._open[task] = None
            task.add_done_callback(lambda t: self._open.pop(t, None))

    async def _close_oldest(self) -> bool:
        oldest = next(iter(self._open), None)
        if oldest is None:
            return False
        oldest.cancel()
        await asyncio.wait([oldest])  # its socket is closed when this returns
        return True

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                async with asyncio.timeout(REQUEST_DEADLINE_S):
                    request_line = await _read_head(conn)
                status, ctype, body = self._answer(request_line)
            except Refused as refusal:
                self._said.warning("refused", "http: refused a request: %s", refusal)
                status, ctype, body = refusal.status, "text/plain", f"{refusal}\n".encode()
            async with asyncio.timeout(REQUEST_DEADLINE_S):
                await loop.sock_sendall(conn, _response(status, ctype, body))
        except TimeoutError:
            self._said.warning("deadline", "http: closed a connection that did not send its "
                               "request, or read the answer, within %gs", REQUEST_DEADLINE_S)
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    def _answer(self, request_line: str) -> tuple[int, str, bytes]:
        parts = request_line.split()
        path = parts[1] if len(parts) >= 2 else "/"
        try:
            if path.startswith("/metrics"):
                return 200, CONTENT_TYPE_LATEST, self._metrics()
            if path.startswith("/healthz"):
                ok, detail = self._health()
                return 200 if ok else 503, "application/json", \
                    json.dumps({"ok": ok, **detail}).encode()
        except Exception:  # a bug behind one answer must not take the endpoint down
            self._said.error("answer", "http: cannot answer %s", path[:100], exc_info=True)
            return 500, "text/plain", b"internal error\n"
        return 404, "text/plain", b"not found: try /metrics or /healthz\n"


class Refused(Exception):
    """A request refused before it was read in full (too long)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class Throttled:
    """At most one log line per kind of trouble per ``every_s``; the next one says how many
    were left out meanwhile."""

    def __init__(self, logger: logging.Logger, every_s: float = LOG_EVERY_S,
                 clock: Clock = SYSTEM) -> None:
        self._log = logger
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, kind, msg, args, exc_info=False)

    def error(self, kind: str, msg: str, *args: object, exc_info: bool = False) -> None:
        self._emit(logging.ERROR, kind, msg, args, exc_info=exc_info)

    def _emit(self, level: int, kind: str, msg: str, args: tuple[object, ...], *,
              exc_info: bool) -> None:
        now = self._clock.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._every_s:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            msg += f" ({left_out} more like it since the last such line)"
        self._log.log(level, msg, *args, exc_info=exc_info)


async def _read_head(conn: socket.socket) -> str:
    """Read up to the blank line that ends the headers; return the request line."""
    loop = asyncio.get_running_loop()
    head = bytearray()
    while True:
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            raise ConnectionAbortedError("closed before the end of its request")
        head += chunk
        line_end = head.find(b"\n")
        if line_end > MAX_REQUEST_LINE or (line_end < 0 and len(head) > MAX_REQUEST_LINE):
            raise Refused(414, f"request line over {MAX_REQUEST_LINE} bytes")
        end = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0),
                  default=-1)
        if end > MAX_HEAD or (end < 0 and len(head) > MAX_HEAD):
            raise Refused(431, f"request headers over {MAX_HEAD} bytes")
        if end >= 0:
            return head[:line_end].decode("latin-1")


def _response(status: int, ctype: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def _listening_socket(family: int, kind: int, proto: int, addr: Any) -> socket.socket:
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(addr)
        s.listen(LISTEN_BACKLOG)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _connections_allowed() -> int:
    """MAX_CONNECTIONS, or an eighth of the files the process may open if that is fewer: the
    endpoint never starves the rest of the daemon."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 8))
