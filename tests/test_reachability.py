"""An unreachable HN API is reported within 3 s of the first attempt, while retries go on
(hnpipe.reachability beside the fetch); a reachable but slow one is not reported."""

from __future__ import annotations

import time

import pytest

from hnpipe import pipeline, progress, reachability
from hnpipe.errors import HnpipeError
from hnpipe.sample import SampleServer


def fetch_reporting(monkeypatch, url: str, n_items: int = 3) -> tuple[list[tuple[float, str]], float, BaseException | None]:
    said: list[tuple[float, str]] = []
    monkeypatch.setattr(progress, "say", lambda line: said.append((time.monotonic(), line)))
    step = pipeline.start("ITEMS", {"environment": "local", "hn_api_url": url, "n_items": n_items,
                                    "request_deadline_s": 6})
    started, error = time.monotonic(), None
    try:
        step.fetch()
    except (HnpipeError, OSError) as exc:
        error = exc
    return [(when - started, line) for when, line in said], time.monotonic() - started, error


@pytest.mark.slow
@pytest.mark.parametrize("url,why", [("http://127.0.0.1:9/v0", "is refused (nothing listens there)"),
                                     ("http://hn-api.invalid/v0", "does not resolve")])
def test_an_unreachable_api_is_reported_within_3_s_before_the_retries_give_up(clean_env, monkeypatch,
                                                                              url: str, why: str) -> None:
    said, took, error = fetch_reporting(monkeypatch, url)
    assert error is not None  # the client's own one-line error still ends the fetch
    if took <= 3.0:
        return  # the client gave up within 3 s itself, saying why
    ((when, line),) = said
    assert when <= 3.0, (when, line)
    assert line.startswith(f"cannot reach the HN API at {url} after ") and why in line
    assert "still retrying, for up to 6 s per request" in line


def test_a_reachable_slow_api_is_not_reported(clean_env, monkeypatch) -> None:
    with SampleServer(latency_ms=400) as slow:  # each answer 0.4 s: quiet spells, but it answers
        said, _, error = fetch_reporting(monkeypatch, slow.base_url, n_items=8)
    assert error is None and said == []


def test_probe_names_what_failed() -> None:
    assert "refused" in reachability.probe("http://127.0.0.1:9/v0")
    assert "does not resolve" in reachability.probe("https://hn-api.invalid/v0")
    with SampleServer() as server:
        assert reachability.probe(server.base_url) is None
