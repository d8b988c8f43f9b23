"""Snowflake's stage (hnpipe.warehouse.snowflake_stage): the fetched items go to HNPIPE_STAGE
with PUT part by part, and ITEMS is loaded inside Snowflake with COPY INTO .. MATCH_BY_COLUMN_NAME.

fakesnow holds the tables (and runs the gates on real rows); the stage statements, which it
cannot run, go to the stage model (tests/snowflake_stages.py, each rule citing its page).
The privileges side (who may create, write and read the stage) runs on the account model
(tests/snowflake_model.py, R14). What neither can vouch for is in `hnpipe doctor --smoke`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from hnpipe import pipeline
from hnpipe.backfill import merge as merging
from hnpipe.backfill import plan as planning
from hnpipe.backfill.ledger import DONE, RUNNING, Ledger
from hnpipe.environments import Target
from hnpipe.errors import GuardError, HnpipeError, WarehouseError
from hnpipe.sample import DEFAULT_MAX_ITEM
from hnpipe.stage import StagedItems, open_stage
from hnpipe.warehouse import snowflake_stage
from hnpipe.warehouse.snowflake_engine import SnowflakeWarehouse

LOCAL = Target("LOCAL", "TESTER")
FIRST, LAST, SIZE = DEFAULT_MAX_ITEM - 599, DEFAULT_MAX_ITEM, 300  # two shards of the bundled sample


@pytest.fixture
def on_fakesnow(snowflake_process, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HNPIPE_ENV", raising=False)
    monkeypatch.delenv("HNPIPE_NOTEBOOK_OUTPUT", raising=False)
    snowflake_process.create_databases("LOCAL", "PRODUCTION")  # made by admins
    return snowflake_process


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make `name` this process's machine: its own temporary directory, which the stage's
    local parts go to; `gone()` then deletes it, as a finished CI runner is gone."""
    class Runner:
        def __call__(self, name: str) -> Path:
            self.home = tmp_path / name
            self.home.mkdir()
            monkeypatch.setattr(tempfile, "tempdir", str(self.home))
            return self.home

        def gone(self) -> None:
            shutil.rmtree(self.home)

    return Runner()


def no_local_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A staged publish on Snowflake must load inside the warehouse: the Arrow and frame loads
    (which read every row into this process) are not allowed."""
    def refused(*args, **kwargs):
        raise AssertionError("loaded through this process, not from the stage")

    monkeypatch.setattr(SnowflakeWarehouse, "publish_arrow", refused)
    monkeypatch.setattr(SnowflakeWarehouse, "publish_frame", refused)


def values(**overrides) -> dict:
    return {"environment": "local", "hn_api_url": "sample", "n_items": 400, **overrides}


def test_a_run_publishes_items_through_the_stage_with_copy(on_fakesnow, runner, monkeypatch) -> None:
    runner("laptop")
    step = pipeline.start("ITEMS", values())
    items = step.fetch()
    assert isinstance(items, StagedItems) and len(items) > 0
    folder = f"runs/{step.run_id}"
    assert list(on_fakesnow.stages.files("LOCAL", "TESTER")) == [f"{folder}/part-000001.parquet"]  # sent while fetching
    expected = items.to_frame()
    no_local_load(monkeypatch)
    assert step.publish(items) == len(expected)
    stored = step.read("ITEMS")
    pd.testing.assert_frame_equal(stored, expected.sort_values("ID", ignore_index=True))  # TIME, lists, flags survive
    copies = [s for s in on_fakesnow.stages.log if s.startswith("COPY INTO")]
    assert len(copies) == 1 and "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE" in copies[0] and "ON_ERROR = ABORT_STATEMENT" in copies[0]
    assert "AUTO_COMPRESS = FALSE" in next(s for s in on_fakesnow.stages.log if s.startswith("PUT"))
    items.discard()  # what `hnpipe run` does after the publish
    assert on_fakesnow.stages.files("LOCAL", "TESTER") == {} and not items.files[0].exists()


def test_a_bad_file_fails_the_copy_whole_and_items_stays(on_fakesnow, runner, monkeypatch) -> None:
    runner("laptop")
    first = pipeline.start("ITEMS", values(n_items=300))
    first.publish(first.fetch())
    before = first.read("ITEMS")
    step = pipeline.start("ITEMS", values(n_items=300))
    items = step.fetch()
    stage = on_fakesnow.stages.stages[("LOCAL", "TESTER", "HNPIPE_STAGE")]
    (path,) = [p for p in stage.files if p.startswith(f"runs/{step.run_id}/")]
    stage.files[path] = (b"PAR1 not a parquet file", stage.files[path][1])
    with pytest.raises(HnpipeError, match="parquet"):
        step.publish(items)
    after = pipeline.start("ITEMS", values()).read("ITEMS")
    pd.testing.assert_frame_equal(after, before)
    assert [t for t in on_fakesnow.tables("LOCAL", "TESTER") if "__STAGING_" in t] == []


def test_the_guard_refuses_another_environments_stage(on_fakesnow, tmp_path: Path) -> None:
    """local may not touch PRODUCTION's stage: refused before any stage statement, both by
    open_stage and by the engine's stage itself (which asks the guard with where the session is)."""
    from hnpipe import environments

    warehouse = on_fakesnow.warehouse(lambda target: environments.check_write("local", target))
    production = Target("PRODUCTION", "HACKER_NEWS")
    with pytest.raises(GuardError, match="PRODUCTION"):
        open_stage(warehouse, production)
    part = tmp_path / "part-000001.parquet"
    part.write_bytes(b"x")
    with pytest.raises(GuardError, match="PRODUCTION"):
        warehouse.stage(production).upload("runs/R1/part-000001.parquet", part)
    assert on_fakesnow.stages.log == [] and on_fakesnow.stages.stages == {}


def _shard(number: int, plan) -> pipeline.Step:
    shard = plan.shards[number]
    return pipeline.start("ITEMS", values(id_min=shard.id_min, id_max=shard.id_max, backfill_id=plan.backfill_id,
                                          backfill_shard=number))


def _plan(warehouse) -> tuple[Ledger, object]:
    from hnpipe import params

    ledger = Ledger(warehouse, LOCAL)
    plan, _ = planning.freeze(ledger, FIRST, LAST, SIZE, params.params_for("local", {"hn_api_url": "sample"}),
                              {"hn_api_url": "sample"}, LAST)
    return ledger, plan


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_shards_from_two_runners_merge_from_the_stage(on_fakesnow, runner, monkeypatch) -> None:
    """Each shard on its own machine, whose files are gone afterwards: only the stage has them,
    and the merge, on a third machine, reads the manifests with GET and loads with COPY."""
    warehouse = on_fakesnow.warehouse()
    ledger, plan = _plan(warehouse)
    fetched = []
    for number, machine in ((1, "runner-1"), (2, "runner-2")):
        runner(machine)
        step = _shard(number, plan)
        items = step.fetch()
        fetched.append(items.to_frame())
        step.publish(items)
        runner.gone()
    runner("merger")
    assert {s.status for s in ledger.load().shards.values()} == {DONE}
    no_local_load(monkeypatch)
    monkeypatch.setattr(snowflake_stage, "MAX_FILES_PER_COPY", 1)  # as with 1,001 files: one COPY per batch
    published = merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    expected = pd.concat(fetched).sort_values("ID", ignore_index=True)
    assert published == len(expected) > 0
    pd.testing.assert_frame_equal(warehouse.read_table(LOCAL, "ITEMS"), expected)
    assert on_fakesnow.stages.files("LOCAL", "TESTER") == {}  # removed after the merge
    assert any(s.startswith("GET @HNPIPE_STAGE/backfill/") for s in on_fakesnow.stages.log)
    copies = [s for s in on_fakesnow.stages.log if s.startswith("COPY INTO")]
    assert [re.search(r"FILES = \('(shard-\d+)/", s).group(1) for s in copies] == ["shard-000001", "shard-000002"]
    assert all(f"FROM @HNPIPE_STAGE/backfill/{plan.backfill_id}/ " in s for s in copies)


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_a_shard_killed_after_its_upload_is_fetched_again_and_only_the_new_files_merge(
        on_fakesnow, runner, monkeypatch) -> None:
    warehouse = on_fakesnow.warehouse()
    ledger, plan = _plan(warehouse)
    runner("runner-1")
    killed = _shard(1, plan)
    original = Ledger.event

    def killed_before_done(self, shard, status, **values):
        if status == DONE:
            raise KeyboardInterrupt("SIGKILL between the manifest's PUT and the ledger's done row")
        return original(self, shard, status, **values)

    monkeypatch.setattr(Ledger, "event", killed_before_done)
    with pytest.raises(KeyboardInterrupt):
        killed.publish(killed.fetch())
    monkeypatch.setattr(Ledger, "event", original)
    stale = f"backfill/{plan.backfill_id}/shard-000001/{killed.run_id}/"
    assert any(p.startswith(stale) and p.endswith("manifest.json") for p in on_fakesnow.stages.files("LOCAL", "TESTER"))
    assert ledger.load().shards[1].status == RUNNING  # not committed: fetched again
    with pytest.raises(HnpipeError, match=r"shards not done: 1 \(running\)"):
        merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    runner.gone()

    runner("runner-2")
    for number in (1, 2):
        step = _shard(number, plan)
        step.publish(step.fetch())
    assert not any(p.startswith(stale) for p in on_fakesnow.stages.files("LOCAL", "TESTER"))  # the retry removed them
    shard = ledger.load().shards[1]
    assert shard.status == DONE and shard.run_id != killed.run_id and shard.attempts == 2
    published = merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    ids = warehouse.read_table(LOCAL, "ITEMS")["ID"]
    assert published == len(ids) and ids.is_unique and ids.between(FIRST, LAST).all()


def _both_shards_committed(on_fakesnow, runner) -> tuple:
    warehouse = on_fakesnow.warehouse()
    ledger, plan = _plan(warehouse)
    runner("runner-1")
    for number in (1, 2):
        step = _shard(number, plan)
        step.publish(step.fetch())
    return warehouse, ledger


def test_merge_refuses_a_file_missing_from_the_stage(on_fakesnow, runner) -> None:
    warehouse, ledger = _both_shards_committed(on_fakesnow, runner)
    stage = on_fakesnow.stages.stages[("LOCAL", "TESTER", "HNPIPE_STAGE")]
    lost = next(p for p in stage.files if "shard-000002" in p and p.endswith(".parquet"))
    del stage.files[lost]
    with pytest.raises(HnpipeError, match="shard 2 .*part-000001.parquet is missing from the stage"):
        merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    assert "ITEMS" not in warehouse.list_tables(LOCAL)


# -- who may: the account model (tests/snowflake_model.py, R14) ------------------------------
def test_production_creates_its_stage_and_a_reader_may_not_write_it(tmp_path: Path, monkeypatch) -> None:
    from snowflake_account import SETUP
    from snowflake_model import SnowflakeModel

    model = SnowflakeModel()
    model.run("ACCOUNTADMIN", SETUP)
    production = Target("PRODUCTION", "HACKER_NEWS")
    warehouse = SnowflakeWarehouse(lambda target: None, environ=_env(), connect=model.connector("HNPIPE_PROD"))
    stage = open_stage(warehouse, production)
    part = tmp_path / "part-000001.parquet"
    _write_items(part)
    stage.files.upload("runs/R1/part-000001.parquet", part)
    assert stage.listing("runs/R1") == {"part-000001.parquet": part.stat().st_size}
    assert model.stage_rules.stages[("PRODUCTION", "HACKER_NEWS", "HNPIPE_STAGE")].owner == "HNPIPE_PROD"  # S1, R1
    reader = SnowflakeWarehouse(lambda target: None, environ=_env(), connect=model.connector("HNPIPE_READER"))
    reader._execute('USE SCHEMA "PRODUCTION"."HACKER_NEWS"')  # readers may use the schema (setup.sql)
    with pytest.raises(WarehouseError, match=r"Insufficient privileges to operate on stage 'HNPIPE_STAGE' \(WRITE\)"):
        reader._execute(f"PUT 'file://{part}' @HNPIPE_STAGE/runs/R2/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE")


def _env() -> dict:
    from snowflake_fakes import ENV

    return dict(ENV)


def _write_items(path: Path) -> None:
    import pyarrow.parquet as pq

    from hnpipe.stage import STAGE_SCHEMA

    pq.write_table(STAGE_SCHEMA.empty_table(), path)


def test_a_file_copy_did_not_load_is_named_though_another_shard_has_its_name(tmp_path: Path) -> None:
    """Every shard has a part-000001.parquet: COPY's result is matched by whole path, so a file
    Snowflake skipped (e.g. as loaded before) is not hidden by another shard's file of that name."""
    from hnpipe.stage import STAGE_SCHEMA
    from hnpipe.warehouse.snowflake_stage import SnowflakeStage

    names = ["shard-000001/R1/part-000001.parquet", "shard-000002/R2/part-000001.parquet"]
    with pytest.raises(WarehouseError, match="did not load 1 of 2 files, e.g. shard-000002/R2/part-000001.parquet"):
        SnowflakeStage(_Session(), LOCAL, tmp_path).publish("ITEMS", "backfill/B", names, STAGE_SCHEMA, "R9", (), None)


class _Cursor:
    def __init__(self, names, rows):
        self.description = [(name,) for name in names]
        self._rows = rows

    def fetchall(self):
        return self._rows


class _Session:
    """A Snowflake session whose COPY loads only shard 1's part (the stage's statements, else nothing)."""

    def __init__(self):
        self.log = []

    def _use_for_write(self, target):
        return target

    def _execute(self, sql, what=None):
        self.log.append(sql)
        if sql.startswith("COPY"):
            return _Cursor(["file", "status"], [("hnpipe_stage/backfill/B/shard-000001/R1/part-000001.parquet", "LOADED")])
        return _Cursor([], [])

    def _publish(self, target, table, staging, load, expected, gates, keep):
        load()
        return 0


def test_a_staged_file_name_with_a_quote_or_dot_dot_never_reaches_copy(tmp_path: Path) -> None:
    from hnpipe.stage import STAGE_SCHEMA
    from hnpipe.warehouse.snowflake_stage import SnowflakeStage

    for bad in ("shard-000001/R1/x.parquet'), ('../../runs/R9/part-000001.parquet",
                "shard-000001/../../runs/R9/part-000001.parquet"):
        session = _Session()
        with pytest.raises(WarehouseError, match="refused to load .*letters, digits"):
            SnowflakeStage(session, LOCAL, tmp_path).publish("ITEMS", "backfill/B", [bad], STAGE_SCHEMA, "R9", (), None)
        assert not [sql for sql in session.log if sql.startswith(("CREATE TABLE", "COPY"))]


# -- the local folder parts wait in for their PUT -------------------------------------------
def test_the_local_parts_folder_is_this_users_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per user, 0700: a folder shared by every user of the host (as /tmp/hnpipe-stage was) lets
    another one block it or swap a part between its rename and its PUT."""
    import os
    import stat

    from hnpipe.warehouse.snowflake_stage import SnowflakeStage

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / f"hnpipe-stage-{os.getuid()}"
    assert SnowflakeStage(None, LOCAL).local == root / "LOCAL" / "TESTER"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o777)  # made by someone else's umask, or another user
    with pytest.raises(WarehouseError, match=rf"refused the stage's local folder {root}: it is group/world-writable"):
        SnowflakeStage(None, LOCAL)
    root.chmod(0o700)
    monkeypatch.setattr(os, "getuid", lambda: 4242)  # as another user who finds this folder at its name
    (tmp_path / "hnpipe-stage-4242").mkdir(mode=0o700)
    with pytest.raises(WarehouseError, match="owned by uid"):
        SnowflakeStage(None, LOCAL)
    (tmp_path / "hnpipe-stage-4242").rmdir()
    (tmp_path / "hnpipe-stage-4242").symlink_to(root)  # pre-made by another local user
    with pytest.raises(WarehouseError, match="it is a symlink"):
        SnowflakeStage(None, LOCAL)


# -- what a shard leaves behind on a shared stage ---------------------------------------------
def test_a_committed_shard_keeps_no_local_copy_and_still_previews(on_fakesnow, runner) -> None:
    """Once the `done` row is written the stage has the files: the local ones go (this run's
    only), so `backfill run --workers` on a laptop does not hold the backfill twice; the preview
    cells show the shard's rows from what was read before."""
    warehouse = on_fakesnow.warehouse()
    _, plan = _plan(warehouse)
    runner("laptop")
    step = _shard(1, plan)
    items = step.fetch()
    expected = items.to_frame().sort_values("ID", ignore_index=True)
    folder = items.files[0].parent
    other = folder.parent / "20261207T000000_abcdef"  # another run's folder: not this commit's to remove
    other.mkdir()
    assert folder.is_dir()
    step.publish(items)
    assert not folder.exists() and other.is_dir()
    with pytest.raises(HnpipeError, match="no longer on this machine .*step.preview"):
        items.head()  # the fetch cell's `items`, run again after the publish
    assert any(p.endswith(items.files[0].name) for p in on_fakesnow.stages.files("LOCAL", "TESTER"))
    pd.testing.assert_frame_equal(step.preview(3), expected.head(3))
    counts = step.counts_by_type()
    assert counts["ROWS"].sum() == len(expected) and set(counts["TYPE"]) == set(expected["TYPE"])


def test_a_shard_refused_at_its_commit_keeps_its_local_files(on_fakesnow, runner) -> None:
    warehouse = on_fakesnow.warehouse()
    ledger, plan = _plan(warehouse)
    runner("laptop")
    step = _shard(1, plan)
    items = step.fetch()
    ledger.event(ledger.shard(plan.backfill_id, 1), RUNNING, RUN_ID="20261207T000000_other0")  # taken over
    with pytest.raises(HnpipeError, match="taken over"):
        step.publish(items)
    assert all(path.is_file() for path in items.files)


# -- files written with other columns ---------------------------------------------------------
@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_merge_refuses_shards_written_with_other_columns(on_fakesnow, runner, monkeypatch) -> None:
    """Shards written before a column change: COPY .. MATCH_BY_COLUMN_NAME would load the new
    column as NULLs (stage model S6), so the merge refuses them, by the manifests' columns."""
    import json

    import pyarrow as pa

    from hnpipe import stage as staging

    warehouse, ledger = _both_shards_committed(on_fakesnow, runner)
    files = on_fakesnow.stages.stages[("LOCAL", "TESTER", "HNPIPE_STAGE")].files
    second = next(p for p in files if "shard-000002" in p and p.endswith("manifest.json"))
    manifest = json.loads(files[second][0])
    manifest.pop("schema", None)  # as an older hnpipe wrote it
    files[second] = (json.dumps(manifest).encode(), files[second][1])
    with pytest.raises(HnpipeError, match=r"shard\(s\) 2 hold files whose columns .*plan the backfill again"):
        merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    monkeypatch.setattr(staging, "STAGE_SCHEMA", staging.STAGE_SCHEMA.append(pa.field("RANK", pa.int64())))
    with pytest.raises(HnpipeError, match=r"shard\(s\) 1, 2 hold files whose columns are not today's"):
        merging.merge("local", warehouse, LOCAL, ledger, say=lambda line: None)
    assert "ITEMS" not in warehouse.list_tables(LOCAL)
    assert not [s for s in on_fakesnow.stages.log if s.startswith("COPY INTO")]
