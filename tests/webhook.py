"""A local webhook endpoint (what apprise's ``json://`` posts to), recording what it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Answers 200 and keeps each body while ``up``; answers 503 (a channel down) otherwise."""

    def __init__(self, *, up: bool = True) -> None:
        self.bodies: list[str] = []
        self.up = up
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not outer.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.bodies.append(body.decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def posts(self) -> list[dict[str, Any]]:
        """The bodies, as the JSON objects apprise sent."""
        return [json.loads(b) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
