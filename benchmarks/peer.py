"""hnpipe against the best hand-written Dagster run, end to end, side by side.

    python benchmarks/peer.py                 # N = 1,000 and 5,000 at 25 ms, 3 rounds (~10 min)
    python benchmarks/peer.py --quick         # N = 200, 1 round: checks the script itself
    python benchmarks/peer.py --sizes 1000 --rounds 5 --no-sequential
    python benchmarks/peer.py --phases --rounds 5   # where a small run's seconds go (~1 min),
                                                    # written to benchmarks/small-run-results.md

The peer is Dagster's development_to_production example (benchmarks/peer_dagster.py: the same
items/comments/stories assets, a DuckDB IO manager in place of Snowflake, the base URL
configurable), installed by this script into its own virtual environment under
benchmarks/.work/ (git-ignored; it needs other pins than the project). Variants:

* peer sequential CLI   the example's fetch loop, `dagster asset materialize` (N = 1,000 only)
* peer pooled CLI       32 threads and one pooled session, `dagster asset materialize`
* peer pooled in-proc   the same assets through in-process `dagster.materialize()`
* hnpipe                `hnpipe run --env local -p n_items=N -p hn_api_url=<the server>`

All read one `hnpipe serve-sample --ids N --latency-ms 25` process, write their own DuckDB file,
and run interleaved (round by round, the same order each round), so the machine's load falls
on all alike; the table gives medians. For each run: wall time, CPU time (user + system of the
whole process tree, from the reaped children's rusage) and the peak of the whole tree's
proportional set size (PSS, sampled every 50 ms from /proc, so shared libraries count once).
After each round the script checks that hnpipe and the pooled peer published the same ITEMS
ids and the same COMMENTS and STORIES row counts. It writes benchmarks/peer-results.md
(partial runs: <tmp>/hnpipe-benchmarks/peer-results.md). Not part of `pytest`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
PEER_VENV = WORK / "dagster-venv"
PEER_SOURCE = ROOT / "benchmarks" / "peer_dagster.py"
# The versions the issue measured against; pip reads only the package index.
PEER_REQUIREMENTS = ["dagster~=1.13.0", "dagster-duckdb-pandas", "dagster-duckdb", "pandas", "requests"]
LATENCY_MS = 25
DEV_SCHEMA = "BENCH"


# -- the peer's environment -----------------------------------------------------------------
def peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def ensure_peer_venv() -> str:
    """Make benchmarks/.work/dagster-venv once; returns the installed Dagster version."""
    probe = [str(peer_python()), "-c", "import dagster, dagster_duckdb_pandas; print(dagster.__version__)"]
    if peer_python().exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.strip()
        shutil.rmtree(PEER_VENV)
    print(f"installing Dagster into {PEER_VENV} (about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(peer_python()), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()


def dagster_home() -> Path:
    """A persistent Dagster instance, as a user's would be, with telemetry off (no traffic
    may leave this machine)."""
    home = WORK / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


# -- measuring one process tree ----------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(word) for word in handle.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Measure:
    wall: float
    cpu: float
    peak_pss_mib: float
    processes: int


def measure(command: list[str], env: dict[str, str], cwd: Path) -> Measure:
    """Run `command`; wall, CPU of the whole tree, and the tree's peak PSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peak, seen, stop = [0], set(), threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = _tree(process.pid)
            seen.update(pids)
            peak[0] = max(peak[0], sum(_pss_kib(pid) for pid in pids))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0]
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{output[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measure(wall, cpu, peak[0] / 1024, len(seen))


# -- the contenders ------------------------------------------------------------------------------
@dataclass
class Contender:
    key: str
    label: str
    sizes: tuple[int, ...]
    runs: dict[int, list[Measure]] = field(default_factory=dict)


def peer_env(url: str, database: Path, fetch: str) -> dict[str, str]:
    env = {**os.environ, "PEER_HN_URL": url, "PEER_DUCKDB": str(database), "PEER_FETCH": fetch,
           "DAGSTER_HOME": str(dagster_home())}
    for name in [name for name in env if name.startswith(("HNPIPE_", "VIRTUAL_ENV"))]:
        env.pop(name)
    return env


def run_peer_cli(url: str, n: int, database: Path, fetch: str) -> Measure:
    config = json.dumps({"ops": {"items": {"config": {"N": n}}}})
    command = [str(PEER_VENV / "bin" / "dagster"), "asset", "materialize", "-f", str(PEER_SOURCE),
               "--select", "*", "--config-json", config]
    return measure(command, peer_env(url, database, fetch), WORK)


def run_peer_inproc(url: str, n: int, database: Path, fetch: str) -> Measure:
    return measure([str(peer_python()), str(PEER_SOURCE), str(n)], peer_env(url, database, fetch), WORK)


def hnpipe_env(warehouse: Path) -> dict[str, str]:
    env = {**os.environ, "HNPIPE_WAREHOUSE": f"duckdb:{warehouse}", "HNPIPE_DEV_SCHEMA": DEV_SCHEMA,
           "HNPIPE_ENV": "local"}
    env.pop("CI", None)
    return env


def run_hnpipe(url: str, n: int, warehouse: Path, latency_url: str | None = None) -> Measure:
    command = [str(Path(sys.executable).parent / "hnpipe"), "run", "--env", "local",
               "-p", f"n_items={n}", "-p", f"hn_api_url={latency_url or url}"]
    return measure(command, hnpipe_env(warehouse), ROOT)


# -- checking both published the same ---------------------------------------------------------
def published(database: Path, schema: str, tables: tuple[str, str, str]) -> tuple[list[int], int, int]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        ids = [row[0] for row in con.execute(f'SELECT id FROM {schema}."{tables[0]}" ORDER BY id').fetchall()]
        counts = [con.execute(f'SELECT count(*) FROM {schema}."{name}"').fetchone()[0] for name in tables[1:]]
    return ids, counts[0], counts[1]


def same_output(hnpipe_dir: Path, peer_db: Path, n: int) -> str:
    ours = published(hnpipe_dir / "LOCAL.duckdb", DEV_SCHEMA, ("ITEMS", "COMMENTS", "STORIES"))
    theirs = published(peer_db, "HACKER_NEWS", ("items", "comments", "stories"))
    if ours != theirs:
        raise RuntimeError(f"N={n}: hnpipe and the peer differ: hnpipe {len(ours[0])} ids, "
                           f"{ours[1]} comments, {ours[2]} stories; peer {len(theirs[0])} ids, "
                           f"{theirs[1]} comments, {theirs[2]} stories")
    return f"N={n:,}: {len(ours[0]):,} ids (the same), {ours[1]:,} comments, {ours[2]:,} stories"


# -- the server -------------------------------------------------------------------------------
class SampleServer:
    """`hnpipe serve-sample --ids N --latency-ms L` as its own process."""

    def __init__(self, ids: int, latency_ms: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hnpipe.cli", "serve-sample", "--port", "0", "--ids", str(ids),
             "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        banner = self.process.stdout.readline()
        match = re.search(r"http://\S+/v0", banner)
        if not match:
            self.close()
            raise RuntimeError(f"serve-sample did not start: {banner!r}")
        self.url = match.group(0)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- phases: where hnpipe's fixed cost goes ------------------------------------------------------
def timed_python(code: str, repeats: int) -> float:
    """Median wall seconds of a fresh interpreter running `code`."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        runs.append(time.perf_counter() - started)
    return med(runs)


def kernel_ready_seconds(warm: bool, repeats: int, zygote: str = "off") -> float:
    """Median seconds from asking for a python3 kernel (as `hnpipe run` does) to its first answer.
    zygote: "off" launches it as its own process (HNPIPE_ZYGOTE=0); "new" forks it from a kernel
    zygote started for it (the zygote's imports included); "warm" from one that has imported."""
    from jupyter_core.utils import run_sync

    from hnpipe import kernel_zygote
    from hnpipe.runner import kernels

    saved = os.environ.get("HNPIPE_ZYGOTE")
    os.environ["HNPIPE_ZYGOTE"] = "0" if zygote == "off" else "1"
    if zygote == "warm":
        kernel_zygote.shared()
        time.sleep(3)  # its imports done
    runs = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            kernel = kernels.Kernel(ROOT / "notebooks", dict(os.environ),
                                    warm=kernels.SOURCE_WARM_MODULES if warm else ())
            client = kernel.manager.client()  # the client papermill gets
            client.start_channels()
            try:
                run_sync(client.wait_for_ready)(timeout=60)
                runs.append(time.perf_counter() - started)
            finally:
                client.stop_channels()
                kernel.shutdown()
            if zygote == "new" and kernel_zygote._shared is not None:
                kernel_zygote._shared.close()  # the next kernel starts a zygote of its own
    finally:
        if zygote != "new" and kernel_zygote._shared is not None:
            kernel_zygote._shared.close()
        os.environ.pop("HNPIPE_ZYGOTE") if saved is None else os.environ.update(HNPIPE_ZYGOTE=saved)
    return med(runs)


def notebook_phases(run_dir: Path) -> dict[str, dict[str, float]]:
    """Per executed notebook: papermill's start and end (seconds after the first notebook's
    start), the time its cells ran, and the rest (waiting for the kernel, papermill's work)."""
    import nbformat

    first, found = None, {}
    for path in sorted(run_dir.glob("*.ipynb"), key=lambda p: ("items" not in p.name, p.name)):
        notebook = nbformat.read(path, as_version=4)
        meta = notebook.metadata.papermill
        start, end = datetime.fromisoformat(meta.start_time), datetime.fromisoformat(meta.end_time)
        first = first or start
        cells = sum(cell.metadata.papermill.duration or 0 for cell in notebook.cells
                    if cell.metadata.get("papermill", {}).get("duration") is not None)
        found[path.stem] = {"start": (start - first).total_seconds(), "end": (end - first).total_seconds(),
                            "cells": cells, "overhead": (end - start).total_seconds() - cells}
    return found


def phases(repeats: int) -> str:
    """Where the seconds of a small `hnpipe run` go, measured piece by piece."""
    scratch = Path(tempfile.mkdtemp(prefix="hnpipe-phases-"))
    env = {**hnpipe_env(scratch / "warehouse"), "HNPIPE_RUNS_DIR": str(scratch / "runs")}
    try:
        interpreter = timed_python("pass", repeats)
        cli = timed_python("import hnpipe.cli", repeats)
        runner_import = timed_python("import hnpipe.runner", repeats)
        papermill_import = timed_python(
            "from hnpipe.runner import kernels; kernels.import_papermill()", repeats)
        papermill_plain = timed_python("import papermill", repeats)
        pipeline_import = timed_python("import hnpipe.pipeline", repeats)
        bare = kernel_ready_seconds(False, repeats)
        warm = kernel_ready_seconds(True, repeats)
        forked_new = kernel_ready_seconds(True, repeats, zygote="new")
        forked_warm = kernel_ready_seconds(True, repeats, zygote="warm")
        walls, notebooks = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "hnpipe"), "run", "--env", "local",
                            "-p", "n_items=10"], check=True, env=env, cwd=ROOT, capture_output=True)
            walls.append(time.perf_counter() - started)
            notebooks.append(notebook_phases(max((scratch / "runs" / "local").iterdir())))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = med(walls)

    def m(name: str, key: str) -> float:
        return med([run[name][key] for run in notebooks])

    lines = [
        "## Where a small run's seconds go", "",
        f"`hnpipe run --env local -p n_items=10` (bundled sample, 0 ms), medians of {repeats}: "
        f"**{wall:.2f} s wall** (target < 3 s).", "",
        "| phase | seconds |", "|---|---:|",
        f"| a fresh interpreter (`python -c pass`) | {interpreter:.2f} |",
        f"| `import hnpipe.cli` | {cli:.2f} |",
        f"| `import hnpipe.runner` (what `hnpipe run` imports before the kernels start) | {runner_import:.2f} |",
        f"| `import papermill` as the runner does it (s3, hdfs and jsonschema's IRI checker skipped), while the kernels start | {papermill_import:.2f} |",
        f"| `import papermill` plainly | {papermill_plain:.2f} |",
        f"| a kernel launched as its own process (`HNPIPE_ZYGOTE=0`), launch to first answer, bare | {bare:.2f} |",
        f"| the same with hnpipe's imports at start-up (`import hnpipe.pipeline`) | {warm:.2f} |",
        f"| of which importing hnpipe's dependencies (difference) | {warm - bare:.2f} |",
        f"| a kernel forked from a kernel zygote started for it (its imports included), to first answer | {forked_new:.2f} |",
        f"| a kernel forked from a zygote that has imported already (what the later kernels of a run wait) | {forked_warm:.2f} |",
        f"| `import hnpipe.pipeline` in a fresh interpreter | {pipeline_import:.2f} |",
    ]
    for name in ("items", "comments", "stories"):
        lines.append(f"| {name}.ipynb: starts at {m(name, 'start'):.2f}, ends at {m(name, 'end'):.2f}; "
                     f"cells {m(name, 'cells'):.2f}, the rest (kernel wait, papermill) | {m(name, 'overhead'):.2f} |")
    lines.append(f"| before ITEMS starts and after the last notebook (CLI start-up, papermill import, "
                 f"row counts, exit) | {wall - max(m(n, 'end') for n in ('comments', 'stories')):.2f} |")
    return "\n".join(lines) + "\n"


# -- report ---------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def uptime() -> str:
    """`uptime`'s load averages (1, 5, 15 minutes): the machine is shared."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return (f"{model.group(1).strip() if model else platform.processor()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def report(contenders: list[Contender], sizes: tuple[int, ...], rounds: int, checks: list[str],
           dagster_version: str, load: list[str], elapsed: float) -> str:
    by_key = {c.key: c for c in contenders}
    hn = by_key["hnpipe"]
    lines = [
        "# hnpipe against Dagster, end to end",
        "",
        f"Written by `python benchmarks/peer.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({elapsed / 60:.0f} min). Machine: {machine()}. **The machine was shared** with other "
        f"work (load average before each round: {', '.join(load)}), so absolute figures move with "
        "its load; the runs are interleaved round by round, so the ratios are the fair measure.",
        "",
        f"Peer: Dagster {dagster_version} running the development_to_production example's assets "
        "(`benchmarks/peer_dagster.py`, modelled on dagster-io/dagster "
        "examples/development_to_production) with a DuckDB IO manager, in its own venv "
        "(benchmarks/.work/). API: one `hnpipe serve-sample --ids "
        f"{max(sizes)} --latency-ms {LATENCY_MS}` process for every run. Medians of {rounds} "
        "round(s); the sequential peer runs once (its fetch alone is N x 25 ms).",
        "",
        "| N | peer | hnpipe wall | peer wall | hnpipe / peer | CPU s hnpipe / peer | peak PSS MiB hnpipe / peer |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        ours = hn.runs.get(n)
        if not ours:
            continue
        for contender in contenders[1:]:
            theirs = contender.runs.get(n)
            if not theirs:
                continue
            ratio = med([m.wall for m in ours]) / med([m.wall for m in theirs])
            lines.append(
                f"| {n:,} | {contender.label} | {med([m.wall for m in ours]):.2f} s | "
                f"{med([m.wall for m in theirs]):.2f} s | **{ratio:.2f}** | "
                f"{med([m.cpu for m in ours]):.1f} / {med([m.cpu for m in theirs]):.1f} | "
                f"{med([m.peak_pss_mib for m in ours]):.0f} / {med([m.peak_pss_mib for m in theirs]):.0f} |")
    lines += ["", "Every run (wall s, CPU s, peak PSS MiB, processes in the tree):", ""]
    for contender in contenders:
        for n, runs in sorted(contender.runs.items()):
            cells = "; ".join(f"{m.wall:.2f}, {m.cpu:.1f}, {m.peak_pss_mib:.0f}, {m.processes}" for m in runs)
            lines.append(f"- {contender.label}, N={n:,}: {cells}")
    lines += ["", "Same output (hnpipe's ITEMS ids and COMMENTS/STORIES row counts against the pooled "
              "peer's, checked each round):", ""] + [f"- {check}" for check in checks]
    return "\n".join(lines) + "\n"


def compile_bytecode() -> None:
    """Byte-compile hnpipe and the peer's module once, as Python does on a user's first import:
    a machine with PYTHONDONTWRITEBYTECODE=1 (this sandbox sets it) would otherwise compile
    hnpipe's modules again in each of a run's four processes (~0.2 s of CPU each), while the
    peer's packages were compiled when pip installed them."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lib"), str(PEER_SOURCE)],
                   check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated N (default 1000,5000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sequential", action="store_true", help="skip the sequential peer")
    parser.add_argument("--quick", action="store_true", help="N=200, one round: checks the script")
    parser.add_argument("--phases", action="store_true", help="only where a small run's seconds go")
    parser.add_argument("--out", type=Path, help="where to write the results (default: see above)")
    args = parser.parse_args(argv)
    sizes = (200,) if args.quick else tuple(int(word) for word in args.sizes.split(","))
    rounds = 1 if args.quick else args.rounds
    full = not args.quick and sizes == (1000, 5000) and rounds >= 3 and not args.no_sequential
    out = args.out or (ROOT / "benchmarks" / "peer-results.md" if full
                       else Path(tempfile.gettempdir()) / "hnpipe-benchmarks" / "peer-results.md")

    compile_bytecode()
    if args.phases:  # a small run's seconds, with the load they were measured under
        load_before = uptime()
        text = phases(rounds)
        text = (f"# Where a small `hnpipe run` spends its time\n\nWritten by `python benchmarks/peer.py "
                f"--phases --rounds {rounds}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: "
                f"{machine()}; shared: `uptime` before: {load_before}; after: {uptime()}.\n\n{text}")
        out = args.out or ROOT / "benchmarks" / "small-run-results.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(text)
        print(f"written to {out}")
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    version = ensure_peer_venv()
    print(f"Dagster {version}", flush=True)
    contenders = [
        Contender("hnpipe", "hnpipe run --env local", sizes),
        Contender("seq-cli", "example as written (sequential fetch), `dagster asset materialize`",
                  () if args.no_sequential else (min(sizes),)),
        Contender("pool-cli", "32-thread pooled fetch, `dagster asset materialize`", sizes),
        Contender("pool-inproc", "32-thread pooled fetch, in-process `dagster.materialize()`", sizes),
    ]
    scratch = Path(tempfile.mkdtemp(prefix="hnpipe-peer-"))
    checks, load = [], []
    started = time.perf_counter()
    server = SampleServer(max(sizes), LATENCY_MS)
    try:
        # Warm the OS caches and the peer's first-run work once, unmeasured.
        run_hnpipe(server.url, 20, scratch / "warm-hnpipe")
        run_peer_inproc(server.url, 20, scratch / "warm-peer.duckdb", "pooled")
        for round_number in range(rounds):
            load.append(f"{os.getloadavg()[0]:.1f}")
            for n in sizes:
                for contender in contenders:
                    if n not in contender.sizes or (contender.key == "seq-cli" and round_number > 0):
                        continue
                    where = scratch / f"{contender.key}-{n}-{round_number}"
                    if contender.key == "hnpipe":
                        result = run_hnpipe(server.url, n, where)
                    elif contender.key.endswith("cli"):
                        result = run_peer_cli(server.url, n, where.with_suffix(".duckdb"),
                                              "sequential" if contender.key == "seq-cli" else "pooled")
                    else:
                        result = run_peer_inproc(server.url, n, where.with_suffix(".duckdb"), "pooled")
                    contender.runs.setdefault(n, []).append(result)
                    print(f"  round {round_number + 1} N={n:,} {contender.key:<11} wall {result.wall:6.2f} s  "
                          f"cpu {result.cpu:5.1f} s  peak {result.peak_pss_mib:5.0f} MiB", flush=True)
                checks.append(same_output(scratch / f"hnpipe-{n}-{round_number}",
                                          scratch / f"pool-inproc-{n}-{round_number}.duckdb", n))
    finally:
        server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(contenders, sizes, rounds, checks, version, load, time.perf_counter() - started)
    text += "\n" + phases(rounds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
