"""The warehouse contract: every promise of `hnpipe.warehouse.base.Warehouse`, held by both engines.

Each test runs twice, on the embedded DuckDB engine (real files in a tmp dir) and on the
Snowflake engine (fakesnow 0.12.1 in process, through `fake_snowflake` from
tests/snowflake_fakes.py, which replays `ALTER TABLE .. SWAP WITH` as renames). What fakesnow
cannot do (clone a database with its tables, DROP DATABASE) is marked xfail on the Snowflake
parameter with the reason, and pinned as recorded SQL in test_snowflake_warehouse.py.
What only one engine has (DuckDB's file locks and read-only PRODUCTION; Snowflake's SQL text,
query tag, credentials, quoting) is tested in test_warehouse.py and test_snowflake_warehouse.py.

Every check of what is stored asks the engine's own storage directly (DuckDB files, fakesnow's
INFORMATION_SCHEMA), so an engine is never its own witness for "nothing was written".
"""

from __future__ import annotations

import warnings

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import snowflake.connector.errors
from hnpipe import datasets
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.items import empty_items_frame, items_frame
from hnpipe.warehouse import duckdb_engine
from hnpipe.warehouse.base import Gate, Warehouse
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from snowflake_fakes import FakeSnowflake

T = Target("STAGING", "HACKER_NEWS")
OTHER = Target("STAGING", "OTHER")  # same database, another schema
PROD = Target("PRODUCTION", "HACKER_NEWS")
CLONE = Target("PRODUCTION_CLONE_7", "HACKER_NEWS")
STORIES = datasets.get("STORIES")
COMMENTS = datasets.get("COMMENTS")

RAW = [
    {"id": 13, "type": "poll", "by": "dee", "time": 1_700_000_300, "parts": [14, 15], "dead": True, "score": 5},
    {"id": 10, "type": "story", "by": "ann", "time": 1_700_000_000, "kids": [11, 12], "title": "Show HN",
     "url": "https://example.com", "score": 42, "descendants": 2},
    {"id": 12, "type": "comment", "by": "cy", "time": 1_700_000_200, "parent": 10, "deleted": True},
    {"id": 11, "type": "comment", "by": "bob", "time": 1_700_000_100, "parent": 10, "text": "Nice 'quoted' \\ é",
     "kids": []},
    {"id": 20, "type": "story", "by": "eve", "time": 1_700_001_000, "title": "Ask HN", "score": 1},
]


def items(*ids: int) -> pd.DataFrame:
    """ITEMS for the given ids of RAW (all when none), in RAW's (unsorted) order."""
    return items_frame([raw for raw in RAW if not ids or raw["id"] in ids])


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("ID", kind="stable").reset_index(drop=True)


# -- the two engines ---------------------------------------------------------------------------
class DuckDBEngine:
    name = "duckdb"

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = tmp_path / "warehouse"
        self.monkeypatch = monkeypatch
        self.made: list[Warehouse] = []

    def warehouse(self, guard: Callable[[Target], None] | None = None) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.directory, write_guard=guard)

    def all_tables(self, target: Target) -> dict[str, int]:
        """Every table in target's schema with its rows, staging and versions included."""
        path = self.directory / f"{target.database}.duckdb"
        if not path.is_file():
            return {}
        with duckdb.connect(str(path), read_only=True) as con:
            names = [row[0] for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [target.schema]).fetchall()]
            return {name: con.execute(f'SELECT COUNT(*) FROM "{target.schema}"."{name}"').fetchone()[0]
                    for name in names}

    def create_table(self, target: Target, name: str) -> None:
        """A table made behind hnpipe's back (e.g. what a killed run leaves), one row."""
        with duckdb.connect(str(self.directory / f"{target.database}.duckdb")) as con:
            con.execute(f'CREATE TABLE "{target.schema}"."{name}" AS SELECT 1::BIGINT AS "ID"')

    def break_swap(self) -> None:
        """The next swap fails inside its transaction, after the old table is already gone."""
        self.monkeypatch.setattr(duckdb_engine, "_swap_sql", lambda table, staging, keep_as=None: [
            f'DROP TABLE "{table}"', "SELECT error('the swap failed half-way')"])

    def sessions_open(self) -> int:
        return 0  # connections live for one operation only


class SnowflakeEngine:
    name = "snowflake"

    def __init__(self, fake: FakeSnowflake) -> None:
        # Databases are made by an admin on Snowflake; hnpipe creates schemas only.
        self.fake = fake.create_databases("STAGING", "PRODUCTION")

    def warehouse(self, guard: Callable[[Target], None] | None = None) -> Warehouse:
        return self.fake.warehouse(guard)

    def all_tables(self, target: Target) -> dict[str, int]:
        if target.database not in self.fake.databases():
            return {}
        return self.fake.tables(target.database, target.schema)

    def create_table(self, target: Target, name: str) -> None:
        self.fake.cursor().execute(
            f'CREATE TABLE "{target.database}"."{target.schema}"."{name}" AS SELECT 1 AS "ID"')

    def break_swap(self) -> None:
        self.fake.fail_swaps = snowflake.connector.errors.ProgrammingError(msg="the swap failed")

    def sessions_open(self) -> int:
        return sum(not connection.is_closed() for connection in self.fake.connections)


@pytest.fixture(params=["duckdb", "snowflake"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if request.param == "duckdb":
        return DuckDBEngine(tmp_path, monkeypatch)
    return SnowflakeEngine(request.getfixturevalue("fake_snowflake"))


@pytest.fixture
def wh(engine) -> Warehouse:
    """A warehouse whose STAGING.HACKER_NEWS and PRODUCTION.HACKER_NEWS exist."""
    warehouse = engine.warehouse()
    warehouse.ensure_schema(T)
    warehouse.ensure_schema(PROD)
    yield warehouse
    warehouse.close()


def snowflake_cannot(reason: str) -> Callable:
    """xfail on the Snowflake parameter only, strict: a fakesnow that learns it shows up."""
    def mark(request: pytest.FixtureRequest) -> None:
        if request.getfixturevalue("engine").name == "snowflake":
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    return mark


# -- reads ---------------------------------------------------------------------------------------
def test_databases_are_listed_sorted_and_found_by_name(wh: Warehouse) -> None:
    assert wh.list_databases() == ["PRODUCTION", "STAGING"]
    assert wh.database_exists("STAGING") and not wh.database_exists("PRODUCTION_CLONE_9")
    with pytest.raises(GuardError, match="identifiers must match"):
        wh.database_exists("staging")


def test_tables_are_listed_with_their_rows_and_bookkeeping_only_on_request(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(10, 11), "run1", keep_versions=2)
    wh.publish_frame(T, "ITEMS", items(), "run2", keep_versions=2)  # keeps ITEMS__VERSION_RUN2
    wh.append_rows(T, "PIPELINE_RUNS", pd.DataFrame({"RUN_ID": pd.array(["run2"], dtype="string")}))
    engine.create_table(T, "ITEMS__STAGING_CRASHED")
    assert wh.list_tables(T) == {"ITEMS": 5}
    assert wh.list_tables(T, bookkeeping=True) == {
        "ITEMS": 5, "ITEMS__VERSION_RUN2": 2, "PIPELINE_RUNS": 1, "ITEMS__STAGING_CRASHED": 1}
    assert wh.table_exists(T, "ITEMS") and not wh.table_exists(T, "ITEMS__STAGING_CRASHED")
    assert wh.list_tables(OTHER) == {}  # a missing schema
    assert wh.list_tables(Target("LOCAL", "TESTER")) == {}  # a missing database


def test_a_published_frame_reads_back_with_the_same_values_and_dtypes_ordered_by_id(wh: Warehouse) -> None:
    frame = items()
    frame.index = [7, 3, 9, 1, 5]  # not a default index: neither engine may store or depend on it
    assert wh.publish_frame(T, "ITEMS", frame, "run1") == 5
    back = wh.read_table(T, "ITEMS")
    pd.testing.assert_frame_equal(back, by_id(frame), check_exact=True)
    assert {column: str(back[column].dtype) for column in ("ID", "DELETED", "TYPE", "TIME", "KIDS", "PARTS")} == {
        "ID": "Int64", "DELETED": "boolean", "TYPE": "string", "TIME": "datetime64[us, UTC]",
        "KIDS": "list<item: int64>[pyarrow]", "PARTS": "list<item: int64>[pyarrow]"}
    assert back.ID.tolist() == [10, 11, 12, 13, 20]
    assert list(back.KIDS[1]) == [] and pd.isna(back.KIDS[2])  # an empty list is not a missing one
    assert back.TEXT[1] == "Nice 'quoted' \\ é"


def test_an_empty_frame_publishes_an_empty_table_with_the_same_columns(wh: Warehouse) -> None:
    assert wh.publish_frame(T, "ITEMS", empty_items_frame(), "run1") == 0
    assert wh.list_tables(T) == {"ITEMS": 0}
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), empty_items_frame())


def test_times_from_any_zone_are_stored_as_the_same_utc_instant(wh: Warehouse) -> None:
    paris = pd.Series(pd.to_datetime(["2024-07-01 14:30:00.123456", None]).tz_localize("Europe/Paris"))
    frame = pd.DataFrame({"ID": pd.array([2, 1], dtype="Int64"), "TIME": paris})
    wh.publish_frame(T, "TIMES", frame, "run1")
    back = wh.read_table(T, "TIMES")
    assert back.ID.tolist() == [1, 2] and str(back.TIME.dtype) == "datetime64[us, UTC]"
    assert back.TIME[1] == pd.Timestamp("2024-07-01 12:30:00.123456", tz="UTC") and pd.isna(back.TIME[0])
    # Stored as UTC wall time, whatever the session's zone: 12 h, not Paris' 14 h.
    assert wh.query(T, "SELECT HOUR(TIME) AS H FROM TIMES WHERE ID = 2").H.tolist() == [12]


def test_reading_a_missing_table_names_it(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"^no table STAGING\.HACKER_NEWS\.ITEMS "):
        wh.read_table(T, "ITEMS")


def test_query_binds_parameters_in_the_target_schema_and_returns_hnpipe_dtypes(wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    with warnings.catch_warnings():  # hnpipe's warnings land in every executed notebook's output
        warnings.filterwarnings("error", module=r"hnpipe\.")  # (fakesnow's own are not hnpipe's)
        got = wh.query(T, "SELECT ID, TYPE, DEAD, KIDS, TIME FROM ITEMS WHERE SCORE > ? ORDER BY ID", [2])
    expected = by_id(items(10, 13))[["ID", "TYPE", "DEAD", "KIDS", "TIME"]]
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("sql", ["select id from items where id = 10", "-- a note\nSELECT ID FROM ITEMS WHERE ID = 10",
                                 "/* a\nnote */ (SELECT ID FROM ITEMS WHERE ID = 10)",
                                 "WITH S AS (SELECT ID FROM ITEMS) SELECT ID FROM S WHERE ID = 10;"])
def test_query_and_publish_query_take_any_select(wh: Warehouse, sql: str) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    assert wh.query(T, sql).iloc[:, 0].tolist() == [10]
    assert wh.publish_query(T, "ONE", sql, "run1") == 1


@pytest.mark.parametrize("sql", ["DROP TABLE ITEMS", "DELETE FROM ITEMS", "CREATE TABLE X AS SELECT 1 AS A"])
def test_query_refuses_writes_and_changes_nothing(engine, wh: Warehouse, sql: str) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    with pytest.raises(WarehouseError):
        wh.query(T, sql)
    assert engine.all_tables(T) == {"ITEMS": 5}


def test_a_query_in_a_missing_schema_is_an_error(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="OTHER"):
        wh.query(OTHER, "SELECT 1 AS A")


def test_query_across_reads_two_databases_and_refuses_a_write(engine, wh: Warehouse) -> None:
    wh.publish_frame(PROD, "ITEMS", items(10, 11), "run1")
    wh.publish_frame(T, "ITEMS", items(11, 12, 20), "run1")
    added = wh.query_across(["PRODUCTION", "STAGING"],
                            'SELECT ID FROM "STAGING"."HACKER_NEWS"."ITEMS" EXCEPT '
                            'SELECT ID FROM "PRODUCTION"."HACKER_NEWS"."ITEMS" ORDER BY ID')
    assert added.ID.tolist() == [12, 20] and str(added.ID.dtype) == "Int64"
    with pytest.raises(WarehouseError, match="no database PRODUCTION_CLONE_9"):
        wh.query_across(["PRODUCTION_CLONE_9"], "SELECT 1 AS A")
    with pytest.raises(WarehouseError):
        wh.query_across(["PRODUCTION"], 'DELETE FROM "PRODUCTION"."HACKER_NEWS"."ITEMS"')
    assert engine.all_tables(PROD) == {"ITEMS": 2}


def test_describe_databases_names_every_database_with_utc_times(wh: Warehouse) -> None:
    infos = wh.describe_databases()
    assert [info.name for info in infos] == ["PRODUCTION", "STAGING"]
    for info in infos:
        assert info.created is None or info.created.utcoffset().total_seconds() == 0
        assert info.size_bytes is None or info.size_bytes > 0


# -- writes --------------------------------------------------------------------------------------
def test_ensure_schema_creates_an_empty_schema_once(engine) -> None:
    wh = engine.warehouse()
    wh.ensure_schema(T)
    assert wh.list_tables(T) == {}
    wh.publish_frame(T, "ITEMS", items(), "run1")
    wh.ensure_schema(T)  # again: nothing lost
    assert engine.all_tables(T) == {"ITEMS": 5}


def test_publish_replaces_the_table_and_leaves_no_staging(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    assert wh.publish_frame(T, "ITEMS", items(20), "run2") == 1
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), items(20))
    assert engine.all_tables(T) == {"ITEMS": 1}  # the old data dropped, no staging left


def a_failing_gate(engine, wh: Warehouse) -> None:
    duplicated = pd.concat([items(), items(10, 11)], ignore_index=True)
    wh.publish_frame(T, "ITEMS", duplicated, "run2", datasets.get("ITEMS").gates)


def an_unstorable_frame(engine, wh: Warehouse) -> None:
    frame = items().astype({"SCORE": object})
    frame.loc[0, "SCORE"] = b"not a number"
    wh.publish_frame(T, "ITEMS", frame, "run2")


def a_failure_inside_the_swap(engine, wh: Warehouse) -> None:
    engine.break_swap()
    wh.publish_frame(T, "ITEMS", items(20), "run2")


def a_failing_query(engine, wh: Warehouse) -> None:
    wh.publish_query(T, "ITEMS", "SELECT * FROM NO_SUCH_TABLE", "run2")


@pytest.mark.parametrize("failure,message", [
    (a_failing_gate, r"^refused to publish STAGING\.HACKER_NEWS\.ITEMS: failed checks: "
                     r"id_unique \(2 rows, e\.g\. ID (10, 11|11, 10)\)$"),
    (an_unstorable_frame, r"^cannot publish STAGING\.HACKER_NEWS\.ITEMS: .*SCORE"),
    (a_failure_inside_the_swap, "the swap failed"),
    (a_failing_query, "NO_SUCH_TABLE"),
])
def test_a_failed_publish_leaves_the_previous_table_whole_and_no_staging(engine, wh: Warehouse, failure,
                                                                          message: str) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    with pytest.raises(WarehouseError, match=message):
        failure(engine, wh)
    assert "\n" not in message
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), by_id(items()))
    assert engine.all_tables(T) == {"ITEMS": 5}


def test_leftover_staging_of_a_crashed_run_is_hidden_then_dropped_by_the_next_publish(engine, wh) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    engine.create_table(T, "ITEMS__STAGING_CRASHED")
    engine.create_table(T, "STORIES__STAGING_CRASHED")
    assert wh.list_tables(T) == {"ITEMS": 5}
    wh.publish_frame(T, "ITEMS", items(20), "run2")
    # ITEMS' leftovers go; another table's staging is that table's business.
    assert engine.all_tables(T) == {"ITEMS": 1, "STORIES__STAGING_CRASHED": 1}


@pytest.mark.parametrize("as_stream", [False, True], ids=["table", "batches"])
def test_publish_arrow_stores_what_publish_frame_stores_sorted_by_id(engine, wh: Warehouse, as_stream: bool) -> None:
    frame = items()
    data = pa.Table.from_pandas(frame, preserve_index=False)
    if as_stream:
        data = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=2))
    assert wh.publish_arrow(T, "ITEMS", data, "run1", datasets.get("ITEMS").gates, keep_versions=1) == 5
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), by_id(frame), check_exact=True)
    assert wh.query(T, "SELECT HOUR(TIME) AS H FROM ITEMS WHERE ID = 10").H.tolist() == [22]  # UTC wall time
    assert engine.all_tables(T) == {"ITEMS": 5}


def test_a_failing_gate_on_publish_arrow_keeps_the_previous_table(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(10), "run1")
    duplicated = pa.Table.from_pandas(pd.concat([items(), items(11)], ignore_index=True), preserve_index=False)
    with pytest.raises(WarehouseError, match=r"failed checks: id_unique \(1 rows, e\.g\. ID 11\)$"):
        wh.publish_arrow(T, "ITEMS", duplicated, "run2", datasets.get("ITEMS").gates)
    with pytest.raises(WarehouseError, match="cannot publish STAGING.HACKER_NEWS.ITEMS"):
        wh.publish_arrow(T, "ITEMS", items(), "run2")  # a frame is not Arrow
    assert engine.all_tables(T) == {"ITEMS": 1}


def test_publish_query_computes_inside_the_warehouse_in_the_target_schema(engine, wh: Warehouse) -> None:
    wh.ensure_schema(OTHER)
    wh.publish_frame(T, "ITEMS", items(), "run1")
    wh.publish_frame(OTHER, "ITEMS", items(10), "run1")  # same name in another schema: not read
    assert wh.publish_query(T, "STORIES", STORIES.sql, "run1", STORIES.gates) == 2
    pd.testing.assert_frame_equal(wh.read_table(T, "STORIES"), by_id(items(10, 20)))
    assert wh.publish_query(OTHER, "STORIES", STORIES.sql + ";\n", "run1") == 1
    assert engine.all_tables(T) == {"ITEMS": 5, "STORIES": 2}


def test_a_failing_gate_on_publish_query_names_it_and_keeps_the_table(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(), "run1")
    wh.publish_query(T, "COMMENTS", COMMENTS.sql, "run1", COMMENTS.gates)
    wrong = Gate("only_stories", "SELECT ID FROM {table} WHERE TYPE <> 'story'")
    with pytest.raises(WarehouseError, match=r"failed checks: only_stories \(2 rows, e\.g\. ID 1[12], 1[12]\)$"):
        wh.publish_query(T, "COMMENTS", COMMENTS.sql, "run2", [wrong])
    assert engine.all_tables(T) == {"ITEMS": 5, "COMMENTS": 2}


def test_a_check_with_an_explanation_reads_as_expected_and_got(wh: Warehouse) -> None:
    counted = Gate("row_count", "SELECT COUNT(*) AS ROWS_STAGED FROM {table} HAVING COUNT(*) <> 9",
                    explain="expected 9 rows")
    with pytest.raises(WarehouseError, match=r"failed checks: row_count \(expected 9 rows; got ROWS_STAGED 5\)$"):
        wh.publish_frame(T, "ITEMS", items(), "run1", [counted])
    assert wh.list_tables(T) == {}


def test_publish_merge_keeps_the_rows_in_range_and_adds_the_new_ones(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(10, 11, 12, 13), "run1", keep_versions=1)
    new = items_frame([{"id": 30, "type": "story", "title": "new"}, {"id": 31, "type": "comment", "kids": [1]}])
    rows = wh.publish_merge(T, "ITEMS", new, "run2", keep_ids=(11, 12), gates=datasets.get("ITEMS").gates,
                            keep_versions=1)
    assert rows == 4
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), by_id(pd.concat([items(11, 12), new])))
    assert engine.all_tables(T) == {"ITEMS": 4, "ITEMS__VERSION_RUN2": 4}  # no staging, no delta


def test_publish_merge_refuses_overlap_and_a_missing_table_before_writing(engine, wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"^cannot merge into STAGING\.HACKER_NEWS\.ITEMS: no such table"):
        wh.publish_merge(T, "ITEMS", items(20), "run1", keep_ids=(10, 13))
    wh.publish_frame(T, "ITEMS", items(10, 11), "run1")
    with pytest.raises(WarehouseError, match=r"1 new rows have ids inside the kept range 10\.\.13, e\.g\. ID 12"):
        wh.publish_merge(T, "ITEMS", items(12, 20), "run2", keep_ids=(10, 13))
    with pytest.raises(WarehouseError, match=r"keep_ids \(13, 10\) is not"):
        wh.publish_merge(T, "ITEMS", items(20), "run2", keep_ids=(13, 10))
    assert engine.all_tables(T) == {"ITEMS": 2}


# -- versions ------------------------------------------------------------------------------------
def test_versions_are_kept_newest_first_and_pruned_to_keep_versions(engine, wh: Warehouse) -> None:
    for number in range(1, 6):  # run1 publishes 1 row, run2 2 rows ...
        wh.publish_frame(T, "ITEMS", items(*[10, 11, 12, 13, 20][:number]), f"RUN{number}", keep_versions=2)
    assert [(v.name, v.rows) for v in wh.list_versions(T, "ITEMS")] == [
        ("ITEMS__VERSION_RUN5", 4), ("ITEMS__VERSION_RUN4", 3)]
    wh.publish_frame(T, "ITEMS", items(10), "RUN6", keep_versions=0)
    assert wh.list_versions(T, "ITEMS") == []
    wh.publish_frame(T, "ITEMS", items(11), "RUN7")  # None: the replaced table is dropped
    assert engine.all_tables(T) == {"ITEMS": 1}
    with pytest.raises(WarehouseError, match="invalid keep_versions 101"):
        wh.publish_frame(T, "ITEMS", items(), "RUN8", keep_versions=101)


def test_a_run_publishing_twice_keeps_the_version_from_before_its_first_publish(engine, wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(10), "run1", keep_versions=5)
    wh.publish_frame(T, "ITEMS", items(10, 11), "run2", keep_versions=5)
    wh.publish_frame(T, "ITEMS", items(10, 11, 12), "run2", keep_versions=5)
    assert [(v.name, v.rows) for v in wh.list_versions(T, "ITEMS")] == [("ITEMS__VERSION_RUN2", 1)]
    assert engine.all_tables(T) == {"ITEMS": 3, "ITEMS__VERSION_RUN2": 1}


def test_restore_puts_a_version_back_and_keeps_what_it_replaced_as_its_own_version(engine, wh) -> None:
    wh.publish_frame(T, "ITEMS", items(10, 11, 12), "run1", keep_versions=5)
    wh.publish_frame(T, "ITEMS", items(20), "run2", keep_versions=5)
    assert wh.restore_version(T, "ITEMS", "run2", "run3", keep_versions=5) == 3
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), by_id(items(10, 11, 12)))
    assert [(v.name, v.rows) for v in wh.list_versions(T, "ITEMS")] == [("ITEMS__VERSION_RUN3", 1)]
    assert wh.restore_version(T, "ITEMS", "run3", "run4", keep_versions=5) == 1  # and undone
    pd.testing.assert_frame_equal(wh.read_table(T, "ITEMS"), items(20))
    assert engine.all_tables(T) == {"ITEMS": 1, "ITEMS__VERSION_RUN4": 3}


def test_restore_keeps_only_keep_versions(engine, wh: Warehouse) -> None:
    for number in range(1, 5):
        wh.publish_frame(T, "ITEMS", items(*[10, 11, 12, 13][:number]), f"run{number}", keep_versions=5)
    wh.restore_version(T, "ITEMS", "run2", "run9", keep_versions=1)
    assert [v.name for v in wh.list_versions(T, "ITEMS")] == ["ITEMS__VERSION_RUN9"]
    assert wh.list_tables(T) == {"ITEMS": 1}


def test_restoring_a_version_that_is_not_kept_names_the_kept_ones_and_changes_nothing(engine, wh) -> None:
    wh.publish_frame(T, "ITEMS", items(10), "run1", keep_versions=5)
    wh.publish_frame(T, "ITEMS", items(11), "run2", keep_versions=5)
    before = engine.all_tables(T)
    with pytest.raises(WarehouseError, match=r"^no kept version of STAGING\.HACKER_NEWS\.ITEMS from run run7: "
                                             r"kept are runs RUN2 \(see `hnpipe versions ITEMS`\)$"):
        wh.restore_version(T, "ITEMS", "run7", "run8", keep_versions=5)
    with pytest.raises(WarehouseError, match="ITEMS__VERSION_RUN2 exists already"):
        wh.restore_version(T, "ITEMS", "run2", "run2", keep_versions=5)
    assert engine.all_tables(T) == before


# -- comments ------------------------------------------------------------------------------------
def test_comments_on_a_table_and_its_columns_read_back_in_column_order(wh: Warehouse) -> None:
    wh.publish_frame(T, "STORIES", items(10), "run1")
    assert wh.describe_table(T, "STORIES").comment is None
    wh.comment_table(T, "STORIES", "HN stories; -- not SQL", {"ID": "the item id", "TITLE": "the title"})
    info = wh.describe_table(T, "STORIES")
    assert (info.name, info.comment) == ("STORIES", "HN stories; -- not SQL")
    assert [column.name for column in info.columns] == list(items().columns)
    assert {c.name: c.comment for c in info.columns if c.comment} == {"ID": "the item id", "TITLE": "the title"}
    assert all(column.type for column in info.columns)  # as the engine names it


def test_comments_keep_quotes_and_backslashes(wh: Warehouse, request) -> None:
    snowflake_cannot("fakesnow 0.12.1 copies a COMMENT's literal into its catalog unescaped (a quote "
                     "breaks its SQL, a backslash stays doubled); the escaped literal is pinned in "
                     "test_catalog.py")(request)
    wh.publish_frame(T, "STORIES", items(10), "run1")
    text = "it's 'quoted', C:\\path"
    wh.comment_table(T, "STORIES", text, {"TITLE": "the title's text"})
    info = wh.describe_table(T, "STORIES")
    assert info.comment == text and info.columns[12].comment == "the title's text"


def test_commenting_a_missing_column_or_table_is_refused_and_changes_nothing(wh: Warehouse) -> None:
    wh.publish_frame(T, "STORIES", items(10), "run1")
    with pytest.raises(WarehouseError, match=r"^cannot comment STAGING\.HACKER_NEWS\.STORIES: no column NOPE"):
        wh.comment_table(T, "STORIES", "new", {"ID": "id", "NOPE": "x"})
    assert wh.describe_table(T, "STORIES").comment is None
    assert all(column.comment is None for column in wh.describe_table(T, "STORIES").columns)
    with pytest.raises(WarehouseError, match="COMMENTS"):
        wh.comment_table(T, "COMMENTS", "x")
    with pytest.raises(WarehouseError, match=r"^no table STAGING\.HACKER_NEWS\.COMMENTS"):
        wh.describe_table(T, "COMMENTS")


# -- appending -----------------------------------------------------------------------------------
def history_rows(*run_ids: str, rows: list[Any] | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "RUN_ID": pd.array(run_ids, dtype="string"),
        "ROWS_WRITTEN": pd.array(rows or [len(r) for r in run_ids], dtype="Int64"),
        "OK": pd.array([True] * len(run_ids), dtype="boolean"),
        "STARTED_AT": pd.to_datetime(["2026-11-21 02:15:00"] * len(run_ids), utc=True).as_unit("us"),
    })


def test_append_rows_creates_the_table_then_appends_in_order(engine, wh: Warehouse) -> None:
    assert wh.append_rows(T, "PIPELINE_RUNS", history_rows("r1", "r22")) == 2
    assert wh.append_rows(T, "PIPELINE_RUNS", history_rows("r333")[["OK", "RUN_ID", "STARTED_AT",
                                                                       "ROWS_WRITTEN"]]) == 1  # any order
    assert wh.append_rows(T, "PIPELINE_RUNS", history_rows()) == 0
    back = wh.read_table(T, "PIPELINE_RUNS").sort_values("RUN_ID").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, history_rows("r1", "r22", "r333"))
    assert engine.all_tables(T) == {"PIPELINE_RUNS": 3}


HISTORY_DTYPES = {"RUN_ID": "string", "ROWS_WRITTEN": "Int64", "OK": "boolean", "STARTED_AT": "datetime64[us, UTC]"}


def test_plain_rows_go_in_and_come_out_as_frames_do(engine, wh: Warehouse) -> None:
    """append_records/query_rows (what `hnpipe run` records with, without pandas) make the
    same table as append_rows, and read back what query() reads, timestamps in UTC."""
    started = datetime(2026, 11, 21, 2, 15, tzinfo=timezone.utc)
    plain = [{"RUN_ID": "r1", "ROWS_WRITTEN": 2, "OK": True, "STARTED_AT": started},
             {"RUN_ID": "r22", "ROWS_WRITTEN": 3, "OK": True, "STARTED_AT": started.astimezone(timezone(timedelta(hours=2)))}]
    assert wh.append_records(T, "PIPELINE_RUNS", HISTORY_DTYPES, plain) == 2
    assert wh.append_rows(T, "PIPELINE_RUNS", history_rows("r333")) == 1  # into the table it created
    back = wh.read_table(T, "PIPELINE_RUNS").sort_values("RUN_ID").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, history_rows("r1", "r22", "r333"))
    rows = wh.query_rows(T, "SELECT * FROM PIPELINE_RUNS WHERE RUN_ID <> ? ORDER BY RUN_ID", ["r333"])
    assert rows == [{**row, "STARTED_AT": started} for row in plain]
    assert rows[0]["STARTED_AT"].utcoffset() == timedelta(0)
    assert wh.append_records(T, "PIPELINE_RUNS", HISTORY_DTYPES, [{"RUN_ID": "r4"}]) == 1  # missing: NULL
    assert wh.query_rows(T, "SELECT ROWS_WRITTEN, OK FROM PIPELINE_RUNS WHERE RUN_ID = 'r4'") == [
        {"ROWS_WRITTEN": None, "OK": None}]


def test_append_rows_is_all_or_nothing(engine, wh: Warehouse) -> None:
    wh.append_rows(T, "PIPELINE_RUNS", history_rows("r1"))
    unknown = history_rows("r2").assign(SURPRISE=pd.array(["x"], dtype="string"))
    with pytest.raises(WarehouseError, match=r"STAGING\.HACKER_NEWS\.PIPELINE_RUNS"):
        wh.append_rows(T, "PIPELINE_RUNS", unknown)
    wrong_type = history_rows("r2", "r3").astype({"ROWS_WRITTEN": "string"})
    wrong_type.loc[1, "ROWS_WRITTEN"] = "many"  # the first row fits, the second cannot
    with pytest.raises(WarehouseError, match=r"STAGING\.HACKER_NEWS\.PIPELINE_RUNS"):
        wh.append_rows(T, "PIPELINE_RUNS", wrong_type)
    assert wh.read_table(T, "PIPELINE_RUNS").RUN_ID.tolist() == ["r1"]
    assert engine.all_tables(T) == {"PIPELINE_RUNS": 1}


def test_append_rows_takes_scalar_columns_only(engine, wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"^cannot append to STAGING\.HACKER_NEWS\.RUNS: list column KIDS; "):
        wh.append_rows(T, "RUNS", items(10)[["ID", "KIDS"]])
    assert engine.all_tables(T) == {}


# -- databases -----------------------------------------------------------------------------------
NOT_CLONES = ["PRODUCTION", "STAGING", "LOCAL", "PRODUCTION_CLONE_", "PRODUCTION_CLONE_01", "production_clone_1",
              "PRODUCTION_CLONE_1; DROP DATABASE PRODUCTION", "../PRODUCTION_CLONE_1", "PRODUCTION_CLONE_1\n",
              "", None, 1]


def test_clone_and_drop_refuse_every_name_but_a_branch_clone_before_writing(engine, wh: Warehouse) -> None:
    wh.publish_frame(PROD, "ITEMS", items(), "run1")
    for name in NOT_CLONES:
        with pytest.raises(GuardError, match=r"only PRODUCTION_CLONE_<digits> databases"):
            wh.drop_database(name)
        with pytest.raises(GuardError, match=r"^refused to clone database "):
            wh.clone_database("PRODUCTION", name)
    assert wh.list_databases() == ["PRODUCTION", "STAGING"]
    assert engine.all_tables(PROD) == {"ITEMS": 5}


def test_clone_of_a_missing_source_is_refused(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="cannot clone LOCAL"):
        wh.clone_database("LOCAL", CLONE.database)
    assert not wh.database_exists(CLONE.database)


def test_a_clone_holds_every_table_and_later_writes_do_not_share(engine, wh: Warehouse, request) -> None:
    snowflake_cannot("fakesnow 0.12.1 creates a CLONE as an empty database (the CREATE .. CLONE "
                     "statement is pinned in test_snowflake_warehouse.py)")(request)
    wh.publish_frame(PROD, "ITEMS", items(), "run1")
    wh.publish_query(PROD, "STORIES", STORIES.sql, "run1")
    wh.clone_database("PRODUCTION", CLONE.database)
    assert wh.list_tables(CLONE) == wh.list_tables(PROD) == {"ITEMS": 5, "STORIES": 2}
    pd.testing.assert_frame_equal(wh.read_table(CLONE, "ITEMS"), wh.read_table(PROD, "ITEMS"))
    wh.publish_frame(CLONE, "ITEMS", items(20), "run2")
    assert engine.all_tables(PROD)["ITEMS"] == 5
    wh.clone_database("PRODUCTION", CLONE.database)  # a fresh clone replaces the old one
    assert wh.list_tables(CLONE)["ITEMS"] == 5


def test_drop_removes_a_clone_and_says_whether_it_existed(engine, wh: Warehouse, request) -> None:
    snowflake_cannot("fakesnow 0.12.1 cannot parse DROP DATABASE (the statement is pinned in "
                     "test_snowflake_warehouse.py)")(request)
    if engine.name == "snowflake":
        engine.fake.create_databases(CLONE.database)
    else:
        wh.publish_frame(PROD, "ITEMS", items(), "run1")
        wh.clone_database("PRODUCTION", CLONE.database)
    assert wh.drop_database(CLONE.database) is True
    assert wh.drop_database(CLONE.database) is False
    assert wh.list_databases() == ["PRODUCTION", "STAGING"]


# -- the write guard -----------------------------------------------------------------------------
def prepared(wh: Warehouse) -> None:
    wh.publish_frame(T, "ITEMS", items(10, 11), "run1", keep_versions=5)
    wh.publish_frame(T, "ITEMS", items(), "run2", keep_versions=5)
    wh.append_rows(T, "PIPELINE_RUNS", history_rows("r1"))


WRITES: dict[str, Callable[[Warehouse, Target], Any]] = {
    "ensure_schema": lambda wh, target: wh.ensure_schema(target),
    "publish_frame": lambda wh, target: wh.publish_frame(target, "ITEMS", items(20), "run3"),
    "publish_arrow": lambda wh, target: wh.publish_arrow(target, "ITEMS", pa.Table.from_pandas(
        items(20), preserve_index=False), "run3"),
    "publish_query": lambda wh, target: wh.publish_query(target, "STORIES", STORIES.sql, "run3"),
    "publish_merge": lambda wh, target: wh.publish_merge(target, "ITEMS", items(20), "run3", keep_ids=(10, 11)),
    "restore_version": lambda wh, target: wh.restore_version(target, "ITEMS", "run2", "run3", 5),
    "comment_table": lambda wh, target: wh.comment_table(target, "ITEMS", "guarded", {"ID": "id"}),
    "append_rows": lambda wh, target: wh.append_rows(target, "PIPELINE_RUNS", history_rows("r3")),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_the_write_guard_sees_the_actual_location_before_every_write(engine, wh: Warehouse, write: str) -> None:
    prepared(wh)
    seen: list[Target] = []
    WRITES[write](engine.warehouse(seen.append), T)
    assert seen and set(seen) == {T} and all(type(target) is Target for target in seen)


@pytest.mark.parametrize("write", list(WRITES))
def test_a_refusing_guard_writes_nothing(engine, wh: Warehouse, write: str) -> None:
    prepared(wh)
    before = engine.all_tables(T)
    comment = wh.describe_table(T, "ITEMS").comment

    def refuse(actual: Target) -> None:
        raise GuardError(f"refused write to {actual}")

    with pytest.raises(GuardError, match=r"^refused write to STAGING\.HACKER_NEWS$"):
        WRITES[write](engine.warehouse(refuse), T)
    assert engine.all_tables(T) == before
    assert wh.describe_table(T, "ITEMS").comment == comment


def test_a_refusing_guard_creates_no_schema(engine, wh: Warehouse) -> None:
    def refuse(actual: Target) -> None:
        raise GuardError(f"refused write to {actual}")

    with pytest.raises(GuardError, match=r"^refused write to STAGING\.OTHER$"):
        engine.warehouse(refuse).publish_frame(OTHER, "ITEMS", items(), "run1")
    with pytest.raises(WarehouseError):
        wh.query(OTHER, "SELECT 1 AS A")  # the schema was not created


@pytest.mark.parametrize("table,run_id", [("items", "run1"), ("ITEMS; DROP", "run1"), ('ITEMS"', "run1"),
                                          ("ITEMS", "run-1"), ("ITEMS", "")])
def test_bad_names_are_refused_before_anything_is_written(engine, wh: Warehouse, table: str, run_id: str) -> None:
    with pytest.raises((GuardError, WarehouseError), match="identifiers must match|run.id"):
        wh.publish_frame(T, table, items(), run_id)
    with pytest.raises(GuardError, match="identifiers must match"):
        wh.publish_frame(T, "ITEMS", items().rename(columns={"ID": "id"}), "run1")
    assert engine.all_tables(T) == {}


# -- lifetime ------------------------------------------------------------------------------------
def test_close_ends_the_session_is_safe_twice_and_the_warehouse_is_a_context_manager(engine) -> None:
    with engine.warehouse() as wh:
        wh.ensure_schema(T)
        wh.publish_frame(T, "ITEMS", items(), "run1")
    assert engine.sessions_open() == 0
    wh.close()
    wh.close()
    assert engine.sessions_open() == 0
    with pytest.raises(RuntimeError, match="boom"):
        with engine.warehouse() as other:
            other.list_tables(T)
            raise RuntimeError("boom")  # the session ends on the way out of an error too
    assert engine.sessions_open() == 0
    assert re.fullmatch(r"\w+Warehouse\(.*\)", repr(wh))


# -- the stage (hnpipe.warehouse.base.FileStage) -------------------------------------------------
def test_the_stage_keeps_lists_reads_loads_and_removes_files_alike(engine, wh: Warehouse, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each engine's stage: parts uploaded into two folders are listed with their sizes, a
    manifest reads back, the files load into a table (gated, swapped) equal to the rows
    written, and a removed folder is gone; a stage path with `..` is refused."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # Snowflake's local parts: this test's

    from hnpipe.errors import HnpipeError
    from hnpipe.items import ITEMS_SCHEMA
    from hnpipe.stage import open_stage

    stage = open_stage(wh, T)
    frame = items(10, 11, 13)  # lists, a quote and a backslash, flags, times
    batch = pa.Table.from_pandas(frame.reindex(columns=list(ITEMS_SCHEMA.names)), schema=ITEMS_SCHEMA,
                                 preserve_index=False).combine_chunks().to_batches()[0]
    files = []
    for folder, rows in (("backfill/BF_1/shard-000001/R1", batch.slice(0, 2)), ("backfill/BF_1/shard-000002/R2", batch.slice(2))):
        writer = stage.writer(folder)
        writer(rows)
        files += writer.close()
    stage.write_manifest("backfill/BF_1/shard-000001/R1", {"rows": 2})
    assert stage.listing("backfill/BF_1") == {
        "shard-000001/R1/part-000001.parquet": files[0].stat().st_size,
        "shard-000001/R1/manifest.json": (stage.path("backfill/BF_1/shard-000001/R1") / "manifest.json").stat().st_size,
        "shard-000002/R2/part-000001.parquet": files[1].stat().st_size}
    assert stage.read_manifest("backfill/BF_1/shard-000001/R1") == {"rows": 2}
    assert stage.read_manifest("backfill/BF_1/shard-000002/R2") is None
    gate = Gate("id_unique", 'SELECT "ID" FROM {table} GROUP BY "ID" HAVING COUNT(*) > 1')
    assert stage.publish(wh, "ITEMS", files, "run1", gates=[gate], keep_versions=None) == 3
    pd.testing.assert_frame_equal(by_id(wh.read_table(T, "ITEMS")), by_id(frame))
    stage.remove("backfill/BF_1")
    assert stage.listing("backfill/BF_1") == {}
    with pytest.raises(HnpipeError, match="invalid stage path"):
        stage.path("backfill/../../etc")
