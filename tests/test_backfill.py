"""`hnpipe backfill` end to end: a 60,000-id history in shards, a SIGKILL of `backfill run` in
the middle, a resume that fetches only the shards not done (counted at the server), and a
merge into exactly the ids that answered, with COMMENTS and STORIES rebuilt. Plus the quick
rules: plan freezing, the CI matrix, tiling and the merge's refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from hnpipe.backfill.merge import problems
from hnpipe.backfill.plan import shard_ranges
from hnpipe.backfill.ledger import BackfillPlan, Shard
from hnpipe.sample import SampleServer, generate_sample
from hnpipe.warehouse.directory_stage import DirectoryStage

ROOT = Path(__file__).resolve().parents[1]
IDS = 60_000
MAX_ITEM = 46_000_000
FIRST = MAX_ITEM - IDS + 1
SHARD = 10_000


def hnpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hnpipe.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ), timeout=900)


def ledger_rows(warehouse: Path, sql: str) -> list[tuple]:
    for _ in range(100):  # a shard's kernel may be writing: DuckDB lets one process hold the file
        try:
            with duckdb.connect(str(warehouse / "LOCAL.duckdb"), read_only=True) as con:
                con.execute('USE LOCAL."TESTER"')
                return con.execute(sql).fetchall()
        except duckdb.IOException:
            time.sleep(0.2)
    raise AssertionError("the warehouse stayed locked")


def test_shard_ranges_tile_the_range() -> None:
    assert shard_ranges(1, 25, 10) == [(1, 10), (11, 20), (21, 25)]
    assert shard_ranges(5, 5, 10) == [(5, 5)]


def _plan(shards: list[tuple[int, int, str]]) -> BackfillPlan:
    return BackfillPlan("BF_20261207T000000", 1, 30, 10, {"shard_size": 10}, None, False,
                        {k: Shard("BF_20261207T000000", k, lo, hi, status)
                         for k, (lo, hi, status) in enumerate(shards, start=1)})


def test_merge_refusal_names_what_is_missing(tmp_path: Path) -> None:
    from hnpipe.environments import Target
    from hnpipe.stage import Stage

    stage = Stage(DirectoryStage(None, Target("LOCAL", "TESTER"), tmp_path), Target("LOCAL", "TESTER"))
    found = problems(_plan([(1, 10, "planned"), (11, 20, "failed"), (21, 30, "planned")]), stage)
    assert found[0].startswith("3 of 3 shards not done: 1 (planned), 2 (failed), 3 (planned)")
    gap = problems(_plan([(1, 10, "planned"), (12, 20, "planned"), (21, 30, "planned")]), stage)
    assert "gap at id 11 (shard 2 starts at 12)" in gap[1]
    overlap = problems(_plan([(1, 10, "planned"), (10, 20, "planned"), (21, 30, "planned")]), stage)
    assert "overlap at id 11" in overlap[1]
    short = problems(_plan([(1, 10, "planned"), (11, 20, "planned")]), stage)
    assert "the shards end at 20, the plan at 30" in short[1]


@pytest.mark.parametrize("bad", ["shard-000001/R1/part-000001.parquet",  # another run's file, in the stage
                                 "shard-000001/R2/../R1/part-000001.parquet",  # relative_to is lexical
                                 "shard-000001/R2/part-000001.parquet') , ('x.parquet"])  # Snowflake's FILES
def test_merge_loads_only_the_files_of_each_shards_own_run(tmp_path: Path, bad: str) -> None:
    """Names from the ledger and the manifest go into the load: each must be one of its shard's
    run's parts, whatever the rows and checksums say."""
    import pyarrow.parquet as pq

    from hnpipe.backfill.shard import combined_checksum
    from hnpipe.environments import Target
    from hnpipe.stage import STAGE_SCHEMA, Stage, file_digest

    stage = Stage(DirectoryStage(None, Target("LOCAL", "TESTER"), tmp_path), Target("LOCAL", "TESTER"))
    killed = stage.path("backfill/BF/shard-000001/R1") / "part-000001.parquet"  # an earlier attempt's
    killed.parent.mkdir(parents=True)
    pq.write_table(STAGE_SCHEMA.empty_table(), killed)
    entry = {"file": bad, "rows": 0, "bytes": killed.stat().st_size, "sha256": file_digest(killed)}
    checksum = combined_checksum([entry["sha256"]])
    stage.write_manifest("backfill/BF/shard-000001/R2", {"files": [entry], "rows": 0, "null_ids": 0,
                                                         "checksum": checksum,
                                                         "schema": [[f.name, str(f.type)] for f in STAGE_SCHEMA]})
    plan = BackfillPlan("BF", 1, 30, 30, {}, None, False, {1: Shard(
        "BF", 1, 1, 30, "done", rows=0, null_ids=0, files=[bad], checksum=checksum, run_id="R2")})
    expected = f"shard 1 (run R2): file name {bad!r} is not shard-000001/R2/part-NNNNNN.parquet"
    assert problems(plan, stage) == [expected]


@pytest.mark.slow
def test_backfill_survives_sigkill_and_merges_exactly_the_answered_ids(clean_env: Path) -> None:
    items = generate_sample(n_ids=IDS, max_item=MAX_ITEM)
    answered = sorted(item_id for item_id, item in items.items() if item is not None)
    with SampleServer(items=items) as server:
        url = server.base_url
        plan = hnpipe("backfill", "plan", "--env", "local", "--from", str(FIRST), "--to", "maxitem",
                      "--shard-size", str(SHARD), "-p", f"hn_api_url={url}", "-p", "concurrency=8", "--json")
        assert plan.returncode == 0, plan.stderr
        matrix = json.loads(plan.stdout)
        assert matrix["pending"] == 6 and matrix["include"][0] == {"shard": 1, "id_min": FIRST, "id_max": FIRST + SHARD - 1}
        # The same range again returns the frozen plan (a re-run workflow resumes); another is refused.
        again = hnpipe("backfill", "plan", "--env", "local", "--from", str(FIRST), "--to", "maxitem",
                       "--shard-size", str(SHARD), "--json")
        assert json.loads(again.stdout)["backfill_id"] == matrix["backfill_id"]
        other = hnpipe("backfill", "plan", "--env", "local", "--from", "1", "--to", "100", "--shard-size", "10")
        assert other.returncode == 1 and "is not merged yet" in other.stderr
        early = hnpipe("backfill", "merge", "--env", "local")
        assert early.returncode == 1 and "6 of 6 shards not done" in early.stderr, early.stderr

        before_first = server.requests_served
        log = clean_env.parent / "run.log"
        with open(log, "w") as output:
            runner = subprocess.Popen([sys.executable, "-m", "hnpipe.cli", "backfill", "run", "--env", "local",
                                       "--workers", "2"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                      env=dict(os.environ))
        stage = clean_env / "LOCAL.stage"
        deadline = time.time() + 600
        # Killed once the first shard wrote its manifest: it may or may not have committed yet,
        # and the other worker's shard is mid-fetch.
        while not list(stage.glob("TESTER/backfill/*/shard-*/*/manifest.json")) and runner.poll() is None:
            assert time.time() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        assert runner.returncode == -signal.SIGKILL, log.read_text()
        # The kernels of the killed run notice their parent is gone and stop (ipykernel's parent poller).
        deadline = time.time() + 60
        while True:
            running = ledger_rows(clean_env, "SELECT SHARD, PID FROM BACKFILL_LEDGER WHERE STATUS = 'running'")
            alive = [pid for _, pid in running if _alive(pid)]
            if not alive or time.time() > deadline:
                break
            time.sleep(0.5)
        assert not alive, f"kernels of the killed run still alive: {alive}"
        done_before = dict(ledger_rows(clean_env, "SELECT SHARD, RUN_ID FROM BACKFILL_LEDGER "
                                                   "WHERE STATUS = 'done'"))
        assert 1 <= len(done_before) < 6, done_before
        assert server.requests_served > before_first

        status = hnpipe("backfill", "status", "--env", "local", "--json")
        numbers = json.loads(status.stdout)
        assert numbers["done"] == len(done_before) and numbers["done"] + numbers["pending"] + numbers["running"] \
            + numbers["failed"] == 6

        before_resume = server.requests_served
        resume = hnpipe("backfill", "run", "--env", "local", "--workers", "2")
        assert resume.returncode == 0, resume.stdout + resume.stderr
        requests = server.requests_served - before_resume
        pending = 6 - len(done_before)
        # Exactly the ids of the shards not done, plus one maxitem per shard: done shards are not refetched.
        assert requests == pending * SHARD + pending, (requests, done_before)
        done_after = dict(ledger_rows(clean_env, "SELECT SHARD, RUN_ID FROM BACKFILL_LEDGER WHERE STATUS = 'done'"))
        assert len(done_after) == 6 and all(done_after[k] == run for k, run in done_before.items())

        merged = hnpipe("backfill", "merge", "--env", "local")
        assert merged.returncode == 0, merged.stdout + merged.stderr
    ids = [row[0] for row in ledger_rows(clean_env, "SELECT ID FROM ITEMS ORDER BY ID")]
    assert ids == answered  # exactly the answered ids, once each
    for table, kind in (("COMMENTS", "comment"), ("STORIES", "story")):
        expected = sorted(i for i in answered if items[i]["type"] == kind)
        assert [r[0] for r in ledger_rows(clean_env, f"SELECT ID FROM {table} ORDER BY ID")] == expected
    history = ledger_rows(clean_env, "SELECT ACTION, STATUS, ROWS_WRITTEN FROM PIPELINE_RUNS "
                                     "WHERE ACTION = 'backfill'")
    assert history == [("backfill", "succeeded", len(answered))]
    again = hnpipe("backfill", "merge", "--env", "local")
    assert again.returncode == 1 and "merged already" in again.stderr


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def test_staged_files_publish_items_with_the_columns_a_frame_publish_gives(tmp_path: Path) -> None:
    """Through the stage's Parquet files ITEMS gets the same column types as through a frame
    (TIME a naive UTC TIMESTAMP, not TIMESTAMP WITH TIME ZONE), and reads back the same."""
    import pandas as pd

    from hnpipe.environments import Target
    from hnpipe.items import ItemsBuilder
    from hnpipe.stage import open_stage
    from hnpipe.warehouse import DuckDBWarehouse

    target = Target("LOCAL", "TESTER")
    raw = [item for item in generate_sample(n_ids=300, max_item=1_000).values() if item]
    warehouse = DuckDBWarehouse(tmp_path / "framed")
    warehouse.publish_frame(target, "ITEMS", ItemsBuilder().to_frame() if not raw else _frame(raw), "20261207T000000_000001")
    staged = DuckDBWarehouse(tmp_path / "staged")
    stage = open_stage(staged, target)
    writer = stage.writer("runs/20261207T000000_000002")
    builder = ItemsBuilder(on_batch=writer)
    builder.CHUNK_ROWS = 50  # several batches, two files
    writer.part_rows = 100
    for item in raw:
        builder.add(item)
    builder.finish()
    files = writer.close()
    assert len(files) >= 2 and stage.path("runs/20261207T000000_000002").is_dir()
    assert stage.publish(staged, "ITEMS", files, "20261207T000000_000002", gates=(), keep_versions=0) == len(raw)
    assert staged.describe_table(target, "ITEMS") == warehouse.describe_table(target, "ITEMS")
    pd.testing.assert_frame_equal(staged.read_table(target, "ITEMS"), warehouse.read_table(target, "ITEMS"))


def _frame(raw: list[dict]):
    from hnpipe.items import items_frame

    return items_frame(raw)


@pytest.mark.slow
def test_an_environment_backfills_only_its_own_database(clean_env: Path) -> None:
    """The ledger and the stage are guarded like tables: a laptop cannot plan production's."""
    refused = hnpipe("backfill", "plan", "--env", "production", "--from", "1", "--to", "10", "--shard-size", "5")
    assert refused.returncode == 1 and "production" in refused.stderr and "\n" not in refused.stderr.strip()
    assert not (clean_env / "PRODUCTION.duckdb").exists() and not (clean_env / "PRODUCTION.stage").exists()
    from hnpipe.environments import Target
    from hnpipe.errors import GuardError, WarehouseError
    from hnpipe.stage import open_stage
    from hnpipe.warehouse import connect

    from hnpipe.run_context import RunContext

    local = connect(RunContext.for_command("local"))  # the local environment's guard, asked to write production's
    with pytest.raises((GuardError, WarehouseError), match="^refused write to PRODUCTION.HACKER_NEWS"):
        open_stage(local, Target("PRODUCTION", "HACKER_NEWS"))
    assert not (clean_env / "PRODUCTION.stage").exists()
