"""HN client throughput, and what the stand-in server can serve, on loopback.

    python benchmarks/client.py                       # all phases, writes benchmarks/client-results.md
    python benchmarks/client.py --ids 20000 --no-write

Phases, each against `hnpipe serve-sample --ids N` in its own process (so the server's
Python does not share the client's GIL):

1. server alone: a minimal asyncio client (raw sockets, keep-alive, no JSON decoding) with 64
   connections: the rate the server can answer, which must stay well above the client's so
   that the client, not the server, is what phase 2 measures;
2. HttpHNClient.fetch_items at 0 ms, concurrency 32 (the default), into an ItemsBuilder as
   the pipeline does: items/s against the target 2.5 x 1,700 (issue 17's "today");
3. the same at 100 ms latency with 256 in flight: seconds against N x 0.1 / 256 (the bound
   is 1.2 times that).

The load average (`uptime`) is recorded before and after each phase: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hnpipe import hn  # noqa: E402 - after the path line, so this worktree's hnpipe is measured
from hnpipe.items import ItemsBuilder  # noqa: E402

TODAY_ITEMS_PER_S = 1_700  # issue 17: the threaded requests client at 0 ms, 32 threads
TARGET_RATIO = 2.5
LATENCY_BOUND = 1.2


def load() -> str:
    return os.getloadavg().__repr__()


class Server:
    """`hnpipe serve-sample` in its own process, on a free port."""

    def __init__(self, ids: int, latency_ms: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hnpipe.cli", "serve-sample", "--port", "0", "--ids", str(ids),
             "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
        line = self.process.stdout.readline()
        match = re.search(r"at (http://\S+) \(max item (\d+)\)", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"serve-sample did not start: {line!r}")
        self.base_url, self.max_item = match.group(1), int(match.group(2))

    def stop(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        return out.strip()


async def _raw_worker(host: str, port: int, prefix: str, ids: list[int]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    for item_id in ids:
        writer.write(f"GET {prefix}/item/{item_id}.json HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


def raw_rate(base_url: str, ids: range, connections: int = 64) -> float:
    """Requests per second a minimal keep-alive client gets from the server."""
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", base_url)
    host, port, prefix = match.group(1), int(match.group(2)), match.group(3)
    ids = list(ids)

    async def main() -> int:
        parts = [ids[n::connections] for n in range(connections)]
        return sum(await asyncio.gather(*(_raw_worker(host, port, prefix, p) for p in parts)))

    started = time.perf_counter()
    done = asyncio.run(main())
    return done / (time.perf_counter() - started)


def client_run(base_url: str, ids: range, concurrency: int, lib: Path = ROOT / "lib") -> dict:
    """One fetch_items into an ItemsBuilder, as the pipeline does, in a process of its own
    importing hnpipe from `lib` (this worktree's, or main's for the client before):
    {"seconds", "cpu_seconds" (the client process's user+system), "rows"}."""
    code = ("import json,sys,time,os; from hnpipe import hn; from hnpipe.items import ItemsBuilder\n"
            "b=ItemsBuilder(); c=hn.HttpHNClient(sys.argv[1], concurrency=int(sys.argv[4]), progress=False)\n"
            "ids=range(int(sys.argv[2]), int(sys.argv[3])+1); t=time.perf_counter(); c0=os.times()\n"
            "c.fetch_items(ids, b.add); s=time.perf_counter()-t; c1=os.times()\n"
            "print(json.dumps({'seconds': s, 'cpu_seconds': c1.user+c1.system-c0.user-c0.system, 'rows': len(b)}))")
    out = subprocess.run([sys.executable, "-c", code, base_url, str(ids[0]), str(ids[-1]), str(concurrency)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(lib)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=30_000, help="ids fetched at 0 ms (default 30,000)")
    parser.add_argument("--latency-ids", type=int, default=10_000, help="ids fetched at 100 ms (default 10,000)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = parser.parse_args()
    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    server = Server(args.ids)
    try:
        ids = range(server.max_item - args.ids + 1, server.max_item + 1)
        raw_rate(server.base_url, ids[:2000])  # warm up (connections, caches)
        before = load()
        server_rate = raw_rate(server.base_url, ids)
        say(f"| server alone (minimal client, 64 connections) | {server_rate:,.0f} req/s | load {before} |")
        before = load()
        seconds, rows = client_run(server.base_url, ids, 32)
        rate = args.ids / seconds
        say(f"| HttpHNClient, 0 ms, 32 in flight, {args.ids:,} ids ({rows:,} rows) | {rate:,.0f} items/s = "
            f"{rate / TODAY_ITEMS_PER_S:.2f} x 1,700 (target {TARGET_RATIO}x); server at "
            f"{rate / server_rate:.0%} of its own rate | load {before} -> {load()} |")
    finally:
        server.stop()

    server = Server(args.latency_ids, latency_ms=100)
    try:
        ids = range(server.max_item - args.latency_ids + 1, server.max_item + 1)
        before = load()
        seconds, rows = client_run(server.base_url, ids, 256)
        ideal = args.latency_ids * 0.1 / 256
        say(f"| HttpHNClient, 100 ms, 256 in flight, {args.latency_ids:,} ids | {seconds:.2f} s = "
            f"{seconds / ideal:.2f} x N x latency / 256 ({ideal:.2f} s; bound {LATENCY_BOUND}x = "
            f"{LATENCY_BOUND * ideal:.2f} s) | load {before} -> {load()} |")
    finally:
        server.stop()

    if not args.no_write:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "benchmarks" / "client-results.md", "a") as out:
            out.write(f"\n### {stamp}, {os.cpu_count()} cores\n\n| phase | result | load (1/5/15 min) |\n"
                      "|---|---|---|\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
