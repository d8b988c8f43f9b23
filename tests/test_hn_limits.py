"""Hostile HN API answers are bounded (issue 18, rows 1, 2 and 11): endless bodies, a 2 GiB
Content-Length, gzip inside gzip, an item nested 100,000 deep. Each is refused in one line naming
the id (or maxitem), the URL and the limit, quickly and without retrying, and the client never
holds more than the limit. The servers are real sockets (hnpipe.sample.SampleServer's faults).
"""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc

import pytest
from hnpipe.errors import FetchError, ParameterError
from hnpipe.hn import DEFAULT_MAX_ANSWER_BYTES, HttpHNClient
from hnpipe.hn_limits import (AnswerTooLarge, BadEncoding, BoundedBody, TooDeep, TruncatedAnswer,
                              parse_json)
from hnpipe.sample import Faults, SampleServer

FAST = {"backoff_base": 0.001, "backoff_max": 0.01, "progress": False}
ITEM = {"id": 7, "type": "story", "title": "fine", "kids": [8, 9]}


def refused(faults: Faults, call: str = "item", **client: object) -> tuple[str, float, int]:
    """(the one-line error, seconds it took, requests the server saw) for a call that must fail."""
    with SampleServer(items={7: ITEM}, faults=faults) as server:
        with HttpHNClient(server.base_url, request_deadline=30, **{**FAST, **client}) as http:
            started = time.monotonic()
            with pytest.raises(FetchError) as caught:
                http.get_item(7) if call == "item" else http.max_item()
            seconds = time.monotonic() - started
        message = str(caught.value)
        assert "\n" not in message and server.base_url in message
        return message, seconds, server.requests_served


def test_an_endless_body_stops_at_the_limit_naming_the_id_and_the_limit():
    message, seconds, requests = refused(Faults(endless=1.0))
    assert "item 7 from" in message and "larger than the 1 MiB limit" in message, message
    assert "on the wire" in message and "connection closed" in message and "max_answer_mb" in message
    assert requests == 1 and seconds < 10  # not retried, and long before the 30 s deadline


def test_a_2_gib_content_length_is_refused_before_reading_the_body():
    message, seconds, requests = refused(Faults(huge_length=1.0))
    assert "item 7 from" in message and "Content-Length 2,147,483,648" in message, message
    assert requests == 1 and seconds < 10


def test_gzip_inside_gzip_is_never_decompressed_past_the_limit():
    tracemalloc.start()
    try:
        message, seconds, requests = refused(Faults(gzip_bomb=1.0, bomb_mb=256))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "item 7 from" in message and "1 MiB limit (more than 1 MiB after decompression)" in message, message
    assert requests == 1 and seconds < 20
    assert peak < 32 * 2**20, peak  # 256 MiB inside: only about the limit was ever held


def test_the_limit_is_a_parameter_and_a_larger_answer_then_passes():
    big = {"id": 7, "type": "comment", "text": "x" * (1536 * 1024)}  # 1.5 MiB: over the default
    with SampleServer(items={7: big}) as server:
        with HttpHNClient(server.base_url, **FAST) as http:
            with pytest.raises(FetchError, match=r"item 7 from .* larger than the 1 MiB limit \(Content-Length"):
                http.get_item(7)
        with HttpHNClient(server.base_url, max_answer_bytes=2 << 20, **FAST) as http:
            assert http.get_item(7) == big


def test_maxitem_gets_the_same_limit():
    message, _, requests = refused(Faults(endless=1.0), call="maxitem")
    assert message.startswith("maxitem from") and "1 MiB limit" in message, message
    assert requests == 1


def test_an_item_nested_100000_deep_is_refused_naming_id_and_url_not_a_recursion_error():
    message, _, requests = refused(Faults(deep=1.0, deep_levels=100_000))
    assert "item 7 from" in message and "/item/7.json" in message, message
    assert "nested more than 1,024 levels deep" in message and requests == 1


def test_an_item_nested_a_little_deeper_than_an_item_is_refused_too():
    message, _, _ = refused(Faults(deep=1.0, deep_levels=3))
    assert "item 7 from" in message and "nested deeper than 2 levels" in message, message


def test_a_fetch_stops_at_the_first_oversized_answer():
    items = {i: {"id": i, "type": "story"} for i in range(1, 201)}
    with SampleServer(items=items, faults=Faults(endless=0.5, seed=1)) as server:
        with HttpHNClient(server.base_url, concurrency=8, **FAST) as http:
            with pytest.raises(FetchError, match=r"item \d+ from .* larger than the 1 MiB limit"):
                http.fetch_items(range(1, 201), lambda item: None)
        assert server.requests_served < 200


@pytest.mark.parametrize("bad", [0, 1023, 2 << 30, "1MB", True])
def test_max_answer_bytes_refuses_bad_values_in_one_line(bad):
    with pytest.raises(ParameterError, match=r"max_answer_bytes .* is out of range"):
        HttpHNClient("http://127.0.0.1:1/v0", max_answer_bytes=bad)


def test_the_default_limit_is_far_above_a_real_item_and_far_below_what_hurts():
    largest_real_item = 100 * 1024  # the largest HN items are tens of KB
    assert 10 * largest_real_item <= DEFAULT_MAX_ANSWER_BYTES <= 10 * 2**20


# -- hn_limits directly -------------------------------------------------------------------------


def test_gzip_and_gzip_inside_gzip_within_the_limit_decode_whole():
    data = json.dumps(ITEM).encode()
    for encoding, body in (("gzip", gzip.compress(data)), ("gzip, gzip", gzip.compress(gzip.compress(data))),
                           ("identity", data), (None, data)):
        bounded = BoundedBody(1024, encoding)
        for start in range(0, len(body), 7):  # as it arrives, in small pieces
            bounded.feed(body[start:start + 7])
        assert bounded.finish() == data, encoding


def test_the_wire_is_counted_before_decoding():
    bounded = BoundedBody(1024)
    bounded.feed(b"x" * 1024)
    with pytest.raises(AnswerTooLarge, match="more than 1,024 bytes on the wire"):
        bounded.feed(b"x")


def test_a_cut_off_gzip_is_truncated_and_unknown_or_stacked_codings_are_refused():
    body = gzip.compress(b"x" * 5000)
    bounded = BoundedBody(1 << 20, "gzip")
    bounded.feed(body[: len(body) // 2])
    with pytest.raises(TruncatedAnswer):
        bounded.finish()
    with pytest.raises(BadEncoding, match="'br' was not asked for"):
        BoundedBody(1024, "br")
    with pytest.raises(BadEncoding, match="stacks 3 codings"):
        BoundedBody(1024, "gzip, gzip, gzip")


def test_parse_json_bounds_depth_and_keeps_what_the_api_sends():
    assert parse_json(b'{"id": 1, "kids": [2, 3]}') == {"id": 1, "kids": [2, 3]}
    assert parse_json(b'{"id": 1, "text": "\\ud83d x"}') == {"id": 1, "text": "\ud83d x"}  # the lone surrogate
    with pytest.raises(TooDeep):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(TooDeep):  # after a lone surrogate (orjson refuses it; the fallback must not recurse)
        parse_json(b'["\\ud83d", ' + b"[" * 100_000 + b"]" * 100_000 + b"]")
    with pytest.raises(ValueError):
        parse_json(b'{"id": 1,')
