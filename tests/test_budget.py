"""The request budget (hnpipe.budget): a token bucket in front of the client's ids that halves
on penalties and climbs back; checked with a fake clock, and through the real client."""

from __future__ import annotations

import pytest

from hnpipe import budget, hn
from hnpipe.sample import SampleServer, generate_sample


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
