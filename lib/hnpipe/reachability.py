"""Say within seconds when the HN API cannot be reached, while the client keeps retrying.

The HN client (hnpipe.hn) retries a failed connection until its request deadline, which is
right for a blip but leaves the person waiting with `[*]` or a frozen bar for many seconds.
`watch` runs beside a fetch: when nothing has arrived for QUIET_S, it tries a plain TCP
connection to the API's host (name lookup included) and, if that fails, says once why
(the name does not resolve, the connection is refused, no route) and that retries go on:
within 3 s of the first attempt. It never stops the fetch: the client's own error still ends
it, in one line.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator
from urllib.parse import urlsplit

from hnpipe import progress

QUIET_S = 1.0  # nothing arrived for this long: look at the connection
PROBE_TIMEOUT_S = 1.5  # a connection attempt that hangs (a dropped SYN) counts as unreachable after this


def probe(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why `base_url`'s host cannot be connected to, in words; None when it can."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"its host name {host!r} does not resolve (offline, or a typo?)"
    last = None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as connection:
                connection.settimeout(timeout)
                connection.connect(address)
                return None
        except ConnectionRefusedError:
            last = f"the connection to {host}:{port} is refused (nothing listens there)"
        except socket.timeout:
            last = f"{host}:{port} does not answer within {timeout:g} s"
        except OSError as error:
            last = f"{host}:{port} cannot be reached ({error.strerror or type(error).__name__})"
    return last


class Watch:
    """Beside one fetch: `touch()` when something arrives; says once if the API is unreachable."""

    def __init__(self, base_url: str, deadline_s: float, say: Callable[[str], None] | None = None) -> None:
        self.base_url, self.deadline_s, self._say = base_url, deadline_s, say or progress.say
        self.started = self._last = time.monotonic()
        self.said: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hnpipe-reachability", daemon=True)

    def touch(self, *_args) -> None:
        self._last = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            if time.monotonic() - self._last < QUIET_S:
                continue
            why = probe(self.base_url)
            if why and not self._stop.is_set():
                waited = time.monotonic() - self.started
                self.said = (f"cannot reach the HN API at {self.base_url} after {waited:.1f} s: {why}; "
                             f"still retrying, for up to {self.deadline_s:g} s per request "
                             f"(interrupt to stop, or fix hn_api_url)")
                self._say(self.said)
                return  # once per fetch
            self._last = time.monotonic()  # reachable: look again after the next quiet spell

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=PROBE_TIMEOUT_S + 1)


@contextmanager
def watch(base_url: str, deadline_s: float) -> Iterator[Watch]:
    with Watch(base_url, deadline_s) as watcher:
        yield watcher
