"""The request budget (hnpipe.budget): a token bucket in front of the client's ids that halves
on penalties and climbs back, and the in-flight limit of a fetch without a budget; checked with
a fake clock, and through the real client (bursts against the sample server:
tests/test_budget_bursts.py)."""

from __future__ import annotations

import statistics

import pytest

from helpers_throttle import TimedClient
from hnpipe import budget, hn
from hnpipe.sample import Faults, SampleServer, generate_sample


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_bucket_starts_at_most_rate_requests_a_second() -> None:
    clock = Clock()
    bucket = budget.TokenBucket(10, clock=clock, sleep=clock.sleep)
    for _ in range(101):
        bucket.take()
    assert 9.9 <= clock.now <= 10.1  # 100 requests after the first at 10/s


def test_a_burst_of_errors_halves_the_rate_once_a_second_and_it_recovers() -> None:
    clock = Clock()
    bucket = budget.TokenBucket(100, clock=clock, sleep=clock.sleep)
    for _ in range(5):  # five errors at once: one halving
        bucket.penalize()
    assert bucket.rate == 50 and bucket.penalties == 1
    clock.now += 1.0
    bucket.penalize()
    assert bucket.rate == 25
    for _ in range(10):
        clock.now += 1.0
        bucket.penalize()
    assert bucket.rate == 10  # never below a tenth of the budget
    clock.now += 30.0
    bucket.take()
    assert bucket.rate == 100  # quiet seconds bring it back


def test_paced_ids_keep_their_length_and_order() -> None:
    clock = Clock()
    paced = budget.Paced(range(5, 10), budget.TokenBucket(1000, clock=clock, sleep=clock.sleep))
    assert len(paced) == 5 and list(paced) == [5, 6, 7, 8, 9]


@pytest.mark.slow  # seconds of waiting on purpose: the full suite runs it
def test_the_client_with_a_budget_fetches_everything_at_the_budget() -> None:
    items = generate_sample(n_ids=300, max_item=1_000)
    with SampleServer(items=items) as server:
        bucket = budget.TokenBucket(200)
        client = hn.HttpHNClient(server.base_url, concurrency=8)
        got = []
        report = client.fetch_items(budget.Paced(range(701, 1_001), bucket), got.append)
    assert report.requested == 300 and len(got) == sum(1 for item in items.values() if item)
    assert report.seconds >= 299 / 200 * 0.95  # no faster than the budget


@pytest.mark.parametrize("rate", [0, -1])
def test_a_bucket_needs_a_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        budget.TokenBucket(rate)


def test_a_penalty_is_recovered_only_from_a_second_after_it() -> None:
    """The time before the penalty's second is up is not quiet: a refill 1.5 s after a penalty
    gives back half a second's worth (a tenth of the budget per second), not 1.5 s's."""
    clock = Clock()
    bucket = budget.TokenBucket(100, clock=clock, sleep=clock.sleep)
    bucket.penalize()
    assert bucket.rate == 50
    clock.now = 1.5
    bucket.try_take()
    assert bucket.rate == pytest.approx(55)


def test_try_take_says_how_long_to_wait_and_takes_nothing_meanwhile() -> None:
    clock = Clock()
    bucket = budget.TokenBucket(4, clock=clock, sleep=clock.sleep)
    assert bucket.try_take() == 0.0  # the first token is there
    assert bucket.try_take() == pytest.approx(0.25)
    assert bucket.try_take() == pytest.approx(0.25)  # asking again took nothing
    clock.now = 0.25
    assert bucket.try_take() == 0.0


def test_the_in_flight_limit_halves_once_a_second_in_a_burst_down_to_one() -> None:
    clock = Clock()
    limit = budget.InFlightLimit(32, clock=clock)
    for second in range(6):
        for _ in range(10):  # every answer of each second a 429
            limit.throttled()
        clock.now = second + 1.0
        assert limit.limit == max(1, 32 >> (second + 1))
    assert limit.cuts == 6  # 32 -> 1 in five halvings; the sixth burst second finds it at 1
    assert limit.limit == 1


def test_the_odd_error_is_not_a_burst_and_quiet_seconds_bring_the_limit_back() -> None:
    clock = Clock()
    limit = budget.InFlightLimit(32, clock=clock)
    for second in range(5):  # 15% of 400 answers a second: the fault drill's mix, not a burst
        limit.answered(340)
        for _ in range(60):
            limit.throttled()
        clock.now = second + 1.0
    limit.throttled()
    limit.throttled()
    limit.throttled()  # three of three answers: too few to call a burst
    clock.now = 6.0
    assert limit.limit == 32 and limit.cuts == 0
    for _ in range(8):
        limit.throttled()
    clock.now = 7.0
    assert limit.limit == 16  # 8 of 8
    clock.now = 8.0
    assert limit.limit == 16 + 3  # a tenth of 32 (3.2) per quiet second
    clock.now = 30.0
    assert limit.limit == 32  # never above the concurrency


def test_the_client_reports_every_429_and_5xx_it_retries_and_no_200() -> None:
    items = {i: {"id": i, "type": "story"} for i in range(1, 41)}
    heard: list[int] = []
    with SampleServer(items=items, faults=Faults(http_429=0.2, http_500=0.2, retry_after_s=0, seed=4)) as server:
        client = hn.HttpHNClient(server.base_url, concurrency=4, backoff_base=0.001, backoff_max=0.01,
                                 max_attempts=20, progress=False, on_throttled=heard.append)
        got = []
        report = client.fetch_items(range(1, 41), got.append)
        injected = server.faults_injected
    assert sorted(item["id"] for item in got) == list(range(1, 41))
    assert injected["http_429"] > 0 and injected["http_500"] > 0
    assert sorted(heard) == [429] * injected["http_429"] + [500] * injected["http_500"]
    assert report.retries == len(heard)


def test_a_callback_keeps_the_fetch_in_this_process() -> None:
    """Asked for 2 processes, a client with on_throttled fetches in one, where its callback is
    (a bound method of a bucket could not even be sent to a child)."""
    items = {i: {"id": i, "type": "story"} for i in range(1, 41)}
    bucket = budget.TokenBucket(10_000)
    with SampleServer(items=items, faults=Faults(http_429=0.3, retry_after_s=0, seed=2)) as server:
        client = hn.HttpHNClient(server.base_url, concurrency=8, backoff_base=0.001, backoff_max=0.01,
                                 max_attempts=20, progress=False, processes=2, on_throttled=bucket.penalize)
        report = client.fetch_items(range(1, 41), lambda item: None)
        injected = server.faults_injected["http_429"]
    assert report.fetched == 40 and injected > 0 and bucket.penalties >= 1


@pytest.mark.slow  # seconds of waiting on purpose: the full suite runs it
def test_the_paced_wait_does_not_hold_the_answers_in_flight() -> None:
    """At 10 requests a second a token is due every 100 ms. Waiting for it with a blocking sleep
    on the client's loop held every answer in flight until the sleep ended (each request then
    took about 100 ms); awaited, an answer on loopback is read within a few ms."""
    def no_blocking_sleep(seconds: float) -> None:
        raise AssertionError("the client slept on its event loop thread")

    items = {i: {"id": i, "type": "story"} for i in range(1, 16)}
    with SampleServer(items=items) as server:
        client = TimedClient(server.base_url, concurrency=4, progress=False)
        bucket = budget.TokenBucket(10, sleep=no_blocking_sleep)
        report = client.fetch_items(budget.Paced(range(1, 16), bucket), lambda item: None)
    assert report.fetched == 15
    assert report.seconds >= 14 / 10 * 0.95  # still no faster than the budget
    assert statistics.median(client.took) < 0.05, client.took


def test_the_pipeline_hands_its_budget_to_the_client(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_requests_per_s, every 429 the client retries reaches the run's bucket."""
    from hnpipe import pipeline  # pandas and the warehouse: only this test of the file needs them

    heard: list[int | None] = []
    penalize = budget.TokenBucket.penalize
    monkeypatch.setattr(budget.TokenBucket, "penalize",
                        lambda self, status=None: (heard.append(status), penalize(self, status))[1])
    items = {i: {"id": i, "type": "story", "by": "pg", "time": 1_160_418_111 + i, "title": f"t{i}"}
             for i in range(1, 61)}
    with SampleServer(items=items, faults=Faults(http_429=0.2, retry_after_s=0, seed=5)) as server:
        step = pipeline.start("ITEMS", {"environment": "local", "n_items": 60, "hn_api_url": server.base_url,
                                        "max_requests_per_s": 1000})
        fetched = step.fetch()
        injected = server.faults_injected["http_429"]
    assert len(fetched) == 60 and injected > 0
    assert heard == [429] * injected
