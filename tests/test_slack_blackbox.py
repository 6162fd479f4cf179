"""Black box: the daemon, configured with a production slack:// URL, posts to Slack through an
HTTPS CONNECT proxy on 127.0.0.1 that terminates TLS with a test CA (trustme)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from daemon_harness import DaemonProcess, rows

pytestmark = pytest.mark.slow
TOKEN = "T0001/B0002/sekretSlackToken0003"


class InterceptingProxy:
    """Answers CONNECT, then plays hooks.slack.com with a certificate of the test CA."""

    def __init__(self, ca: trustme.CA) -> None:
        self.requests: list[dict[str, Any]] = []
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("hooks.slack.com").configure_cert(self.tls)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_head(f: Any) -> list[str]:
        lines = []
        while (line := f.readline().decode("latin-1").rstrip("\r\n")):
            lines.append(line)
        return lines

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = self._read_head(conn.makefile("rb"))
            if not head or not head[0].startswith("CONNECT "):
                return
            target = head[0].split()[1]
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self.tls.wrap_socket(conn, server_side=True) as tls:
                f = tls.makefile("rb")
                req = self._read_head(f)
                headers = {k.lower(): v.strip() for k, v in
                           (h.split(":", 1) for h in req[1:])}
                body = f.read(int(headers.get("content-length", 0)))
                self.requests.append({"target": target, "line": req[0],
                                      "json": json.loads(body)})
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close"
                            b"\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[InterceptingProxy, Path]]:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    p = InterceptingProxy(ca)
    yield p, bundle
    p.close()


def test_slack_through_https_proxy(tmp_path: Path,
                                   proxy: tuple[InterceptingProxy, Path]) -> None:
    p, bundle = proxy
    db = tmp_path / "wis.db"
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: always, when: mid > 0, severity: critical, channels: [risk-slack]}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: {db}}}\n"
                   "venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n"
                   "channels:\n  risk-slack: {url: '${SLACK_WEBHOOK_URL}'}\n"
                   "rules: {include: [rules.yaml]}\n")
    env = {"SLACK_WEBHOOK_URL": f"slack://{TOKEN}", "HTTPS_PROXY": f"http://127.0.0.1:{p.port}",
           "https_proxy": f"http://127.0.0.1:{p.port}", "NO_PROXY": "", "no_proxy": "",
           "REQUESTS_CA_BUNDLE": str(bundle)}
    d = DaemonProcess(cfg, env=env, args=("--once",))
    assert d.wait(60) == 0, d.log()
    assert len(p.requests) == 1, d.log()
    req = p.requests[0]
    assert req["target"] == "hooks.slack.com:443"
    assert req["line"].startswith(f"POST /services/{TOKEN} ")
    payload = json.dumps(req["json"])
    assert "[CRITICAL] always simex BTC/USDT" in payload
    assert req["json"]["attachments"][0]["color"] == "#A32037"  # apprise's "failure" red
    assert [r["status"] for r in rows(db, "SELECT status FROM deliveries")] == ["sent"]
    assert "sekretSlackToken0003" not in d.log()
