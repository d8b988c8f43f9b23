"""Read items from the Hacker News API: a real HTTP client and an in-memory stub.

    client = HttpHNClient("https://hacker-news.firebaseio.com/v0")
    report = fetch_latest(client, 1000, rows.append)   # the 1000 newest items
    report.null_ids                                    # ids that answered `null`, skipped

`fetch_items` calls the sink once per non-null item on the *calling* thread, so a sink can
append to a list or write to a database without locks. For the bundled sample, start a
`hnpipe.sample.SampleServer` and pass its `base_url`.

The names live in three modules, one concern each: hn_api (the interface, the report, the stub,
argument checks), hn_http (the HTTP client) and hn_limits (what one answer may cost).
"""

from __future__ import annotations

from hnpipe.hn_api import (LIVE_API_URL, FetchReport, HNClient, Sink, StubHNClient, check_base_url,
                           check_resolved_host, fetch_latest, latest_ids, repair_text, show_progress)
from hnpipe.hn_http import HttpHNClient
from hnpipe.hn_limits import DEFAULT_MAX_ANSWER_BYTES

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "FetchReport", "HNClient", "HttpHNClient", "LIVE_API_URL", "Sink",
           "StubHNClient", "check_base_url", "check_resolved_host", "fetch_latest", "latest_ids", "repair_text",
           "show_progress"]
