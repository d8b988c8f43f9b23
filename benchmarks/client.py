"""HN client throughput, and what the stand-in server can serve, on loopback.

    python benchmarks/client.py                       # all phases, appends to benchmarks/client-results.md
    python benchmarks/client.py --ids 20000 --no-write

Phases, each against `hnpipe serve-sample --ids N` in its own process (so the server's
Python does not share the client's GIL), each client in a process of its own:

1. server alone: a minimal asyncio client (raw sockets, keep-alive, no JSON decoding) with 64
   connections, and the server's own CPU per request: the rate it can answer, which must stay
   well above the clients' so that the client, not the server, is what is measured;
2. at 0 ms, fetch_items into an ItemsBuilder as the pipeline does, 32 in flight: the requests
   client this branch replaced (main's hn.py at BEFORE_COMMIT, run from a copy of lib/), the
   aiohttp client in one process, and with its default processes (several for 20,000+ ids):
   items/s, and the CPU seconds each spent per item (children included), against the target
   2.5 x 1,700 items/s and against the requests client measured under the same load;
3. at 100 ms latency with 256 in flight: seconds against N x 0.1 / 256 (bound 1.2 times it).

The load average is recorded with each phase: the machine is shared, and at a load above its
cores the wall-clock rates measure the neighbours; CPU per item moves much less.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


TODAY_ITEMS_PER_S = 1_700  # issue 17: the threaded requests client at 0 ms, 32 threads
TARGET_RATIO = 2.5
LATENCY_BOUND = 1.2


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


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


BEFORE_COMMIT = "b644c52"  # main with the requests client, just before this branch merged


def old_lib(workdir: Path) -> Path:
    """A copy of lib/ whose hn.py is the requests client of BEFORE_COMMIT."""
    lib = workdir / "lib"
    shutil.copytree(ROOT / "lib", lib)
    (lib / "hnpipe" / "hn.py").write_bytes(subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:lib/hnpipe/hn.py"], cwd=ROOT, capture_output=True, check=True).stdout)
    return lib


def client_run(base_url: str, ids: range, concurrency: int, lib: Path = ROOT / "lib",
               processes: int | None = None) -> dict:
    """One fetch_items into an ItemsBuilder, as the pipeline does, in a process of its own
    importing hnpipe from `lib`: {"seconds", "cpu_seconds" (user+system, children included), "rows"}."""
    extra = "" if processes is None else f", processes={processes}"
    code = ("import json,sys,time,os; from hnpipe import hn; from hnpipe.items import ItemsBuilder\n"
            f"b=ItemsBuilder(); c=hn.HttpHNClient(sys.argv[1], concurrency=int(sys.argv[4]), progress=False{extra})\n"
            "ids=range(int(sys.argv[2]), int(sys.argv[3])+1); t=time.perf_counter(); c0=os.times()\n"
            "c.fetch_items(ids, b.add); s=time.perf_counter()-t; c1=os.times()\n"
            "cpu=sum(c1[:4])-sum(c0[:4])\n"
            "print(json.dumps({'seconds': s, 'cpu_seconds': cpu, 'rows': len(b)}))")
    out = subprocess.run([sys.executable, "-c", code, base_url, str(ids[0]), str(ids[-1]), str(concurrency)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(lib)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def server_cpu(server: Server) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return times.user + times.system


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

    with tempfile.TemporaryDirectory() as work:
        before_lib = old_lib(Path(work))
        server = Server(args.ids)
        try:
            ids = range(server.max_item - args.ids + 1, server.max_item + 1)
            raw_rate(server.base_url, ids[:2000])  # warm up (connections, caches)
            load_before, cpu_before = load(), server_cpu(server)
            server_rate = raw_rate(server.base_url, ids)
            per_request = (server_cpu(server) - cpu_before) / len(ids)
            say(f"| server alone (minimal client, 64 connections) | {server_rate:,.0f} req/s; the server's CPU "
                f"{per_request * 1e6:.0f} us per request (= {1 / per_request:,.0f} req/s per core) | | {load_before} |")
            runs = {}
            for name, lib, processes in (("requests client (before), 32 threads", before_lib, None),
                                         ("aiohttp client, 1 process", ROOT / "lib", 1),
                                         ("aiohttp client, default processes", ROOT / "lib", None)):
                load_before = load()
                runs[name] = run = client_run(server.base_url, ids, 32, lib, processes)
                rate = args.ids / run["seconds"]
                before = runs["requests client (before), 32 threads"]
                say(f"| {name}, 0 ms, 32 in flight, {args.ids:,} ids ({run['rows']:,} rows) | {rate:,.0f} items/s = "
                    f"{rate / TODAY_ITEMS_PER_S:.2f} x 1,700 (target {TARGET_RATIO}x); {rate * before['seconds'] / args.ids:.2f} "
                    f"x the requests client's rate | {run['cpu_seconds'] / args.ids * 1e6:.0f} us CPU per item "
                    f"({before['cpu_seconds'] / run['cpu_seconds']:.2f} x less than before) | {load_before} -> {load()} |")
        finally:
            server.stop()

    server = Server(args.latency_ids, latency_ms=100)
    try:
        ids = range(server.max_item - args.latency_ids + 1, server.max_item + 1)
        load_before = load()
        run = client_run(server.base_url, ids, 256)
        ideal = args.latency_ids * 0.1 / 256
        say(f"| aiohttp client, 100 ms, 256 in flight, {args.latency_ids:,} ids | {run['seconds']:.2f} s = "
            f"{run['seconds'] / ideal:.2f} x N x latency / 256 ({ideal:.2f} s; bound {LATENCY_BOUND}x = "
            f"{LATENCY_BOUND * ideal:.2f} s) | {run['cpu_seconds'] / args.latency_ids * 1e6:.0f} us CPU per item | "
            f"{load_before} -> {load()} |")
    finally:
        server.stop()

    if not args.no_write:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "benchmarks" / "client-results.md", "a") as out:
            out.write(f"\n### {stamp}, {os.cpu_count()} cores\n\n| phase | result | CPU | load (1/5/15 min) |\n"
                      "|---|---|---|---|\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
