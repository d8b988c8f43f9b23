"""A loopback HTTP server that serves HN items like the live API (hnpipe.sample.data's by default).

`SampleServer` serves any such items over real HTTP on 127.0.0.1, with optional latency and
injected faults (500, 429, timeouts, dropped connections, truncated bodies, and hostile answers:
endless bodies, a 2 GiB Content-Length, gzip bombs, items nested 100,000 deep) so the client's
retries and limits are exercised against real sockets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import re
import signal
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Mapping

from hnpipe.errors import ParameterError
from hnpipe.sample.data import Item, _check_int, load_sample

_FAULT_KINDS = ("http_500", "http_429", "timeout", "drop", "truncate", "trickle", "endless", "huge_length",
                "gzip_bomb", "deep")


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
    endless    send 200 without a Content-Length, then a body that never ends, as fast as the
               client reads it
    huge_length  send 200 with `Content-Length: 2147483648`, then a body as fast as it is read
    gzip_bomb  send an item of `bomb_mb` MiB gzipped twice (`Content-Encoding: gzip, gzip`):
               about 2 KB on the wire per GiB expanded
    deep       answer an item whose `kids` is nested `deep_levels` lists deep (small on the wire)
    """

    http_500: float = 0.0
    http_429: float = 0.0
    timeout: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    trickle: float = 0.0
    endless: float = 0.0
    huge_length: float = 0.0
    gzip_bomb: float = 0.0
    deep: float = 0.0
    retry_after_s: int = 1
    timeout_sleep_s: float = 2.0
    trickle_interval_s: float = 5.0
    bomb_mb: int = 1024
    deep_levels: int = 100_000
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
        _check_int(self.bomb_mb, "bomb_mb", 1)
        _check_int(self.deep_levels, "deep_levels", 1)
        if self.bomb_mb > 16384 or self.deep_levels > 10_000_000:
            raise ParameterError(f"bomb_mb={self.bomb_mb} or deep_levels={self.deep_levels} is out of range: "
                                 "use at most 16384 MiB and 10,000,000 levels")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ParameterError(f"fault seed must be an integer, got {self.seed!r}")

    @property
    def any(self) -> bool:
        return any(getattr(self, kind) for kind in _FAULT_KINDS)


_ITEM_PATH = re.compile(r"/v0/item/(\d{1,18})\.json")
_MAXITEM_PATH = "/v0/maxitem.json"
_IDLE_TIMEOUT_S = 60  # an idle keep-alive connection is closed after this many seconds
_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
_HOSTILE_CHUNK = 1 << 16  # what an endless answer writes at a time (under the socket's backpressure)


def _head(status: int, length: int | None, keep_alive: bool, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Server: hnpipe-sample",
             "Content-Type: application/json; charset=utf-8"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@functools.lru_cache(maxsize=4)
def gzip_bomb(expanded_mb: int) -> bytes:
    """An item whose JSON is `expanded_mb` MiB, gzipped twice: about 2 KB per GiB on the wire
    (sent with `Content-Encoding: gzip, gzip`). Built once per size (a GiB takes ~3 s)."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    parts = [inner.compress(b'{"id":1,"type":"comment","text":"')]
    block = b"a" * (1 << 20)
    parts += [inner.compress(block) for _ in range(expanded_mb)]
    parts += [inner.compress(b'"}'), inner.flush()]
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return outer.compress(b"".join(parts)) + outer.flush()


def deep_item(item_id: int, depth: int) -> bytes:
    """An item whose `kids` is a list nested `depth` levels deep: small, and fatal to a
    recursive JSON decoder."""
    return b'{"id":%d,"type":"story","kids":%s%s}' % (item_id, b"[" * depth, b"]" * depth)


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, one request at a time (clients here do not
    pipeline). A plain answer goes out as one write (headers and body in one segment); latency
    and faults run as a task, and further requests wait for it."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.state = server.state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio sets it too; say so here, it is what keeps answers prompt
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self, add=True)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.track(self, add=False)
        self.writable.set()  # wake a writer waiting for room, so it sees the close
        if self.idle is not None:
            self.idle.cancel()
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(_IDLE_TIMEOUT_S, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 65536 and b"\r\n\r\n" not in self.buffer:
            self.close()  # no request head is that long
            return
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self.task is None and self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[:end + 4]
            request_line, _, header_text = head.partition("\r\n")
            parts = request_line.split()
            if len(parts) != 3:
                self.close()
                return
            keep_alive = parts[2] == "HTTP/1.1" and not re.search(
                r"^connection:\s*close", header_text, re.IGNORECASE | re.MULTILINE)
            path = parts[1].split("?", 1)[0]
            fault, faults = self.state.begin_request(path)
            self._arm_idle()
            if fault is None and not self.state.latency_s:
                status, body = self.state.answer(path)
                self.transport.write(_head(status, len(body), keep_alive) + body)
                if not keep_alive:
                    self.close()
            else:
                self.task = asyncio.get_running_loop().create_task(self._slow(path, fault, faults, keep_alive))
                self.task.add_done_callback(self._slow_done)

    def _slow_done(self, task: asyncio.Task) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            self.close()
        self._serve_buffered()

    async def _write(self, data: bytes) -> bool:
        """Write under backpressure; False once the client has gone."""
        await self.writable.wait()
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    async def _slow(self, path: str, fault: str | None, faults: Faults, keep_alive: bool) -> None:
        state = self.state
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        if fault == "timeout":
            await asyncio.sleep(faults.timeout_sleep_s)
        status, body = state.answer(path)
        if fault == "drop":
            self.close()
        elif fault in ("http_500", "http_429"):
            status = 500 if fault == "http_500" else 429
            body = b'{"error":"injected fault: %s"}' % (
                b"internal server error" if status == 500 else b"too many requests")
            headers = {"Retry-After": str(faults.retry_after_s)} if status == 429 else None
            await self._write(_head(status, len(body), keep_alive, headers) + body)
        elif fault == "truncate":
            await self._write(_head(status, len(body), False) + body[: len(body) // 2])
            self.close()
        elif fault == "trickle":
            await self._write(_head(status, len(body), keep_alive))
            for offset in range(len(body)):
                await asyncio.sleep(faults.trickle_interval_s)
                if not await self._write(body[offset:offset + 1]):
                    return
        elif fault in ("endless", "huge_length"):
            # 200, then an item's opening and text that never ends: without a length
            # (the body ends when the connection does), or with a 2 GiB Content-Length.
            length = None if fault == "endless" else HUGE_CONTENT_LENGTH
            filler = b"a" * _HOSTILE_CHUNK
            if await self._write(_head(200, length, False) + b'{"id":1,"type":"comment","text":"'):
                while await self._write(filler):
                    pass
            self.close()
        elif fault == "gzip_bomb":
            bomb = await asyncio.get_running_loop().run_in_executor(None, gzip_bomb, faults.bomb_mb)
            await self._write(_head(200, len(bomb), keep_alive, {"Content-Encoding": "gzip, gzip"}) + bomb)
        elif fault == "deep":
            match = _ITEM_PATH.fullmatch(path)
            body = deep_item(int(match.group(1)) if match else 1, faults.deep_levels)
            await self._write(_head(200, len(body), keep_alive) + body)
        else:
            await self._write(_head(status, len(body), keep_alive) + body)
        if not keep_alive:
            self.close()


HUGE_CONTENT_LENGTH = 2 * 1024**3  # what the huge_length fault declares: 2 GiB


class _State:
    """What the connections share: items, latency, faults and counters (under one lock, as
    the properties are read from other threads)."""

    def __init__(self, items: Mapping[int, Item], latency_ms: float, faults: Faults,
                 record_requests: bool = False) -> None:
        self.items = items
        self.max_item = max(items)
        self.latency_s = latency_ms / 1000
        self.faults = faults
        self.lock = threading.Lock()
        self.rng = random.Random(faults.seed)
        self.requests = 0
        self.connections = 0
        self.faults_injected = dict.fromkeys(_FAULT_KINDS, 0)
        self.log: list[tuple[float, str, str | None]] | None = [] if record_requests else None

    def begin_request(self, path: str) -> tuple[str | None, Faults]:
        """The fault this request gets (None: a plain answer), and the faults it was drawn from."""
        with self.lock:
            self.requests += 1
            faults, fault = self.faults, None
            if faults.any:
                r = self.rng.random()
                for kind in _FAULT_KINDS:
                    rate = getattr(faults, kind)
                    if r < rate:
                        self.faults_injected[kind] += 1
                        fault = kind
                        break
                    r -= rate
            if self.log is not None:
                self.log.append((time.monotonic(), path, fault))
            return fault, faults

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


class _Server:
    """The asyncio server and its event loop thread.

    asyncio rather than http.server's thread per connection: the threaded server answered
    about 5,000 requests/s at most on this machine (its per-request Python and thread
    switches under one GIL), below what the client must be measured at."""

    def __init__(self, host: str, port: int, state: _State) -> None:
        self.state = state
        self.connections: set[_Connection] = set()
        self.loop = asyncio.new_event_loop()
        self._host, self._port = host, port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.address: tuple = ()

    def run(self) -> None:
        """The server's thread: listen, signal `wait_ready`, then serve until `stop`. Listening
        happens here, not in the caller's thread, which may run a loop of its own (a kernel's)."""
        asyncio.set_event_loop(self.loop)
        try:
            # The default listen backlog drops SYNs when a pool opens hundreds of connections at
            # once, and the kernel retries them only after a second.
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: _Connection(self), self._host, self._port, backlog=1024, reuse_address=True))
            self.address = self.server.sockets[0].getsockname()
        except BaseException as error:  # noqa: BLE001 - raised in the starting thread
            self._error = error
            return
        finally:
            self._ready.set()
        self.loop.run_forever()

    def wait_ready(self) -> None:
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def track(self, connection: _Connection, add: bool) -> None:
        (self.connections.add if add else self.connections.discard)(connection)
        if add:
            with self.state.lock:
                self.state.connections += 1

    def stop(self) -> None:
        """Close the listening socket and every connection, then the loop (from any thread)."""
        async def close() -> None:
            self.server.close()
            tasks = [c.task for c in self.connections if c.task is not None]
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # none left pending when the loop closes
            self.loop.stop()

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(close()))


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
    `connections_accepted` the TCP connections opened. `set_faults` changes the faults while
    it serves (a burst of 429s: `set_faults(Faults(http_429=1.0))`, then `set_faults(Faults())`);
    with `record_requests`, `request_log` lists every request as (time.monotonic() when it
    arrived, path, fault or None), for tests that count requests per second.
    """

    def __init__(self, items: Mapping[int, Item] | None = None, host: str = "127.0.0.1",
                 port: int = 0, latency_ms: float = 0.0, faults: Faults = Faults(),
                 record_requests: bool = False) -> None:
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
        self._state = _State(items, check_latency(latency_ms), faults, record_requests)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SampleServer:
        if self._server is not None:
            return self
        if self._state.faults.gzip_bomb:
            gzip_bomb(self._state.faults.bomb_mb)  # built once, before serving: a GiB takes seconds
        server = _Server(self._host, self._requested_port, self._state)
        self._thread = threading.Thread(target=server.run, name="hnpipe-sample", daemon=True)
        self._thread.start()
        try:
            server.wait_ready()
        except BaseException:
            self._thread.join()
            server.loop.close()
            raise
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not server.loop.is_running():
            server.loop.close()

    def __enter__(self) -> SampleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SampleServer is not running: call start() first")
        return self._server.address[1]

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

    def set_faults(self, faults: Faults) -> None:
        """Inject `faults` from the next request on (a gzip bomb is built on the caller's thread)."""
        if not isinstance(faults, Faults):
            raise ParameterError(f"faults must be a Faults instance, got {faults!r}")
        if faults.gzip_bomb:
            gzip_bomb(faults.bomb_mb)
        with self._state.lock:
            self._state.faults = faults

    @property
    def request_log(self) -> list[tuple[float, str, str | None]]:
        with self._state.lock:
            if self._state.log is None:
                raise RuntimeError("SampleServer(record_requests=True) keeps a request log; this one does not")
            return list(self._state.log)


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
