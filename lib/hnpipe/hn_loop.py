"""The HN client's coroutines on an event loop of their own thread.

A notebook kernel's thread already runs an event loop, where asyncio.run cannot; a thread of our
own works the same from a kernel, a script or a test. `run_on_own_loop` runs one call there;
`LoopThread` runs a whole fetch, handing its batches to the calling thread through a queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")
FETCH_DONE = object()  # the loop thread's last message


def run_on_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on a new event loop in a new thread (so that a caller whose
    thread runs a loop, a notebook kernel, can call it too); its result or its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - raised again on the calling thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="hnpipe-fetch", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class LoopThread:
    """A fetch coroutine on an event loop of its own thread; its end (or error) goes on `results`."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], results: queue.Queue) -> None:
        self._coroutine = coroutine
        self._results = results
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._stopping = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hnpipe-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._coroutine)
        last: object = FETCH_DONE
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # noqa: BLE001 - raised on the calling thread
            last = error
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            while not self._stopping.is_set():  # unless nobody reads any more
                try:
                    self._results.put(last, timeout=0.05)
                    break
                except queue.Full:
                    continue
            self._ended.set()

    def get(self, timeout: float | None) -> object:
        """The next message: a batch, FETCH_DONE or an error (queue.Empty after `timeout` s)."""
        return self._results.get(timeout=timeout)

    def stop(self) -> None:
        """Cancel the fetch if it still runs, and wait for its loop to close."""
        if self._thread is None:
            self._coroutine.close()
            self._loop.close()
            return
        self._stopping.set()
        if not self._ended.is_set():
            try:
                self._loop.call_soon_threadsafe(self._cancel)
            except RuntimeError:  # the loop closed in between
                pass
        # The loop may be waiting for room on a full queue: empty it while it winds down.
        while not self._ended.wait(0.01):
            _drain(self._results)
        self._thread.join()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _drain(results: queue.Queue) -> None:
    while True:
        try:
            results.get_nowait()
        except queue.Empty:
            return
