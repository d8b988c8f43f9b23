"""The HN API over HTTP: HttpHNClient (aiohttp on an event loop of its own thread).

    client = HttpHNClient("https://hacker-news.firebaseio.com/v0")
    report = fetch_latest(client, 1000, rows.append)   # the 1000 newest items
    report.null_ids                                    # ids that answered `null`, skipped

`fetch_items` calls the sink once per non-null item on the *calling* thread, so a sink can
append to a list or write to a database without locks. For the bundled sample, start a
`hnpipe.sample.SampleServer` and pass its `base_url`. Every answer is bounded (hn_limits).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import queue
import random
import re
import time
from email.utils import parsedate_to_datetime
from typing import Awaitable, Callable, Iterable, Mapping, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
import requests.utils

from hnpipe import __version__, budget
from hnpipe.errors import FetchError, ParameterError, one_line
from hnpipe.hn_api import (FetchReport, HNClient, IdSource, Sink, _check_count, _check_id, _check_number,
                           _json_type, check_base_url, check_resolved_host, repair_text)
from hnpipe.hn_limits import (DEFAULT_MAX_ANSWER_BYTES, AnswerTooLarge, BadEncoding, BoundedBody, TooDeep,
                              TruncatedAnswer, limit_text, parse_json)
from hnpipe.hn_loop import FETCH_DONE, LoopThread, run_on_own_loop
from hnpipe.hn_processes import Processes, processes_for
from hnpipe.progress import Progress

log = logging.getLogger("hnpipe.hn")
T = TypeVar("T")


# What a failed connection means, most useful first: by aiohttp's exception type or the OS
# error it wraps, else by the words of the error.
_UNREACHABLE = (
    (r"NameResolutionError|Failed to resolve|Name or service not known|nodename nor servname|"
     r"getaddrinfo failed|Temporary failure in name resolution", "its host name does not resolve (offline?)"),
    (r"Connection refused|Connect call failed", "the connection was refused (nothing listens at that address)"),
    (r"Network is unreachable|No route to host", "the network is unreachable (offline?)"),
    (r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed", "its TLS certificate was not accepted"),
)


def _unreachable(error: BaseException) -> str | None:
    """Why a connection failed, in words, when the error says (e.g. a host that does not
    resolve); None for other failures (timeouts, dropped or truncated answers)."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return _UNREACHABLE[0][1]
    if isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return _UNREACHABLE[3][1]
    if isinstance(error, aiohttp.ClientConnectorError):
        code = getattr(error.os_error, "errno", None)
        if code == errno.ECONNREFUSED:
            return _UNREACHABLE[1][1]
        if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return _UNREACHABLE[2][1]
    text = str(error)
    for pattern, meaning in _UNREACHABLE:
        if re.search(pattern, text):
            return meaning
    return None


def _what_failed(error: BaseException, unreachable: str | None) -> str:
    """A failed attempt in a few words, for the error a request gives up with."""
    if isinstance(error, (aiohttp.ClientPayloadError, _Truncated)):
        detail = re.search(r"received \d+ of \d+ bytes", str(error))
        return f"truncated answer ({detail.group(0) if detail else one_line(error, 160)})"
    return f"{type(error).__name__}: {unreachable or one_line(error, 200) or 'no detail'}"


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


class _DeadlineExceeded(Exception):
    """The request's total deadline passed while its answer was still arriving."""


class _Truncated(Exception):
    """The answer ended before its body did (what requests called a ChunkedEncodingError)."""


# What counts as worth retrying: the network, not the request.
_RETRYABLE_ERRORS = (
    aiohttp.ClientConnectionError,  # refused, reset, dropped connections, socket timeouts
    aiohttp.ClientPayloadError,  # body shorter than Content-Length (truncated)
    aiohttp.ClientResponseError,  # an answer that is not HTTP
    TimeoutError,  # connect and read timeouts (not the request deadline: that is told apart)
    _Truncated,
)
_MAX_REDIRECTS = 5
_BATCH = 64  # results handed to the calling thread at a time
_BATCH_SECONDS = 0.02  # ... or at least this often, so progress and slow fetches stay live


class HttpHNClient(HNClient):
    """The HN API over HTTP: aiohttp on an event loop of its own thread, retries with backoff.

    Retries connection errors, timeouts, dropped connections, truncated or unparseable bodies,
    429 and 5xx (exponential backoff with jitter, honouring Retry-After up to backoff_max), up
    to `max_attempts` per request; then raises FetchError. Other 4xx fail at once, and so do
    answers over `max_answer_bytes` (on the wire or decompressed: hn_limits), JSON deeper than
    an item and redirects to another host.

    Why asyncio: with 32 threads and requests, the GIL bound the client at about 1,700 items/s;
    one event loop spends far less per request (benchmarks/client-results.md). Its loop runs
    on a thread of its own, so the client works the same from a script and from a notebook
    kernel (whose thread already runs a loop); the sink is still called on the calling thread.

    Why 8 attempts: a fetch fails if any one id exhausts its attempts, so the budget must
    hold across every id of a run. With a quarter of requests failing (the fault drill in
    tests/test_faults.py), 5 attempts lose some id of 1,000 two times in three; 8 attempts
    about once in 70. An id that keeps failing gives up after 11 to 23 s of backoff.

    A burst of 429/5xx slows the whole fetch, not only the requests retried: `on_throttled(status)`
    is called (on the client's loop thread, so keep it quick) for every 429 or 5xx answer, where
    the pipeline's request budget halves its rate (hnpipe.budget); a fetch whose ids are not
    `budget.Paced` halves the ids it fetches at once instead (`budget.InFlightLimit`).
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
        session: None = None,
        request_deadline: float = 60.0,
        private_hosts: Iterable[str] | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        processes: int | None = None,
        on_throttled: Callable[[int], None] | None = None,
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
        self.max_answer_bytes = _check_count(max_answer_bytes, "max_answer_bytes", 1024, 1 << 30)
        # None: hn_processes decides (several for a large fetch, if there are cores for them).
        self.processes = None if processes is None else _check_count(processes, "processes", 1, 64)
        if progress is not None and not isinstance(progress, bool):
            raise ParameterError(f"progress {progress!r} is not allowed: use True, False or None")
        self.progress = progress
        if on_throttled is not None and not callable(on_throttled):
            raise ParameterError(f"on_throttled {on_throttled!r} is not allowed: use a function of the "
                                 "HTTP status, or None")
        self.on_throttled = on_throttled
        if session is not None:  # requests.Session was accepted before the client moved to aiohttp
            raise ParameterError(f"session {session!r} is not allowed: the client opens its own aiohttp "
                                 "session per call")
        self._jitter = random.Random()
        # Proxy and .netrc settings from the environment, read once for the base URL (as the
        # requests client did): HTTP(S)_PROXY, NO_PROXY, NETRC.
        self._proxy = _proxy_for(self.base_url)
        netrc_auth = requests.utils.get_netrc_auth(self.base_url)
        self._auth = aiohttp.BasicAuth(*netrc_auth) if netrc_auth else None

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own session and event loop."""

    def __enter__(self) -> HttpHNClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- single requests -------------------------------------------------------------------

    def max_item(self) -> int:
        url = f"{self.base_url}/maxitem.json"
        value, _ = run_on_own_loop(self._with_session(lambda session: self._get_json(session, url, "maxitem")))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FetchError(f"maxitem from {url} is {one_line(value, 80)!r}, not an id >= 1")
        return value

    def get_item(self, item_id: int) -> dict | None:
        item_id = _check_id(item_id)
        return run_on_own_loop(self._with_session(lambda session: self._get_item(session, item_id)))[0]

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency,
                                         enable_cleanup_closed=True)
        # auto_decompress off: hn_limits decodes, bounded. No trust_env: it reads proxies and
        # .netrc on a worker thread for every request (two thread hand-offs per item); they
        # were read once for the base URL in __init__.
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False, auth=self._auth,
            headers={"User-Agent": f"hnpipe/{__version__} (+https://github.com/hnpipe)",
                     "Accept-Encoding": "gzip, deflate"},
            timeout=aiohttp.ClientTimeout(total=None))
        # aiohttp silently resends a GET once when a kept-alive connection drops before the
        # answer (RFC 9112 9.3.1.1); our loop does all retrying, so every attempt is counted
        # and bounded by max_attempts. (No public switch: this attribute is what it reads.)
        session._retry_connection = False
        return session

    async def _with_session(self, call: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        async with self._session() as session:
            return await call(session)

    async def _get_item(self, session: aiohttp.ClientSession, item_id: int,
                        on_throttled: Callable[[int], None] | None = None) -> tuple[dict | None, int]:
        url = f"{self.base_url}/item/{item_id}.json"
        value, retries = await self._get_json(session, url, f"item {item_id}", on_throttled)
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
        # "Equal jitter": at least half the exponential delay, so retries spread out without
        # collapsing to zero. (One event loop thread draws: no lock needed.)
        delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    async def _get_json(self, session: aiohttp.ClientSession, url: str, what: str,
                        on_throttled: Callable[[int], None] | None = None) -> tuple[object, int]:
        """GET `url` and decode its JSON, retrying transient failures; return (value, retries).
        `on_throttled(status)` hears of every 429 or 5xx answer (default: the client's).

        The retry loop is ours: a dropped or truncated *body* fails while it is read, so only
        a loop around the whole GET-and-decode can retry those.
        """
        last_error = "no attempt made"
        unreachable: str | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_deadline
        on_throttled = on_throttled or self.on_throttled
        attempt = 0
        while attempt < self.max_attempts:
            attempt += 1
            retry_after = None
            try:
                async with asyncio.timeout_at(deadline) as within:
                    try:
                        status, reason, headers, body = await self._attempt(session, url, what, deadline)
                    except _RETRYABLE_ERRORS as error:
                        if within.expired():
                            raise
                        unreachable = _unreachable(error)
                        last_error = _what_failed(error, unreachable)
                        status = None
            except TimeoutError:
                if not within.expired():
                    raise
                last_error, unreachable = "the answer was still arriving", None
                break
            if status is not None:
                unreachable = None
                if status == 200:
                    try:
                        return parse_json(body), attempt - 1
                    except TooDeep as error:
                        raise FetchError(f"{what} from {url} refused: its JSON is {error}") from None
                    except ValueError as error:  # a mangled body may be fine on the next try
                        last_error = f"invalid JSON ({one_line(error, 120)})"
                elif status == 429 or 500 <= status <= 599:
                    last_error = f"HTTP {status} {reason}"
                    retry_after = _retry_after_seconds(headers.get("Retry-After"))
                    if on_throttled is not None:
                        on_throttled(status)
                else:
                    raise FetchError(f"{what} from {url} failed: HTTP {status} {reason}"
                                     " (not retried: the request itself was refused)")
            if attempt < self.max_attempts:
                delay = self._backoff(attempt, retry_after)
                if loop.time() + delay >= deadline:
                    break  # the next attempt could not start before the deadline
                await asyncio.sleep(delay)
        if unreachable:  # the useful part first: what is wrong and what to check
            raise FetchError(f"cannot reach the HN API: {unreachable}; check hn_api_url ('sample' works "
                             f"offline) ({what} from {url}, {attempt} attempt{'s' if attempt > 1 else ''})")
        if loop.time() >= deadline or attempt < self.max_attempts:
            raise FetchError(f"{what} from {url} failed: no complete answer within its "
                             f"{self.request_deadline:g} s deadline ({attempt} attempt"
                             f"{'s' if attempt > 1 else ''}; last: {last_error})")
        raise FetchError(f"{what} from {url} failed after {self.max_attempts} attempts: "
                         f"{last_error}")

    async def _attempt(self, session: aiohttp.ClientSession, url: str, what: str, deadline: float
                       ) -> tuple[int, str, Mapping[str, str], bytes]:
        """One GET with its body: (status, reason, headers, body). Every socket read waits at
        most the read timeout (the caller bounds the whole by the deadline). Redirects are
        followed only on the same scheme, host and port: the API base was checked, its
        redirects were not."""
        loop = asyncio.get_running_loop()
        for _ in range(_MAX_REDIRECTS + 1):
            remaining = max(0.001, deadline - loop.time())
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout[0], remaining),
                                            sock_read=min(self.timeout[1], remaining))
            response = await session.get(url, allow_redirects=False, timeout=timeout, proxy=self._proxy)
            try:
                if response.status in (301, 302, 303, 307, 308):
                    target = urljoin(url, response.headers.get("Location", ""))
                    here, there = urlsplit(url), urlsplit(target)
                    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
                        raise FetchError(f"{url} redirects to another host ({there.scheme}://"
                                         f"{there.hostname}): refused, the HN client stays on {here.hostname}")
                    url = target
                    continue
                if response.status != 200:
                    return response.status, response.reason or "", response.headers, b""
                return 200, response.reason or "", response.headers, await self._read_body(response, url, what)
            finally:
                response.release()
        raise FetchError(f"{url}: more than {_MAX_REDIRECTS} redirects")

    async def _read_body(self, response: aiohttp.ClientResponse, url: str, what: str) -> bytes:
        """The body, decoded, within max_answer_bytes; past it the connection is closed at once
        and the answer refused (not retried: a server that sends it once will again)."""
        limit = self.max_answer_bytes
        try:
            if response.content_length is not None and response.content_length > limit:
                raise AnswerTooLarge(f"Content-Length {response.content_length:,}")
            body = BoundedBody(limit, response.headers.get("Content-Encoding"))
            while chunk := await response.content.readany():
                body.feed(chunk)
            try:
                return body.finish()
            except TruncatedAnswer as error:
                raise _Truncated(str(error)) from None
        except (AnswerTooLarge, BadEncoding) as error:
            response.close()  # drop the connection: the rest of the answer is never read
            raise FetchError(f"{what} from {url} refused: its answer is larger than the "
                             f"{limit_text(limit)} limit ({error}); connection closed. max_answer_mb "
                             "raises the limit" if isinstance(error, AnswerTooLarge) else
                             f"{what} from {url} refused: {error}; connection closed") from None

    # -- many items --------------------------------------------------------------------------

    def fetch_items(self, ids: Iterable[int], sink: Sink) -> FetchReport:
        """Fetch `ids` concurrently; call `sink(item)` on this thread for each non-null item.

        `concurrency` requests are in flight at once on the client's event loop thread, which
        takes ids from `ids` one at a time and hands results back in batches through a bounded
        queue, so 100k ids never become 100k pending objects and a slow sink holds the fetch
        back. The first failure (after retries) stops the fetch and is raised. A large fetch
        is shared by several processes, each with its share of the requests in flight
        (hn_processes; `processes` sets how many), unless the client has an `on_throttled`
        callback (it is called in this process). `budget.Paced` ids wait for their tokens on
        the event loop, without holding up the answers in flight.
        """
        started = time.monotonic()
        report = FetchReport(requested=0, fetched=0)
        total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
        workers = self.concurrency if total is None else max(1, min(self.concurrency, total))
        # The whole fetch's bound, derived from the request deadline: what it would take if every
        # request used all of it (plus one for maxitem's worth of slack). Requests are bounded
        # already; this catches anything else that would hang a run (a stuck loop, a sink).
        bound = None if total is None else self.request_deadline * (math.ceil(total / workers) + 1)
        # At most about 3 x workers results wait for the sink: 2 x workers queued (in batches
        # of up to _BATCH), a batch being gathered, and one per task in flight.
        batch = min(_BATCH, workers)
        # A total (ids with a length) gives percentage and time left; the bar turns red when
        # the fetch stops early.
        bar = Progress(total, "HN items", "item", self.progress)
        stopped: str | None = "interrupted"
        parts = 1 if self.on_throttled is not None else processes_for(ids, total, workers, self.processes)
        if parts > 1:
            fetch: LoopThread | Processes = Processes(self, ids, parts, workers, batch, FETCH_DONE)
        else:
            results: queue.Queue = queue.Queue(maxsize=max(2, 2 * workers // batch))
            paced = isinstance(ids, budget.Paced)
            fetch = LoopThread(self._fetch_all(IdSource(ids.ids if paced else ids), workers, batch, results,
                                               ids.bucket if paced else None), results)
        try:
            fetch.start()
            while True:
                try:
                    message = fetch.get(timeout=None if bound is None else max(0.0, started + bound - time.monotonic()))
                except queue.Empty:
                    raise FetchError(f"fetching {total:,} items from {self.base_url} took longer than its bound of "
                                     f"{bound:g} s (request deadline {self.request_deadline:g} s x ids per worker)") from None
                if message is FETCH_DONE:
                    break
                if isinstance(message, BaseException):
                    raise message  # the FetchError (or bad id) of one id stops the fetch
                for item_id, item, retries in message:
                    report.requested += 1
                    report.retries += retries
                    if item is None:
                        report.null_ids.append(item_id)
                    else:
                        sink(item)
                        report.fetched += 1
                bar.update(len(message))
            stopped = None
        except KeyboardInterrupt:
            raise
        except BaseException:
            stopped = "failed"
            raise
        finally:
            fetch.stop()  # cancel what is in flight and wait for the loop to end
            bar.close(stopped)
        report.null_ids.sort()
        report.seconds = time.monotonic() - started
        log.info("%s from %s", report.summary(), self.base_url)
        return report

    async def _fetch_all(self, take_id: IdSource, workers: int, batch: int, results: queue.Queue,
                         bucket: budget.TokenBucket | None = None) -> None:
        """Fetch every id with `workers` tasks, putting batches of (id, item, retries) on `results`.
        With a `bucket`, each id waits for its token; without, a burst of 429/5xx lowers how
        many ids are fetched at once (budget.InFlightLimit)."""
        pending: list[tuple[int, dict | None, int]] = []
        limit = budget.InFlightLimit(workers) if bucket is None else None
        active = 0  # ids being fetched (retries included)
        waiting = 0  # workers waiting for the limit
        room = asyncio.Condition()
        one_at_a_time = asyncio.Lock()  # one worker waits for the bucket's next token, the others queue

        def throttled(status: int) -> None:
            if limit is not None:
                limit.throttled()
            if self.on_throttled is not None:
                self.on_throttled(status)

        async def hand_over(at_least: int) -> None:
            while len(pending) >= at_least:
                try:
                    results.put_nowait(pending[:])
                except queue.Full:  # the sink is behind: wait for it, fetching nothing new
                    await asyncio.sleep(0.005)
                    continue
                pending.clear()

        async def work(session: aiohttp.ClientSession) -> None:
            nonlocal active, waiting
            while True:
                if limit is not None and active >= limit.limit:  # after a burst only
                    waiting += 1
                    try:
                        async with room:
                            await room.wait_for(lambda: active < limit.limit)
                    finally:
                        waiting -= 1
                if (item_id := take_id()) is None:
                    return
                if bucket is not None:
                    async with one_at_a_time:
                        while wait := bucket.try_take():
                            await asyncio.sleep(wait)
                active += 1
                try:
                    item, retries = await self._get_item(session, item_id, throttled)
                finally:
                    active -= 1
                if limit is not None:
                    limit.answered(retries + 1)
                    if waiting:
                        async with room:
                            room.notify_all()
                pending.append((item_id, item, retries))
                await hand_over(batch)

        async def tick() -> None:
            while True:
                await asyncio.sleep(_BATCH_SECONDS)
                await hand_over(1)

        async with self._session() as session:
            ticker = asyncio.create_task(tick())
            tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = next((task for task in tasks if task.done() and not task.cancelled()
                               and task.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()
            finally:
                for task in (*tasks, ticker):
                    task.cancel()
                await asyncio.gather(*tasks, ticker, return_exceptions=True)
            await hand_over(1)


def _proxy_for(url: str) -> str | None:
    """The proxy the environment sets for `url` (None when NO_PROXY excludes it)."""
    proxies = requests.utils.get_environ_proxies(url)
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")
