"""Read items from the Hacker News API: a real HTTP client and an in-memory stub.

    client = HttpHNClient("https://hacker-news.firebaseio.com/v0")
    report = fetch_latest(client, 1000, rows.append)   # the 1000 newest items
    report.null_ids                                    # ids that answered `null`, skipped

`fetch_items` calls the sink once per non-null item on the *calling* thread, so a sink can
append to a list or write to a database without locks. For the bundled sample, start a
`hnpipe.sample.SampleServer` and pass its `base_url`.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from copy import deepcopy
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from hnpipe import __version__
from hnpipe.errors import FetchError, ParameterError

__all__ = ["FetchReport", "HNClient", "HttpHNClient", "StubHNClient", "fetch_latest",
           "latest_ids", "show_progress", "LIVE_API_URL"]

log = logging.getLogger("hnpipe.hn")

Sink = Callable[[dict], None]

LIVE_API_URL = "https://hacker-news.firebaseio.com/v0"


@dataclass
class FetchReport:
    """What one `fetch_items` call did."""

    requested: int  # ids asked for
    fetched: int  # items passed to the sink
    null_ids: list[int] = field(default_factory=list)  # ids that answered null, sorted
    retries: int = 0  # extra attempts across all requests
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"fetched {self.fetched} of {self.requested} items ({len(self.null_ids)} null) "
                f"in {self.seconds:.1f}s with {self.retries} retries")


def _check_id(item_id: object) -> int:
    if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id < 1:
        raise ParameterError(f"item id {item_id!r} is not allowed: ids are integers >= 1")
    return item_id


def latest_ids(max_item: int, n: int) -> range:
    """The `n` newest ids, `max_item-n+1 .. max_item` (fewer if that would go below id 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParameterError(f"n_items {n!r} is not allowed: use an integer >= 1")
    _check_id(max_item)
    return range(max(1, max_item - n + 1), max_item + 1)


class HNClient(ABC):
    """The HN API as the pipeline uses it: the newest id, one item, many items."""

    @abstractmethod
    def max_item(self) -> int:
        """The current largest item id."""

    @abstractmethod
    def get_item(self, item_id: int) -> dict | None:
        """The item's JSON as a dict, or None when the API answers `null`."""

    def fetch_items(self, ids: Iterable[int], sink: Sink) -> FetchReport:
        """Call `sink(item)` once per non-null item, on this thread; count null ids.

        This default fetches one id at a time; HttpHNClient overrides it to fetch concurrently.
        """
        started = time.monotonic()
        report = FetchReport(requested=0, fetched=0)
        for item_id in ids:
            _check_id(item_id)
            report.requested += 1
            item = self.get_item(item_id)
            if item is None:
                report.null_ids.append(item_id)
            else:
                sink(item)
                report.fetched += 1
        report.null_ids.sort()
        report.seconds = time.monotonic() - started
        log.info("%s", report.summary())
        return report


def fetch_latest(client: HNClient, n: int, sink: Sink) -> FetchReport:
    """Fetch the `n` newest items (ids `maxitem-n+1 .. maxitem`) into `sink`."""
    latest_ids(1, n)  # refuse a bad n before touching the network
    return client.fetch_items(latest_ids(client.max_item(), n), sink)


class StubHNClient(HNClient):
    """An in-memory HN API for unit tests: `items` maps id -> item dict, or None for null."""

    def __init__(self, items: Mapping[int, dict | None], max_item: int | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ParameterError(
                f"items must be a mapping of id -> item, got {type(items).__name__}")
        self._items = items
        self._max_item = max(items, default=0) if max_item is None else _check_id(max_item)

    def max_item(self) -> int:
        if self._max_item < 1:
            raise FetchError("the stub HN client has no items, so there is no max item")
        return self._max_item

    def get_item(self, item_id: int) -> dict | None:
        item = self._items.get(_check_id(item_id))
        if item is not None and item.get("id") != item_id:
            raise FetchError(
                f"item {item_id}: the stub answered an item with id {item.get('id')!r}")
        # A copy, like a fresh HTTP response: a sink that edits items can't change the stub.
        return deepcopy(item)


def _check_number(value: object, name: str, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise ParameterError(f"{name} {value!r} is out of range: use {low:g}..{high:g}")
    return float(value)


def _check_count(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(f"{name} {value!r} is out of range: use an integer {low}..{high}")
    return value


def check_base_url(base_url: object) -> str:
    """Return `base_url` without a trailing slash if it is an http(s) URL, else refuse it."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParameterError(
            f"hn_api_url {base_url!r} is not an http(s) URL: use e.g. {LIVE_API_URL}"
        )
    return base_url.rstrip("/")


def show_progress(progress: bool | None) -> bool:
    """Whether a fetch shows progress: explicit True/False wins; otherwise hnpipe.progress
    decides from HNPIPE_PROGRESS, CI and where this runs (kernel, terminal, `hnpipe run`)."""
    from hnpipe.progress import OFF, choose

    return choose(progress)[0] != OFF


def _one_line(error: object, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Cancelled(Exception):
    """Another request of the same fetch failed; stop retrying this one."""


# What counts as worth retrying: the network, not the request.
_RETRYABLE_ERRORS = (
    requests.ConnectionError,  # refused, reset, dropped connections, body read timeouts
    requests.Timeout,  # connect and read timeouts
    requests.exceptions.ChunkedEncodingError,  # body shorter than Content-Length (truncated)
    requests.exceptions.ContentDecodingError,
)


class HttpHNClient(HNClient):
    """The HN API over HTTP: one pooled requests.Session, worker threads, retries with backoff.

    Retries connection errors, timeouts, dropped connections, truncated or unparseable bodies,
    429 and 5xx (exponential backoff with jitter, honouring Retry-After up to backoff_max), up
    to `max_attempts` per request; then raises FetchError. Other 4xx fail at once.

    Why 8 attempts: a fetch fails if any one id exhausts its attempts, so the budget must
    hold across every id of a run. With a quarter of requests failing (the fault drill in
    tests/test_faults.py), 5 attempts lose some id of 1,000 two times in three; 8 attempts
    about once in 70. An id that keeps failing gives up after 11 to 23 s of backoff.
    """

    def __init__(
        self,
        base_url: str,
        concurrency: int = 32,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_attempts: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        progress: bool | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.concurrency = _check_count(concurrency, "concurrency", 1, 512)
        self.timeout = (_check_number(connect_timeout, "connect_timeout", 0.001, 600),
                        _check_number(read_timeout, "read_timeout", 0.001, 600))
        self.max_attempts = _check_count(max_attempts, "max_attempts", 1, 100)
        self.backoff_base = _check_number(backoff_base, "backoff_base", 0, 600)
        self.backoff_max = _check_number(backoff_max, "backoff_max", 0, 3600)
        if progress is not None and not isinstance(progress, bool):
            raise ParameterError(f"progress {progress!r} is not allowed: use True, False or None")
        self.progress = progress
        if session is not None and not isinstance(session, requests.Session):
            raise ParameterError(f"session must be a requests.Session, got {session!r}")
        self._owns_session = session is None
        self.session = session if session is not None else self._new_session()
        # Session.get re-merges headers, cookies, auth and settings into a new request every
        # time (a third of the client's CPU per item). Every request here differs only in its
        # URL, so merge once and copy; sending through the session keeps its proxies,
        # redirects and adapters. (Cookies set by a response are not replayed: the HN API
        # sets none.)
        self._template = self.session.prepare_request(requests.Request("GET", self.base_url))
        self._jitter = random.Random()
        self._jitter_lock = threading.Lock()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # One connection per worker thread, reused across requests (keep-alive). No urllib3
        # retries: our own loop in _get_json does all retrying, so attempts are counted once.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.concurrency, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"hnpipe/{__version__} (+https://github.com/hnpipe)"
        # requests re-reads proxy, CA bundle and netrc settings from the environment on every
        # request (scanning all of os.environ twice): a third of its CPU per item, and the GIL
        # is what bounds a 32-thread fetch. Read them once for our base URL instead.
        settings = session.merge_environment_settings(self.base_url, {}, None, None, None)
        session.proxies.update(settings["proxies"])
        session.verify = settings["verify"]
        session.auth = requests.utils.get_netrc_auth(self.base_url)
        session.trust_env = False
        return session

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> HttpHNClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- single requests -------------------------------------------------------------------

    def max_item(self) -> int:
        url = f"{self.base_url}/maxitem.json"
        value, _ = self._get_json(url, "maxitem")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FetchError(f"maxitem from {url} is {_one_line(value, 80)!r}, not an id >= 1")
        return value

    def get_item(self, item_id: int) -> dict | None:
        return self._get_item(_check_id(item_id))[0]

    def _get_item(self, item_id: int, cancel: threading.Event | None = None
                  ) -> tuple[dict | None, int]:
        url = f"{self.base_url}/item/{item_id}.json"
        value, retries = self._get_json(url, f"item {item_id}", cancel)
        if value is not None and (not isinstance(value, dict) or value.get("id") != item_id):
            got = (f"id {_one_line(value.get('id'), 80)}" if isinstance(value, dict)
                   else f"a JSON {type(value).__name__}")
            raise FetchError(f"item {item_id} from {url}: expected an item with id {item_id}, "
                             f"got {got}")
        return value, retries

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        with self._jitter_lock:
            # "Equal jitter": at least half the exponential delay, so retries spread out
            # without collapsing to zero.
            delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _get_json(self, url: str, what: str, cancel: threading.Event | None = None
                  ) -> tuple[object, int]:
        """GET `url` and decode its JSON, retrying transient failures; return (value, retries).

        The retry loop is ours rather than urllib3's Retry: urllib3 retries only up to the
        response headers, but a dropped or truncated *body* fails later, while requests reads
        it, so only a loop around the whole GET-and-decode can retry those.
        """
        last_error = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                request = self._template.copy()
                request.url = url  # built from the checked base URL and an int id: no encoding
                response = self.session.send(request, timeout=self.timeout)  # reads the body
            except _RETRYABLE_ERRORS as error:
                last_error = f"{type(error).__name__}: {_one_line(error, 200)}"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return json.loads(response.content), attempt - 1
                    except ValueError as error:  # a mangled body may be fine on the next try
                        last_error = f"invalid JSON ({_one_line(error, 120)})"
                elif status == 429 or 500 <= status <= 599:
                    last_error = f"HTTP {status} {response.reason}"
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    raise FetchError(f"{what} from {url} failed: HTTP {status} {response.reason}"
                                     " (not retried: the request itself was refused)")
            if attempt < self.max_attempts:
                delay = self._backoff(attempt, retry_after)
                if cancel is None:
                    time.sleep(delay)
                elif cancel.wait(delay):
                    raise _Cancelled
        raise FetchError(f"{what} from {url} failed after {self.max_attempts} attempts: "
                         f"{last_error}")

    # -- many items --------------------------------------------------------------------------

    def fetch_items(self, ids: Iterable[int], sink: Sink) -> FetchReport:
        """Fetch `ids` concurrently; call `sink(item)` on this thread for each non-null item.

        `concurrency` worker threads take ids from `ids` one at a time and hand results back
        through a bounded queue, so 100k ids never become 100k pending objects and a slow
        sink holds the workers back. The first failure (after retries) stops the fetch and
        is raised.
        """
        from hnpipe.progress import Progress

        started = time.monotonic()
        report = FetchReport(requested=0, fetched=0)
        total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
        workers = self.concurrency if total is None else min(self.concurrency, total)
        take_id = _IdSource(ids)
        # A queue rather than futures: waiting on a set of futures costs the fetching thread
        # work per pending future on every wake-up, and the GIL makes every cycle count.
        results: queue.Queue = queue.Queue(maxsize=3 * self.concurrency)
        cancel = threading.Event()
        # A total (ids with a length) gives percentage and time left; the bar turns red when
        # the fetch stops early.
        bar = Progress(total, "HN items", "item", self.progress)
        stopped: str | None = "interrupted"
        threads = [threading.Thread(target=self._work, args=(take_id, results, cancel),
                                    name=f"hnpipe-fetch-{n}", daemon=True)
                   for n in range(workers)]
        try:
            for thread in threads:
                thread.start()
            running = len(threads)
            while running:
                message = results.get()
                if message is _WORKER_DONE:
                    running -= 1
                    continue
                if isinstance(message, BaseException):
                    raise message  # the FetchError (or bad id) of one id stops the fetch
                item_id, item, retries = message
                report.requested += 1
                report.retries += retries
                if item is None:
                    report.null_ids.append(item_id)
                else:
                    sink(item)
                    report.fetched += 1
                bar.update(1)
            stopped = None
        except KeyboardInterrupt:
            raise
        except BaseException:
            stopped = "failed"
            raise
        finally:
            cancel.set()  # stop taking ids, and wake workers sleeping in backoff
            for thread in threads:
                if thread.is_alive():
                    thread.join()
            bar.close(stopped)
        report.null_ids.sort()
        report.seconds = time.monotonic() - started
        log.info("%s from %s", report.summary(), self.base_url)
        return report

    def _work(self, take_id: _IdSource, results: queue.Queue, cancel: threading.Event) -> None:
        """One worker thread: fetch ids until there are none left or the fetch is cancelled."""
        try:
            while not cancel.is_set():
                item_id = take_id()
                if item_id is None:
                    break
                item, retries = self._get_item(item_id, cancel)
                _offer(results, (item_id, item, retries), cancel)
        except _Cancelled:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the fetching thread
            _offer(results, error, cancel)
        finally:
            _offer(results, _WORKER_DONE, cancel)


_WORKER_DONE = object()  # a worker's last message


class _IdSource:
    """The ids to fetch, taken one at a time by the worker threads; each id checked."""

    def __init__(self, ids: Iterable[int]) -> None:
        self._ids = iter(ids)
        self._lock = threading.Lock()

    def __call__(self) -> int | None:
        """The next id, or None when there are no more."""
        with self._lock:  # iterators (generators in particular) are not thread-safe
            item_id = next(self._ids, _NO_MORE_IDS)
        return None if item_id is _NO_MORE_IDS else _check_id(item_id)


_NO_MORE_IDS = object()  # not None: a None among the ids must be refused, not end the fetch


def _offer(results: queue.Queue, message: object, cancel: threading.Event) -> None:
    """Put `message` on the bounded queue, giving up once the fetch is cancelled."""
    while not cancel.is_set():
        try:
            results.put(message, timeout=0.05)
            return
        except queue.Full:
            continue
