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
import re
import threading
import time
from abc import ABC, abstractmethod
from copy import deepcopy
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from hnpipe import __version__
from hnpipe.errors import FetchError, ParameterError, one_line
from hnpipe.hn_url import address_kind, host_kind, shown_url, url_problem
from hnpipe.progress import OFF, Progress, choose

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
        return None if item is None else repair_text(deepcopy(item))


_SURROGATE = re.compile("[\ud800-\udfff]")


def repair_text(item: dict) -> dict:
    """`item` with every lone UTF-16 surrogate in its strings replaced by U+FFFD.

    JSON may escape half a character ("\\ud83d" alone); Python decodes it to a str that no
    UTF-8 encoder (Arrow, DuckDB, Snowflake) accepts. Decided: store the item, with U+FFFD
    where the broken character was, and log which item and field, rather than fail a run of
    thousands of items over one mangled comment."""
    for key, value in item.items():
        if isinstance(value, str) and _SURROGATE.search(value):
            item[key] = _SURROGATE.sub("\ufffd", value)
            log.warning("item %s: field %s held a lone surrogate (half a UTF-16 pair); stored as U+FFFD",
                        item.get("id"), key)
    return item


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
    """Return `base_url` without a trailing slash if it is an acceptable http(s) API base (see
    hn_url.url_problem: no credentials, query, fragment, impossible port or link-local host),
    else refuse it in one line that never echoes a password."""

    problem = url_problem(base_url) if isinstance(base_url, str) else "not a string"
    if problem:
        shown = shown_url(base_url) if isinstance(base_url, str) else base_url
        raise ParameterError(f"hn_api_url {shown!r} is not allowed: {problem}")
    return base_url.rstrip("/")


def check_resolved_host(base_url: str, private_hosts: Iterable[str] | None) -> None:
    """Refuse a host whose name resolves to a link-local (metadata) address, or, when
    `private_hosts` is given (runs outside local), to a loopback or private one it does not list.
    A name that does not resolve is left to the request, which fails with its own error."""
    import ipaddress
    import socket


    host = urlsplit(base_url).hostname or ""
    allowed = None if private_hosts is None else {h.strip("[]").rstrip(".").lower() for h in private_hosts}
    if allowed is not None and host.lower() in allowed:
        return
    kinds = {host_kind(host)}
    if kinds == {"public"}:
        try:
            kinds = {address_kind(ipaddress.ip_address(info[4][0].partition("%")[0]))
                     for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
        except (OSError, UnicodeError, ValueError):
            return
    if kinds & {"link-local", "unusable"}:
        raise ParameterError(f"hn_api_url host {host} resolves to a link-local, cloud metadata or unusable "
                             "address: the HN client never goes there")
    if allowed is not None and "private" in kinds:
        raise ParameterError(f"hn_api_url host {host} resolves to a loopback or private address: outside local "
                             "runs list it in hn_api_private_hosts if it really serves the HN API")


def show_progress(progress: bool | None) -> bool:
    """Whether a fetch shows progress: explicit True/False wins; otherwise hnpipe.progress
    decides from HNPIPE_PROGRESS, CI and where this runs (kernel, terminal, `hnpipe run`)."""
    return choose(progress)[0] != OFF


def _json_type(value: object) -> str:
    """What a JSON value is, in the API's terms: a string "1008" is not the number 1008."""
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


# What a failed connection means, found in requests' and urllib3's wrapping, most useful first.
_UNREACHABLE = (
    (r"NameResolutionError|Failed to resolve|Name or service not known|nodename nor servname|"
     r"getaddrinfo failed|Temporary failure in name resolution", "its host name does not resolve (offline?)"),
    (r"Connection refused", "the connection was refused (nothing listens at that address)"),
    (r"Network is unreachable|No route to host", "the network is unreachable (offline?)"),
    (r"CERTIFICATE_VERIFY_FAILED|SSLError", "its TLS certificate was not accepted"),
)


def _unreachable(error: BaseException) -> str | None:
    """Why a connection failed, in words, when the error says (e.g. a host that does not
    resolve); None for other failures (timeouts, dropped or truncated answers)."""
    text = str(error)
    for pattern, meaning in _UNREACHABLE:
        if re.search(pattern, text):
            return meaning
    return None


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


class _DeadlineExceeded(Exception):
    """The request's total deadline passed while its answer was still arriving."""


# What counts as worth retrying: the network, not the request.
_RETRYABLE_ERRORS = (
    requests.ConnectionError,  # refused, reset, dropped connections, body read timeouts
    requests.Timeout,  # connect and read timeouts
    requests.exceptions.ChunkedEncodingError,  # body shorter than Content-Length (truncated)
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,  # anything else urllib3 raises while the body is read here
)
_MAX_REDIRECTS = 5


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
        request_deadline: float = 60.0,
        private_hosts: Iterable[str] | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        # The total time one request may take, every attempt and backoff included: the read
        # timeout alone applies per socket read, so a server trickling a byte every few seconds
        # would hold a request for as long as it liked.
        self.request_deadline = _check_number(request_deadline, "request_deadline", 0.01, 3600)
        if private_hosts is not None and (isinstance(private_hosts, str) or not all(
                isinstance(host, str) for host in private_hosts)):
            raise ParameterError("private_hosts must be a list of host names, or None")
        check_resolved_host(self.base_url, None if private_hosts is None else list(private_hosts))
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
            raise FetchError(f"maxitem from {url} is {one_line(value, 80)!r}, not an id >= 1")
        return value

    def get_item(self, item_id: int) -> dict | None:
        return self._get_item(_check_id(item_id))[0]

    def _get_item(self, item_id: int, cancel: threading.Event | None = None
                  ) -> tuple[dict | None, int]:
        url = f"{self.base_url}/item/{item_id}.json"
        value, retries = self._get_json(url, f"item {item_id}", cancel)
        if isinstance(value, dict):
            value = repair_text(value)
        if value is not None and (not isinstance(value, dict) or value.get("id") != item_id
                                  or isinstance(value.get("id"), bool)):
            got = (f"id {one_line(repr(value.get('id')), 80)} ({_json_type(value.get('id'))})"
                   if isinstance(value, dict) else f"a JSON {type(value).__name__}")
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
        unreachable: str | None = None
        deadline = time.monotonic() + self.request_deadline
        attempt = 0
        while attempt < self.max_attempts:
            attempt += 1
            retry_after = None
            try:
                status, reason, headers, body = self._attempt(url, deadline)
            except _DeadlineExceeded:
                last_error, unreachable = "the answer was still arriving", None
                break
            except _RETRYABLE_ERRORS as error:
                unreachable = _unreachable(error)
                last_error = f"{type(error).__name__}: {unreachable or one_line(error, 200)}"
            else:
                unreachable = None
                if status == 200:
                    try:
                        return json.loads(body), attempt - 1
                    except ValueError as error:  # a mangled body may be fine on the next try
                        last_error = f"invalid JSON ({one_line(error, 120)})"
                elif status == 429 or 500 <= status <= 599:
                    last_error = f"HTTP {status} {reason}"
                    retry_after = _retry_after_seconds(headers.get("Retry-After"))
                else:
                    raise FetchError(f"{what} from {url} failed: HTTP {status} {reason}"
                                     " (not retried: the request itself was refused)")
            if attempt < self.max_attempts:
                delay = self._backoff(attempt, retry_after)
                if time.monotonic() + delay >= deadline:
                    break  # the next attempt could not start before the deadline
                if cancel is None:
                    time.sleep(delay)
                elif cancel.wait(delay):
                    raise _Cancelled
        if unreachable:  # the useful part first: what is wrong and what to check
            raise FetchError(f"cannot reach the HN API: {unreachable}; check hn_api_url ('sample' works "
                             f"offline) ({what} from {url}, {attempt} attempt{'s' if attempt > 1 else ''})")
        if time.monotonic() >= deadline or attempt < self.max_attempts:
            raise FetchError(f"{what} from {url} failed: no complete answer within its "
                             f"{self.request_deadline:g} s deadline ({attempt} attempt"
                             f"{'s' if attempt > 1 else ''}; last: {last_error})")
        raise FetchError(f"{what} from {url} failed after {self.max_attempts} attempts: "
                         f"{last_error}")

    def _attempt(self, url: str, deadline: float) -> tuple[int, str, Mapping[str, str], bytes]:
        """One GET with its body, within `deadline`: (status, reason, headers, body).

        Every socket read waits at most what is left of the deadline, and the body is read a
        chunk at a time with the deadline checked in between. Redirects are followed only on
        the same scheme, host and port: the API base was checked, its redirects were not."""
        for _ in range(_MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded
            request = self._template.copy()
            request.url = url  # built from the checked base URL and an int id: no encoding
            response = self.session.send(request, stream=True, allow_redirects=False, timeout=(
                min(self.timeout[0], remaining), min(self.timeout[1], remaining)))
            try:
                if response.is_redirect:
                    target = requests.compat.urljoin(url, response.headers.get("Location", ""))
                    here, there = urlsplit(url), urlsplit(target)
                    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
                        raise FetchError(f"{url} redirects to another host ({there.scheme}://"
                                         f"{there.hostname}): refused, the HN client stays on {here.hostname}")
                    url = target
                    continue
                if response.status_code != 200:
                    return response.status_code, response.reason, response.headers, b""
                return 200, response.reason, response.headers, self._read_body(response, deadline)
            finally:
                response.close()
        raise FetchError(f"{url}: more than {_MAX_REDIRECTS} redirects")

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        chunks = []
        raw = response.raw
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(self.timeout[1], remaining))
            try:
                chunk = raw.read1(65536, decode_content=True)
            except urllib3.exceptions.ProtocolError as error:  # what requests calls them, as before
                raise requests.exceptions.ChunkedEncodingError(error) from None
            except urllib3.exceptions.DecodeError as error:
                raise requests.exceptions.ContentDecodingError(error) from None
            except urllib3.exceptions.ReadTimeoutError as error:
                raise requests.exceptions.ConnectionError(error) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    # -- many items --------------------------------------------------------------------------

    def fetch_items(self, ids: Iterable[int], sink: Sink) -> FetchReport:
        """Fetch `ids` concurrently; call `sink(item)` on this thread for each non-null item.

        `concurrency` worker threads take ids from `ids` one at a time and hand results back
        through a bounded queue, so 100k ids never become 100k pending objects and a slow
        sink holds the workers back. The first failure (after retries) stops the fetch and
        is raised.
        """

        started = time.monotonic()
        report = FetchReport(requested=0, fetched=0)
        total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
        workers = self.concurrency if total is None else min(self.concurrency, total)
        take_id = _IdSource(ids)
        # The whole fetch's bound, derived from the request deadline: what it would take if every
        # request used all of it (plus one for maxitem's worth of slack). Requests are bounded
        # already; this catches anything else that would hang a run (a stuck worker, a sink).
        bound = None if total is None else self.request_deadline * (math.ceil(total / max(workers, 1)) + 1)
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
                try:
                    message = results.get(timeout=None if bound is None else max(0.0, started + bound - time.monotonic()))
                except queue.Empty:
                    raise FetchError(f"fetching {total:,} items from {self.base_url} took longer than its bound of "
                                     f"{bound:g} s (request deadline {self.request_deadline:g} s x ids per worker)") from None
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
