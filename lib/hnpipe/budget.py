"""The request budget of one process (`max_requests_per_s`): a token bucket in front of the
HN client's ids, which slows down after a burst of 429/5xx answers.

The client takes ids one at a time from any iterable (hn.HttpHNClient.fetch_items); handing
it `Paced(ids, bucket)` makes each id wait for a token, so at most `rate` requests start per
second (plus a burst of `rate` after an idle second). Retries are the client's own (with
backoff and Retry-After) and are not charged: the budget bounds new work.

Slowing down: every 429 or 5xx answer is reported to `TokenBucket.penalize` (a response hook
on the client's session); the rate halves at most once per second, down to a tenth of the
budget, and climbs back by a tenth of the budget per second without such answers. Many
shards in a CI matrix thus keep their aggregate under max-parallel x max_requests_per_s and
back off together when the API pushes back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator

import requests
from requests.adapters import HTTPAdapter


class TokenBucket:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0:
            raise ValueError(f"a token bucket needs a rate above 0, got {rate!r}")
        self.budget = float(rate)
        self.rate = float(rate)
        self._clock, self._sleep = clock, sleep
        self._tokens = 1.0  # start with one request, not a full second's burst
        self._last = clock()
        self._last_penalty = -1e18
        self._lock = threading.Lock()
        self.penalties = 0  # how often the rate was halved

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self._last = now
        if now - self._last_penalty > 1.0:  # recover a tenth of the budget per quiet second
            self.rate = min(self.budget, self.rate + self.budget / 10 * elapsed)
        self._tokens = min(max(1.0, self.rate), self._tokens + elapsed * self.rate)

    def take(self) -> None:
        """Wait for one token."""
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                if self._tokens >= 1.0 - 1e-9:  # rounding must not leave a sliver to wait for forever
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                wait = max(1e-6, (1.0 - self._tokens) / self.rate)
            self._sleep(wait)

    def penalize(self) -> None:
        """A 429 or 5xx answer: halve the rate (once per second at most)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if now - self._last_penalty >= 1.0:
                self._last_penalty = now
                self.rate = max(self.budget / 10, self.rate / 2)
                self._tokens = min(self._tokens, 1.0)
                self.penalties += 1


class Paced:
    """`ids` handed out one token at a time; keeps their length (the fetch's progress and
    its time bound need it)."""

    def __init__(self, ids: Iterable[int], bucket: TokenBucket) -> None:
        self.ids, self.bucket = ids, bucket

    def __len__(self) -> int:
        return len(self.ids)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        for item_id in self.ids:
            self.bucket.take()
            yield item_id


def session_reporting_to(bucket: TokenBucket, concurrency: int) -> requests.Session:
    """A session for the HN client whose 429/5xx answers slow `bucket` down: one pooled
    connection per worker thread, no urllib3 retries (the client retries), as the client's own."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=concurrency, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)

    def report(response: requests.Response, *args, **kwargs) -> None:
        if response.status_code == 429 or 500 <= response.status_code <= 599:
            bucket.penalize()

    session.hooks["response"].append(report)
    return session
