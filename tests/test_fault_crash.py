"""Crashes: SIGKILL at random moments during the fetch and the publish.

After each kill every table must be wholly the old or wholly the new version (compared with
both, row for row), the database file must open (replaying whatever log the crash left),
and the next publish must clear any staging table the crash left behind.

Two levels:

* the library path in a process of its own (scripts/publish_items.py: client -> ItemsBuilder
  -> publish_frame), killed a random delay after it announces the phase, so kills land
  inside the fetch or inside the publish on purpose: HNPIPE_FAULT_TRIALS trials (4 in the
  test command, 25 in the long drill);
* `hnpipe run` with its papermill kernels, killed together at a random moment of the run
  (long drill only: each trial costs two runs).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from hnpipe import datasets
from hnpipe.sample import SampleServer, generate_sample
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from helpers_faults import (
    DATASET_TABLES,
    LONG,
    ROOT,
    SEED,
    TARGET,
    TRIALS,
    expected_items,
    expected_tables,
    hnpipe,
    hnpipe_process,
    log_trial,
    long_only,
    same_frame,
    staging_tables,
    which_version,
)

# Every test here starts kernels, servers or processes: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

PUBLISH_ITEMS = ROOT / "scripts" / "publish_items.py"
N = 3_000 if LONG else 1_500  # items per publish: enough for a publish that takes a while
PHASES = ("fetch", "publish")


@dataclass
class Drill:
    url: str  # serves the new items
    old: pd.DataFrame  # ITEMS before the killed run
    new: pd.DataFrame  # ITEMS the killed run would publish
    seconds: dict[str, float]  # how long each phase took in an uninterrupted run


def start_publish_items(url: str, warehouse_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PUBLISH_ITEMS), "--api", url, "--n", str(N),
                             "--warehouse", str(warehouse_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(process: subprocess.Popen, phase: str) -> dict[str, dict]:
    """Read the script's phase lines until `phase` starts (or the output ends)."""
    seen = {}
    for line in process.stdout:
        message = json.loads(line)
        seen[message["phase"]] = message
        if message["phase"] == phase:
            break
    return seen


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory):
    old_items, new_items = generate_sample(N, seed=1), generate_sample(N, seed=2)
    with SampleServer(items=new_items) as server:
        calibration = start_publish_items(server.base_url, tmp_path_factory.mktemp("calibration"))
        seen = read_until(calibration, "done")
        assert calibration.wait(timeout=120) == 0, calibration.stderr.read()
        seconds = {"fetch": seen["build"]["t"] - seen["fetch"]["t"],
                   "publish": seen["done"]["t"] - seen["publish"]["t"]}
        yield Drill(server.base_url, expected_items(old_items, N)[0],
                    expected_items(new_items, N)[0], seconds)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_during_fetch_or_publish_leaves_the_old_or_the_new_table(
        drill: Drill, tmp_path: Path, trial: int) -> None:
    rng = random.Random(f"{SEED}-{trial}")
    phase = PHASES[trial % 2]
    # Up to 20% past the phase's usual length: a kill may also land just after it.
    delay = rng.uniform(0, 1.2 * drill.seconds[phase])
    warehouse = DuckDBWarehouse(tmp_path / "warehouse")
    gates = datasets.quality_gates(datasets.get("ITEMS"), n_items=N)
    warehouse.publish_frame(TARGET, "ITEMS", drill.old, "old", gates=gates)
    database = warehouse.path("LOCAL")

    process = start_publish_items(drill.url, warehouse.directory)
    read_until(process, phase)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed = process.returncode == -signal.SIGKILL
    context = f"seed {SEED}, trial {trial}: SIGKILL {delay:.3f} s into {phase}"

    left_behind = staging_tables(database)  # opens the file for writing: it must still open
    version = which_version(warehouse.read_table(TARGET, "ITEMS"), {"old": drill.old, "new": drill.new})
    if not killed:  # it finished before the signal: then it must have published everything
        assert process.returncode == 0 and version == "new", (context, process.stderr.read())

    # The next publish drops what the crash left and publishes whole.
    warehouse.publish_frame(TARGET, "ITEMS", drill.new, "next", gates=gates)
    assert staging_tables(database) == [], context
    assert same_frame(warehouse.read_table(TARGET, "ITEMS"), drill.new), context
    log_trial(test="sigkill_library", seed=SEED, trial=trial, phase=phase, delay=round(delay, 3),
              killed=killed, items=version, staging_left=len(left_behind))


# -- hnpipe run and its kernels -------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Every process below `pid` (papermill kernels run in sessions of their own, so a
    process group kill would miss them)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children[int(fields[1])].append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children[todo.pop()]:
            found.append(child)
            todo.append(child)
    return found


def process_state(pid: int) -> str | None:
    """The one-letter state in /proc/<pid>/stat (R, S, T stopped, Z zombie...), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for_state(pid: int, done: Callable[[str | None], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done(process_state(pid)):
        assert time.monotonic() < deadline, f"process {pid} did not {what} within {seconds:g} s"
        time.sleep(0.01)


def kill_run(process: subprocess.Popen) -> list[int]:
    """SIGKILL `hnpipe run` and its kernels at once, as a crash or OOM kill would."""
    os.kill(process.pid, signal.SIGSTOP)
    # The signal is only queued: wait until the run is really stopped, or it may still start
    # a kernel after the scan below, which would then outlive the kill and keep the file.
    wait_for_state(process.pid, lambda state: state in ("T", "t", "Z", None), "stop")
    family = descendants(process.pid)
    for pid in (process.pid, *family):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)
    for pid in family:  # not our children: wait until they are gone (a zombie holds no file)
        wait_for_state(pid, lambda state: state in ("Z", None), "die of SIGKILL")
    return family


@dataclass
class RunDrill:
    old_url: str
    new_url: str
    old: dict[str, pd.DataFrame]
    new: dict[str, pd.DataFrame]
    template: Path  # a warehouse holding the old tables, copied for each trial
    seconds: float  # an uninterrupted run


CLI_N = 600
CLI_TRIALS = int(os.environ.get("HNPIPE_FAULT_CLI_TRIALS") or 6)


def run_env(warehouse_dir: Path) -> dict[str, str]:
    return {"HNPIPE_WAREHOUSE": f"duckdb:{warehouse_dir}", "HNPIPE_RUNS_DIR": str(warehouse_dir.parent / "runs")}


@pytest.fixture(scope="module")
def run_drill(tmp_path_factory: pytest.TempPathFactory):
    old_items, new_items = generate_sample(CLI_N, seed=11), generate_sample(CLI_N, seed=12)
    with SampleServer(items=old_items) as old_server, SampleServer(items=new_items) as new_server:
        template = tmp_path_factory.mktemp("run-template") / "warehouse"
        old = hnpipe("run", "--env", "local", "-p", f"hn_api_url={old_server.base_url}",
                     "-p", f"n_items={CLI_N}", env=run_env(template))
        assert old.returncode == 0, old.stderr
        calibration = tmp_path_factory.mktemp("run-calibration") / "warehouse"
        shutil.copytree(template, calibration)
        started = time.monotonic()
        new = hnpipe("run", "--env", "local", "-p", f"hn_api_url={new_server.base_url}",
                     "-p", f"n_items={CLI_N}", env=run_env(calibration))
        seconds = time.monotonic() - started
        assert new.returncode == 0, new.stderr
        yield RunDrill(old_server.base_url, new_server.base_url,
                       expected_tables(expected_items(old_items, CLI_N)[0]),
                       expected_tables(expected_items(new_items, CLI_N)[0]), template, seconds)


@long_only
@pytest.mark.parametrize("trial", range(CLI_TRIALS))
def test_sigkill_of_hnpipe_run_and_its_kernels_leaves_each_table_old_or_new(
        run_drill: RunDrill, tmp_path: Path, trial: int) -> None:
    rng = random.Random(f"{SEED}-run-{trial}")
    delay = rng.uniform(0.5, run_drill.seconds)
    warehouse_dir = tmp_path / "warehouse"
    shutil.copytree(run_drill.template, warehouse_dir)
    warehouse = DuckDBWarehouse(warehouse_dir)

    process = hnpipe_process("run", "--env", "local", "-p", f"hn_api_url={run_drill.new_url}",
                             "-p", f"n_items={CLI_N}", env=run_env(warehouse_dir))
    time.sleep(delay)
    finished = process.poll() is not None
    kernels = [] if finished else kill_run(process)
    context = f"seed {SEED}, run trial {trial}: SIGKILL {delay:.2f} s into the run"

    left_behind = staging_tables(warehouse.path("LOCAL"))  # the file opens for writing
    versions = {name: which_version(warehouse.read_table(TARGET, name),
                                    {"old": run_drill.old[name], "new": run_drill.new[name]})
                for name in DATASET_TABLES}
    if finished:
        assert process.returncode == 0 and set(versions.values()) == {"new"}, context

    rerun = hnpipe("run", "--env", "local", "-p", f"hn_api_url={run_drill.new_url}",
                   "-p", f"n_items={CLI_N}", env=run_env(warehouse_dir))
    assert rerun.returncode == 0, (context, rerun.stderr)
    assert staging_tables(warehouse.path("LOCAL")) == [], context
    for name in DATASET_TABLES:
        assert same_frame(warehouse.read_table(TARGET, name), run_drill.new[name]), (context, name)
    log_trial(test="sigkill_run", seed=SEED, trial=trial, delay=round(delay, 2),
              run_seconds=round(run_drill.seconds, 2), killed=not finished, kernels=len(kernels),
              staging_left=len(left_behind), **versions)


def test_a_killed_run_is_shown_as_abandoned_and_recorded_so_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL `hnpipe run` (and its kernels) in the middle of ITEMS' fetch: no row says it ended,
    so `hnpipe history` shows it abandoned, with its start time and what it had published, and
    the next run records that row for good."""
    from hnpipe import history
    from hnpipe.environments import Target

    warehouse_dir = tmp_path / "warehouse"
    env = {**run_env(warehouse_dir), "HNPIPE_PROGRESS": "1"}
    with SampleServer(items=generate_sample(200, seed=5), latency_ms=150) as server:
        args = ("run", "--env", "local", "-p", f"hn_api_url={server.base_url}", "-p", "n_items=200",
                "-p", "concurrency=1")
        process = hnpipe_process(*args, env=env)
        for line in process.stdout:  # the marker is written before the first notebook starts
            if "items.ipynb: running" in line:
                break
        time.sleep(1.0)
        assert process.poll() is None, "the run ended before it could be killed"
        kill_run(process)
        shown = hnpipe("history", env=env)
        assert shown.returncode == 0, shown.stderr
        (row,) = [line for line in shown.stdout.splitlines() if " abandoned " in line]
        assert "published before it stopped: nothing" in row or "abandoned: the run never finished" in row, row
        target = Target("LOCAL", "TESTER")
        (killed,) = history.abandoned_runs(DuckDBWarehouse(warehouse_dir), target)
        assert "published before it stopped: nothing" in killed.detail and killed.started <= killed.finished

        rerun = hnpipe(*args[:-2], env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert f"run {killed.run_id} (started" in rerun.stdout and "recorded as abandoned" in rerun.stdout
    rows = history.read(DuckDBWarehouse(warehouse_dir), target, limit=100)
    recorded = rows[rows.STATUS == history.ABANDONED]
    assert recorded.RUN_ID.tolist() == [killed.run_id]
    assert recorded.STARTED_AT.iloc[0].to_pydatetime() == killed.started
    assert history.abandoned_runs(DuckDBWarehouse(warehouse_dir), target) == []  # recorded once
    assert set(rows[rows.STATUS == history.SUCCEEDED].DATASET) == set(DATASET_TABLES)
