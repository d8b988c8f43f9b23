"""The long fault drill: the fault-tolerance tests with more trials, and the slow cases.

    python benchmarks/faults.py                 # 25 SIGKILL trials, ~10-15 minutes on 2 cores
    python benchmarks/faults.py --trials 40 --seed 7

Runs tests/test_faults.py, test_fault_crash.py and test_fault_inputs.py with
HNPIPE_FAULT_DRILL=long, which adds what the test command leaves out for time:

* SIGKILL of the library publish path at random moments (--trials, default 25), and of
  `hnpipe run` together with its kernels (6 trials);
* `hnpipe run` against a separate `hnpipe serve-sample` injecting every fault kind
  (500, 429 + Retry-After, 11 s timeouts, dropped connections, truncated bodies), and
  against one failing 90% of requests (the run must fail cleanly);
* more seeds for the library-level API faults, more pairs of concurrent runs, and
  1,500 hypothesis examples per fuzzed input instead of 120.

Each trial's outcome is logged; the summary (which version each table held after each
kill, how many runs failed cleanly) goes to stdout and benchmarks/faults-results.md.
Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = ["tests/test_faults.py", "tests/test_fault_crash.py", "tests/test_fault_inputs.py"]


def summarise(trials: list[dict]) -> list[str]:
    """Markdown lines: what happened, per kind of trial."""
    lines = []
    kills = [t for t in trials if t["test"] == "sigkill_library"]
    if kills:
        lines += [f"### SIGKILL of the publish process ({len(kills)} trials)", "",
                  "| killed during | trials | ITEMS old afterwards | ITEMS new | finished first | "
                  "staging table left (cleared by the next publish) |", "|---|---:|---:|---:|---:|---:|"]
        for phase in ("fetch", "publish"):
            mine = [t for t in kills if t["phase"] == phase]
            lines.append(f"| {phase} | {len(mine)} | {sum(t['items'] == 'old' for t in mine)} | "
                         f"{sum(t['items'] == 'new' for t in mine)} | "
                         f"{sum(not t['killed'] for t in mine)} | "
                         f"{sum(t['staging_left'] > 0 for t in mine)} |")
        lines.append("")
    runs = [t for t in trials if t["test"] == "sigkill_run"]
    if runs:
        states = Counter(f"ITEMS {t['ITEMS']}, COMMENTS {t['COMMENTS']}, STORIES {t['STORIES']}"
                         for t in runs)
        lines += [f"### SIGKILL of `hnpipe run` and its kernels ({len(runs)} trials, "
                  f"at random moments of a {runs[0]['run_seconds']:.0f} s run)", "",
                  "| tables afterwards | trials |", "|---|---:|"]
        lines += [f"| {state} | {count} |" for state, count in states.most_common()]
        lines += ["", f"Staging tables left: {sum(t['staging_left'] > 0 for t in runs)} trials; "
                  "every re-run cleared them and published all three tables whole.", ""]
    api = [t for t in trials if t["test"].startswith("api_faults")]
    if api:
        lines += [f"### A flaky HN API ({len(api)} runs)", "",
                  "| path | seed | outcome | faults injected |", "|---|---:|---|---|"]
        for t in api:
            if t["test"] == "api_faults_library":
                path = f"library, {t['attempts']} attempts per request"
            else:
                path = f"`hnpipe run` + `serve-sample`, API {t['faults']}"
            outcome = t.get("outcome") or ("fetched" if t.get("exit") == 0 else "failed")
            if outcome == "fetched":
                outcome = "published exactly the expected ids"
            elif outcome == "failed":
                outcome = "failed cleanly, tables unchanged"
            injected = ", ".join(f"{k} {v}" for k, v in t["injected"].items())
            lines.append(f"| {path} | {t['seed']} | {outcome} | {injected} |")
        lines.append("")
    pairs = [t for t in trials if t["test"] == "two_runs"]
    if pairs:
        lines += [f"### Two runs at once ({len(pairs)} pairs)", "",
                  "Both runs of every pair succeeded; ITEMS ended as one run wrote it ("
                  + ", ".join(f"n_items {t['sizes']} -> {t['items_from']}" for t in pairs)
                  + "), COMMENTS and STORIES matched it, the history kept all 6 rows.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25, help="SIGKILL trials of the publish path")
    parser.add_argument("--seed", type=int, help="seed for kill moments (default: random, printed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "faults-results.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -k sigkill")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials {args.trials}: use 1 or more")
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)

    with tempfile.TemporaryDirectory(prefix="hnpipe-faults-") as scratch:
        log = Path(scratch) / "trials.jsonl"
        env = {**os.environ, "HNPIPE_FAULT_DRILL": "long", "HNPIPE_FAULT_TRIALS": str(args.trials),
               "HNPIPE_FAULT_SEED": str(seed), "HNPIPE_FAULT_LOG": str(log)}
        command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-q",
                   "-rs", *TEST_FILES, *args.pytest_args]
        print(f"fault drill, seed {seed}: {' '.join(command[2:])}", flush=True)
        started = time.monotonic()
        status = subprocess.call(command, cwd=ROOT, env=env)
        minutes = (time.monotonic() - started) / 60
        trials = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    lines = ["# hnpipe fault drill", "",
             f"`python benchmarks/faults.py --trials {args.trials} --seed {seed}` on "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: "
             f"{'passed' if status == 0 else f'FAILED (pytest exit {status})'} in {minutes:.1f} minutes.",
             "", *summarise(trials)]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.pytest_args:  # a partial drill does not replace the full record
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
