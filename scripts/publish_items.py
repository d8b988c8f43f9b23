"""Fetch the N newest items from an HN API and publish them as ITEMS, without notebooks.

The pipeline's own library path, in a process of its own: hn.HttpHNClient -> ItemsBuilder
-> its Arrow batches -> DuckDBWarehouse.publish_arrow with ITEMS' quality gates (what
items.ipynb does; `--frame` publishes a pandas frame with publish_frame instead). The fault-tolerance tests kill it
at chosen moments, and the memory benchmark measures it:

    python scripts/publish_items.py --api http://127.0.0.1:8765/v0 --n 1000 --warehouse /tmp/wh

Each step is announced on stdout as one JSON line as it starts ({"phase": "fetch"}, then
"build", "publish"), and the last line says what happened: {"phase": "done", "rows": ...,
"null_ids": ..., "retries": ..., "memory": {...}}. A hnpipe error exits 1 with one line on
stderr, like `hnpipe`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from hnpipe.items import FetchedItems, ItemsBuilder


def _status_kb(field: str) -> int | None:
    """A /proc/self/status field in kB (VmRSS: resident now, VmHWM: the peak); None where
    there is no /proc (macOS): the phases still print, without memory figures."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _reset_peak_rss() -> bool:
    """Start VmHWM afresh from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _say(**fields: object) -> None:
    memory = {"rss_kb": _status_kb("VmRSS"), "peak_kb": _status_kb("VmHWM")}
    print(json.dumps({**fields, **memory, "t": time.monotonic()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="HN API base URL, e.g. http://127.0.0.1:8765/v0")
    parser.add_argument("--n", type=int, required=True, help="how many of the newest ids")
    parser.add_argument("--warehouse", required=True, help="the DuckDB warehouse directory")
    parser.add_argument("--database", default="LOCAL")
    parser.add_argument("--schema", default="TESTER")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--read-timeout", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--lock-timeout", type=float, help="seconds to wait for a locked file")
    parser.add_argument("--frame", action="store_true",
                        help="publish a pandas frame (publish_frame) instead of streaming the Arrow batches")
    args = parser.parse_args(argv)

    # Imports first, so the memory measured below is the work's, not the libraries'.
    from hnpipe import config, datasets, hn
    from hnpipe.environments import Target
    from hnpipe.errors import HnpipeError
    from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

    try:
        target = Target(args.database, args.schema)
        warehouse = DuckDBWarehouse(args.warehouse, lock_timeout_s=args.lock_timeout)
        run_id = config.new_run_id()
        rss_before = _status_kb("VmRSS")
        peak_was_reset = _reset_peak_rss()

        _say(phase="fetch", run_id=run_id)
        builder = ItemsBuilder()
        with hn.HttpHNClient(args.api, concurrency=args.concurrency, read_timeout=args.read_timeout,
                             max_attempts=args.max_attempts, progress=False) as client:
            report = hn.fetch_latest(client, args.n, builder.add)
        _say(phase="build", fetched=report.fetched, null_ids=len(report.null_ids))
        if args.frame:  # the frame path: sorted pandas frame, then publish_frame
            items = builder.to_frame()
        else:  # streamed: the builder's Arrow batches, sorted by ID inside DuckDB
            items = builder.to_arrow()
        del builder  # what is published lives in `items` alone, as in the notebook

        _say(phase="publish", rows=len(items))
        published = time.monotonic()
        gates = datasets.quality_gates(datasets.get("ITEMS"), n_items=args.n,
                                         null_ids=len(report.null_ids))
        warehouse.ensure_schema(target)
        if args.frame:
            rows = warehouse.publish_frame(target, "ITEMS", items, run_id, gates=gates)
        else:
            rows = warehouse.publish_arrow(target, "ITEMS", items, run_id, gates=gates)
        publish_seconds = time.monotonic() - published
    except HnpipeError as error:
        print(f"publish_items: error: {error}", file=sys.stderr)
        return 1
    peak_kb = _status_kb("VmHWM")
    # The yardstick, made after the peak was read: the ITEMS frame these rows make.
    frame = items if args.frame else FetchedItems(items).to_frame()
    memory = {"rss_before_kb": rss_before, "peak_kb": peak_kb,
              "peak_since": "measurement start" if peak_was_reset else "process start",
              "frame_bytes": int(frame.memory_usage(deep=True).sum())}
    _say(phase="done", rows=rows, null_ids=len(report.null_ids), retries=report.retries,
         fetch_seconds=report.seconds, publish_seconds=publish_seconds, memory=memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
