"""The HN API as the pipeline uses it (HNClient), what a fetch reports, and the in-memory stub.

The HTTP client is hnpipe.hn_http.HttpHNClient; callers import both through hnpipe.hn.
"""

from __future__ import annotations

import logging
import math
import re
import time
from abc import ABC, abstractmethod
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from hnpipe.errors import FetchError, ParameterError
from hnpipe.hn_url import address_kind, host_kind, shown_url, url_problem
from hnpipe.progress import OFF, choose

__all__ = ["FetchReport", "HNClient", "StubHNClient", "fetch_latest", "latest_ids", "show_progress",
           "LIVE_API_URL"]

log = logging.getLogger("hnpipe.hn")

Sink = Callable[[dict], None]

LIVE_API_URL = "https://hacker-news.firebaseio.com/v0"


@dataclass
class FetchReport:
    """What one `fetch_items` call did."""

    requested: int  # ids asked for
    fetched: int  # items passed to the sink
    null_ids: list[int] = field(default_factory=list)  # ids that answered null, sorted
    retries: int = 0  # extra attempts across all requests
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"fetched {self.fetched} of {self.requested} items ({len(self.null_ids)} null) "
                f"in {self.seconds:.1f}s with {self.retries} retries")


def _check_id(item_id: object) -> int:
    if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id < 1:
        raise ParameterError(f"item id {item_id!r} is not allowed: ids are integers >= 1")
    return item_id


def latest_ids(max_item: int, n: int) -> range:
    """The `n` newest ids, `max_item-n+1 .. max_item` (fewer if that would go below id 1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParameterError(f"n_items {n!r} is not allowed: use an integer >= 1")
    _check_id(max_item)
    return range(max(1, max_item - n + 1), max_item + 1)


class HNClient(ABC):
    """The HN API as the pipeline uses it: the newest id, one item, many items."""

    @abstractmethod
    def max_item(self) -> int:
        """The current largest item id."""

    @abstractmethod
    def get_item(self, item_id: int) -> dict | None:
        """The item's JSON as a dict, or None when the API answers `null`."""

    def fetch_items(self, ids: Iterable[int], sink: Sink) -> FetchReport:
        """Call `sink(item)` once per non-null item, on this thread; count null ids.

        This default fetches one id at a time; HttpHNClient overrides it to fetch concurrently.
        """
        started = time.monotonic()
        report = FetchReport(requested=0, fetched=0)
        for item_id in ids:
            _check_id(item_id)
            report.requested += 1
            item = self.get_item(item_id)
            if item is None:
                report.null_ids.append(item_id)
            else:
                sink(item)
                report.fetched += 1
        report.null_ids.sort()
        report.seconds = time.monotonic() - started
        log.info("%s", report.summary())
        return report


def fetch_latest(client: HNClient, n: int, sink: Sink) -> FetchReport:
    """Fetch the `n` newest items (ids `maxitem-n+1 .. maxitem`) into `sink`."""
    latest_ids(1, n)  # refuse a bad n before touching the network
    return client.fetch_items(latest_ids(client.max_item(), n), sink)


class StubHNClient(HNClient):
    """An in-memory HN API for unit tests: `items` maps id -> item dict, or None for null."""

    def __init__(self, items: Mapping[int, dict | None], max_item: int | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ParameterError(
                f"items must be a mapping of id -> item, got {type(items).__name__}")
        self._items = items
        self._max_item = max(items, default=0) if max_item is None else _check_id(max_item)

    def max_item(self) -> int:
        if self._max_item < 1:
            raise FetchError("the stub HN client has no items, so there is no max item")
        return self._max_item

    def get_item(self, item_id: int) -> dict | None:
        item = self._items.get(_check_id(item_id))
        if item is not None and item.get("id") != item_id:
            raise FetchError(
                f"item {item_id}: the stub answered an item with id {item.get('id')!r}")
        # A copy, like a fresh HTTP response: a sink that edits items can't change the stub.
        return None if item is None else repair_text(deepcopy(item))


_SURROGATE = re.compile("[\ud800-\udfff]")


def repair_text(item: dict) -> dict:
    """`item` with every lone UTF-16 surrogate in its strings replaced by U+FFFD.

    JSON may escape half a character ("\\ud83d" alone); Python decodes it to a str that no
    UTF-8 encoder (Arrow, DuckDB, Snowflake) accepts. Decided: store the item, with U+FFFD
    where the broken character was, and log which item and field, rather than fail a run of
    thousands of items over one mangled comment."""
    for key, value in item.items():
        if isinstance(value, str) and _SURROGATE.search(value):
            item[key] = _SURROGATE.sub("\ufffd", value)
            log.warning("item %s: field %s held a lone surrogate (half a UTF-16 pair); stored as U+FFFD",
                        item.get("id"), key)
    return item


def _check_number(value: object, name: str, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise ParameterError(f"{name} {value!r} is out of range: use {low:g}..{high:g}")
    return float(value)


def _check_count(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(f"{name} {value!r} is out of range: use an integer {low}..{high}")
    return value


def check_base_url(base_url: object) -> str:
    """Return `base_url` without a trailing slash if it is an acceptable http(s) API base (see
    hn_url.url_problem: no credentials, query, fragment, impossible port or link-local host),
    else refuse it in one line that never echoes a password."""

    problem = url_problem(base_url) if isinstance(base_url, str) else "not a string"
    if problem:
        shown = shown_url(base_url) if isinstance(base_url, str) else base_url
        raise ParameterError(f"hn_api_url {shown!r} is not allowed: {problem}")
    return base_url.rstrip("/")


def check_resolved_host(base_url: str, private_hosts: Iterable[str] | None) -> None:
    """Refuse a host whose name resolves to a link-local (metadata) address, or, when
    `private_hosts` is given (runs outside local), to a loopback or private one it does not list.
    A name that does not resolve is left to the request, which fails with its own error."""
    import ipaddress
    import socket


    host = urlsplit(base_url).hostname or ""
    allowed = None if private_hosts is None else {h.strip("[]").rstrip(".").lower() for h in private_hosts}
    if allowed is not None and host.lower() in allowed:
        return
    kinds = {host_kind(host)}
    if kinds == {"public"}:
        try:
            kinds = {address_kind(ipaddress.ip_address(info[4][0].partition("%")[0]))
                     for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
        except (OSError, UnicodeError, ValueError):
            return
    if kinds & {"link-local", "unusable"}:
        raise ParameterError(f"hn_api_url host {host} resolves to a link-local, cloud metadata or unusable "
                             "address: the HN client never goes there")
    if allowed is not None and "private" in kinds:
        raise ParameterError(f"hn_api_url host {host} resolves to a loopback or private address: outside local "
                             "runs list it in hn_api_private_hosts if it really serves the HN API")


def show_progress(progress: bool | None) -> bool:
    """Whether a fetch shows progress: explicit True/False wins; otherwise hnpipe.progress
    decides from HNPIPE_PROGRESS, CI and where this runs (kernel, terminal, `hnpipe run`)."""
    return choose(progress)[0] != OFF


def _json_type(value: object) -> str:
    """What a JSON value is, in the API's terms: a string "1008" is not the number 1008."""
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


class IdSource:
    """The ids to fetch, taken one at a time by a fetch's tasks; each id checked."""

    def __init__(self, ids: Iterable[int]) -> None:
        self._ids = iter(ids)

    def __call__(self) -> int | None:
        """The next id, or None when there are no more."""
        item_id = next(self._ids, _NO_MORE_IDS)
        return None if item_id is _NO_MORE_IDS else _check_id(item_id)


_NO_MORE_IDS = object()  # not None: a None among the ids must be refused, not end the fetch
