"""What only the embedded engine has, on real DuckDB files (and real processes for the lock
tests): the SQL types in the file, locks, read-only PRODUCTION, the warehouse directory, files
left byte-identical. What both engines promise is in test_warehouse_contract.py."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hnpipe import datasets
from hnpipe.warehouse import duckdb_engine
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError, WarehouseLockedError
from hnpipe.items import items_frame
from hnpipe.warehouse import open_warehouse, spec_for
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from duckdb_holders import hold_lock, release

FIXTURES = Path(__file__).parent / "fixtures"
TARGET = Target("LOCAL", "TESTER")


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


# -- round trip -------------------------------------------------------------------------------
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


# -- all or nothing ------------------------------------------------------------------------------
def test_row_count_mismatch_is_refused(wh, items, monkeypatch) -> None:
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    real = duckdb_engine.frame_to_arrow
    monkeypatch.setattr(duckdb_engine, "frame_to_arrow", lambda frame, dest: real(frame, dest).slice(1))
    with pytest.raises(WarehouseError, match="staged 5 rows, expected 6"):
        wh.publish_frame(TARGET, "ITEMS", items, "run2")
    pd.testing.assert_frame_equal(wh.read_table(TARGET, "ITEMS"), items)


# -- the write guard ---------------------------------------------------------------------------
@pytest.mark.parametrize("write", ["publish_frame", "ensure_schema"])
@pytest.mark.parametrize("target", [TARGET, Target("NEWDB", "TESTER")], ids=["existing", "new-database"])
def test_a_refusing_guard_leaves_every_file_byte_identical(directory, items, write, target) -> None:
    DuckDBWarehouse(directory).publish_frame(TARGET, "ITEMS", items, "run1")
    before = fingerprint(directory)
    seen = []

    def refuse(actual: Target) -> None:
        seen.append(actual)
        raise GuardError(f"refused write to {actual}")

    with pytest.raises(GuardError, match=f"refused write to {target}"):
        refusing = DuckDBWarehouse(directory, write_guard=refuse)
        refusing.ensure_schema(target) if write == "ensure_schema" else refusing.publish_frame(target, "ITEMS", items, "r2")
    assert seen == [target]
    assert fingerprint(directory) == before  # same files, same bytes


def test_a_refused_first_write_does_not_create_the_directory(tmp_path: Path, items) -> None:
    directory = tmp_path / "never"

    def refuse(actual: Target) -> None:
        raise GuardError("no")

    with pytest.raises(GuardError):
        DuckDBWarehouse(directory, write_guard=refuse).publish_frame(TARGET, "ITEMS", items, "run1")
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
@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- listing and querying ---------------------------------------------------------------------
def test_reads_of_a_missing_directory_are_empty_and_create_nothing(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "missing")
    assert wh.list_databases() == []
    assert wh.list_tables(TARGET) == {}
    assert wh.database_exists("LOCAL") is False
    with pytest.raises(WarehouseError, match=r"no table LOCAL\.TESTER\.ITEMS in "):
        wh.read_table(TARGET, "ITEMS")
    assert not (tmp_path / "missing").exists()


def test_only_files_named_as_databases_are_databases(directory, items) -> None:
    wh = DuckDBWarehouse(directory)
    wh.publish_frame(TARGET, "ITEMS", items, "run1")
    (directory / "notes.duckdb").write_text("not ours")  # not an upper-case identifier
    (directory / "OLD.duckdb.bak").write_text("not a database file")
    assert wh.list_databases() == ["LOCAL"]
    assert [info.name for info in wh.describe_databases()] == ["LOCAL"]
    assert wh.describe_databases()[0].size_bytes == wh.path("LOCAL").stat().st_size


def test_open_warehouse_builds_duckdb_from_a_spec(tmp_path: Path) -> None:
    opened = open_warehouse(f"duckdb:{tmp_path}", lock_timeout_s=1)
    assert isinstance(opened, DuckDBWarehouse) and opened.engine == "duckdb"
    assert opened.directory == tmp_path and opened.lock_timeout_s == 1




# -- engines answer for themselves -------------------------------------------------------------
def test_the_embedded_engine_says_what_it_can_do_and_refuses_account_methods_in_one_line(tmp_path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    assert (warehouse.LOGS_IN, warehouse.CREATES_DATABASES, warehouse.SUPPORTS_GRANTS) == (False, True, False)
    assert warehouse.where == str(tmp_path / "wh") and warehouse.catalog("LOCAL") == "INFORMATION_SCHEMA"
    for call in (lambda: warehouse.grant_usage("PRODUCTION_CLONE_1", "READER"), lambda: warehouse.run_grants([]),
                 lambda: warehouse.show_grants("READER"), lambda: warehouse.execute("SELECT 1")):
        with pytest.raises(WarehouseError, match=r"^\w+ is not available on the duckdb warehouse$"):
            call()
    assert not (tmp_path / "wh").exists()


def test_a_new_engine_is_served_from_its_registry_line_alone(tmp_path, monkeypatch) -> None:
    """A third engine registered under its own name (here the embedded engine's class again):
    HNPIPE_WAREHOUSE reaches it, and the dry run checks it, with nothing else changed."""
    from hnpipe.runner import preflight
    from hnpipe.warehouse import registry

    monkeypatch.setitem(registry.ENGINES, "third", registry.Engine("third", "hnpipe.warehouse.duckdb_engine",
                                                                    "DuckDBWarehouse", keeps_files=True))
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"third:{tmp_path / 'wh'}")
    spec = spec_for("local")
    assert spec == registry.WarehouseSpec("third", str(tmp_path / "wh")) and spec.directory == tmp_path / "wh"
    assert isinstance(open_warehouse(spec), DuckDBWarehouse)
    checks = {check.name: check for check in preflight.dry_run("local")}
    assert checks["engine"].detail == f"third:{tmp_path / 'wh'}"
    assert checks["warehouse"].ok and checks["warehouse"].detail.startswith(f"{tmp_path / 'wh'} usable")
