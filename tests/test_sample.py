"""The bundled HN sample (generator, file) and the loopback server that serves it.

Everything runs against real sockets on 127.0.0.1: raw http.client is used where a test needs
to see exactly what the server sent (a fault), requests where it only needs the answer.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from hnpipe import sample
from hnpipe.errors import ParameterError
from hnpipe.sample import Faults, SampleServer, generate_sample, load_sample
from hnpipe.sample import cli as sample_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURE = Path(__file__).parent / "fixtures" / "hn_api_docs_items.json"
ROOT = Path(__file__).resolve().parents[1]

# Fields the live API may send for each type (https://github.com/HackerNews/API#items).
ALLOWED = {
    "story": {"by", "descendants", "id", "kids", "score", "time", "title", "type", "url", "text",
              "dead"},
    "comment": {"by", "id", "kids", "parent", "text", "time", "type", "dead"},
    "job": {"by", "id", "score", "time", "title", "type", "url", "text", "dead"},
    "poll": {"by", "descendants", "id", "kids", "parts", "score", "text", "time", "title", "type",
             "dead"},
    "pollopt": {"by", "id", "poll", "score", "text", "time", "type", "dead"},
}
REQUIRED = {
    "story": {"by", "descendants", "id", "score", "time", "title", "type"},
    "comment": {"by", "id", "parent", "text", "time", "type"},
    "job": {"by", "id", "score", "time", "title", "type"},
    "poll": {"by", "descendants", "id", "parts", "score", "text", "time", "title", "type"},
    "pollopt": {"by", "id", "poll", "score", "text", "time", "type"},
}


def docs_items() -> dict[int, dict]:
    return {int(k): v for k, v in json.loads(FIXTURE.read_text(encoding="utf-8")).items()}


def generated_part(items: dict) -> dict:
    """The consecutive generated ids (the docs items sit far below them)."""
    return {k: v for k, v in items.items() if k not in sample.DOCS_ITEM_IDS}


def live(items: dict) -> dict[int, dict]:
    return {k: v for k, v in items.items() if v is not None}


def check_structure(items: dict) -> None:
    """Shape and cross-references that hold for any generated sample."""
    ids = sorted(items)
    assert ids == list(range(ids[0], ids[-1] + 1)), "ids are not consecutive"
    times = [items[i]["time"] for i in ids if items[i] is not None]
    assert times == sorted(times), "times must not decrease as ids increase"
    for item_id, item in live(items).items():
        assert item["id"] == item_id
        kind = item["type"]
        if item.get("deleted"):
            assert set(item) == {"id", "deleted", "type", "time"}, item
            continue
        assert REQUIRED[kind] <= set(item) <= ALLOWED[kind], item
        assert item.get("dead", True) is True  # only ever sent as true
        assert "deleted" not in item
        if "kids" in item:
            assert item["kids"], "an empty kids list is never sent"
            for kid in item["kids"]:
                assert kid > item_id and items[kid]["parent"] == item_id
        if kind == "comment" and item["parent"] in items:
            parent = items[item["parent"]]
            assert item_id in parent["kids"] and parent["type"] in ("story", "poll", "comment")
        if kind == "poll":
            for part in item["parts"]:
                assert items[part]["type"] == "pollopt" and items[part]["poll"] == item_id
        if kind == "pollopt":
            assert item_id in items[item["poll"]]["parts"]
        if kind in ("story", "poll"):
            assert item["descendants"] == count_descendants(items, item_id)


def count_descendants(items: dict, item_id: int) -> int:
    kids = items[item_id].get("kids", [])
    return sum(1 + count_descendants(items, k) for k in kids if not items[k].get("dead"))


def comment_depth(items: dict, item_id: int) -> int:
    depth = 0
    while items.get(item_id) and items[item_id]["type"] == "comment":
        item_id = items[item_id]["parent"]
        depth += 1
    return depth


# -- generator -------------------------------------------------------------------------------


def test_same_arguments_give_identical_samples_and_another_seed_differs():
    first = generate_sample(1500, 1_000_000, seed=7)
    assert first == generate_sample(1500, 1_000_000, seed=7)
    assert json.dumps(first) == json.dumps(generate_sample(1500, 1_000_000, seed=7))  # key order
    assert first != generate_sample(1500, 1_000_000, seed=8)


def test_default_sample_ends_at_max_item_with_consecutive_ids():
    items = generate_sample()
    assert len(items) == sample.DEFAULT_N_IDS >= 5000
    assert max(items) == sample.DEFAULT_MAX_ITEM
    check_structure(items)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_ids=st.integers(1, 400), extra=st.integers(0, 10**6), seed=st.integers(0, 2**32))
def test_any_generated_sample_is_consistent(n_ids, extra, seed):
    items = generate_sample(n_ids, n_ids + extra, seed)
    assert len(items) == n_ids and max(items) == n_ids + extra
    check_structure(items)


def test_bundled_sample_has_every_kind_the_pipeline_must_handle():
    items = generated_part(load_sample())
    assert len(items) >= 5000
    check_structure(items)
    values = list(live(items).values())
    stories = [v for v in values if v["type"] == "story" and not v.get("deleted")]
    ask = [s for s in stories if s["title"].startswith("Ask HN:")]
    assert ask and all("text" in s and "url" not in s for s in ask)
    assert any(s["title"].startswith("Show HN:") and "url" in s for s in stories)
    assert any("url" not in s for s in stories if not s["title"].startswith("Ask HN:"))
    assert any(s.get("kids") for s in stories)
    assert any(v["type"] == "job" for v in values)
    polls = [v for v in values if v["type"] == "poll"]
    assert polls and all(len(p["parts"]) >= 2 for p in polls)
    assert any(v.get("deleted") and v["type"] == "comment" for v in values)
    assert any(v.get("dead") for v in values)
    assert any(v is None for v in items.values())
    comments = [v for v in values if v["type"] == "comment" and not v.get("deleted")]
    assert 0.7 < len(comments) / len(items) < 0.9
    assert max(comment_depth(items, c["id"]) for c in comments) >= 4
    all_text = " ".join(v.get("text", "") + v.get("title", "") for v in values)
    for entity in ("&#x27;", "&quot;", "&gt;", "<p>", '<a href="https:&#x2F;&#x2F;'):
        assert entity in all_text, entity
    for non_ascii in ("é", "ü", "日本語", "🚀"):
        assert non_ascii in all_text, non_ascii


@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_generating_100k_ids_takes_seconds_not_minutes():
    started = time.monotonic()
    items = generate_sample(100_000, 40_000_000, seed=1)
    elapsed = time.monotonic() - started
    assert len(items) == 100_000
    assert elapsed < 8, f"took {elapsed:.1f}s"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"n_ids": 0}, "n_ids"), ({"n_ids": 10, "max_item": 9}, "max_item"),
     ({"n_ids": "5"}, "'5'"), ({"seed": 1.5}, "1.5")],
)
def test_generator_refuses_bad_arguments_in_one_line(kwargs, named):
    with pytest.raises(ParameterError) as caught:
        generate_sample(**kwargs)
    assert named in str(caught.value) and "\n" not in str(caught.value)


# -- the bundled file --------------------------------------------------------------------------


@pytest.mark.slow
def test_committed_file_is_exactly_what_make_sample_regenerates(tmp_path):
    committed = sample.bundled_sample_path().read_bytes()
    assert sample.encode_items(sample.bundle(docs_items())) == committed
    # And the script itself, run as a user would, writes the same bytes.
    out = tmp_path / "regenerated.json.gz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample.py"), str(out)],
                   check=True, capture_output=True)
    assert out.read_bytes() == committed
    assert gzip.decompress(committed).startswith(b'{"')
    assert committed[4:8] == b"\0\0\0\0", "gzip mtime must be 0 for reproducible bytes"


def test_write_sample_is_byte_reproducible_and_round_trips(tmp_path):
    items = generate_sample(300, 5000, seed=3)
    first = sample.write_sample(tmp_path / "a.json.gz", items).read_bytes()
    second = sample.write_sample(tmp_path / "b.json.gz", items).read_bytes()
    assert first == second
    assert sample.read_sample(tmp_path / "a.json.gz") == items


def test_bundled_sample_includes_the_six_docs_items_verbatim():
    items = load_sample()
    for item_id, item in docs_items().items():
        assert items[item_id] == item
    assert max(items) == sample.DEFAULT_MAX_ITEM


# -- server: endpoints -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with SampleServer() as running:
        yield running


def get(server: SampleServer, path: str, timeout: float = 5) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_maxitem_and_items_answer_like_the_live_api(server):
    items = load_sample()
    assert server.base_url == f"http://127.0.0.1:{server.port}/v0"
    status, headers, body = get(server, "/v0/maxitem.json")
    assert (status, json.loads(body)) == (200, max(items))
    newest = max(k for k, v in items.items() if v is not None)
    status, headers, body = get(server, f"/v0/item/{newest}.json?print=pretty")
    assert status == 200 and json.loads(body) == items[newest]
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"].startswith("application/json")


def test_null_ids_and_unknown_ids_answer_null(server):
    null_id = next(k for k, v in load_sample().items() if v is None)
    for item_id in (null_id, 1, sample.DEFAULT_MAX_ITEM + 1):
        status, _, body = get(server, f"/v0/item/{item_id}.json")
        assert (status, body) == (200, b"null")


@pytest.mark.parametrize(
    "path", ["/", "/v0/item/abc.json", "/v0/topstories.json", "/v1/maxitem.json"])
def test_other_paths_are_404(server, path):
    assert get(server, path)[0] == 404


def test_docs_items_are_served_verbatim(server):
    for item_id, expected in docs_items().items():
        status, _, body = get(server, f"/v0/item/{item_id}.json")
        assert status == 200 and json.loads(body) == expected


def test_non_ascii_is_sent_as_utf8(server):
    items = load_sample()
    item_id = next(k for k, v in items.items() if v and "日本語" in v.get("text", ""))
    _, headers, body = get(server, f"/v0/item/{item_id}.json")
    assert "日本語".encode() in body and "charset=utf-8" in headers["Content-Type"]


def test_keep_alive_serves_many_requests_on_one_connection():
    with SampleServer(items={1: {"id": 1, "type": "story"}, 2: None}) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        bodies = []
        for path in ("/v0/item/1.json", "/v0/item/2.json", "/v0/maxitem.json"):
            conn.request("GET", path)
            bodies.append(conn.getresponse().read())
        conn.close()
        assert bodies == [b'{"id":1,"type":"story"}', b"null", b"2"]
        assert srv.requests_served == 3 and srv.connections_accepted == 1


def test_latency_is_applied_per_request():
    with SampleServer(items={1: None}, latency_ms=120) as srv:
        started = time.monotonic()
        for _ in range(3):
            get(srv, "/v0/item/1.json")
        assert time.monotonic() - started >= 3 * 0.12


def test_stop_closes_the_port():
    srv = SampleServer(items={1: None}).start()
    port = srv.port
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# -- server: faults ------------------------------------------------------------------------------


def test_http_500_fault():
    with SampleServer(items={1: None}, faults=Faults(http_500=1.0)) as srv:
        assert [get(srv, "/v0/item/1.json")[0] for _ in range(3)] == [500, 500, 500]
        assert srv.faults_injected["http_500"] == 3 == srv.requests_served


def test_http_429_fault_sends_retry_after():
    with SampleServer(items={1: None}, faults=Faults(http_429=1.0, retry_after_s=3)) as srv:
        status, headers, _ = get(srv, "/v0/item/1.json")
        assert (status, headers["Retry-After"]) == (429, "3")
        assert srv.faults_injected["http_429"] == 1


def test_faults_change_while_serving_and_the_request_log_says_which_request_got_which():
    """A burst: set_faults on, then off; the log keeps each request's arrival, path and fault."""
    with SampleServer(items={1: None}, record_requests=True) as srv:
        before = time.monotonic()
        assert get(srv, "/v0/item/1.json")[0] == 200
        srv.set_faults(Faults(http_429=1.0, retry_after_s=2))
        status, headers, _ = get(srv, "/v0/item/1.json")
        assert (status, headers["Retry-After"]) == (429, "2")
        srv.set_faults(Faults())
        assert get(srv, "/v0/maxitem.json")[0] == 200
        log = srv.request_log
    assert [(path, fault) for _, path, fault in log] == [
        ("/v0/item/1.json", None), ("/v0/item/1.json", "http_429"), ("/v0/maxitem.json", None)]
    times = [at for at, _, _ in log]
    assert before <= times[0] <= times[1] <= times[2] <= time.monotonic()


def test_set_faults_and_the_request_log_refuse_in_one_line():
    with SampleServer(items={1: None}) as srv:
        with pytest.raises(ParameterError, match=r"^faults must be a Faults instance, got \{'http_429': 1\.0\}$"):
            srv.set_faults({"http_429": 1.0})
        with pytest.raises(RuntimeError, match=r"record_requests=True"):
            srv.request_log


def test_timeout_fault_answers_only_after_the_sleep():
    faults = Faults(timeout=1.0, timeout_sleep_s=0.4)
    with SampleServer(items={1: None}, faults=faults) as srv:
        with pytest.raises(TimeoutError):
            get(srv, "/v0/item/1.json", timeout=0.1)
        started = time.monotonic()
        assert get(srv, "/v0/item/1.json", timeout=5)[2] == b"null"
        assert time.monotonic() - started >= 0.4
        assert srv.faults_injected["timeout"] == 2


def test_drop_fault_closes_without_a_response():
    with SampleServer(items={1: None}, faults=Faults(drop=1.0)) as srv:
        with pytest.raises(http.client.RemoteDisconnected):
            get(srv, "/v0/item/1.json")
        assert srv.faults_injected["drop"] == 1


def test_truncate_fault_sends_part_of_the_promised_body():
    item = {"id": 1, "type": "comment", "text": "x" * 200}
    with SampleServer(items={1: item}, faults=Faults(truncate=1.0)) as srv:
        with pytest.raises(http.client.IncompleteRead) as caught:
            get(srv, "/v0/item/1.json")
        assert 0 < len(caught.value.partial) < caught.value.expected + len(caught.value.partial)
        assert srv.faults_injected["truncate"] == 1


@pytest.mark.slow  # seconds of waiting on purpose: the full suite runs it
def test_trickle_fault_answers_at_once_then_sends_the_body_a_byte_at_a_time():
    item = {"id": 1, "type": "story", "title": "slow"}
    with SampleServer(items={1: item}, faults=Faults(trickle=1.0, trickle_interval_s=0.05)) as srv:
        connection = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        connection.request("GET", "/v0/item/1.json")
        response = connection.getresponse()  # the status line and headers come at once
        length = int(response.headers["Content-Length"])
        chunks = []
        while len(b"".join(chunks)) < length:
            chunks.append(response.read1(100))
        connection.close()
        assert response.status == 200 and json.loads(b"".join(chunks)) == item
        assert len(chunks) > length // 2  # arrived in pieces, not at once
        assert srv.faults_injected["trickle"] == 1


def test_faults_with_the_same_seed_repeat_and_rates_are_roughly_kept():
    def statuses(seed: int) -> list[int]:
        with SampleServer(items={1: None}, faults=Faults(http_500=0.3, seed=seed)) as srv:
            return [get(srv, "/v0/item/1.json")[0] for _ in range(60)]

    first = statuses(11)
    assert first == statuses(11)
    assert 5 <= first.count(500) <= 35 and set(first) == {200, 500}


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"http_500": 1.5}, "http_500=1.5"), ({"drop": -0.1}, "drop=-0.1"),
     ({"timeout": "x"}, "timeout='x'"), ({"http_500": 0.6, "http_429": 0.6}, "1.2"),
     ({"timeout_sleep_s": 0}, "timeout_sleep_s=0"), ({"retry_after_s": -1}, "retry_after_s")],
)
def test_faults_refuse_bad_values_in_one_line(kwargs, named):
    with pytest.raises(ParameterError) as caught:
        Faults(**kwargs)
    assert named in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"port": 70000}, "70000"), ({"port": -1}, "-1"), ({"latency_ms": -5}, "-5"),
     ({"latency_ms": float("nan")}, "nan"), ({"items": {}}, "non-empty"),
     ({"items": {0: None}}, "0")],
)
def test_server_refuses_bad_arguments_in_one_line(kwargs, named):
    with pytest.raises(ParameterError) as caught:
        SampleServer(**kwargs)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_serve_refuses_bad_error_rate():
    with pytest.raises(ParameterError, match=r"error_rate 2"):
        sample.serve(port=0, latency_ms=0, error_rate=2)


@pytest.mark.slow
def test_serve_prints_its_url_answers_and_stops_on_ctrl_c():
    code = "from hnpipe.sample import serve; serve(port=0, latency_ms=0, error_rate=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        first_line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v0", first_line)
        assert match, first_line
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        conn.request("GET", "/v0/maxitem.json")
        assert json.loads(conn.getresponse().read()) == sample.DEFAULT_MAX_ITEM
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopped after 1 requests" in out


# -- server: hostile answers (what the HN client's limits are tested against) -------------------


def test_endless_fault_sends_a_body_with_no_length_that_does_not_end():
    with SampleServer(items={1: None}, faults=Faults(endless=1.0)) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET /v0/item/1.json HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while len(received) < 4 << 20:  # far past any item; it keeps coming
                received += sock.recv(1 << 16)
        head = received.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200") and b"content-length" not in head
        assert srv.faults_injected["endless"] == 1


def test_huge_length_fault_declares_2_gib():
    with SampleServer(items={1: None}, faults=Faults(huge_length=1.0)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/v0/item/1.json")
        response = conn.getresponse()
        assert response.headers["Content-Length"] == str(2 * 1024**3)
        assert len(response.read1(1 << 16)) > 0
        conn.close()


def test_gzip_bomb_fault_is_small_on_the_wire_and_expands_past_a_thousandfold():
    with SampleServer(items={1: None}, faults=Faults(gzip_bomb=1.0, bomb_mb=64)) as srv:
        status, headers, body = get(srv, "/v0/item/1.json")
    assert status == 200 and headers["Content-Encoding"] == "gzip, gzip" and len(body) < 64 * 1024
    inner = zlib.decompress(body, 47)  # one layer: still small
    outer = zlib.decompressobj(47)
    expanded = 0
    while inner and expanded <= 64 << 20:  # bounded steps: the test must not hold 64 MiB either
        expanded += len(outer.decompress(inner, 1 << 20))
        inner = outer.unconsumed_tail
    assert expanded >= 1000 * len(body)


def test_deep_fault_nests_the_items_kids_as_deep_as_asked():
    with SampleServer(items={5: None}, faults=Faults(deep=1.0, deep_levels=100_000)) as srv:
        status, _, body = get(srv, "/v0/item/5.json")
    assert status == 200 and body.startswith(b'{"id":5,') and body.count(b"[") == 100_000


def test_serve_sample_offers_the_hostile_faults():
    parser = argparse.ArgumentParser()
    sample_cli.add_arguments(parser)
    args = parser.parse_args(["--endless", "0.1", "--huge-lengths", "0.1", "--gzip-bombs", "0.1",
                              "--deep", "0.1", "--bomb-mb", "8", "--deep-levels", "500"])
    assert (args.endless, args.huge_lengths, args.gzip_bombs, args.deep) == (0.1, 0.1, 0.1, 0.1)
    assert (args.bomb_mb, args.deep_levels) == (8, 500)
