"""The request budget of one process (`max_requests_per_s`), and how a fetch slows down after a
burst of 429/5xx answers, with a budget or without one.

With a budget: the client takes ids one at a time from any iterable (hn.HttpHNClient.fetch_items);
handing it `Paced(ids, bucket)` makes each id wait for a token, so at most `rate` requests start
per second (plus a burst of `rate` after an idle second). HttpHNClient awaits the token on its
event loop (`TokenBucket.try_take`), so answers already in flight are read while it waits;
any other consumer of `Paced` waits with `take` (a blocking sleep). Retries are the client's own
(with backoff and Retry-After) and are not charged: the budget bounds new work.
`TokenBucket.penalize` halves the rate (at most once per second, down to a tenth of the budget;
it climbs back by a tenth of the budget per quiet second); the pipeline hands it to the client
as `on_throttled`, which the client calls for every 429 or 5xx answer it gets.

Without a budget the client has no rate to halve, only `concurrency` requests in flight, so it
halves that instead (`InFlightLimit`, additive increase, multiplicative decrease): a second in
which at least a quarter of the answers (and at least 4) were 429 or 5xx halves the number of
ids being fetched at once, down to 1; each second without such a burst gives back a tenth of
`concurrency`. Rationale and numbers: docs/backfill.md#the-request-budget.

A budgeted fetch (and one with an `on_throttled` callback) runs in one process: the paced ids
and the callback cannot be split across hn_processes. A fetch split over processes adapts in
each process on its own.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator

BURST_SHARE = 0.25  # a second with at least this share of 429/5xx answers is a burst ...
BURST_MIN = 4  # ... if it had at least this many of them (one 500 among 2 answers is not)


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
        # Recover a tenth of the budget per quiet second: only the time since the last refill
        # that is more than a second after the last penalty counts.
        quiet = now - max(self._last, self._last_penalty + 1.0)
        self._last = now
        if quiet > 0:
            self.rate = min(self.budget, self.rate + self.budget / 10 * quiet)
        self._tokens = min(max(1.0, self.rate), self._tokens + elapsed * self.rate)

    def try_take(self) -> float:
        """Take a token if there is one (0.0); else take none and return the seconds until one
        is due (for a caller that waits its own way: the client's event loop)."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= 1.0 - 1e-9:  # rounding must not leave a sliver to wait for forever
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return max(1e-6, (1.0 - self._tokens) / self.rate)

    def take(self) -> None:
        """Wait for one token (a blocking sleep)."""
        while wait := self.try_take():
            self._sleep(wait)

    def penalize(self, status: int | None = None) -> None:
        """A 429 or 5xx answer (`status`, unused: any of them counts): halve the rate (once per
        second at most). Fits the client's `on_throttled`."""
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


class InFlightLimit:
    """How many ids a fetch without a budget fetches at once: `ceiling` (its concurrency) until
    a burst of 429/5xx answers, then halved once per burst second, down to 1; each second
    without a burst adds back a tenth of `ceiling`. Counts are kept per second (a window that
    closes at the first event after it); one event loop calls it, so no lock."""

    def __init__(self, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._limit = float(ceiling)
        self._window = clock()
        self._answers = 0
        self._throttled = 0
        self.cuts = 0  # how often the limit was halved

    @property
    def limit(self) -> int:
        self._roll(self._clock())
        return int(self._limit)

    def throttled(self) -> None:
        """A 429 or 5xx answer (it will be retried)."""
        self._roll(self._clock())
        self._throttled += 1

    def answered(self, attempts: int) -> None:
        """An id done after `attempts` answers (its throttled ones included)."""
        self._roll(self._clock())
        self._answers += attempts

    def _roll(self, now: float) -> None:
        elapsed = now - self._window
        if elapsed < 1.0:
            return
        if self._throttled >= BURST_MIN and self._throttled >= BURST_SHARE * max(self._answers, self._throttled):
            self._limit = max(1.0, self._limit / 2)
            self.cuts += 1
        else:
            self._limit = min(float(self.ceiling), self._limit + self.ceiling / 10 * elapsed)
        self._window, self._answers, self._throttled = now, 0, 0
