"""A loopback HTTP server that serves HN items like the live API (hnpipe.sample.data's by default).

`SampleServer` serves any such items over real HTTP on 127.0.0.1, with optional latency and
injected faults (500, 429, timeouts, dropped connections, truncated bodies) so the client's
retry logic is exercised against real sockets.
"""

from __future__ import annotations

import json
import math
import random
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Mapping

from hnpipe.errors import ParameterError
from hnpipe.sample.data import Item, _check_int, load_sample

_FAULT_KINDS = ("http_500", "http_429", "timeout", "drop", "truncate", "trickle")


@dataclass(frozen=True)
class Faults:
    """Per-request fault rates in [0, 1] (their sum at most 1), drawn from random.Random(seed).

    http_500   answer 500 Internal Server Error
    http_429   answer 429 Too Many Requests with `Retry-After: <retry_after_s>`
    timeout    sleep `timeout_sleep_s` before answering (set the client's read timeout lower)
    drop       close the connection without answering
    truncate   send 200 and the full Content-Length, but only half the body, then close
    trickle    send 200 at once, then the body one byte every `trickle_interval_s` (no single
               read waits long enough for a read timeout: only a total deadline stops it)
    """

    http_500: float = 0.0
    http_429: float = 0.0
    timeout: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    trickle: float = 0.0
    retry_after_s: int = 1
    timeout_sleep_s: float = 2.0
    trickle_interval_s: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in _FAULT_KINDS:
            rate = getattr(self, kind)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise ParameterError(f"fault rate {kind}={rate!r} is out of range: use 0..1")
        total = sum(getattr(self, kind) for kind in _FAULT_KINDS)
        if total > 1:
            raise ParameterError(f"fault rates add up to {total:g}: their sum must be at most 1")
        _check_int(self.retry_after_s, "retry_after_s", 0)
        sleep = self.timeout_sleep_s
        if isinstance(sleep, bool) or not isinstance(sleep, (int, float)) or not 0 < sleep <= 600:
            raise ParameterError(f"timeout_sleep_s={sleep!r} is out of range: use 0 < s <= 600")
        interval = self.trickle_interval_s
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 600:
            raise ParameterError(f"trickle_interval_s={interval!r} is out of range: use 0 < s <= 600")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ParameterError(f"fault seed must be an integer, got {self.seed!r}")

    @property
    def any(self) -> bool:
        return any(getattr(self, kind) for kind in _FAULT_KINDS)


_ITEM_PATH = re.compile(r"/v0/item/(\d{1,18})\.json")
_MAXITEM_PATH = "/v0/maxitem.json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a pooled client reuses connections
    server_version = "hnpipe-sample"
    timeout = 60  # an idle keep-alive connection's thread ends after this many seconds
    # Headers and body go out as separate small writes; with Nagle's algorithm on, the
    # client's delayed ACK would stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # quiet: tests and the CLI print what matters themselves

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        state = self.server.state
        fault = state.begin_request()
        if state.latency_s:
            time.sleep(state.latency_s)
        status, body = state.answer(self.path.split("?", 1)[0])

        if fault == "drop":
            self.close_connection = True
            return
        if fault == "http_500":
            self._send(500, b'{"error":"injected fault: internal server error"}')
            return
        if fault == "http_429":
            self._send(429, b'{"error":"injected fault: too many requests"}',
                       {"Retry-After": str(state.faults.retry_after_s)})
            return
        if fault == "timeout":
            time.sleep(state.faults.timeout_sleep_s)
        if fault == "truncate":
            self._send(status, body, cut=True)
            return
        if fault == "trickle":
            self._send(status, body, trickle_s=state.faults.trickle_interval_s)
            return
        self._send(status, body)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              cut: bool = False, trickle_s: float | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if trickle_s is not None:
                self.wfile.flush()
                for offset in range(len(body)):
                    time.sleep(trickle_s)
                    self.wfile.write(body[offset:offset + 1])
                    self.wfile.flush()
                return
            self.wfile.write(body[: len(body) // 2] if cut else body)
        except OSError:
            self.close_connection = True  # the client already gave up (e.g. read timeout)
        if cut:
            self.close_connection = True


class _State:
    """What the handler threads share: items, latency, faults and counters (under one lock)."""

    def __init__(self, items: Mapping[int, Item], latency_ms: float, faults: Faults) -> None:
        self.items = items
        self.max_item = max(items)
        self.latency_s = latency_ms / 1000
        self.faults = faults
        self.lock = threading.Lock()
        self.rng = random.Random(faults.seed)
        self.requests = 0
        self.connections = 0
        self.faults_injected = dict.fromkeys(_FAULT_KINDS, 0)

    def begin_request(self) -> str | None:
        with self.lock:
            self.requests += 1
            if not self.faults.any:
                return None
            r = self.rng.random()
            for kind in _FAULT_KINDS:
                rate = getattr(self.faults, kind)
                if r < rate:
                    self.faults_injected[kind] += 1
                    return kind
                r -= rate
            return None

    def answer(self, path: str) -> tuple[int, bytes]:
        if path == _MAXITEM_PATH:
            return 200, str(self.max_item).encode()
        match = _ITEM_PATH.fullmatch(path)
        if match:
            item = self.items.get(int(match.group(1)))
            # Like the live API: unknown ids answer 200 with `null`.
            return 200, json.dumps(item, ensure_ascii=False, sort_keys=True,
                                   separators=(",", ":")).encode("utf-8")
        return 404, b'{"error":"not found: use /v0/maxitem.json or /v0/item/<id>.json"}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default listen backlog (5) drops SYNs when a pool opens 32 connections at once,
    # and the kernel retries them only after a second.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)
        if add:
            with self.state.lock:
                self.state.connections += 1

    def close_connections(self) -> None:
        """Wake threads waiting on idle keep-alive connections so they end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-request is expected here (faults, timeouts)


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port {port!r} is out of range: use 0..65535 (0 = any free port)")
    return port


def check_latency(latency_ms: object) -> float:
    ok = isinstance(latency_ms, (int, float)) and not isinstance(latency_ms, bool)
    if not ok or not math.isfinite(latency_ms) or not 0 <= latency_ms <= 60_000:
        raise ParameterError(f"latency_ms {latency_ms!r} is out of range: use 0..60000")
    return float(latency_ms)


class SampleServer:
    """Serve items over loopback HTTP like the live API: /v0/maxitem.json, /v0/item/<id>.json.

        with SampleServer() as server:          # the bundled sample, on a free port
            client = HttpHNClient(server.base_url)

    `items=None` serves the bundled sample. `requests_served` counts every request answered
    (or deliberately not answered), `faults_injected` each fault kind, and
    `connections_accepted` the TCP connections opened.
    """

    def __init__(self, items: Mapping[int, Item] | None = None, host: str = "127.0.0.1",
                 port: int = 0, latency_ms: float = 0.0, faults: Faults = Faults()) -> None:
        items = load_sample() if items is None else items
        if not isinstance(items, Mapping) or not items:
            raise ParameterError("items must be a non-empty mapping of id -> item dict or None")
        bad = next((k for k in items if isinstance(k, bool) or not isinstance(k, int) or k < 1),
                   None)
        if bad is not None:
            raise ParameterError(f"item id {bad!r} is not allowed: ids are integers >= 1")
        if not isinstance(faults, Faults):
            raise ParameterError(f"faults must be a Faults instance, got {faults!r}")
        self._host = host
        self._requested_port = check_port(port)
        self._state = _State(items, check_latency(latency_ms), faults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SampleServer:
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._requested_port), self._state)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"hnpipe-sample-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SampleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SampleServer is not running: call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v0"

    @property
    def max_item(self) -> int:
        return self._state.max_item

    @property
    def ids(self) -> int:
        """How many ids it knows (items and nulls); any other id answers null too."""
        return len(self._state.items)

    @property
    def requests_served(self) -> int:
        with self._state.lock:
            return self._state.requests

    @property
    def connections_accepted(self) -> int:
        """TCP connections opened so far: few, if the client pools and keeps them alive."""
        with self._state.lock:
            return self._state.connections

    @property
    def faults_injected(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.faults_injected)


def serve(port: int = 8765, latency_ms: float = 0.0, error_rate: float = 0.0,
          host: str = "127.0.0.1", *, items: Mapping[int, Item] | None = None,
          faults: Faults | None = None) -> None:
    """Serve `items` (default: the bundled sample) until Ctrl-C or SIGTERM (`hnpipe serve-sample`).

    `error_rate` is the share of HTTP 500 answers; pass `faults` for every other fault kind
    (not both). The first line printed names the base URL; the last, once stopped, what was
    served and which faults were injected, so a script driving the server can check both.
    """
    if isinstance(error_rate, bool) or not isinstance(error_rate, (int, float)) \
            or not 0 <= error_rate <= 1:
        raise ParameterError(f"error_rate {error_rate!r} is out of range: use 0..1")
    if faults is not None and error_rate:
        raise ParameterError("give either error_rate or faults, not both: "
                             "error_rate is Faults(http_500=...)")
    server = SampleServer(items=items, host=host, port=port, latency_ms=latency_ms,
                          faults=faults if faults is not None else Faults(http_500=error_rate))
    # SIGTERM (a benchmark or test stopping the server) ends it like Ctrl-C: cleanly, with
    # the closing summary. Only the main thread may install signal handlers.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with server:
            try:  # Ctrl-C may arrive while the banner is still being printed
                print(f"serving {server.ids:,} HN ids at {server.base_url} "
                      f"(max item {server.max_item}); Ctrl-C to stop", flush=True)
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    injected = ", ".join(f"{kind}={count}" for kind, count in server.faults_injected.items())
    print(f"stopped after {server.requests_served} requests on {server.connections_accepted} "
          f"connections; faults injected: {injected}", flush=True)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
