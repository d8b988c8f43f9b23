"""`hnpipe run` against hostile HN API answers: it must end within the request deadline, and its
whole process tree (the CLI and its notebook kernels) must peak less than 100 MB above the same
run against a well-behaved API (issue 18: an endless answer took the tree past 12 GB).

    python benchmarks/hostile.py                  # writes benchmarks/hostile-results.md
    python benchmarks/hostile.py --n-items 2000 --no-write

Each run fetches `--n-items` ids from its own `hnpipe serve-sample --ids N` process (in a fresh
warehouse and runs folder); the hostile ones answer 30% of requests (seeded; maxitem's answer is
fine) with an endless body, a 2 GiB Content-Length, a 1 GiB gzip-inside-gzip or an item nested
100,000 deep, so several hostile answers are in flight at once. The tree's RSS (psutil, summed
over the CLI and every descendant) is sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "well-behaved": [],
    "endless body": ["--endless", "0.3"],
    "2 GiB Content-Length": ["--huge-lengths", "0.3"],
    "gzip inside gzip, 1 GiB": ["--gzip-bombs", "0.3", "--bomb-mb", "1024"],
    "nested 100,000 deep": ["--deep", "0.3", "--deep-levels", "100000"],
}
ALLOWED_EXTRA_MB = 100
DEADLINE_S = 60  # request_deadline_s's default


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def one_run(n_items: int, flags: list[str]) -> dict:
    env_base = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    server = subprocess.Popen([sys.executable, "-m", "hnpipe.cli", "serve-sample", "--port", "0",
                               "--ids", str(n_items), "--fault-seed", "0", *flags],
                              stdout=subprocess.PIPE, text=True, env=env_base)
    try:
        url = re.search(r"(http://\S+/v0)", server.stdout.readline()).group(1)
        with tempfile.TemporaryDirectory() as work:
            env = {**env_base, "HNPIPE_WAREHOUSE": f"duckdb:{work}/warehouse", "HNPIPE_RUNS_DIR": f"{work}/runs",
                   "HNPIPE_DEV_SCHEMA": "BENCH", "HNPIPE_PROGRESS": "0"}
            for key in ("HNPIPE_ENV", "HNPIPE_PR_ID", "HNPIPE_RUN_ID"):
                env.pop(key, None)
            started = time.monotonic()
            run = subprocess.Popen([sys.executable, "-m", "hnpipe.cli", "run", "--env", "local", "-p",
                                    f"hn_api_url={url}", "-p", f"n_items={n_items}"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            watched, peak = psutil.Process(run.pid), 0
            while run.poll() is None:
                peak = max(peak, tree_rss(watched))
                time.sleep(0.02)
            seconds = time.monotonic() - started
            _, err = run.communicate()
    finally:
        server.terminate()
        server.communicate(timeout=60)
    last = (err.strip().splitlines() or [""])[-1]
    return {"code": run.returncode, "seconds": seconds, "peak_mb": peak / 2**20, "last": last}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-items", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows, baseline, ok = [], None, True
    for mode, flags in MODES.items():
        load = os.getloadavg()
        result = one_run(args.n_items, flags)
        if baseline is None:
            baseline = result["peak_mb"]
        extra = result["peak_mb"] - baseline
        hostile = bool(flags)
        passed = not hostile or (result["code"] != 0 and extra < ALLOWED_EXTRA_MB and result["seconds"] < DEADLINE_S)
        ok &= passed
        row = (f"| {mode} | exit {result['code']} | {result['seconds']:.1f} s | {result['peak_mb']:.0f} MB | "
               f"{extra:+.0f} MB | {'ok' if passed else 'MISSED'} | {result['last'][:160].replace('|', '/')} | "
               f"{load[0]:.1f} |")
        print(row, flush=True)
        rows.append(row)
    if not args.no_write:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "benchmarks" / "hostile-results.md", "a") as out:
            out.write(f"\n### {stamp}: `hnpipe run -p n_items={args.n_items}`, {os.cpu_count()} cores\n\n"
                      "| API answers | run | wall | tree peak RSS | vs well-behaved (limit +100 MB) | | "
                      "the run's last line | load (1 min) |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
