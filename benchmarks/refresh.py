"""Incremental refresh benchmark: what an incremental ITEMS run fetches after 1% new ids.

    python benchmarks/refresh.py             # N = 20,000 at 25 ms latency (about a minute)
    python benchmarks/refresh.py --n 10000
    python benchmarks/refresh.py --quick     # N = 2,000, to check the script itself

Against `hnpipe serve-sample --ids N+1% --latency-ms 25` in its own process (benchmarks/run.py's
`sample_server`), through the pipeline's own calls (pipeline.start, Step.fetch_items,
Step.publish) on a throwaway DuckDB warehouse:

1. a full run of the N newest ids (maxitem M) is timed;
2. ITEMS is put back to how a run left it when maxitem was M - 1% of N (its newest 1% of
   ids removed, by a publish_query inside the warehouse);
3. an incremental run (default refresh_window) is timed: it fetches the 1% new ids and the
   window, merges them into ITEMS, and must publish exactly the full run's ITEMS.

Fetch time is the wall time of `step.fetch_items()` (maxitem, the refresh plan's queries,
the HTTP requests, building the frame); the target is incremental <= 10% of full.
Writes benchmarks/refresh-results.md and prints the figures. `pytest` never runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import load_average, machine, sample_server, seconds  # noqa: E402 - benchmarks/run.py's helpers

OUT = Path(__file__).resolve().parent / "refresh-results.md"
TARGET_RATIO = 0.10


@dataclass
class Timing:
    fetch_s: float  # wall time of step.fetch_items()
    http_s: float  # of which the HTTP requests (the fetch report)
    publish_s: float
    fetched_ids: int
    rows: int
    plan: str  # the plan's line, as the notebook prints it


@dataclass
class Result:
    n: int
    new: int
    window: int
    latency_ms: float
    full: Timing
    incremental: list[Timing] = field(default_factory=list)

    @property
    def incremental_fetch_s(self) -> float:
        return statistics.median(run.fetch_s for run in self.incremental)

    @property
    def ratio(self) -> float:
        return self.incremental_fetch_s / self.full.fetch_s


def _run_items(url: str, n: int, **values) -> tuple[Timing, object]:
    """items.ipynb's two calls, timed; a fresh run id each time, as separate runs have."""
    from hnpipe import config, pipeline

    os.environ["HNPIPE_RUN_ID"] = config.new_run_id()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        step = pipeline.start("ITEMS", {"environment": "local", "n_items": n, "hn_api_url": url, **values})
        started = time.perf_counter()
        frame = step.fetch_items()
        fetched = time.perf_counter()
        rows = step.publish(frame)
        published = time.perf_counter()
    plan_line = next(line for line in printed.getvalue().splitlines() if line.startswith("refresh "))
    return Timing(fetched - started, step.fetch_report.seconds, published - fetched,
                  step.refresh.fetched_ids, rows, plan_line), step


def measure(n: int, new_share: float = 0.01, window: int | None = None, latency_ms: float = 25,
            repeats: int = 3) -> Result:
    """Full run vs incremental runs after `new_share` of N new ids, in a throwaway warehouse."""
    from hnpipe import params, sample
    from hnpipe.environments import Target

    new = max(1, round(n * new_share))
    window = params.PARAMETERS["refresh_window"].default if window is None else window
    workdir = Path(tempfile.mkdtemp(prefix="hnpipe-refresh-bench-"))
    os.environ.update(HNPIPE_WAREHOUSE=f"duckdb:{workdir / 'warehouse'}", HNPIPE_RUNS_DIR=str(workdir / "runs"),
                      HNPIPE_DEV_SCHEMA="BENCH", HNPIPE_PROGRESS="0")
    os.environ.pop("HNPIPE_ENV", None)
    target = Target("LOCAL", "BENCH")
    top = sample.DEFAULT_MAX_ITEM  # what `serve-sample --ids` serves up to
    with sample_server(n + new, latency_ms) as url:
        _run_items(url, 50)  # the server's first answers are slower (imports, threads)
        full, full_step = _run_items(url, n)
        expected = full_step.read()
        result = Result(n, new, window, latency_ms, full)
        for _ in range(repeats):
            # ITEMS as a run left it when maxitem was `new` ids lower.
            full_step.warehouse.publish_query(target, "ITEMS", f"SELECT * FROM ITEMS WHERE ID <= {top - new}",
                                              f"rewind_{len(result.incremental)}")
            timing, step = _run_items(url, n, refresh="incremental", refresh_window=window)
            if not step.refresh.merges or not _same(step.read(), expected):
                raise SystemExit(f"the incremental run did not reproduce the full run's ITEMS: {timing.plan}")
            result.incremental.append(timing)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _same(left, right) -> bool:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(left, right, check_exact=True)
    except AssertionError:
        return False
    return True


def markdown(result: Result, info: dict[str, str], loads: tuple[str, str],
             command: str = "python benchmarks/refresh.py") -> str:
    inc = result.incremental
    met = result.ratio <= TARGET_RATIO
    rows = [
        ("full", result.full),
        *((f"incremental #{i}", timing) for i, timing in enumerate(inc, 1)),
    ]
    lines = [
        "# Incremental refresh benchmark", "",
        f"`{command}`: N = {result.n:,} "
        f"from `hnpipe serve-sample --ids {result.n + result.new:,} --latency-ms {result.latency_ms:g}` (its own "
        f"process), concurrency 32, embedded DuckDB. ITEMS is rewound to how a run left it "
        f"{result.new:,} ids ago (1% of N) before each incremental run (refresh_window {result.window:,}); each "
        "incremental run published exactly the full run's ITEMS.", "",
        "| target | measured | met |", "|---|---|---|",
        f"| incremental fetch <= {TARGET_RATIO:.0%} of the full run's | {result.ratio:.1%} "
        f"({seconds(result.incremental_fetch_s)}, median of {len(inc)}, vs {seconds(result.full.fetch_s)}) | "
        f"{'yes' if met else 'NO'} |", "",
        "| run | ids fetched | fetch (wall) | of which HTTP | publish | rows |", "|---|---:|---:|---:|---:|---:|",
        *(f"| {name} | {t.fetched_ids:,} | {seconds(t.fetch_s)} | {seconds(t.http_s)} | {seconds(t.publish_s)} | "
          f"{t.rows:,} |" for name, t in rows),
        "", "What the incremental run printed:", "", f"    {inc[0].plan}", "",
        "Why it is cheap: it asks for maxitem, the new ids and the window, whatever N is; the "
        f"rest of ITEMS stays in the warehouse and is merged there. Lower bound of a fetch: ids x "
        f"latency / 32 = {seconds(result.full.fetched_ids * result.latency_ms / 1000 / 32)} full, "
        f"{seconds(inc[0].fetched_ids * result.latency_ms / 1000 / 32)} incremental.", "",
        "## Machine", "",
        *(f"- {key}: {value}" for key, value in info.items()),
        f"- load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="n_items (default 20,000)")
    parser.add_argument("--latency-ms", type=float, default=25)
    parser.add_argument("--repeats", type=int, default=3, help="incremental runs (the median counts)")
    parser.add_argument("--quick", action="store_true",
                        help="N = 2,000, one incremental run: checks the script (the window alone is 25%% of "
                             "such an N, so the target is not meant for it)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    n, repeats = (2_000, 1) if args.quick else (args.n, args.repeats)
    load_at_start = load_average()
    result = measure(n, latency_ms=args.latency_ms, repeats=repeats)
    command = "python benchmarks/refresh.py" + (" --quick" if args.quick else "") + (
        f" --n {args.n}" if args.n != parser.get_default("n") and not args.quick else "")
    text = markdown(result, machine(), (load_at_start, load_average()), command)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0  # a report: the table says whether the target was met


if __name__ == "__main__":
    sys.exit(main())
