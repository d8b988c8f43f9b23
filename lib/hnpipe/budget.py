"""The request budget of one process (`max_requests_per_s`): a token bucket in front of the
HN client's ids, which slows down after a burst of 429/5xx answers.

The client takes ids one at a time from any iterable (hn.HttpHNClient.fetch_items); handing
it `Paced(ids, bucket)` makes each id wait for a token, so at most `rate` requests start per
second (plus a burst of `rate` after an idle second). Retries are the client's own (with
backoff and Retry-After) and are not charged: the budget bounds new work.

Slowing down: `TokenBucket.penalize` halves the rate (at most once per second, down to a tenth
of the budget; it climbs back by a tenth of the budget per quiet second). It was called by a
response hook on the requests client's session for every 429 or 5xx answer; the asyncio client
(hn_http) takes no session, so nothing calls it yet: until the client offers a callback for the
answers it retries, a burst of 429/5xx slows a shard only through the client's own per-request
backoff and Retry-After (retrying requests hold their slots). Many shards in a CI matrix keep
their aggregate under max-parallel x max_requests_per_s either way.

A budgeted fetch runs in one process (the paced ids cannot be split across hn_processes), and
the wait for a token happens on the client's event-loop thread.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator



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
