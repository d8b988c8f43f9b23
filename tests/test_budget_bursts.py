"""A burst of 429s slows a fetch down, with a request budget and without one, and it recovers;
measured server-side against the sample server (requests a second that arrived in each window,
tests/helpers_throttle.py). Margins are wide: the rates compared differ 2x or more when it works
and the other way round (or not at all) when nothing slows down.

Why `slow`: each fetch lasts about 10 s (the recovery is a tenth of the budget, or of the
concurrency, per quiet second)."""

from __future__ import annotations

import pytest

from helpers_throttle import fetch_through_a_burst
from hnpipe import budget
from hnpipe.sample import Faults, SampleServer

pytestmark = pytest.mark.slow


def check_every_id_once_and_retry_after(burst, n_ids: int) -> None:
    assert sorted(burst.ids) == list(range(1, n_ids + 1))  # each id handed over exactly once
    assert burst.report.fetched == n_ids and burst.report.retries == len(burst.retry_waits)
    # Retry-After: 1 is still honoured: no id was asked again sooner after its 429.
    assert burst.retry_waits and min(burst.retry_waits) >= 0.95, sorted(burst.retry_waits)[:5]


def test_a_burst_of_429s_halves_the_budget_and_it_recovers() -> None:
    """200 requests/s budget, 16 in flight at 20 ms (the budget binds). While every answer is 429
    the retries hold every slot (old and new code alike); what the budget's halving changes is
    what follows: without it the bucket let 200 requests out at once and went on at 200/s."""
    n_ids = 1_100
    burst = fetch_through_a_burst(n_ids, rate=200, concurrency=16, latency_ms=20, burst_s=3.0)
    rates = f"before {burst.before:.0f}/s, during {burst.during:.0f}/s, after {burst.after:.0f}/s, later {burst.later:.0f}/s"
    assert burst.during < 0.5 * burst.before, rates
    assert burst.after < 0.6 * burst.before, rates  # slowed down: about 60 of 200
    assert burst.later > 1.4 * burst.after, rates  # and climbing back (about 120)
    assert burst.penalties >= 2, rates  # once a second of the 3 s burst
    check_every_id_once_and_retry_after(burst, n_ids)


def test_without_a_budget_a_burst_halves_the_requests_in_flight_and_they_recover() -> None:
    """32 in flight at 100 ms (about 320 requests/s, bound by the in-flight limit, not the CPU)."""
    n_ids = 1_500
    burst = fetch_through_a_burst(n_ids, rate=None, concurrency=32, latency_ms=100, burst_s=2.0)
    rates = f"before {burst.before:.0f}/s, during {burst.during:.0f}/s, after {burst.after:.0f}/s, later {burst.later:.0f}/s"
    assert burst.during < 0.5 * burst.before, rates
    assert burst.after < 0.6 * burst.before, rates  # 8 or fewer in flight: about 90 of 320
    assert burst.later > 1.4 * burst.after, rates  # about 20 in flight again
    check_every_id_once_and_retry_after(burst, n_ids)


def test_the_pipeline_hands_its_budget_to_the_client(clean_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_requests_per_s, every 429 the client retries reaches the run's bucket."""
    from hnpipe import pipeline  # imported late, as the other step tests do: it reads the environment

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
