"""Incremental refresh (hnpipe.refresh): fetch the new ids and a window, merge into ITEMS.

Against a real sample server (hnpipe.sample.SampleServer) whose HN grows between runs: the
second server answers a larger maxitem, changed items inside the window and an id that
turned null. Real DuckDB files; fakesnow and recorded SQL for the Snowflake engine.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pytest
import snowflake.connector.errors
import snowflake.connector.pandas_tools
from hnpipe import cli, datasets, params, pipeline, refresh
from hnpipe.environments import Target
from hnpipe.errors import ParameterError, WarehouseError
from hnpipe.items import ITEMS_COLUMNS, empty_items_frame, items_frame
from hnpipe.sample import SampleServer, generate_sample
from hnpipe.warehouse import duckdb_engine, open_environment
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from registered import DATASET_TABLES, build_in_sql
from registered import expected_tables as every_dataset
from snowflake_fakes import Recorder

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

TARGET = Target("LOCAL", "TESTER")
TABLES = DATASET_TABLES
TOP = 80_000  # the first server's maxitem
GROWTH = 120  # the most new ids any test serves above TOP
UNIVERSE = generate_sample(n_ids=3_000, max_item=TOP + GROWTH)  # every id any server knows


def hn_until(top: int, changes: Mapping[int, dict | None] = {}) -> dict[int, dict | None]:
    """HN as it looks when `top` is the newest id: the universe up to it, with `changes`."""
    items = {item_id: copy.deepcopy(item) for item_id, item in UNIVERSE.items() if item_id <= top}
    items.update(copy.deepcopy(dict(changes)))
    return items


def first_of_type(kind: str, low: int, high: int) -> int:
    return next(i for i in range(low, high + 1)
                if UNIVERSE.get(i) and UNIVERSE[i]["type"] == kind and not UNIVERSE[i].get("deleted"))


def run_items(server: SampleServer, n_items: int, **values: Any) -> pipeline.Step:
    """items.ipynb's two calls against `server`; returns the Step (its plan and report)."""
    step = pipeline.start("ITEMS", {"environment": "local", "n_items": n_items,
                                    "hn_api_url": server.base_url, **values})
    step.publish(step.fetch_items())
    return step


def build_derived(n_items: int) -> None:
    build_in_sql({"environment": "local", "n_items": n_items})


def read_all(target: Target = TARGET) -> dict[str, pd.DataFrame]:
    return {name: read_items(target, name) for name in TABLES}


def read_items(target: Target = TARGET, name: str = "ITEMS") -> pd.DataFrame:
    return open_environment("local", {}).read_table(target, name)


def expected_tables(items: Mapping[int, dict | None], n_items: int) -> dict[str, pd.DataFrame]:
    """What a full run over the n_items newest ids of `items` publishes, computed directly."""
    top = max(items)
    frame = items_frame(item for item_id, item in items.items() if item and item_id > top - n_items)
    return every_dataset(frame)


def served(server: SampleServer, action) -> int:
    """How many requests `action()` made of `server`."""
    before = server.requests_served
    action()
    return server.requests_served - before


# -- the result equals a full run --------------------------------------------------------------
@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_incremental_equals_a_full_run_over_the_same_ids(clean_env, monkeypatch, capsys) -> None:
    n, new, window = 1_000, 80, 150
    story = first_of_type("story", TOP + 1 - window, TOP)  # inside the window: its votes change
    gone = first_of_type("comment", TOP + 1 - window, TOP)  # inside the window: now answers null
    changed = {story: {**UNIVERSE[story], "score": UNIVERSE[story]["score"] + 17,
                       "descendants": UNIVERSE[story]["descendants"] + 1}, gone: None}
    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T100000_000001")
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, n)
    build_derived(n)
    before = read_all()

    monkeypatch.setenv("HNPIPE_RUN_ID", "20261121T110000_000002")
    later = hn_until(TOP + new, changed)
    with SampleServer(items=later) as server:
        capsys.readouterr()
        requests = served(server, lambda: run_items(server, n, refresh="incremental", refresh_window=window))
    out = capsys.readouterr().out
    build_derived(n)
    incremental = read_all()

    # The same ids, fetched whole, into another schema of the same file.
    monkeypatch.setenv("HNPIPE_DEV_SCHEMA", "FULLRUN")
    with SampleServer(items=later) as server:
        run_items(server, n)
    build_derived(n)
    full = read_all(Target("LOCAL", "FULLRUN"))

    for name in TABLES:
        pd.testing.assert_frame_equal(incremental[name], full[name], check_exact=True, obj=name)
        pd.testing.assert_frame_equal(incremental[name], expected_tables(later, n)[name], obj=name)
    items = incremental["ITEMS"].set_index("ID")
    assert items.loc[story, "SCORE"] == before["ITEMS"].set_index("ID").loc[story, "SCORE"] + 17
    assert gone in set(before["ITEMS"].ID) and gone not in items.index
    # Only the new ids and the window were asked for (and maxitem), and the notebook says so.
    assert requests == 1 + new + window
    kept = len(before["ITEMS"][before["ITEMS"].ID.between(TOP + new - n + 1, TOP - window)])
    assert (f"refresh incremental: fetching {new + window:,} ids ({new} new above ITEMS' newest "
            f"{TOP:,}, {window} again in the window), keeping {kept:,} rows of ITEMS "
            f"(ids {TOP + new - n + 1:,}..{TOP - window:,})") in out
    assert f"published {len(items):,} rows to LOCAL.TESTER.ITEMS ({kept:,} kept, " in out


@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_an_item_changed_below_the_window_stays_as_it_was_fetched(clean_env) -> None:
    """The documented limit: outside the window an incremental run keeps the old row."""
    n, window = 400, 50
    old_story = first_of_type("story", TOP - n + 60, TOP - window - 1)
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, n)
    stale = read_items().set_index("ID").loc[old_story]
    rescored = {old_story: {**UNIVERSE[old_story], "score": UNIVERSE[old_story]["score"] + 100}}
    with SampleServer(items=hn_until(TOP + 10, rescored)) as server:
        run_items(server, n, refresh="incremental", refresh_window=window)
        assert read_items().set_index("ID").loc[old_story, "SCORE"] == stale["SCORE"]
        run_items(server, n)  # a full run picks the change up
    assert read_items().set_index("ID").loc[old_story, "SCORE"] == stale["SCORE"] + 100


def test_a_grown_n_items_fetches_the_ids_below_what_items_holds(clean_env) -> None:
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, 300)
        step = run_items(server, 500, refresh="incremental", refresh_window=40)
    assert step.refresh.merges and step.refresh.fetch == (range(TOP - 499, TOP - 299), range(TOP - 39, TOP + 1))
    pd.testing.assert_frame_equal(read_items(), expected_tables(hn_until(TOP), 500)["ITEMS"])


# -- cost ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_items,new", [(300, 40), (1_800, 40), (300, 120)])
def test_requests_grow_with_the_new_ids_not_with_n(clean_env, n_items: int, new: int) -> None:
    window = 60
    with SampleServer(items=hn_until(TOP)) as server:
        assert served(server, lambda: run_items(server, n_items)) == 1 + n_items
    with SampleServer(items=hn_until(TOP + new)) as server:
        requests = served(server, lambda: run_items(server, n_items, refresh="incremental", refresh_window=window))
    assert requests == 1 + new + window  # maxitem, the new ids, the window: whatever n_items is


@pytest.mark.slow  # whole pipelines or backfills, several over (the full suite runs it)
def test_the_default_window_is_the_parameter_default(clean_env) -> None:
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, 1_200)
        step = run_items(server, 1_200, refresh="incremental")
    assert params.PARAMETERS["refresh_window"].default == 500
    assert step.refresh.fetched_ids == 500 and step.fetch_report.requested == 500


# -- falling back to full ------------------------------------------------------------------------
def test_incremental_without_items_runs_full_and_says_so(clean_env, capsys) -> None:
    with SampleServer(items=hn_until(TOP)) as server:
        requests = served(server, lambda: run_items(server, 300, refresh="incremental"))
    assert requests == 1 + 300
    out = capsys.readouterr().out
    assert ("refresh full (incremental asked, but there is no ITEMS in LOCAL.TESTER yet): fetching all "
            f"300 ids {TOP - 299:,}..{TOP:,}") in out
    pd.testing.assert_frame_equal(read_items(), expected_tables(hn_until(TOP), 300)["ITEMS"])


def _rows(*ids: int) -> pd.DataFrame:
    return items_frame([{**UNIVERSE[TOP], "id": i} for i in ids])


@pytest.mark.parametrize("frame,window,reason", [
    (empty_items_frame(), 10, "incremental asked, but LOCAL.TESTER.ITEMS is empty"),
    (_rows(TOP).drop(columns="KIDS"), 10,
     "ITEMS has columns ID, DELETED, TYPE, USER_ID, TIME, TEXT, DEAD, PARENT, POLL, URL, SCORE, TITLE, "
     "PARTS, DESCENDANTS, not ID, DELETED, TYPE, USER_ID, TIME, TEXT, DEAD, PARENT, POLL, KIDS, URL"),
    (_rows(TOP - 50, TOP + 5), 10,
     f"ITEMS (ids {TOP - 50:,}..{TOP + 5:,}) reaches above the API's maxitem {TOP:,}: another source?"),
    (_rows(TOP - 5_000), 10,
     f"ITEMS (ids {TOP - 5_000:,}..{TOP - 5_000:,}) is older than the target set {TOP - 99:,}..{TOP:,}: nothing to keep"),
    (_rows(*range(TOP - 5, TOP + 1)), 10,
     f"no row of ITEMS (ids {TOP - 5:,}..{TOP:,}) lies below the window, in {TOP - 99:,}..{TOP - 10:,}: nothing to keep"),
    (_rows(TOP - 150, TOP - 20), 200,
     f"refresh_window 200 reaches below the target set {TOP - 99:,}..{TOP:,}: nothing to keep"),
], ids=["empty", "other-columns", "other-source", "too-old", "all-in-window", "window-below-target"])
def test_plan_falls_back_to_full_naming_why(tmp_path: Path, frame: pd.DataFrame, window: int, reason: str) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    warehouse.publish_frame(TARGET, "ITEMS", frame, "seed")
    plan = refresh.plan(warehouse, TARGET, max_item=TOP, n_items=100, mode="incremental", window=window)
    assert (plan.mode, plan.fetch, plan.keep_ids, plan.merges) == ("full", (range(TOP - 99, TOP + 1),), None, False)
    assert reason in plan.note and f"refresh full ({plan.note}): fetching all 100 ids" in plan.summary()


def test_full_plan_reads_nothing_of_the_warehouse(tmp_path: Path) -> None:
    plan = refresh.plan(DuckDBWarehouse(tmp_path / "missing"), TARGET, max_item=50, n_items=100,
                        mode="full", window=10)
    assert plan.fetch == (range(1, 51),) and plan.summary() == "refresh full: fetching all 50 ids 1..50"
    assert not (tmp_path / "missing").exists()


# -- failures leave ITEMS whole ----------------------------------------------------------------
def bookkeeping_left(path: Path) -> list[str]:
    return [name for name in DuckDBWarehouse(path).list_tables(TARGET, bookkeeping=True) if "__STAGING_" in name]


@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_a_failed_gate_during_the_merge_leaves_items_whole(clean_env) -> None:
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, 500)
    before = read_items()
    advert = first_of_type("comment", TOP + 1, TOP + 20)  # a new item of a type HN does not have
    bogus = {advert: {**UNIVERSE[advert], "type": "advert"}}
    with SampleServer(items=hn_until(TOP + 20, bogus)) as server, \
            pytest.raises(WarehouseError, match=r"^refused to publish LOCAL.TESTER.ITEMS: failed checks: type_known "):
        run_items(server, 500, refresh="incremental", refresh_window=50)
    pd.testing.assert_frame_equal(read_items(), before)
    assert bookkeeping_left(clean_env) == []
    history = open_environment("local", {}).query(TARGET, "SELECT STATUS, PARAMETERS FROM PIPELINE_RUNS ORDER BY STARTED_AT")
    assert list(history.STATUS) == ["succeeded", "failed"]
    assert json.loads(history.PARAMETERS.iloc[-1])["refresh"] == "incremental"


def test_a_merge_that_fails_in_sql_or_mid_way_leaves_the_table_whole(tmp_path: Path, monkeypatch) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    old = items_frame([item for i, item in UNIVERSE.items() if item and TOP - 30 < i <= TOP - 10])
    warehouse.publish_frame(TARGET, "ITEMS", old, "run1")
    new = items_frame([item for i, item in UNIVERSE.items() if item and TOP - 10 < i <= TOP])

    with pytest.raises(WarehouseError, match=r'^cannot load LOCAL.TESTER.ITEMS: .*"EXTRA"'):
        warehouse.publish_merge(TARGET, "ITEMS", new.assign(EXTRA=1), "run2", (TOP - 29, TOP - 10))

    def die(*args: Any) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C in the notebook between staging and swap

    monkeypatch.setattr(duckdb_engine, "run_gates", die)
    with pytest.raises(KeyboardInterrupt):
        warehouse.publish_merge(TARGET, "ITEMS", new, "run3", (TOP - 29, TOP - 10))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(warehouse.read_table(TARGET, "ITEMS"), old)
    assert list(warehouse.list_tables(TARGET, bookkeeping=True)) == ["ITEMS"]

    assert warehouse.publish_merge(TARGET, "ITEMS", new, "run4", (TOP - 19, TOP - 10)) == \
        len(old[old.ID >= TOP - 19]) + len(new)


@pytest.mark.parametrize("keep_ids,frame_ids,message", [
    ((5, 1), [9], r"keep_ids \(5, 1\) is not \(first id, last id\) with first <= last"),
    ([1, 5], [9], r"keep_ids \[1, 5\] is not \(first id, last id\)"),
    ((1, True), [9], r"keep_ids \(1, True\) is not"),
    ((1, 5), [3, 9], r"1 new rows have ids inside the kept range 1..5, e.g. ID 3"),
])
def test_publish_merge_refuses_bad_input_before_writing(tmp_path: Path, keep_ids, frame_ids, message) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    frame = items_frame([{"id": i, "type": "story", "time": 1_700_000_000} for i in frame_ids])
    with pytest.raises(WarehouseError, match="^cannot merge into LOCAL.TESTER.ITEMS: " + message) as refused:
        warehouse.publish_merge(TARGET, "ITEMS", frame, "run1", keep_ids)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "wh").exists()
    with pytest.raises(WarehouseError, match=r"^cannot merge into LOCAL.TESTER.ITEMS: no such table; publish it whole first$"):
        warehouse.publish_merge(TARGET, "ITEMS", frame, "run1", (100, 200))
    assert not (tmp_path / "wh").exists()
    with pytest.raises(WarehouseError, match=r"^cannot publish LOCAL.TESTER.ITEMS: expected a pandas DataFrame, got list$"):
        warehouse.publish_merge(TARGET, "ITEMS", [{"ID": 9}], "run1", (100, 200))


# -- bad parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("values,message", [
    ({"refresh": "delta"}, "parameter refresh='delta' is not allowed: choose one of full, incremental"),
    ({"refresh": "Incremental"}, "parameter refresh='Incremental' is not allowed: choose one of full, incremental"),
    ({"refresh": True}, "parameter refresh=True (bool) is not a string"),
    ({"refresh_window": -1}, "parameter refresh_window=-1 is not allowed: use a whole number of ids from 0 to 5,000,000"),
    ({"refresh_window": 5_000_001}, "parameter refresh_window=5000001 is not allowed"),
    ({"refresh_window": "500"}, "parameter refresh_window='500' (str) is not a whole number"),
    ({"refresh_window": 1.5}, "parameter refresh_window=1.5 (float) is not a whole number"),
])
def test_bad_refresh_parameters_are_refused_before_anything_is_written(clean_env, values, message) -> None:
    with pytest.raises(ParameterError) as refused:
        pipeline.start("ITEMS", {"environment": "local", **values})
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not clean_env.exists()
    key, value = next(iter(values.items()))
    with pytest.raises(ParameterError, match=key):
        params.parse_override(f"{key}={json.dumps(value) if isinstance(value, str) else value}")


def test_plan_refuses_bad_values_when_called_directly(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh")
    with pytest.raises(ParameterError, match=r"^refresh 'delta' is not allowed: choose one of full, incremental$"):
        refresh.plan(warehouse, TARGET, max_item=10, n_items=5, mode="delta", window=1)
    with pytest.raises(ParameterError, match=r"^refresh_window -1 is not allowed"):
        refresh.plan(warehouse, TARGET, max_item=10, n_items=5, mode="incremental", window=-1)


# -- Snowflake ------------------------------------------------------------------------------------
STAGING = Target("STAGING", "HACKER_NEWS")
TABLES_SQL = ("SELECT TABLE_NAME, ROW_COUNT FROM \"STAGING\".INFORMATION_SCHEMA.TABLES "
              "WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME")
COLUMNS = ", ".join(f'"{column}"' for column in ITEMS_COLUMNS)


def small_frame(*ids: int) -> pd.DataFrame:
    return items_frame([{"id": i, "type": "story", "by": "ann", "time": 1_700_000_000 + i, "kids": [i * 10]}
                                 for i in ids])


def test_snowflake_merge_sql_is_pinned(recorded_write_pandas) -> None:
    recorder = Recorder(tables={"ITEMS": 9, "ITEMS__STAGING_CRASHED_DELTA": 2, "ITEMS__VERSION_RUN6": 9})
    recorder.connection.staged_rows = 7

    rows = recorder.warehouse().publish_merge(STAGING, "ITEMS", small_frame(8, 9), "run7", (3, 7),
                                              gates=datasets.get("ITEMS").gates, keep_versions=5)

    assert rows == 7
    session = [('USE SCHEMA "STAGING"."HACKER_NEWS"', None), ("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()", None),
               ("SHOW DATABASES", None), (TABLES_SQL, ["HACKER_NEWS"])]
    assert recorder.statements == [
        ("SHOW DATABASES", None), (TABLES_SQL, ["HACKER_NEWS"]),  # ITEMS must exist to merge into
        *session,
        ('DROP TABLE IF EXISTS "ITEMS__STAGING_CRASHED_DELTA"', None),  # a crashed run's delta
        (recorder.statements[7][0], None),
        ("<write_pandas>", ["ITEMS__STAGING_RUN7_DELTA"]),
        (f'CREATE TABLE "ITEMS__STAGING_RUN7" AS SELECT {COLUMNS} FROM "ITEMS" WHERE "ID" BETWEEN 3 AND 7 '
         f'UNION ALL SELECT {COLUMNS} FROM "ITEMS__STAGING_RUN7_DELTA"', None),
        ('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7_DELTA"', None),
        ('SELECT COUNT(*) FROM "ITEMS__STAGING_RUN7"', None),
        *[(sql, None) for sql, _ in recorder.statements[12:14]],  # the two id checks
        ('ALTER TABLE "ITEMS" SWAP WITH "ITEMS__STAGING_RUN7"', None),
        ('ALTER TABLE "ITEMS__STAGING_RUN7" RENAME TO "ITEMS__VERSION_RUN7"', None),
    ]
    assert recorder.statements[7][0].startswith('CREATE TABLE "ITEMS__STAGING_RUN7_DELTA" ("ID" NUMBER(38,0), "DELETED" BOOLEAN')
    assert all("ITEMS__STAGING_RUN7" in sql for sql, _ in recorder.statements[12:14])


def test_snowflake_merge_failure_drops_delta_and_staging_and_never_swaps(recorded_write_pandas) -> None:
    failure = snowflake.connector.errors.ProgrammingError(msg="SQL compilation error: invalid identifier")
    recorder = Recorder(tables={"ITEMS": 9}, failing={'CREATE TABLE "ITEMS__STAGING_RUN7" AS SELECT': failure})
    with pytest.raises(WarehouseError, match=r"^merge into STAGING.HACKER_NEWS.ITEMS failed: .*invalid identifier$"):
        recorder.warehouse().publish_merge(STAGING, "ITEMS", small_frame(8), "run7", (3, 7))
    tail = recorder.statements[-2:]
    assert tail == [('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7_DELTA"', None),
                    ('DROP TABLE IF EXISTS "ITEMS__STAGING_RUN7"', None)]
    assert not any("SWAP" in sql or "RENAME" in sql for sql, _ in recorder.statements)


def test_snowflake_merge_refuses_a_missing_table_before_writing() -> None:
    recorder = Recorder(tables={})
    with pytest.raises(WarehouseError, match="no such table; publish it whole first"):
        recorder.warehouse().publish_merge(STAGING, "ITEMS", small_frame(8), "run7", (3, 7))
    assert not any(sql.startswith(("CREATE", "DROP", "ALTER")) for sql, _ in recorder.statements)


@pytest.fixture
def on_fakesnow(snowflake_process):
    """The local environment on the Snowflake engine, fakesnow standing in (SWAP replayed as renames)."""
    snowflake_process.create_databases("LOCAL")


@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
def test_incremental_pipeline_on_fakesnow_equals_the_expected_tables(on_fakesnow) -> None:
    n, new, window = 300, 30, 40
    story = first_of_type("story", TOP + 1 - window, TOP)
    changed = {story: {**UNIVERSE[story], "score": UNIVERSE[story]["score"] + 5}}
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, n)
    later = hn_until(TOP + new, changed)
    with SampleServer(items=later) as server:
        step = run_items(server, n, refresh="incremental", refresh_window=window)
    build_derived(n)
    assert step.refresh.merges and step.warehouse.engine == "snowflake"
    expected = expected_tables(later, n)
    for name in TABLES:
        pd.testing.assert_frame_equal(step.read(name), expected[name], obj=name)
    assert not [t for t in step.warehouse.list_tables(step.target, bookkeeping=True) if "__STAGING_" in t]


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow  # `hnpipe run` starts the notebooks' kernels
def test_hnpipe_run_with_refresh_incremental(clean_env, capsys) -> None:
    n, new, window = 400, 25, 60
    with SampleServer(items=hn_until(TOP)) as server:
        run_items(server, n)
    later = hn_until(TOP + new)
    with SampleServer(items=later) as server:
        code = cli.main(["run", "--env", "local", "-p", f"n_items={n}", "-p", f"hn_api_url={server.base_url}",
                         "-p", "refresh=incremental", "-p", f"refresh_window={window}"])
        requests = server.requests_served
    out = capsys.readouterr().out
    assert code == 0, out
    assert requests == 1 + new + window
    tables = read_all()
    for name, frame in expected_tables(later, n).items():
        pd.testing.assert_frame_equal(tables[name], frame, obj=name)
    executed = next((clean_env.parent / "runs" / "local").glob("*/items.ipynb")).read_text()
    assert f"refresh incremental: fetching {new + window:,} ids ({new} new" in executed
