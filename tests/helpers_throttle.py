"""A fetch through a burst of 429s against the sample server, measured server-side: how many
requests a second the server saw before, during and after the burst; and a client that times
its requests (tests/test_budget*.py and benchmarks/throttle.py share them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from hnpipe import budget
from hnpipe.hn_api import FetchReport
from hnpipe.hn_http import HttpHNClient
from hnpipe.sample import Faults, SampleServer


@dataclass
class Burst:
    """What the server saw (requests per second in each window) and what the client got."""

    before: float  # the second before the burst began (from 0.5 s after the start)
    during: float  # while every request was answered 429
    after: float  # the first `after_s` seconds after the burst
    later: float  # from `later_s` seconds after the burst, for `after_s` seconds (0: the fetch had ended)
    ids: list[int] = field(repr=False)  # ids handed to the sink, in order of arrival
    report: FetchReport = field(repr=False)
    retry_waits: list[float] = field(repr=False)  # per 429: seconds until the same id was asked again
    penalties: int = 0  # how often the budget was halved (0 without one)
    seconds: float = 0.0
    windows: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)


def fetch_through_a_burst(n_ids: int, *, rate: float | None, concurrency: int, latency_ms: float,
                          before_s: float = 2.0, burst_s: float = 2.0, after_s: float = 2.0,
                          later_s: float = 4.0, retry_after_s: int = 1, paced_by_iterator: bool = False
                          ) -> Burst:
    """Fetch ids 1..n_ids (`rate`: a budget, None: none) while the server answers every request
    with 429 (Retry-After: `retry_after_s`) from `before_s` for `burst_s` seconds.
    `paced_by_iterator` hands the client a plain generator over `Paced` (the blocking wait of
    the code before the client awaited its tokens), for the benchmark's comparison."""
    items = {i: {"id": i, "type": "story", "by": "pg", "time": 1_160_418_111 + i} for i in range(1, n_ids + 1)}
    bucket = budget.TokenBucket(rate) if rate else None
    marks: dict[str, float] = {}
    got: list[int] = []
    with SampleServer(items=items, latency_ms=latency_ms, record_requests=True) as server:
        def begin() -> None:
            marks["begin"] = time.monotonic()
            server.set_faults(Faults(http_429=1.0, retry_after_s=retry_after_s))

        def end() -> None:
            server.set_faults(Faults())
            marks["end"] = time.monotonic()

        client = HttpHNClient(server.base_url, concurrency=concurrency, progress=False,
                              on_throttled=None if bucket is None else bucket.penalize)
        ids: object = range(1, n_ids + 1)
        if bucket is not None:
            ids = budget.Paced(ids, bucket)
            if paced_by_iterator:
                ids = (item_id for item_id in ids)
        timers = [threading.Timer(before_s, begin), threading.Timer(before_s + burst_s, end)]
        started = time.monotonic()
        for timer in timers:
            timer.start()
        try:
            report = client.fetch_items(ids, lambda item: got.append(item["id"]))
        finally:
            for timer in timers:
                timer.cancel()
                timer.join()
        log = server.request_log
    seconds = time.monotonic() - started
    if "end" not in marks:
        raise AssertionError(f"the fetch ended after {seconds:.1f} s, before the burst did: give it more ids")
    last = log[-1][0]
    windows = {"before": (started + 0.5, marks["begin"]), "during": (marks["begin"], marks["end"]),
               "after": (marks["end"], min(last, marks["end"] + after_s)),
               "later": (marks["end"] + later_s, min(last, marks["end"] + later_s + after_s))}
    rates = {name: _rate(log, *window) for name, window in windows.items()}
    asked: dict[str, list[tuple[float, str | None]]] = {}
    for at, path, fault in log:
        asked.setdefault(path, []).append((at, fault))
    retry_waits = [times[k + 1][0] - at for times in asked.values()
                   for k, (at, fault) in enumerate(times[:-1]) if fault == "http_429"]
    return Burst(**rates, ids=got, report=report, retry_waits=retry_waits,
                 penalties=0 if bucket is None else bucket.penalties, seconds=seconds, windows=windows)


class TimedClient(HttpHNClient):
    """The client, keeping in `took` each id's seconds from its request's start to its answer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.took: list[float] = []

    async def _get_item(self, *args, **kwargs):
        started = time.monotonic()
        try:
            return await super()._get_item(*args, **kwargs)
        finally:
            self.took.append(time.monotonic() - started)


def _rate(log: list[tuple[float, str, str | None]], start: float, end: float) -> float:
    """Requests a second that arrived in [start, end); 0 for a window the fetch ended before (or
    too soon into: a quarter of a second is too short to count in)."""
    if end - start < 0.25:
        return 0.0
    return sum(1 for at, _, _ in log if start <= at < end) / (end - start)
