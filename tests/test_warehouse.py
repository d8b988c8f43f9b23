"""The embedded warehouse, on real DuckDB files (and real processes for the lock tests)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hnpipe import datasets
from hnpipe.warehouse import duckdb_engine
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError, WarehouseLockedError
from hnpipe.items import empty_items_frame, items_frame
from hnpipe.warehouse import open_warehouse
from hnpipe.warehouse.base import Check
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target("LOCAL", "TESTER")
ITEMS_CHECKS = datasets.get("ITEMS").checks


def docs_items() -> list[dict]:
    return list(json.loads((FIXTURES / "hn_api_docs_items.json").read_text()).values())


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "warehouse"


@pytest.fixture
def wh(directory: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(directory)


@pytest.fixture
def items() -> pd.DataFrame:
    return items_frame(docs_items())


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in the directory by content: 'nothing written' means this did not change."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def all_tables(path: Path) -> list[str]:
    """Every table in a database file, staging tables included (list_tables hides those)."""
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())


def hold_lock(path: Path, seconds: float | None = None) -> subprocess.Popen:
    """Another process holding `path` open for writing, as a JupyterLab kernel might.

    Holds it until its stdin closes, or for `seconds`; returns once the lock is held.
    """
    release = f"time.sleep({seconds})" if seconds is not None else "sys.stdin.read()"
    code = (f"import duckdb, sys, time\ncon = duckdb.connect({str(path)!r})\n"
            f"print('holding', flush=True)\n{release}\ncon.close()\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def release(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait(timeout=10)


# -- round trip -------------------------------------------------------------------------------
def test_publish_then_read_round_trips_exactly(wh: DuckDBWarehouse, items: pd.DataFrame) -> None:
    assert wh.publish_frame(TARGET, "ITEMS", items, "run1", ITEMS_CHECKS) == len(items) == 6
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), items, check_exact=True)

    empty = empty_items_frame()
    assert wh.publish_frame(TARGET, "EMPTY", empty, "run1") == 0
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "EMPTY"), empty)


def test_stored_types_are_plain_sql_types_with_utc_wall_time(wh: DuckDBWarehouse, items) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    with duckdb.connect(str(wh.path("LOCAL")), read_only=True) as con:
        con.execute("SET TimeZone = 'America/Los_Angeles'")  # must not matter: TIMESTAMP is naive
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'ITEMS'").fetchall())
        time_text = con.execute('SELECT CAST("TIME" AS VARCHAR) FROM "TESTER"."ITEMS" '
                                'WHERE "ID" = 8863').fetchone()[0]
    assert types == {"ID": "BIGINT", "DELETED": "BOOLEAN", "TYPE": "VARCHAR", "USER_ID": "VARCHAR",
                     "TIME": "TIMESTAMP", "TEXT": "VARCHAR", "DEAD": "BOOLEAN", "PARENT": "BIGINT",
                     "POLL": "BIGINT", "KIDS": "BIGINT[]", "URL": "VARCHAR", "SCORE": "BIGINT",
                     "TITLE": "VARCHAR", "PARTS": "BIGINT[]", "DESCENDANTS": "BIGINT"}
    # The item's unix time 1175714200 is 2007-04-04 19:16:40 UTC.
    expected = pd.Timestamp(1175714200, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    assert time_text == expected


def test_publish_replaces_the_old_table(wh: DuckDBWarehouse, items: pd.DataFrame) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    newer = items.iloc[:2].reset_index(drop=True)
    assert wh.publish_frame(TARGET, "ITEMS", newer, "run2") == 2
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), newer)
    assert all_tables(wh.path("LOCAL")) == ["ITEMS"]


def test_publish_query_runs_in_the_target_schema(wh: DuckDBWarehouse, items) -> None:
    other = Target("LOCAL", "SOMEONE_ELSE")
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    wh.publish_frame(other, "ITEMS", items.iloc[:1], "run1")  # same name, another schema
    stories = datasets.get("STORIES")
    assert wh.publish_query(TARGET, "STORIES", stories.sql, "run1", stories.checks) == 2
    assert wh.read_table(TARGET, "STORIES").ID.tolist() == [8863, 121003]
    assert wh.publish_query(other, "STORIES", stories.sql, "run1", stories.checks) == 1


# -- all or nothing ------------------------------------------------------------------------------
def fail_check(wh, monkeypatch, frame):
    checks = (Check("no_jobs", "SELECT ID FROM {table} WHERE TYPE = 'job'"),)
    wh.publish_frame(TARGET, "ITEMS", frame, "run2", checks)


def fail_between_load_and_swap(wh, monkeypatch, frame):
    def crash(*args, **kwargs):
        raise RuntimeError("crash after loading staging")

    monkeypatch.setattr(DuckDBWarehouse, "_run_checks", crash)
    wh.publish_frame(TARGET, "ITEMS", frame, "run2")


def fail_inside_the_swap(wh, monkeypatch, frame):
    # The old table is dropped inside the transaction, then the rename fails: roll back.
    monkeypatch.setattr(duckdb_engine, "_swap_sql", lambda table, staging: [
        f'DROP TABLE "{table}"', "SELECT error('rename failed')"])
    wh.publish_frame(TARGET, "ITEMS", frame, "run2")


def fail_conversion(wh, monkeypatch, frame):
    frame = frame.astype({"SCORE": object})
    frame.loc[0, "SCORE"] = "not a number"
    wh.publish_frame(TARGET, "ITEMS", frame, "run2")


@pytest.mark.parametrize("failure,message", [
    (fail_check, r"refused to publish LOCAL\.TESTER\.ITEMS: failed checks: no_jobs \(1 rows, e\.g\. ID 192327\)"),
    (fail_between_load_and_swap, "crash after loading staging"),
    (fail_inside_the_swap, "rename failed"),
    (fail_conversion, r"cannot publish LOCAL\.TESTER\.ITEMS: .*SCORE"),
])
def test_a_failed_publish_leaves_the_old_table_whole(wh, items, monkeypatch, failure, message) -> None:
    old = items.iloc[:3].reset_index(drop=True)
    wh.publish_frame(TARGET, "ITEMS", old, "run1")
    with pytest.raises(Exception, match=message):
        failure(wh, monkeypatch, items)
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), old)
    assert all_tables(wh.path("LOCAL")) == ["ITEMS"]  # no staging table left behind
    monkeypatch.undo()
    assert wh.publish_frame(TARGET, "ITEMS", items, "run3") == 6  # and the next run works


def test_row_count_mismatch_is_refused(wh, items, monkeypatch) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    real = duckdb_engine.frame_to_arrow
    monkeypatch.setattr(duckdb_engine, "frame_to_arrow", lambda frame, dest: real(frame, dest).slice(1))
    with pytest.raises(WarehouseError, match="staged 5 rows, expected 6"):
        wh.publish_frame(TARGET, "ITEMS", items, "run2")
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), items)


def test_leftover_staging_tables_are_cleaned_by_the_next_publish(wh, items) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    with duckdb.connect(str(wh.path("LOCAL"))) as con:  # what a killed run leaves behind
        con.execute('CREATE TABLE "TESTER"."ITEMS__STAGING_CRASHED" AS SELECT 1 AS ID')
        con.execute('CREATE TABLE "TESTER"."OTHER__STAGING_CRASHED" AS SELECT 1 AS ID')
    assert wh.list_tables(TARGET) == {"ITEMS": 6}  # staging tables are never listed

    wh.publish_frame(TARGET, "ITEMS", items.iloc[:1], "run2")
    # ITEMS' leftovers go; another table's staging is that table's business.
    assert all_tables(wh.path("LOCAL")) == ["ITEMS", "OTHER__STAGING_CRASHED"]


# -- the write guard ---------------------------------------------------------------------------
def writes(items):
    stories = datasets.get("STORIES")
    return {
        "publish_frame": lambda wh, target: wh.publish_frame(target, "ITEMS", items, "run2"),
        "publish_query": lambda wh, target: wh.publish_query(target, "STORIES", stories.sql, "run2"),
        "ensure_schema": lambda wh, target: wh.ensure_schema(target),
    }


@pytest.mark.parametrize("write", ["publish_frame", "publish_query", "ensure_schema"])
def test_guard_sees_the_connections_actual_location_before_writing(directory, items, write) -> None:
    DuckDBWarehouse(directory).publish_frame(TARGET, "ITEMS", items, "run1")
    seen = []
    writes(items)[write](DuckDBWarehouse(directory, write_guard=seen.append), TARGET)
    assert seen == [TARGET]


@pytest.mark.parametrize("write", ["publish_frame", "publish_query", "ensure_schema"])
@pytest.mark.parametrize("target", [TARGET, Target("LOCAL", "NEW_SCHEMA"), Target("NEWDB", "TESTER")],
                         ids=["existing", "new-schema", "new-database"])
def test_a_refusing_guard_writes_nothing(directory, items, write, target) -> None:
    DuckDBWarehouse(directory).publish_frame(TARGET, "ITEMS", items, "run1")
    before = fingerprint(directory)
    seen = []

    def refuse(actual: Target) -> None:
        seen.append(actual)
        raise GuardError(f"refused write to {actual}")

    with pytest.raises(GuardError, match=f"refused write to {target}"):
        writes(items)[write](DuckDBWarehouse(directory, write_guard=refuse), target)
    assert seen == [target]
    assert fingerprint(directory) == before  # same files, same bytes


def test_a_refused_first_write_does_not_create_the_directory(tmp_path: Path, items) -> None:
    directory = tmp_path / "never"

    def refuse(actual: Target) -> None:
        raise GuardError("no")

    with pytest.raises(GuardError):
        DuckDBWarehouse(directory, write_guard=refuse).publish_frame(TARGET, "ITEMS", items, "run1")
    assert not directory.exists()


@pytest.mark.parametrize("table,run_id", [("items", "run1"), ("ITEMS; DROP", "run1"),
                                          ("ITEMS", "run-1"), ('ITEMS"', "run1")])
def test_bad_names_are_refused_before_anything_is_written(tmp_path: Path, items, table, run_id) -> None:
    directory = tmp_path / "warehouse"
    with pytest.raises(GuardError, match="identifiers must match"):
        DuckDBWarehouse(directory).publish_frame(TARGET, table, items, run_id)
    with pytest.raises(GuardError, match="identifiers must match"):
        DuckDBWarehouse(directory).publish_frame(TARGET, "ITEMS", items.rename(columns={"ID": "id"}), "r")
    assert not directory.exists()


def test_read_only_databases_refuse_writes_but_read(directory, items) -> None:
    production = Target("PRODUCTION", "HACKER_NEWS")
    DuckDBWarehouse(directory).publish_frame(production, "ITEMS", items, "run1")
    before = fingerprint(directory)
    guarded = DuckDBWarehouse(directory, read_only_databases=("PRODUCTION",))
    with pytest.raises(WarehouseError, match="refused write to PRODUCTION.HACKER_NEWS: .*read-only"):
        guarded.publish_frame(production, "ITEMS", items.iloc[:1], "run2")
    with pytest.raises(WarehouseError, match="read-only"):
        guarded.ensure_schema(Target("PRODUCTION", "OTHER"))
    assert len(guarded.read_table(production, "ITEMS")) == 6
    assert fingerprint(directory) == before


# -- locks -------------------------------------------------------------------------------------
def test_a_file_held_by_another_process_times_out_clearly(directory, items) -> None:
    wh = DuckDBWarehouse(directory, lock_timeout_s=0.3)
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    holder = hold_lock(wh.path("LOCAL"))
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError) as error:
            wh.publish_frame(TARGET, "ITEMS", items.iloc[:1], "run2")
        waited = time.monotonic() - started
        with pytest.raises(WarehouseLockedError):
            wh.read_table(TARGET, "ITEMS")  # a writer elsewhere blocks readers too
    finally:
        release(holder)
    message = str(error.value)
    assert str(wh.path("LOCAL")) in message and "waited 0.3 s" in message
    assert f"locked by PID {holder.pid} (" in message and "\n" not in message
    assert 0.3 <= waited < 5
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), items)  # nothing written


def test_a_lock_released_within_the_timeout_is_waited_for(directory, items) -> None:
    wh = DuckDBWarehouse(directory, lock_timeout_s=20)
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    holder = hold_lock(wh.path("LOCAL"), seconds=0.5)
    try:
        assert wh.publish_frame(TARGET, "ITEMS", items.iloc[:1], "run2") == 1
    finally:
        holder.wait(timeout=10)
    assert wh.list_tables(TARGET) == {"ITEMS": 1}


def test_lock_timeout_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HNPIPE_LOCK_TIMEOUT_S", "0.25")
    assert DuckDBWarehouse(tmp_path).lock_timeout_s == 0.25
    assert DuckDBWarehouse(tmp_path, lock_timeout_s=2).lock_timeout_s == 2  # explicit wins
    monkeypatch.setenv("HNPIPE_LOCK_TIMEOUT_S", "soon")
    with pytest.raises(WarehouseError, match="invalid HNPIPE_LOCK_TIMEOUT_S 'soon': use a number"):
        DuckDBWarehouse(tmp_path)
    with pytest.raises(WarehouseError, match="invalid lock_timeout_s -1"):
        DuckDBWarehouse(tmp_path, lock_timeout_s=-1)


# -- clone and drop ----------------------------------------------------------------------------
def test_clone_is_an_identical_copy_that_later_writes_do_not_share(directory, items) -> None:
    wh = DuckDBWarehouse(directory, read_only_databases=("PRODUCTION",))
    production = Target("PRODUCTION", "HACKER_NEWS")
    clone = Target("PRODUCTION_CLONE_12", "HACKER_NEWS")
    DuckDBWarehouse(directory).publish_frame(production, "ITEMS", items, "run1")
    DuckDBWarehouse(directory).publish_query(production, "STORIES", datasets.get("STORIES").sql, "run1")
    source_before = fingerprint(directory)

    wh.clone_database("PRODUCTION", clone.database)
    assert wh.list_databases() == ["PRODUCTION", "PRODUCTION_CLONE_12"]
    assert wh.list_tables(clone) == wh.list_tables(production) == {"ITEMS": 6, "STORIES": 2}
    for table in ("ITEMS", "STORIES"):
        pd.testing.assert_frame_equal(wh.read_table(clone, table), wh.read_table(production, table))
    assert fingerprint(directory)["PRODUCTION.duckdb"] == source_before["PRODUCTION.duckdb"]
    assert sorted(p.name for p in directory.iterdir()) == ["PRODUCTION.duckdb", "PRODUCTION_CLONE_12.duckdb"]

    wh.publish_frame(clone, "ITEMS", items.iloc[:1], "run2")
    assert wh.list_tables(clone)["ITEMS"] == 1
    pd.testing.assert_frame_equal(wh.read_table(production, "ITEMS"), items)
    assert fingerprint(directory)["PRODUCTION.duckdb"] == source_before["PRODUCTION.duckdb"]

    wh.clone_database("PRODUCTION", clone.database)  # a fresh clone replaces the old one
    assert wh.list_tables(clone)["ITEMS"] == 6


def test_clone_refuses_missing_sources_and_non_clone_destinations(directory, items) -> None:
    wh = DuckDBWarehouse(directory)
    with pytest.raises(WarehouseError, match="cannot clone PRODUCTION: no database file"):
        wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_1")
    wh.publish_frame(Target("STAGING", "HACKER_NEWS"), "ITEMS", items, "run1")
    before = fingerprint(directory)
    for dest in ("STAGING", "LOCAL", "PRODUCTION", "../PRODUCTION_CLONE_1"):
        with pytest.raises(GuardError, match=f"refused to clone database {dest!r}"):
            wh.clone_database("STAGING", dest)
    assert fingerprint(directory) == before


def test_clone_waits_for_a_writer_on_the_source(directory, items) -> None:
    wh = DuckDBWarehouse(directory, lock_timeout_s=0.2)
    wh.publish_frame(Target("PRODUCTION", "HACKER_NEWS"), "ITEMS", items, "run1")
    holder = hold_lock(wh.path("PRODUCTION"))
    try:
        with pytest.raises(WarehouseLockedError, match="PRODUCTION.duckdb is locked"):
            wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_3")
    finally:
        release(holder)
    assert wh.list_databases() == ["PRODUCTION"]
    assert sorted(p.name for p in directory.iterdir()) == ["PRODUCTION.duckdb"]  # no temp file


HOSTILE = ["PRODUCTION", "STAGING", "LOCAL", "PRODUCTION_CLONE_", "production_clone_1",
           "PRODUCTION_CLONE_1; DROP", "PRODUCTION_CLONE_01", "../PRODUCTION", "../PRODUCTION_CLONE_1",
           "PRODUCTION_CLONE_1/../PRODUCTION", "PRODUCTION_CLONE_1\n", " PRODUCTION_CLONE_1", "", None, 1]


def test_drop_refuses_every_name_but_a_clone_and_leaves_files_in_place(directory, items) -> None:
    wh = DuckDBWarehouse(directory)
    for database in ("PRODUCTION", "STAGING", "LOCAL"):
        wh.publish_frame(Target(database, "HACKER_NEWS"), "ITEMS", items, "run1")
    wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_1")
    before = fingerprint(directory)
    for name in HOSTILE:
        with pytest.raises(GuardError) as error:
            wh.drop_database(name)
        assert str(error.value) == (f"refused to drop database {name!r}: only PRODUCTION_CLONE_<digits> "
                                    "databases (e.g. PRODUCTION_CLONE_123) may be the target of drop")
    assert fingerprint(directory) == before


def test_drop_removes_a_clone_and_says_when_there_was_none(directory, items) -> None:
    wh = DuckDBWarehouse(directory)
    wh.publish_frame(Target("PRODUCTION", "HACKER_NEWS"), "ITEMS", items, "run1")
    wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_5")
    assert wh.drop_database("PRODUCTION_CLONE_5") is True
    assert wh.drop_database("PRODUCTION_CLONE_5") is False
    assert wh.list_databases() == ["PRODUCTION"]
    assert sorted(p.name for p in directory.iterdir()) == ["PRODUCTION.duckdb"]


# -- listing and querying ---------------------------------------------------------------------
def test_reads_of_a_missing_directory_are_empty_and_create_nothing(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "missing")
    assert wh.list_databases() == []
    assert wh.list_tables(TARGET) == {}
    assert wh.database_exists("LOCAL") is False
    with pytest.raises(WarehouseError, match=r"no table LOCAL\.TESTER\.ITEMS in "):
        wh.read_table(TARGET, "ITEMS")
    assert not (tmp_path / "missing").exists()


def test_list_tables_and_databases(directory, items) -> None:
    wh = DuckDBWarehouse(directory)
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    wh.publish_query(TARGET, "COMMENTS", datasets.get("COMMENTS").sql, "run1")
    wh.ensure_schema(Target("LOCAL", "EMPTY"))
    wh.publish_frame(Target("STAGING", "HACKER_NEWS"), "ITEMS", items.iloc[:4], "run1")
    (directory / "notes.duckdb").write_text("not ours")  # not an upper-case identifier
    assert wh.list_databases() == ["LOCAL", "STAGING"]
    assert wh.list_tables(TARGET) == {"COMMENTS": 1, "ITEMS": 6}
    assert wh.list_tables(Target("LOCAL", "EMPTY")) == {}
    assert wh.list_tables(Target("LOCAL", "NOPE")) == {}
    assert wh.list_tables(Target("STAGING", "HACKER_NEWS")) == {"ITEMS": 4}
    assert wh.table_exists(TARGET, "COMMENTS") and not wh.table_exists(TARGET, "STORIES")
    with pytest.raises(WarehouseError, match=r"no table LOCAL\.TESTER\.STORIES in "):
        wh.read_table(TARGET, "STORIES")


def test_query_is_read_only_and_returns_hnpipe_dtypes(wh: DuckDBWarehouse, items) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    before = fingerprint(wh.directory)
    result = wh.query(TARGET, "SELECT ID, TIME, KIDS FROM ITEMS WHERE SCORE > ? ORDER BY ID", [100])
    expected = items[items.SCORE > 100][["ID", "TIME", "KIDS"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(result, expected)
    with pytest.raises(WarehouseError, match=r"query in LOCAL\.TESTER failed: .*read-only"):
        wh.query(TARGET, "DROP TABLE ITEMS")
    with pytest.raises(WarehouseError, match=r"no schema LOCAL\.NOPE"):
        wh.query(Target("LOCAL", "NOPE"), "SELECT 1")
    assert fingerprint(wh.directory) == before


def test_open_warehouse_builds_duckdb_from_a_spec(tmp_path: Path) -> None:
    opened = open_warehouse(f"duckdb:{tmp_path}", lock_timeout_s=1)
    assert isinstance(opened, DuckDBWarehouse) and opened.engine == "duckdb"
    assert opened.directory == tmp_path and opened.lock_timeout_s == 1


def test_query_across_reads_several_databases_read_only(tmp_path) -> None:
    import hashlib

    wh = DuckDBWarehouse(tmp_path)
    prod = Target("PRODUCTION", "HACKER_NEWS")
    wh.publish_frame(prod, "ITEMS", items_frame([{"id": 1, "type": "story"}, {"id": 2, "type": "comment"}]), "r1")
    wh.clone_database("PRODUCTION", "PRODUCTION_CLONE_3")
    clone = Target("PRODUCTION_CLONE_3", "HACKER_NEWS")
    wh.publish_frame(clone, "ITEMS", items_frame([{"id": 2, "type": "comment"}, {"id": 3, "type": "job"}]), "r2")
    before = hashlib.sha256(wh.path("PRODUCTION").read_bytes()).hexdigest()
    added = wh.query_across(
        ["PRODUCTION", "PRODUCTION_CLONE_3"],
        'SELECT ID FROM "PRODUCTION_CLONE_3"."HACKER_NEWS"."ITEMS" EXCEPT '
        'SELECT ID FROM "PRODUCTION"."HACKER_NEWS"."ITEMS" ORDER BY ID')
    assert added.ID.tolist() == [3]
    assert hashlib.sha256(wh.path("PRODUCTION").read_bytes()).hexdigest() == before
    with pytest.raises(WarehouseError, match="no database NOPE"):
        wh.query_across(["NOPE"], "SELECT 1")
    with pytest.raises(WarehouseError, match="failed"):
        wh.query_across(["PRODUCTION"], 'DELETE FROM "PRODUCTION"."HACKER_NEWS"."ITEMS"')
    infos = {info.name: info for info in wh.describe_databases()}
    assert set(infos) == {"PRODUCTION", "PRODUCTION_CLONE_3"}
    assert infos["PRODUCTION"].size_bytes == wh.path("PRODUCTION").stat().st_size > 0
    assert infos["PRODUCTION_CLONE_3"].created is not None and infos["PRODUCTION_CLONE_3"].created.tzinfo
