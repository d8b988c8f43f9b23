"""How a fetch slows down after a burst of 429s, and what the paced wait costs the answers in flight.

    python benchmarks/throttle.py

1. Bursts: ids fetched from the sample server, which answers every request 429 (Retry-After: 1)
   for a few seconds in the middle; requests a second the server saw before, during, after
   (the first 2 s) and later (4 to 6 s after) the burst. With a budget of 200/s (16 in flight at
   20 ms) and without one (32 in flight at 100 ms). The scenario is tests/helpers_throttle.py's.
2. The paced wait: a budgeted fetch (32 in flight, 0 ms) whose ids wait for their tokens as the
   client did before (a blocking sleep on its event loop: a plain generator over `Paced`) and as
   it does now (awaited): median and 90th-percentile time from a request's start to its answer
   in the client, and the rate reached.

Results: benchmarks/throttle-results.md, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the burst scenario the tests measure, not a copy of it
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_throttle import TimedClient, fetch_through_a_burst  # noqa: E402
from process_tree import load_average  # noqa: E402

from hnpipe import budget  # noqa: E402
from hnpipe.sample import SampleServer  # noqa: E402


def paced_wait(rate: float, n_ids: int, blocking: bool) -> tuple[float, float, float]:
    """(median s, p90 s from a request's start to its answer, requests/s reached)."""
    items = {i: {"id": i, "type": "story"} for i in range(1, n_ids + 1)}
    with SampleServer(items=items) as server:
        paced = budget.Paced(range(1, n_ids + 1), budget.TokenBucket(rate))
        ids = (item_id for item_id in paced) if blocking else paced
        client = TimedClient(server.base_url, concurrency=32, progress=False)
        report = client.fetch_items(ids, lambda item: None)
    took = sorted(client.took)
    return statistics.median(took), took[int(0.9 * len(took))], n_ids / report.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "throttle-results.md")
    args = parser.parse_args(argv)
    load_before = load_average()
    lines = [f"# Throttling after 429 bursts, and the paced wait ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"`python benchmarks/throttle.py` on {os.cpu_count()} cores; load average before: {load_before}.", "",
             "## Requests a second the server saw around a 3 s (budget) or 2 s (none) burst of 429s", "",
             "| fetch | before | during | after (0-2 s) | later (4-6 s) | penalties | ids once each | shortest wait after a 429 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, n_ids, kwargs in (
            ("budget 200/s, 16 in flight, 20 ms", 1_100, dict(rate=200, concurrency=16, latency_ms=20, burst_s=3.0)),
            ("no budget, 32 in flight, 100 ms", 1_500, dict(rate=None, concurrency=32, latency_ms=100, burst_s=2.0))):
        burst = fetch_through_a_burst(n_ids, **kwargs)
        once = sorted(burst.ids) == list(range(1, n_ids + 1))
        lines.append(f"| {name} | {burst.before:.0f} | {burst.during:.0f} | {burst.after:.0f} | {burst.later:.0f} | "
                     f"{burst.penalties if kwargs['rate'] else '-'} | {'yes' if once else 'NO'} | {min(burst.retry_waits):.2f} s |")
        print(lines[-1], flush=True)
    lines += ["", "## The paced wait: a request's start to its answer, in the client (32 in flight, 0 ms)", "",
              "| budget | wait | median | p90 | requests/s |", "|---|---|---|---|---|"]
    for rate, n_ids in ((10, 40), (100, 300), (1_000, 3_000)):
        for blocking in (True, False):
            median, p90, reached = paced_wait(rate, n_ids, blocking)
            lines.append(f"| {rate:,}/s | {'blocking sleep (before)' if blocking else 'awaited (now)'} | "
                         f"{median * 1000:.1f} ms | {p90 * 1000:.1f} ms | {reached:,.0f} |")
            print(lines[-1], flush=True)
    lines += ["", "The same bursts on the client before it slowed down (measured by hand at bda95fc, load 2.4): "
              "budget 200 / 16 / 294 / 200 (after the burst the full bucket let 200 out at once), no budget "
              "311 / 32 / 280 / 306: during the burst the retries held every slot either way; nothing slowed after it.",
              "", f"Load average after: {load_average()}."]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
