"""The HN clients: HttpHNClient against a real loopback server, and the in-memory stub.

Faults come from hnpipe.sample.SampleServer (real sockets); backoffs are tiny so retries are
fast. A few checks need answers SampleServer never gives (malformed JSON, a wrong id), so
they use a small http.server handler with fixed bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hnpipe import hn
from hnpipe.errors import FetchError, ParameterError
from hnpipe.hn import FetchReport, HttpHNClient, StubHNClient, fetch_latest, latest_ids
from hnpipe.sample import Faults, SampleServer, generate_sample, load_sample

FIXTURE = Path(__file__).parent / "fixtures" / "hn_api_docs_items.json"
FAST = {"backoff_base": 0.001, "backoff_max": 0.01, "progress": False}


@pytest.fixture(scope="module")
def server():
    with SampleServer() as running:
        yield running


def expected_latest(items: dict, n: int) -> tuple[dict[int, dict], list[int]]:
    """What fetching the n newest ids must give: the non-null items, and the null ids."""
    top = max(items)
    ids = [i for i in range(top - n + 1, top + 1)]
    return ({i: items[i] for i in ids if items.get(i) is not None},
            [i for i in ids if items.get(i) is None])


def collect(client: hn.HNClient, n: int) -> tuple[dict[int, dict], FetchReport]:
    got: list[dict] = []
    report = fetch_latest(client, n, got.append)
    by_id = {item["id"]: item for item in got}
    assert len(by_id) == len(got), "an item was passed to the sink twice"
    return by_id, report


# -- latest_ids -------------------------------------------------------------------------------


def test_latest_ids_are_the_n_newest():
    assert latest_ids(100, 3) == range(98, 101)
    assert list(latest_ids(5, 1)) == [5]


def test_latest_ids_clip_at_id_1():
    assert latest_ids(5, 10) == range(1, 6)


@pytest.mark.parametrize(("max_item", "n", "named"),
                         [(100, 0, "0"), (100, -3, "-3"), (100, True, "True"), (100, "5", "'5'"),
                          (0, 5, "item id 0")])
def test_latest_ids_refuse_bad_input_in_one_line(max_item, n, named):
    with pytest.raises(ParameterError) as caught:
        latest_ids(max_item, n)
    assert named in str(caught.value) and "\n" not in str(caught.value)


# -- real client, healthy server ---------------------------------------------------------------


def test_fetch_latest_returns_exactly_the_sample_items_and_counts_nulls(server):
    n = 1500
    expected, nulls = expected_latest(load_sample(), n)
    assert nulls, "the slice should contain null ids for this test to mean something"
    with HttpHNClient(server.base_url, **FAST) as client:
        got, report = collect(client, n)
    assert got == expected
    assert report.null_ids == nulls
    assert (report.requested, report.fetched, report.retries) == (n, len(expected), 0)
    assert report.seconds > 0


def test_max_item_and_get_item(server):
    docs = json.loads(FIXTURE.read_text(encoding="utf-8"))
    with HttpHNClient(server.base_url, **FAST) as client:
        assert client.max_item() == max(load_sample())
        assert client.get_item(8863) == docs["8863"]
        assert client.get_item(1) is None


def test_sink_runs_on_the_calling_thread(server):
    threads = set()
    with HttpHNClient(server.base_url, concurrency=8, **FAST) as client:
        fetch_latest(client, 200, lambda item: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}


def test_fetch_uses_concurrency():
    items = {i: {"id": i, "type": "comment"} for i in range(1, 65)}
    with SampleServer(items=items, latency_ms=50) as srv:
        with HttpHNClient(srv.base_url, concurrency=32, **FAST) as client:
            started = time.monotonic()
            report = client.fetch_items(range(1, 65), lambda item: None)
            elapsed = time.monotonic() - started
    sequential = 64 * 0.05
    assert report.fetched == 64
    assert elapsed < 0.4 * sequential, f"{elapsed:.2f}s: requests did not overlap"


def test_connections_are_pooled_and_kept_alive():
    items = {i: {"id": i, "type": "story"} for i in range(1, 301)}
    with SampleServer(items=items) as srv:
        with HttpHNClient(srv.base_url, concurrency=8, **FAST) as client:
            report = client.fetch_items(range(1, 301), lambda item: None)
        assert report.fetched == 300
        assert srv.requests_served == 300
        assert srv.connections_accepted <= 8


def test_ids_in_flight_are_bounded():
    """A long id stream is consumed a few batches ahead of the sink, not all at once."""
    consumed = 0

    def ids():
        nonlocal consumed
        for i in range(1, 201):
            consumed += 1
            yield i

    seen_at_first_sink: list[int] = []
    items = {i: {"id": i, "type": "story"} for i in range(1, 201)}
    with SampleServer(items=items) as srv:
        with HttpHNClient(srv.base_url, concurrency=2, **FAST) as client:
            report = client.fetch_items(ids(), lambda item: seen_at_first_sink.append(consumed))
    assert report.requested == 200 == report.fetched
    assert seen_at_first_sink[0] <= 4 * 2


def test_progress_bar_is_drawn_when_asked(server, capsys):
    with HttpHNClient(server.base_url, progress=True, backoff_base=0.001) as client:
        fetch_latest(client, 20, lambda item: None)
    err = capsys.readouterr().err
    assert "HN items" in err and "20/20" in err


def test_progress_bar_is_hidden_when_not_asked(server, capsys):
    with HttpHNClient(server.base_url, **FAST) as client:
        fetch_latest(client, 20, lambda item: None)
    assert "HN items" not in capsys.readouterr().err


def test_progress_default_follows_the_environment(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("HNPIPE_PROGRESS", "1")
    assert hn.show_progress(None) is True
    monkeypatch.setenv("HNPIPE_PROGRESS", "0")
    assert hn.show_progress(None) is False
    assert hn.show_progress(True) is True
    monkeypatch.delenv("HNPIPE_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert hn.show_progress(None) is False
    monkeypatch.delenv("CI")
    assert hn.show_progress(None) is False  # pytest captures stderr: not a terminal


def test_summary_is_logged_with_the_null_count(server, caplog):
    expected, nulls = expected_latest(load_sample(), 300)
    with caplog.at_level(logging.INFO, logger="hnpipe.hn"):
        with HttpHNClient(server.base_url, **FAST) as client:
            fetch_latest(client, 300, lambda item: None)
    lines = [r.getMessage() for r in caplog.records if r.name == "hnpipe.hn"]
    assert any(f"fetched {len(expected)} of 300 items ({len(nulls)} null)" in line
               for line in lines), lines


# -- real client, faults -------------------------------------------------------------------------


def test_fetch_survives_every_kind_of_fault():
    items = load_sample()
    n = 600
    expected, nulls = expected_latest(items, n)
    faults = Faults(http_500=0.08, http_429=0.04, timeout=0.02, drop=0.04, truncate=0.04,
                    retry_after_s=1, timeout_sleep_s=3, seed=5)
    with SampleServer(items=items, faults=faults) as srv:
        # The 1 s read timeout makes the server's 3 s "timeout" answers time out, yet leaves
        # room for thread scheduling on a busy machine (client and server share one GIL).
        # 12 attempts make losing an id to faults (p = 0.22^12) practically impossible.
        with HttpHNClient(srv.base_url, read_timeout=1.0, max_attempts=12, **FAST) as client:
            got, report = collect(client, n)
        injected = srv.faults_injected
    assert got == expected
    assert report.null_ids == nulls
    assert all(injected[kind] > 0 for kind in ("http_500", "http_429", "timeout", "drop", "truncate")), injected
    assert report.retries >= sum(injected.values()) - injected["timeout"]  # maxitem may retry too


@pytest.mark.slow  # seconds of waiting on purpose: the full suite runs it
def test_retry_after_is_honoured():
    # One worker, so the seeded fault draws happen in a fixed order: seed 3 throttles once.
    faults = Faults(http_429=0.5, retry_after_s=1, seed=3)
    items = {i: {"id": i, "type": "story"} for i in range(1, 3)}
    with SampleServer(items=items, faults=faults) as srv:
        with HttpHNClient(srv.base_url, concurrency=1, backoff_base=0.001, backoff_max=5,
                          progress=False) as client:
            started = time.monotonic()
            report = client.fetch_items(range(1, 3), lambda item: None)
            elapsed = time.monotonic() - started
        throttled = srv.faults_injected["http_429"]
    assert throttled >= 1 and report.retries == throttled and report.fetched == 2
    assert elapsed >= 0.95 * throttled


def test_retry_after_is_capped_at_backoff_max():
    faults = Faults(http_429=0.5, retry_after_s=30, seed=3)
    with SampleServer(items={1: {"id": 1, "type": "story"}}, faults=faults) as srv:
        with HttpHNClient(srv.base_url, backoff_base=0.001, backoff_max=0.05, max_attempts=20,
                          progress=False) as client:
            started = time.monotonic()
            assert client.get_item(1) == {"id": 1, "type": "story"}
            assert time.monotonic() - started < 2


def test_persistent_500s_raise_fetch_error_naming_id_url_and_attempts():
    with SampleServer(items={7: {"id": 7, "type": "story"}}, faults=Faults(http_500=1.0)) as srv:
        base_url = srv.base_url
        with HttpHNClient(base_url, max_attempts=3, **FAST) as client:
            with pytest.raises(FetchError) as caught:
                client.get_item(7)
        assert srv.requests_served == 3
    message = str(caught.value)
    assert f"item 7 from {base_url}/item/7.json" in message
    assert "after 3 attempts" in message and "HTTP 500" in message and "\n" not in message


def test_a_failing_id_stops_a_concurrent_fetch():
    items = {i: {"id": i, "type": "story"} for i in range(1, 201)}
    with SampleServer(items=items, faults=Faults(http_500=1.0)) as srv:
        with HttpHNClient(srv.base_url, concurrency=4, max_attempts=2, **FAST) as client:
            with pytest.raises(FetchError, match=r"item \d+ from http://127\.0\.0\.1:\d+/v0/item/"):
                client.fetch_items(range(1, 201), lambda item: None)
        # It gave up early instead of trying (and failing) all 200 ids.
        assert srv.requests_served < 200


def test_truncated_bodies_exhaust_retries_with_fetch_error():
    item = {"id": 3, "type": "comment", "text": "x" * 100}
    with SampleServer(items={3: item}, faults=Faults(truncate=1.0)) as srv:
        base_url = srv.base_url
        with HttpHNClient(base_url, max_attempts=2, **FAST) as client:
            with pytest.raises(FetchError) as caught:
                client.get_item(3)
    assert f"item 3 from {base_url}/item/3.json failed after 2 attempts" in str(caught.value)
    assert "truncated answer" in str(caught.value)


def test_connection_refused_is_retried_then_fetch_error():
    with socket.socket() as sock:  # reserve a free port, then close it: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v0"
    with HttpHNClient(url, max_attempts=2, **FAST) as client:
        with pytest.raises(FetchError) as refused:
            client.max_item()
    # The useful part first: what is wrong and what to check, then where.
    assert str(refused.value) == (
        "cannot reach the HN API: the connection was refused (nothing listens at that address); check "
        f"hn_api_url ('sample' works offline) (maxitem from {url}/maxitem.json, 2 attempts)")


def test_other_4xx_fail_at_once(server):
    with SampleServer(items={1: None}) as srv:
        with HttpHNClient(srv.base_url + "/missing", max_attempts=5, **FAST) as client:
            with pytest.raises(FetchError, match=r"item 1 from .*/missing/item/1.json.*HTTP 404"):
                client.get_item(1)
        assert srv.requests_served == 1


class FixedBodies(BaseHTTPRequestHandler):
    """Answers 200 with a fixed body per path: for answers SampleServer never gives."""

    protocol_version = "HTTP/1.1"
    bodies = {
        "/v0/item/5.json": b'{"id": 5, "by": ',  # complete per Content-Length, but not JSON
        "/v0/item/6.json": b'{"id": 60, "type": "story"}',
        "/v0/item/8.json": b"[1, 2]",
        "/v0/maxitem.json": b'"lots"',
        "/v0/item/1008.json": b'{"id": "1008", "type": "story"}',
        "/v0/item/10.json": b'{"id": 10, "type": "story"}',
    }
    # path -> Location: where a redirect points ({port}: this server's own)
    redirects = {
        "/v0/item/9.json": "http://127.0.0.2:{port}/v0/item/9.json",  # another host
        "/v0/item/11.json": "/v0/item/10.json",  # the same host: followed
    }
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path].format(port=self.server.server_address[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/v0/item/12.json":  # 200 at once, then a byte every 0.5 s: a trickling server
            body = b'{"id": 12, "type": "story", "title": "slow"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass  # the client gave up: that is the point
            return
        body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fixed_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FixedBodies)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    FixedBodies.hits = {}
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v0"
    httpd.shutdown()
    httpd.server_close()


def test_malformed_json_raises_fetch_error_naming_id_and_url(fixed_server):
    with HttpHNClient(fixed_server, max_attempts=3, **FAST) as client:
        with pytest.raises(FetchError) as caught:
            client.get_item(5)
    message = str(caught.value)
    assert f"item 5 from {fixed_server}/item/5.json" in message and "invalid JSON" in message
    assert FixedBodies.hits["/v0/item/5.json"] == 3


def test_an_item_with_another_id_is_refused(fixed_server):
    with HttpHNClient(fixed_server, **FAST) as client:
        with pytest.raises(FetchError, match=r"item 6 from .*with id 6, got id 60 \(a number\)"):
            client.get_item(6)
        with pytest.raises(FetchError, match=r"item 8 from .*with id 8, got a JSON list"):
            client.get_item(8)


def test_an_id_sent_as_a_string_is_refused_saying_its_type(fixed_server):
    with HttpHNClient(fixed_server, **FAST) as client:
        with pytest.raises(FetchError, match=r"expected an item with id 1008, got id '1008' \(a string\)"):
            client.get_item(1008)


def test_a_redirect_to_another_host_is_refused_and_one_on_the_same_host_followed(fixed_server):
    with HttpHNClient(fixed_server, **FAST) as client:
        with pytest.raises(FetchError, match=r"redirects to another host \(http://127.0.0.2\): refused"):
            client.get_item(9)
        with pytest.raises(FetchError, match="got id 10"):  # followed: the answer is item 10's
            client.get_item(11)
    assert FixedBodies.hits["/v0/item/9.json"] == 1  # refused at once, not retried
    assert FixedBodies.hits["/v0/item/10.json"] == 1


@pytest.mark.slow  # seconds of waiting on purpose: the full suite runs it
def test_a_trickling_server_fails_the_request_within_its_deadline(fixed_server):
    """200 at once, then one byte every 0.5 s: the read timeout (10 s) never fires, the
    request's total deadline does, and the error says so."""
    started = time.monotonic()
    with HttpHNClient(fixed_server, request_deadline=1.5, max_attempts=8, **FAST) as client:
        with pytest.raises(FetchError, match=r"item 12 from .* no complete answer within its 1.5 s deadline"):
            client.get_item(12)
    assert time.monotonic() - started < 15  # the whole body would take 22 s per attempt, 8 attempts


def test_a_maxitem_that_is_not_an_id_is_refused(fixed_server):
    with HttpHNClient(fixed_server, **FAST) as client:
        with pytest.raises(FetchError, match=r"maxitem from .* is 'lots', not an id"):
            client.max_item()


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"base_url": "sample"}, "'sample'"), ({"base_url": "ftp://x/v0"}, "ftp://x/v0"),
     ({"base_url": "http://"}, "'http://'"), ({"base_url": None}, "None"),
     ({"concurrency": 0}, "concurrency 0"), ({"concurrency": 2.5}, "concurrency 2.5"),
     ({"read_timeout": 0}, "read_timeout 0"), ({"connect_timeout": float("inf")}, "inf"),
     ({"max_attempts": 0}, "max_attempts 0"), ({"backoff_base": -1}, "backoff_base -1"),
     ({"progress": "yes"}, "'yes'"), ({"session": object()}, "session"),
     ({"base_url": "http://169.254.169.254/v0"}, "link-local"), ({"base_url": "http://[fe80::1]/v0"}, "link-local"),
     ({"base_url": "http://metadata.google.internal/v0"}, "metadata"),
     ({"base_url": "http://h.test/v0?key=1"}, "no query"), ({"base_url": "http://h.test/v0#top"}, "fragment"),
     ({"base_url": "http://h.test:99999/v0"}, "Port out of range"), ({"base_url": "http://h.test:0/v0"}, "port"),
     ({"base_url": "https://jane:hunter2@h.test/v0"}, "'https://***@h.test/v0'"),
     ({"base_url": "http://127.0.0.1:1/v0", "private_hosts": []}, "loopback or private"),
     ({"base_url": "http://localhost:1/v0", "private_hosts": ["h.test"]}, "loopback or private"),
     ({"request_deadline": 0}, "request_deadline 0")],
)
def test_client_refuses_bad_arguments_in_one_line(kwargs, named):
    args = {"base_url": "http://127.0.0.1:1/v0", **kwargs}
    with pytest.raises(ParameterError) as caught:
        HttpHNClient(**args)
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_listed_private_host_may_be_reached_outside_local_runs(server):
    with HttpHNClient(server.base_url, private_hosts=["127.0.0.1"], **FAST) as client:
        assert client.max_item() == max(load_sample())


def test_client_refuses_bad_ids_before_any_request():
    with HttpHNClient("http://127.0.0.1:1/v0", **FAST) as client:
        with pytest.raises(ParameterError, match="item id 0"):
            client.get_item(0)
        with pytest.raises(ParameterError, match="n_items -1"):
            fetch_latest(client, -1, print)


def test_base_url_trailing_slash_is_ignored(server):
    with HttpHNClient(server.base_url + "/", **FAST) as client:
        assert client.max_item() == max(load_sample())


# -- stub ----------------------------------------------------------------------------------------


def test_stub_and_real_client_give_the_same_sink_calls_and_report():
    items = generate_sample(400, 20_000, seed=9)
    items[19_950] = None  # make sure there are nulls in the range
    del items[19_960]  # and an id the server does not know, which also answers null
    items[20_000] = items[20_000] or {"id": 20_000, "type": "story"}  # max must be an item
    with SampleServer(items=items) as srv:
        with HttpHNClient(srv.base_url, concurrency=8, **FAST) as client:
            real_items, real = collect(client, 300)
    stub_items, stub = collect(StubHNClient(items), 300)
    assert real_items == stub_items and len(stub_items) > 250
    assert real.null_ids == stub.null_ids and {19_950, 19_960} <= set(stub.null_ids)
    assert (real.requested, real.fetched) == (stub.requested, stub.fetched)
    assert (stub.requested, stub.fetched) == (300, len(stub_items))


def test_stub_returns_copies_and_knows_its_max_item():
    items = {1: {"id": 1, "type": "story", "kids": [2]}, 2: None}
    stub = StubHNClient(items)
    assert stub.max_item() == 2
    assert StubHNClient(items, max_item=10).max_item() == 10
    stub.get_item(1)["kids"].append(99)
    assert items[1]["kids"] == [2]
    assert stub.get_item(2) is None and stub.get_item(5) is None


def test_stub_refuses_what_the_real_client_refuses():
    with pytest.raises(FetchError, match="no max item"):
        StubHNClient({}).max_item()
    with pytest.raises(FetchError, match="item 1"):
        StubHNClient({1: {"id": 2}}).get_item(1)
    with pytest.raises(ParameterError, match="item id -4"):
        StubHNClient({}).get_item(-4)


def test_server_and_client_work_from_a_thread_that_runs_an_event_loop():
    """A notebook kernel's thread runs an event loop: neither the sample server nor the client
    may run theirs there (both failed with "Cannot run the event loop while another loop is
    running" in a kernel before their loops moved to threads of their own)."""
    async def in_a_kernel() -> tuple[int, int]:
        with SampleServer(items={1: {"id": 1, "type": "story"}, 2: None}) as srv:
            with HttpHNClient(srv.base_url, **FAST) as client:
                return client.max_item(), client.fetch_items(range(1, 3), lambda item: None).fetched

    assert asyncio.run(in_a_kernel()) == (2, 1)
