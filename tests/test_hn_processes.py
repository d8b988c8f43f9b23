"""A fetch shared by several processes (hnpipe.hn_processes) gives what one process gives: the
same items once each, the same null ids, the sink on the calling thread, the first failure
raised in one line, and no child left behind."""

from __future__ import annotations

import os
import threading

import psutil
import pytest
from hnpipe.errors import FetchError
from hnpipe.hn import HttpHNClient
from hnpipe.hn_processes import MIN_IDS, processes_for, split
from hnpipe.refresh import Ids
from hnpipe.sample import Faults, SampleServer, generate_sample

FAST = {"backoff_base": 0.001, "backoff_max": 0.01, "progress": False}


def children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "hnpipe.hn_processes" in " ".join(p.cmdline())]


@pytest.mark.slow  # starts fetch processes
def test_two_processes_fetch_what_one_does_once_each_with_the_sink_on_this_thread():
    items = generate_sample(3000, seed=4)
    ids = range(min(items), max(items) + 1)
    with SampleServer(items=items) as server:
        got: dict[int, list[dict]] = {}
        threads = set()

        def sink(item: dict) -> None:
            threads.add(threading.get_ident())
            got.setdefault(item["id"], []).append(item)

        with HttpHNClient(server.base_url, processes=2, **FAST) as client:
            report = client.fetch_items(ids, sink)
    assert threads == {threading.get_ident()}
    assert all(len(copies) == 1 for copies in got.values())
    assert {i: copies[0] for i, copies in got.items()} == {i: v for i, v in items.items() if v is not None}
    assert report.null_ids == sorted(i for i, v in items.items() if v is None)
    assert report.requested == len(ids) and not children()


@pytest.mark.slow  # starts fetch processes
def test_a_failure_in_a_child_is_raised_in_one_line_and_no_child_is_left():
    items = {i: {"id": i, "type": "story"} for i in range(1, 2001)}
    with SampleServer(items=items, faults=Faults(deep=0.02, seed=2)) as server:
        with HttpHNClient(server.base_url, processes=2, **FAST) as client:
            with pytest.raises(FetchError) as caught:
                client.fetch_items(range(1, 2001), lambda item: None)
    message = str(caught.value)
    assert "\n" not in message and "nested more than 1,024 levels deep" in message and "/item/" in message
    assert not children()


@pytest.mark.slow  # starts fetch processes
def test_a_sink_that_fails_stops_the_children():
    items = {i: {"id": i, "type": "story"} for i in range(1, 3001)}

    def sink(item: dict) -> None:
        raise ValueError("the sink refused an item")

    with SampleServer(items=items) as server:
        with HttpHNClient(server.base_url, processes=2, **FAST) as client:
            with pytest.raises(ValueError, match="the sink refused"):
                client.fetch_items(range(1, 3001), sink)
        assert server.requests_served < 3000
    assert not children()


def test_how_many_processes():
    big = range(1, MIN_IDS + 1)
    assert processes_for(big, len(big), 32, None) == min(4, os.cpu_count() or 1)
    assert processes_for(range(1, 100), 99, 32, None) == 1  # small: not worth starting processes
    assert processes_for(iter(big), None, 32, 4) == 1  # a stream of ids cannot be dealt out
    assert processes_for(big, len(big), 32, 3) == 3
    assert processes_for(big, len(big), 8, None) == 1  # each process keeps at least 8 in flight


def test_split_deals_every_kth_id_of_ranges_plans_and_lists():
    plan = Ids((range(1, 6), range(10, 13)))
    shares = split(plan, 2)
    assert sorted(i for share in shares for part in share for i in part) == list(plan)
    assert [list(r) for r in shares[0]] == [[1, 3, 5], [10, 12]]
    assert split([5, 6, 7], 2) == [[5, 7], [6]]
    assert split(iter([1, 2]), 2) is None
