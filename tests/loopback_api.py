"""A recording HTTP API on loopback for tests: Slack's webhook, GitHub's and GitLab's REST APIs.

Each request is kept as (method, path, headers, JSON body); `routes` maps (method, path) to a
handler returning (status, JSON) so a test can play the API (say, list the comments a pull
request already has). TCP_NODELAY set and headers + body sent in one segment, as the team's
guide asks of Python stand-in servers.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Handler = Callable[[dict | None], tuple[int, Any]]


class LoopbackAPI:
    def __init__(self, routes: dict[tuple[str, str], Handler] | None = None) -> None:
        self.requests: list[tuple[str, str, dict, Any]] = []
        self.routes = dict(routes or {})
        api = self

        class Serve(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0]
                api.requests.append((self.command, self.path, dict(self.headers), body))
                handler = api.routes.get((self.command, path))
                status, answer = handler(body) if handler else (200, {"ok": True})
                data = json.dumps(answer).encode()
                head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n").encode()
                try:
                    self.wfile.write(head + data)  # one segment
                except (BrokenPipeError, ConnectionResetError):
                    # The caller gave up (a slow answer, on purpose): a traceback here would land
                    # on a later test's captured stderr.
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> "LoopbackAPI":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
