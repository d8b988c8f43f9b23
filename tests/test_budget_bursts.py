"""A burst of 429s slows a fetch down, with a request budget and without one, and it recovers;
measured server-side against the sample server (requests a second that arrived in each window,
tests/helpers_throttle.py). Margins are wide: the rates compared differ 2x or more when it works
and the other way round (or not at all) when nothing slows down.

Why `slow`: each fetch lasts about 10 s (the recovery is a tenth of the budget, or of the
concurrency, per quiet second)."""

from __future__ import annotations

import pytest

from helpers_throttle import fetch_through_a_burst

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

