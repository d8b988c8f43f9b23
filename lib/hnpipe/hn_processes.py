"""A large fetch spread over several processes, each running HttpHNClient's event loop.

One event loop costs about 200 us of CPU per item (aiohttp's request, the answer's checks),
so one process tops out near one core. `HttpHNClient.fetch_items` hands a large fetch (at least
MIN_IDS ids that can be split) to `Processes`: each child process fetches every k-th id with its
share of the requests in flight and sends its results back in batches; the calling process only
unpickles them and calls the sink, so the sink stays on the calling thread as before. Numbers:
docs/performance.md.
"""

from __future__ import annotations

import os
import pickle
import queue
import random
import struct
import subprocess
import sys
import tempfile
import threading
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from hnpipe.errors import FetchError
from hnpipe.hn_api import IdSource
from hnpipe.hn_loop import FETCH_DONE, LoopThread

MIN_IDS = 20_000  # below this, starting processes (about 0.5 s each) costs more than it saves
MAX_PROCESSES = 4
MIN_IN_FLIGHT = 8  # each process keeps at least this many requests in flight
_DONE = "done"  # a child's last message, after its last batch
_ERROR = "error"  # (_ERROR, exception): a child's fetch failed


def processes_for(ids: Iterable[int], total: int | None, concurrency: int, asked: int | None) -> int:
    """How many processes fetch `ids`: `asked` if given, else several for a large fetch on a
    machine with the cores for it; 1 for ids that cannot be split (a generator)."""
    if total is None or split(ids, 2) is None:
        return 1
    if asked is not None:
        return max(1, min(asked, total))
    if total < MIN_IDS:
        return 1
    return max(1, min(MAX_PROCESSES, os.cpu_count() or 1, concurrency // MIN_IN_FLIGHT))


def split(ids: Iterable[int], parts: int) -> list[list[range] | list[int]] | None:
    """`ids` dealt into `parts` shares (every parts-th id), or None if they cannot be: ranges,
    refresh plans' Ids (parts of ranges), lists and tuples can."""
    if isinstance(ids, range):
        ranges = [ids]
    elif isinstance(getattr(ids, "parts", None), tuple) and all(isinstance(p, range) for p in ids.parts):
        ranges = list(ids.parts)
    elif isinstance(ids, (list, tuple)):
        return [list(ids[k::parts]) for k in range(parts)]
    else:
        return None
    return [[part[k::parts] for part in ranges] for k in range(parts)]


def _child_main() -> int:
    """`python -m hnpipe.hn_processes`: read (client, share, in_flight, batch) pickled from stdin,
    fetch the share on the client's event loop thread, write each batch, then DONE or the error,
    as length-prefixed pickles to stdout."""
    client, share, in_flight, batch = pickle.load(sys.stdin.buffer)
    client._jitter = random.Random()  # not the parent's state: children's backoffs must differ
    ids = chain.from_iterable(share) if share and isinstance(share[0], range) else iter(share)
    out = sys.stdout.buffer
    results: queue.Queue = queue.Queue(maxsize=max(2, 2 * in_flight // batch))
    fetch = LoopThread(client._fetch_all(IdSource(ids), in_flight, batch, results), results)
    fetch.start()
    try:
        while True:
            message = fetch.get(None)
            last = message is FETCH_DONE or isinstance(message, BaseException)
            _write(out, _DONE if message is FETCH_DONE else (_ERROR, message) if last else message)
            if last:
                return 0
    except BrokenPipeError:  # the parent stopped reading: it has given up on this fetch
        return 1
    finally:
        fetch.stop()


def _write(out: BinaryIO, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack("!I", len(data)) + data)
    out.flush()


def _read(stream: BinaryIO) -> object | None:
    """The next message from a child, or None at the end of its output."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    size = struct.unpack("!I", head)[0]
    data = stream.read(size)
    return None if len(data) < size else pickle.loads(data)  # noqa: S301 - our own child's output


# `client` is an HttpHNClient (pickled into each child); typed Any because hn_http imports
# this module, not the other way round.


class Processes:
    """The children of one fetch; `get` returns what `LoopThread.get` would: a batch, `done`
    once every child is done, or the first error. Children are `python -m hnpipe.hn_processes`
    subprocesses: multiprocessing's spawn would re-run the caller's __main__ (a notebook
    kernel's, a script read from stdin), and fork is unsafe under the caller's threads."""

    def __init__(self, client: Any, ids: Iterable[int], parts: int, concurrency: int, batch: int,
                 done: object) -> None:
        self._done_marker = done
        self._jobs = [(client, share, max(1, concurrency // parts + (1 if k < concurrency % parts else 0)), batch)
                      for k, share in enumerate(split(ids, parts))]
        self._results: queue.Queue = queue.Queue(maxsize=4 * parts)
        self._children: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._done = 0

    def start(self) -> None:
        lib = str(Path(__file__).resolve().parents[1])  # this hnpipe, whatever the child's path says
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")]))}
        for job in self._jobs:
            errors = tempfile.TemporaryFile()
            child = subprocess.Popen([sys.executable, "-m", "hnpipe.hn_processes"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=errors, env=env)
            self._children.append(child)
            child.stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            child.stdin.close()
            reader = threading.Thread(target=self._read_child, args=(child, errors), daemon=True,
                                      name=f"hnpipe-fetch-reader-{child.pid}")
            reader.start()
            self._readers.append(reader)

    def _read_child(self, child: subprocess.Popen, errors: BinaryIO) -> None:
        """Hand one child's messages to `get`; a child that ends without DONE is an error."""
        with errors:
            while True:
                message = _read(child.stdout)
                if message is None:
                    child.wait()
                    errors.seek(0)
                    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                    message = (_ERROR, FetchError(f"a fetch process ended with exit code {child.returncode}"
                                                  + (f": {lines[-1]}" if lines else "")))
                self._offer(message)
                if message == _DONE or isinstance(message, tuple):
                    return

    def _offer(self, message: object) -> None:
        while not self._stopping.is_set():
            try:
                self._results.put(message, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self, timeout: float | None) -> object:
        """The next message, waiting at most `timeout` seconds (queue.Empty after that)."""
        while True:
            message = self._results.get(timeout=timeout)
            if message == _DONE:
                self._done += 1
                if self._done == len(self._children):
                    return self._done_marker
                continue
            if isinstance(message, tuple) and message[:1] == (_ERROR,):
                return message[1]
            return message

    def stop(self) -> None:
        """End every child still running (the fetch is over, or abandoned) and their readers."""
        self._stopping.set()
        for child in self._children:
            if child.poll() is None:
                child.kill()
        for child in self._children:
            child.wait()
            child.stdout.close()
        for reader in self._readers:
            reader.join()


if __name__ == "__main__":
    sys.exit(_child_main())
